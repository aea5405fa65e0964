//! Authentication as extractors: a handler that takes [`BearerAuth`] only runs for a valid
//! access token; one that takes [`StaffAuth`] only for admins and superadmins; one that takes
//! [`SuperadminAuth`] only for superadmins. The extraction *is* the check. Public endpoints
//! whose answer depends on who asks take [`OptionalAuth`].

use commerce_core::Commerce;
use commerce_core::services::Principal;
use poem::http::header;
use poem::{Request, RequestBody};
use poem_openapi::auth::{Bearer, BearerAuthorization};
use poem_openapi::registry::Registry;
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions, SecurityScheme};

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

/// An optional bearer for public endpoints: anonymous when no `Authorization` header is sent,
/// the signed-in user for a valid access token, and 401 for a malformed, invalid or expired
/// one (a bad token never silently reads as anonymous). Documented as `bearerAuth` or none.
#[derive(Debug, Clone)]
pub struct OptionalAuth(pub Option<Principal>);

impl OptionalAuth {
    /// The caller, if signed in.
    pub fn principal(&self) -> Option<&Principal> {
        self.0.as_ref()
    }
}

impl<'a> ApiExtractor<'a> for OptionalAuth {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::SecurityScheme];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        <BearerAuth as ApiExtractor>::register(registry);
    }

    fn security_schemes() -> Vec<&'static str> {
        <BearerAuth as ApiExtractor>::security_schemes()
    }

    fn has_security_fallback() -> bool {
        true
    }

    async fn from_request(
        req: &'a Request,
        _body: &mut RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        if !req.headers().contains_key(header::AUTHORIZATION) {
            return Ok(Self(None));
        }
        let bearer = <Bearer as BearerAuthorization>::from_request(req).map_err(|_| {
            poem::Error::from(ApiError::from(commerce_core::Error::Unauthorized(
                "send `Authorization: Bearer <access token>`, or no Authorization header".into(),
            )))
        })?;
        authenticate(req, &bearer).map(|p| Self(Some(p)))
    }
}
