//! `/api/v1/categories`: the category tree, one category, its products, and category
//! administration for staff.

use std::sync::Arc;

use commerce_core::Commerce;
use poem_openapi::param::{Path, Query};
use poem_openapi::{ApiResponse, OpenApi};

use super::ApiTags;
use super::catalog_types::{CategoryNodeView, CategoryRequest, CategoryTree, CategoryView, ProductPage};
use super::products::ListQuery;
use super::types::parse_id;
use super::users::Deleted;
use crate::auth::{OptionalAuth, StaffAuth};
use crate::problem::ApiError;
use crate::product_json::ProductJson;
use crate::{EncodedJson, JsonBody, JsonReply};

/// A new category.
#[derive(Debug, ApiResponse)]
pub enum CategoryCreated {
    /// Created.
    #[oai(status = 201)]
    Created(JsonReply<CategoryView>),
}

/// The category tree.
pub struct CategoriesApi {
    commerce: Commerce,
    json: Arc<ProductJson>,
}

impl CategoriesApi {
    /// Over this engine, encoding products through `json`.
    pub(crate) fn new(commerce: Commerce, json: Arc<ProductJson>) -> Self {
        Self { commerce, json }
    }
}

#[OpenApi(prefix_path = "/api/v1/categories", tag = "ApiTags::Categories")]
impl CategoriesApi {
    /// The whole category tree: roots in sort order, each with its nested `children`.
    #[oai(path = "/", method = "get", operation_id = "listCategories")]
    async fn tree(&self) -> Result<JsonReply<CategoryTree>, ApiError> {
        let roots = self.commerce.catalog().category_tree().await?;
        Ok(JsonReply(CategoryTree {
            items: roots.into_iter().map(CategoryNodeView::from).collect(),
        }))
    }

    /// One category by id or slug.
    #[oai(path = "/:id", method = "get", operation_id = "getCategory")]
    async fn get(&self, id: Path<String>) -> Result<JsonReply<CategoryView>, ApiError> {
        Ok(JsonReply(self.commerce.catalog().category(&id.0).await?.into()))
    }

    /// The products of a category (by id or slug) and all its descendants, with the same
    /// filters, sort, paging and facets as `GET /api/v1/products`.
    #[oai(path = "/:id/products", method = "get", operation_id = "listCategoryProducts")]
    #[expect(clippy::too_many_arguments, reason = "one argument per query parameter")]
    async fn products(
        &self,
        auth: OptionalAuth,
        id: Path<String>,
        /// Free text over name, description, tags and brand.
        q: Query<Option<String>>,
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
        /// `relevance` (default), `price-asc`, `price-desc`, `newest`, `rating` or
        /// `best-selling`.
        sort: Query<Option<String>>,
        /// Page number, from 1.
        page: Query<Option<u32>>,
        /// Page size, 1 to 100 (default 20).
        limit: Query<Option<u32>>,
    ) -> Result<EncodedJson<ProductPage>, ApiError> {
        let input = ListQuery {
            q: q.0,
            category: Some(id.0),
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

    /// Create a category (staff); `parentId` places it in the tree.
    #[oai(path = "/", method = "post", operation_id = "createCategory")]
    async fn create(&self, auth: StaffAuth, body: JsonBody<CategoryRequest>) -> Result<CategoryCreated, ApiError> {
        let category = self
            .commerce
            .catalog()
            .create_category(&auth.0, body.0.into_input())
            .await?;
        Ok(CategoryCreated::Created(JsonReply(category.into())))
    }

    /// Replace a category (staff). A new `parentId` moves it with its whole subtree; moving it
    /// under itself or one of its descendants is a 422 naming `parentId`.
    #[oai(path = "/:id", method = "put", operation_id = "updateCategory")]
    async fn update(
        &self,
        auth: StaffAuth,
        id: Path<String>,
        body: JsonBody<CategoryRequest>,
    ) -> Result<JsonReply<CategoryView>, ApiError> {
        let category = self
            .commerce
            .catalog()
            .update_category(&auth.0, parse_id(&id.0, "id")?, body.0.into_input())
            .await?;
        Ok(JsonReply(category.into()))
    }

    /// Delete an empty leaf category (staff): 409 `category_has_children` while it has
    /// children, 409 `category_has_products` while products sit in it.
    #[oai(path = "/:id", method = "delete", operation_id = "deleteCategory")]
    async fn delete(&self, auth: StaffAuth, id: Path<String>) -> Result<Deleted, ApiError> {
        self.commerce
            .catalog()
            .delete_category(&auth.0, parse_id(&id.0, "id")?)
            .await?;
        Ok(Deleted::Done)
    }
}
