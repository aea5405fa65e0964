//! `/api/v1/products`: the catalog listing with search and facets, one product by id or slug,
//! product administration for staff, and product images.

use std::sync::Arc;

use commerce_core::Commerce;
use commerce_core::services::SearchInput;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::types::multipart::Upload;
use poem_openapi::{ApiResponse, Multipart, OpenApi};

use super::ApiTags;
use super::catalog_types::{ImageUploaded, ProductPage, ProductRemovalView, ProductRequest, ProductView};
use super::types::{page_request, parse_id};
use crate::auth::{OptionalAuth, StaffAuth};
use crate::problem::ApiError;
use crate::product_json::ProductJson;
use crate::{EncodedJson, JsonBody, JsonReply};

/// The query parameters of a product listing, as received (the service validates them).
#[derive(Debug, Default)]
pub(super) struct ListQuery {
    pub q: Option<String>,
    pub category: Option<String>,
    pub brand: Option<String>,
    pub min_price: Option<i64>,
    pub max_price: Option<i64>,
    pub tags: Option<String>,
    pub min_rating: Option<f64>,
    pub in_stock: Option<bool>,
    pub sort: Option<String>,
    pub page: Option<u32>,
    pub limit: Option<u32>,
}

impl ListQuery {
    /// The service input; 400 for a bad page window.
    pub(super) fn into_input(self) -> Result<SearchInput, ApiError> {
        Ok(SearchInput {
            page: page_request(self.page, self.limit)?,
            q: self.q,
            category: self.category,
            brand: self.brand,
            min_price: self.min_price,
            max_price: self.max_price,
            tags: self
                .tags
                .map(|t| t.split(',').map(str::to_owned).collect())
                .unwrap_or_default(),
            min_rating: self.min_rating,
            in_stock: self.in_stock.unwrap_or(false),
            sort: self.sort,
        })
    }
}

/// A new product.
#[derive(Debug, ApiResponse)]
pub enum ProductCreated {
    /// Created.
    #[oai(status = 201)]
    Created(JsonReply<ProductView>),
}

/// An uploaded image.
#[derive(Debug, ApiResponse)]
pub enum ImageResponse {
    /// Stored and attached to the product.
    #[oai(status = 201)]
    Created(Json<ImageUploaded>),
}

/// An image upload form (`multipart/form-data`).
#[derive(Debug, Multipart)]
pub struct ImageForm {
    /// The image: JPEG, PNG or WebP, at most 5 MiB and 10000 pixels a side. The type is read
    /// from the bytes, not from the file name or the part's content type.
    pub file: Upload,
    /// Alternative text, at most 200 characters.
    pub alt: Option<String>,
}

/// The catalog.
pub struct ProductsApi {
    commerce: Commerce,
    json: Arc<ProductJson>,
}

impl ProductsApi {
    /// Over this engine, encoding products through `json`.
    pub(crate) fn new(commerce: Commerce, json: Arc<ProductJson>) -> Self {
        Self { commerce, json }
    }
}

#[OpenApi(prefix_path = "/api/v1/products", tag = "ApiTags::Products")]
impl ProductsApi {
    /// Search and filter the catalog, with brand and price-band counts over the whole match.
    /// Customers and anonymous callers see listed products only (active and not hidden);
    /// staff see every product. Text search folds case, accents and plurals; every word must
    /// match. Prices filter on the lowest variant price.
    #[oai(path = "/", method = "get", operation_id = "listProducts")]
    #[expect(clippy::too_many_arguments, reason = "one argument per query parameter")]
    async fn list(
        &self,
        auth: OptionalAuth,
        /// Free text over name, description, tags and brand.
        q: Query<Option<String>>,
        /// Category id or slug; includes its descendants.
        category: Query<Option<String>>,
        /// Brand, case-insensitive.
        brand: Query<Option<String>>,
        /// Lowest price, minor units.
        #[oai(name = "minPrice")]
        min_price: Query<Option<i64>>,
        /// Highest price, minor units.
        #[oai(name = "maxPrice")]
        max_price: Query<Option<i64>>,
        /// Comma-separated tags; a product must have every one.
        tags: Query<Option<String>>,
        /// Minimum average rating, 0 to 5.
        #[oai(name = "minRating")]
        min_rating: Query<Option<f64>>,
        /// Only products with a variant in stock.
        #[oai(name = "inStock")]
        in_stock: Query<Option<bool>>,
        /// `relevance` (default; newest first without `q`), `price-asc`, `price-desc`,
        /// `newest`, `rating` or `best-selling`.
        sort: Query<Option<String>>,
        /// Page number, from 1.
        page: Query<Option<u32>>,
        /// Page size, 1 to 100 (default 20).
        limit: Query<Option<u32>>,
    ) -> Result<EncodedJson<ProductPage>, ApiError> {
        let input = ListQuery {
            q: q.0,
            category: category.0,
            brand: brand.0,
            min_price: min_price.0,
            max_price: max_price.0,
            tags: tags.0,
            min_rating: min_rating.0,
            in_stock: in_stock.0,
            sort: sort.0,
            page: page.0,
            limit: limit.0,
        }
        .into_input()?;
        let result = self.commerce.catalog().search(auth.principal(), input).await?;
        self.json.page(&result)
    }

    /// One product by id or slug. Customers see active products only (hidden ones by link
    /// too); staff see every product.
    #[oai(path = "/:id", method = "get", operation_id = "getProduct")]
    async fn get(&self, auth: OptionalAuth, id: Path<String>) -> Result<EncodedJson<ProductView>, ApiError> {
        let product = self.commerce.catalog().product(auth.principal(), &id.0).await?;
        self.json.product(&product)
    }

    /// Create a product (staff). The slug is derived from the name when absent, numbered
    /// (`-2`, `-3`...) when taken; an explicit slug that is taken is a 409 `slug_taken`, a SKU
    /// used by another product a 409 `sku_taken`.
    #[oai(path = "/", method = "post", operation_id = "createProduct")]
    async fn create(&self, auth: StaffAuth, body: JsonBody<ProductRequest>) -> Result<ProductCreated, ApiError> {
        let product = self
            .commerce
            .catalog()
            .create_product(&auth.0, body.0.into_input())
            .await?;
        Ok(ProductCreated::Created(JsonReply(product.into())))
    }

    /// Replace a product's content (staff). Images, reviews, sales and creation time are kept;
    /// an absent slug keeps the current one.
    #[oai(path = "/:id", method = "put", operation_id = "updateProduct")]
    async fn update(
        &self,
        auth: StaffAuth,
        id: Path<String>,
        body: JsonBody<ProductRequest>,
    ) -> Result<JsonReply<ProductView>, ApiError> {
        let product = self
            .commerce
            .catalog()
            .update_product(&auth.0, parse_id(&id.0, "id")?, body.0.into_input())
            .await?;
        Ok(JsonReply(product.into()))
    }

    /// Delete a product (staff). Always 200 with what happened: `{"result": "deleted"}` when
    /// it is gone with its images, `{"result": "archived"}` when orders reference it and it was
    /// archived instead.
    #[oai(path = "/:id", method = "delete", operation_id = "deleteProduct")]
    async fn delete(&self, auth: StaffAuth, id: Path<String>) -> Result<Json<ProductRemovalView>, ApiError> {
        let removal = self
            .commerce
            .catalog()
            .delete_product(&auth.0, parse_id(&id.0, "id")?)
            .await?;
        Ok(Json(removal.into()))
    }

    /// Upload an image to a product (staff), as `multipart/form-data` with a `file` part and
    /// an optional `alt` part. The first image becomes the thumbnail. A file that is not a
    /// readable JPEG, PNG or WebP, or is over 5 MiB, is a 422 naming `file`; a request body
    /// over the upload limit (`MAX_UPLOAD_BYTES`, 6 MiB by default) is a 413.
    #[oai(path = "/:id/images", method = "post", operation_id = "uploadProductImage")]
    async fn upload_image(
        &self,
        auth: StaffAuth,
        id: Path<String>,
        form: ImageForm,
    ) -> Result<ImageResponse, ApiError> {
        let id = parse_id(&id.0, "id")?;
        let bytes = form
            .file
            .into_vec()
            .await
            .map_err(|e| ApiError::from(commerce_core::Error::unexpected(e)))?;
        let (product, image) = self.commerce.catalog().add_image(&auth.0, id, bytes, form.alt).await?;
        Ok(ImageResponse::Created(Json(ImageUploaded {
            image: image.into(),
            product: ProductView::from(&*product),
        })))
    }

    /// Remove an image from a product and delete the stored file (staff). When it was the
    /// thumbnail, the next image (if any) takes its place. Answers with the product.
    #[oai(
        path = "/:id/images/:imageId",
        method = "delete",
        operation_id = "deleteProductImage"
    )]
    async fn delete_image(
        &self,
        auth: StaffAuth,
        id: Path<String>,
        #[oai(name = "imageId")] image_id: Path<String>,
    ) -> Result<JsonReply<ProductView>, ApiError> {
        let product = self
            .commerce
            .catalog()
            .remove_image(&auth.0, parse_id(&id.0, "id")?, parse_id(&image_id.0, "imageId")?)
            .await?;
        Ok(JsonReply(ProductView::from(&*product)))
    }
}
