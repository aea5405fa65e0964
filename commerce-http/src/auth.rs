//! Authentication as extractors: a handler that takes [`BearerAuth`] only runs for a valid
//! access token; one that takes [`StaffAuth`] only for admins and superadmins; one that takes
//! [`SuperadminAuth`] only for superadmins. The extraction *is* the check.

use commerce_core::Commerce;
use commerce_core::services::Principal;
use poem::Request;
use poem_openapi::SecurityScheme;
use poem_openapi::auth::Bearer;

use crate::problem::ApiError;

fn authenticate(req: &Request, bearer: &Bearer) -> poem::Result<Principal> {
    let commerce = req.data::<Commerce>().ok_or_else(|| {
        poem::Error::from_string("engine not attached", poem::http::StatusCode::INTERNAL_SERVER_ERROR)
    })?;
    commerce
        .accounts()
        .authenticate(&bearer.token)
        .map_err(|e| poem::Error::from(ApiError::from(e)))
}

fn require(principal: Principal, check: impl Fn(&Principal) -> commerce_core::Result<()>) -> poem::Result<Principal> {
    check(&principal).map_err(|e| poem::Error::from(ApiError::from(e)))?;
    Ok(principal)
}

async fn any_user(req: &Request, bearer: Bearer) -> poem::Result<Principal> {
    authenticate(req, &bearer)
}

async fn staff(req: &Request, bearer: Bearer) -> poem::Result<Principal> {
    require(authenticate(req, &bearer)?, Principal::require_staff)
}

async fn superadmin(req: &Request, bearer: Bearer) -> poem::Result<Principal> {
    require(authenticate(req, &bearer)?, Principal::require_superadmin)
}

/// Any signed-in user: `Authorization: Bearer <access token>`. Access tokens live
/// `JWT_EXPIRES_IN` (15 minutes by default) and stay valid until then even if the account is
/// suspended meanwhile; refresh tokens stop working at once.
#[derive(SecurityScheme)]
#[oai(rename = "bearerAuth", ty = "bearer", bearer_format = "JWT", checker = "any_user")]
pub struct BearerAuth(pub Principal);

/// An admin or superadmin (403 for customers).
#[derive(SecurityScheme)]
#[oai(rename = "bearerAuth", ty = "bearer", bearer_format = "JWT", checker = "staff")]
pub struct StaffAuth(pub Principal);

/// A superadmin (403 for everyone else).
#[derive(SecurityScheme)]
#[oai(rename = "bearerAuth", ty = "bearer", bearer_format = "JWT", checker = "superadmin")]
pub struct SuperadminAuth(pub Principal);
