//! `/api/v1/admin/products`: bulk product administration for staff. Each item succeeds or
//! fails on its own; the answer is 200 with one result per item, in request order.

use commerce_core::Commerce;
use poem_openapi::OpenApi;
use poem_openapi::payload::Json;

use super::ApiTags;
use super::catalog_types::{BulkArchiveRequest, BulkCreateRequest, BulkResult, BulkUpdateRequest, ProductRequest};
use super::types::parse_id;
use crate::JsonBody;
use crate::auth::StaffAuth;
use crate::problem::ApiError;

/// Bulk product administration.
pub struct AdminProductsApi {
    commerce: Commerce,
}

impl AdminProductsApi {
    /// Over this engine.
    pub fn new(commerce: Commerce) -> Self {
        Self { commerce }
    }
}

#[OpenApi(prefix_path = "/api/v1/admin/products", tag = "ApiTags::Admin")]
impl AdminProductsApi {
    /// Create up to 100 products in one request. Each is validated and created on its own: a
    /// refused item leaves nothing behind and carries the problem a single create would have
    /// answered with (`error`); the others are created (`product`).
    #[oai(path = "/bulk", method = "post", operation_id = "adminBulkCreateProducts")]
    async fn bulk_create(
        &self,
        auth: StaffAuth,
        body: JsonBody<BulkCreateRequest>,
    ) -> Result<Json<BulkResult>, ApiError> {
        let inputs = body.0.items.into_iter().map(ProductRequest::into_input).collect();
        let results = self.commerce.catalog().create_products(&auth.0, inputs).await?;
        Ok(Json(results.into()))
    }

    /// Replace up to 100 products in one request (`{"items": [{"id", "product"}]}`), each as
    /// `PUT /api/v1/products/:id` would, on its own. A malformed id is a 400 for the whole
    /// request, naming `items[i].id`.
    #[oai(path = "/bulk", method = "put", operation_id = "adminBulkUpdateProducts")]
    async fn bulk_update(
        &self,
        auth: StaffAuth,
        body: JsonBody<BulkUpdateRequest>,
    ) -> Result<Json<BulkResult>, ApiError> {
        let items = body
            .0
            .items
            .into_iter()
            .enumerate()
            .map(|(i, item)| {
                Ok((
                    parse_id(&item.id, &format!("items[{i}].id"))?,
                    item.product.into_input(),
                ))
            })
            .collect::<Result<Vec<_>, ApiError>>()?;
        let results = self.commerce.catalog().update_products(&auth.0, items).await?;
        Ok(Json(results.into()))
    }

    /// Archive up to 100 products (customers no longer see them; orders keep referencing
    /// them). An unknown id fails on its own with a 404 problem; a malformed id is a 400 for
    /// the whole request, naming `ids[i]`.
    #[oai(path = "/bulk/archive", method = "post", operation_id = "adminBulkArchiveProducts")]
    async fn bulk_archive(
        &self,
        auth: StaffAuth,
        body: JsonBody<BulkArchiveRequest>,
    ) -> Result<Json<BulkResult>, ApiError> {
        let ids = body
            .0
            .ids
            .iter()
            .enumerate()
            .map(|(i, id)| parse_id(id, &format!("ids[{i}]")))
            .collect::<Result<Vec<_>, ApiError>>()?;
        let results = self.commerce.catalog().archive_products(&auth.0, &ids).await?;
        Ok(Json(results.into()))
    }
}
