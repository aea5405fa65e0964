//! `/api/v1/cart`: the caller's cart. Signed-in users are known by their bearer token; guests
//! by an opaque `X-Cart-Token` (minted on their first add and returned), merged into their own
//! cart when they sign in with it.

use commerce_core::Commerce;
use commerce_core::services::Shopper;
use poem_openapi::param::{Header, Path};
use poem_openapi::{ApiResponse, OpenApi};

use super::ApiTags;
use super::checkout_types::{AddItemRequest, CartView, UpdateItemRequest};
use super::types::parse_id;
use crate::JsonBody;
use crate::auth::OptionalAuth;
use crate::problem::ApiError;
use crate::reply::EncodedJson;

/// Header carrying a guest's cart token.
pub const CART_TOKEN_HEADER: &str = "X-Cart-Token";

/// A cart answer; guests get their token back in `X-Cart-Token`.
#[derive(Debug, ApiResponse)]
pub enum CartResponse {
    /// The cart, priced now.
    #[oai(status = 200)]
    Ok(EncodedJson<CartView>, #[oai(header = "X-Cart-Token")] Option<String>),
}

/// The shopping cart.
pub struct CartApi {
    commerce: Commerce,
}

impl CartApi {
    /// Over this engine.
    pub fn new(commerce: Commerce) -> Self {
        Self { commerce }
    }

    /// Who is shopping: the signed-in user, else the guest token (minted when `mint` and none
    /// was sent). Returns the shopper and the guest token to hand back.
    fn shopper(&self, auth: &OptionalAuth, token: Option<String>, mint: bool) -> Option<(Shopper, Option<String>)> {
        if let Some(p) = auth.principal() {
            return Some((Shopper::User(*p), None));
        }
        let token = token
            .filter(|t| !t.trim().is_empty())
            .or_else(|| mint.then(|| self.commerce.carts().new_guest_token()))?;
        Some((Shopper::Guest(token.clone()), Some(token)))
    }

    fn respond(priced: &commerce_core::services::PricedCart, token: Option<String>) -> Result<CartResponse, ApiError> {
        Ok(CartResponse::Ok(CartView::encode(priced, token.as_deref())?, token))
    }
}

#[OpenApi(prefix_path = "/api/v1/cart", tag = "ApiTags::Cart")]
impl CartApi {
    /// The caller's cart, re-priced from the catalog and stock on every read. A guest without
    /// a token gets an empty cart.
    #[oai(path = "/", method = "get", operation_id = "getCart")]
    async fn get(
        &self,
        auth: OptionalAuth,
        #[oai(name = "X-Cart-Token")] token: Header<Option<String>>,
    ) -> Result<CartResponse, ApiError> {
        match self.shopper(&auth, token.0, false) {
            Some((shopper, token)) => Self::respond(&self.commerce.carts().cart(&shopper).await?, token),
            None => Self::respond(&self.commerce.carts().price(None).await?, None),
        }
    }

    /// Add units of a SKU (to its line when there is one). Guests without a token get one,
    /// in the body (`cartToken`) and the `X-Cart-Token` header: send it with every cart call.
    #[oai(path = "/items", method = "post", operation_id = "addCartItem")]
    async fn add(
        &self,
        auth: OptionalAuth,
        #[oai(name = "X-Cart-Token")] token: Header<Option<String>>,
        body: JsonBody<AddItemRequest>,
    ) -> Result<CartResponse, ApiError> {
        let (shopper, token) = self
            .shopper(&auth, token.0, true)
            .ok_or_else(|| ApiError::bad_request(CART_TOKEN_HEADER, "missing"))?;
        let priced = self
            .commerce
            .carts()
            .add_item(&shopper, &body.0.sku, body.0.quantity)
            .await?;
        Self::respond(&priced, token)
    }

    /// Set a line's quantity.
    #[oai(path = "/items/:itemId", method = "put", operation_id = "updateCartItem")]
    async fn update(
        &self,
        auth: OptionalAuth,
        #[oai(name = "X-Cart-Token")] token: Header<Option<String>>,
        #[oai(name = "itemId")] item: Path<String>,
        body: JsonBody<UpdateItemRequest>,
    ) -> Result<CartResponse, ApiError> {
        let item = parse_id(&item.0, "itemId")?;
        let (shopper, token) = self
            .shopper(&auth, token.0, false)
            .ok_or_else(|| ApiError::from(commerce_core::Error::NotFound { entity: "cart item" }))?;
        let priced = self
            .commerce
            .carts()
            .update_item(&shopper, item, body.0.quantity)
            .await?;
        Self::respond(&priced, token)
    }

    /// Remove a line.
    #[oai(path = "/items/:itemId", method = "delete", operation_id = "removeCartItem")]
    async fn remove(
        &self,
        auth: OptionalAuth,
        #[oai(name = "X-Cart-Token")] token: Header<Option<String>>,
        #[oai(name = "itemId")] item: Path<String>,
    ) -> Result<CartResponse, ApiError> {
        let item = parse_id(&item.0, "itemId")?;
        let (shopper, token) = self
            .shopper(&auth, token.0, false)
            .ok_or_else(|| ApiError::from(commerce_core::Error::NotFound { entity: "cart item" }))?;
        let priced = self.commerce.carts().remove_item(&shopper, item).await?;
        Self::respond(&priced, token)
    }
}
