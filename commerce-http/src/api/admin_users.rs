//! `/api/v1/admin/users`: user administration for staff; role changes for superadmins.

use commerce_core::Commerce;
use commerce_core::domain::{Role, UserFilter, UserStatus};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use serde::Deserialize;

use super::ApiTags;
use super::types::{UserPage, UserView, page_request, parse_id};
use crate::JsonBody;
use crate::auth::{StaffAuth, SuperadminAuth};
use crate::problem::ApiError;

/// A role change.
#[derive(Debug, Object, Deserialize)]
pub struct RoleRequest {
    /// `customer`, `admin` or `superadmin`.
    pub role: String,
}

/// User administration.
pub struct AdminUsersApi {
    commerce: Commerce,
}

impl AdminUsersApi {
    /// Over this engine.
    pub fn new(commerce: Commerce) -> Self {
        Self { commerce }
    }
}

fn parse_role(raw: &str, field: &str) -> Result<Role, ApiError> {
    Role::parse(raw).ok_or_else(|| {
        ApiError::from(commerce_core::Error::invalid(
            field,
            "must be one of customer, admin, superadmin",
        ))
    })
}

#[OpenApi(prefix_path = "/api/v1/admin/users", tag = "ApiTags::Admin")]
impl AdminUsersApi {
    /// Users, oldest first, filtered by role, status and an email substring.
    #[oai(path = "/", method = "get", operation_id = "adminListUsers")]
    async fn list(
        &self,
        auth: StaffAuth,
        /// Page number, from 1.
        page: Query<Option<u32>>,
        /// Page size, 1 to 100 (default 20).
        limit: Query<Option<u32>>,
        /// `customer`, `admin` or `superadmin`.
        role: Query<Option<String>>,
        /// `active` or `suspended`.
        status: Query<Option<String>>,
        /// Case-insensitive part of the email.
        search: Query<Option<String>>,
    ) -> Result<Json<UserPage>, ApiError> {
        let page = page_request(page.0, limit.0)?;
        let role = role.0.as_deref().map(|r| parse_role(r, "role")).transpose()?;
        let status = status
            .0
            .as_deref()
            .map(|s| {
                UserStatus::parse(s).ok_or_else(|| {
                    ApiError::from(commerce_core::Error::invalid("status", "must be active or suspended"))
                })
            })
            .transpose()?;
        let filter = UserFilter {
            role,
            status,
            email_contains: search.0.filter(|s| !s.trim().is_empty()),
        };
        Ok(Json(
            self.commerce.accounts().list_users(&auth.0, filter, page).await?.into(),
        ))
    }

    /// One user.
    #[oai(path = "/:id", method = "get", operation_id = "adminGetUser")]
    async fn get(&self, auth: StaffAuth, id: Path<String>) -> Result<Json<UserView>, ApiError> {
        Ok(Json(
            self.commerce
                .accounts()
                .user(&auth.0, parse_id(&id.0, "id")?)
                .await?
                .into(),
        ))
    }

    /// Suspend a user: they can no longer sign in or refresh; their access token lives until
    /// it expires (`JWT_EXPIRES_IN`).
    #[oai(path = "/:id/suspend", method = "post", operation_id = "adminSuspendUser")]
    async fn suspend(&self, auth: StaffAuth, id: Path<String>) -> Result<Json<UserView>, ApiError> {
        let user = self
            .commerce
            .accounts()
            .set_status(&auth.0, parse_id(&id.0, "id")?, UserStatus::Suspended)
            .await?;
        Ok(Json(user.into()))
    }

    /// Reactivate a suspended user.
    #[oai(path = "/:id/reactivate", method = "post", operation_id = "adminReactivateUser")]
    async fn reactivate(&self, auth: StaffAuth, id: Path<String>) -> Result<Json<UserView>, ApiError> {
        let user = self
            .commerce
            .accounts()
            .set_status(&auth.0, parse_id(&id.0, "id")?, UserStatus::Active)
            .await?;
        Ok(Json(user.into()))
    }

    /// Change a user's role (superadmin only, never one's own).
    #[oai(path = "/:id/role", method = "put", operation_id = "adminSetUserRole")]
    async fn set_role(
        &self,
        auth: SuperadminAuth,
        id: Path<String>,
        body: JsonBody<RoleRequest>,
    ) -> Result<Json<UserView>, ApiError> {
        let role = parse_role(&body.0.role, "role")?;
        let user = self
            .commerce
            .accounts()
            .set_role(&auth.0, parse_id(&id.0, "id")?, role)
            .await?;
        Ok(Json(user.into()))
    }
}
