//! `/api/v1/users`: the caller's own profile and saved addresses.

use commerce_core::Commerce;
use commerce_core::services::ProfileChanges;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde::{Deserialize, Deserializer};

use super::ApiTags;
use super::types::{AddressRequest, AddressView, UserView, parse_id};
use crate::JsonBody;
use crate::auth::BearerAuth;
use crate::problem::ApiError;

/// Distinguishes an absent field (leave as is) from `null` (clear it).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// Profile fields to change; absent fields stay as they are. Email, role and status cannot be
/// changed here (such fields are ignored).
#[derive(Debug, Object, Deserialize)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct ProfileRequest {
    /// New given name.
    pub first_name: Option<String>,
    /// New family name.
    pub last_name: Option<String>,
    /// New phone; `null` clears it.
    #[serde(default, deserialize_with = "present")]
    pub phone: Option<Option<String>>,
}

/// A list of addresses.
#[derive(Debug, Object)]
pub struct AddressList {
    /// Default first, then oldest first.
    pub items: Vec<AddressView>,
}

/// An address answer.
#[derive(Debug, ApiResponse)]
pub enum AddressResponse {
    /// The address.
    #[oai(status = 200)]
    Ok(Json<AddressView>),
    /// Saved.
    #[oai(status = 201)]
    Created(Json<AddressView>),
}

/// Nothing to return.
#[derive(Debug, ApiResponse)]
pub enum Deleted {
    /// Done.
    #[oai(status = 204)]
    Done,
}

/// The signed-in user's own account.
pub struct UsersApi {
    commerce: Commerce,
}

impl UsersApi {
    /// Over this engine.
    pub fn new(commerce: Commerce) -> Self {
        Self { commerce }
    }
}

#[OpenApi(prefix_path = "/api/v1/users", tag = "ApiTags::Users")]
impl UsersApi {
    /// The caller's profile.
    #[oai(path = "/profile", method = "get", operation_id = "getProfile")]
    async fn profile(&self, auth: BearerAuth) -> Result<Json<UserView>, ApiError> {
        Ok(Json(self.commerce.accounts().profile(&auth.0).await?.into()))
    }

    /// Change the caller's name or phone.
    #[oai(path = "/profile", method = "put", operation_id = "updateProfile")]
    async fn update_profile(
        &self,
        auth: BearerAuth,
        body: JsonBody<ProfileRequest>,
    ) -> Result<Json<UserView>, ApiError> {
        let r = body.0;
        let changes = ProfileChanges {
            first_name: r.first_name,
            last_name: r.last_name,
            phone: r.phone,
        };
        Ok(Json(
            self.commerce.accounts().update_profile(&auth.0, changes).await?.into(),
        ))
    }

    /// The caller's saved addresses.
    #[oai(path = "/addresses", method = "get", operation_id = "listAddresses")]
    async fn addresses(&self, auth: BearerAuth) -> Result<Json<AddressList>, ApiError> {
        let items = self.commerce.accounts().addresses(&auth.0).await?;
        Ok(Json(AddressList {
            items: items.into_iter().map(AddressView::from).collect(),
        }))
    }

    /// Save an address. The first one becomes the default.
    #[oai(path = "/addresses", method = "post", operation_id = "createAddress")]
    async fn add_address(&self, auth: BearerAuth, body: JsonBody<AddressRequest>) -> Result<AddressResponse, ApiError> {
        let a = self
            .commerce
            .accounts()
            .add_address(&auth.0, body.0.into_domain())
            .await?;
        Ok(AddressResponse::Created(Json(a.into())))
    }

    /// One of the caller's addresses (404 for anyone else's).
    #[oai(path = "/addresses/:id", method = "get", operation_id = "getAddress")]
    async fn address(&self, auth: BearerAuth, id: Path<String>) -> Result<AddressResponse, ApiError> {
        let a = self
            .commerce
            .accounts()
            .address(&auth.0, parse_id(&id.0, "id")?)
            .await?;
        Ok(AddressResponse::Ok(Json(a.into())))
    }

    /// Replace one of the caller's addresses.
    #[oai(path = "/addresses/:id", method = "put", operation_id = "updateAddress")]
    async fn update_address(
        &self,
        auth: BearerAuth,
        id: Path<String>,
        body: JsonBody<AddressRequest>,
    ) -> Result<AddressResponse, ApiError> {
        let id = parse_id(&id.0, "id")?;
        let a = self
            .commerce
            .accounts()
            .update_address(&auth.0, id, body.0.into_domain())
            .await?;
        Ok(AddressResponse::Ok(Json(a.into())))
    }

    /// Delete one of the caller's addresses; if it was the default, the oldest remaining one
    /// becomes the default.
    #[oai(path = "/addresses/:id", method = "delete", operation_id = "deleteAddress")]
    async fn delete_address(&self, auth: BearerAuth, id: Path<String>) -> Result<Deleted, ApiError> {
        self.commerce
            .accounts()
            .delete_address(&auth.0, parse_id(&id.0, "id")?)
            .await?;
        Ok(Deleted::Done)
    }

    /// Make one of the caller's addresses the default.
    #[oai(path = "/addresses/:id/default", method = "post", operation_id = "setDefaultAddress")]
    async fn set_default(&self, auth: BearerAuth, id: Path<String>) -> Result<AddressResponse, ApiError> {
        let a = self
            .commerce
            .accounts()
            .set_default_address(&auth.0, parse_id(&id.0, "id")?)
            .await?;
        Ok(AddressResponse::Ok(Json(a.into())))
    }
}
