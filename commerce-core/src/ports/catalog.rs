use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::Result;
use crate::domain::{
    Cart, CartId, CartOwner, CartStatus, Category, CategoryId, ImageId, OrderId, Page, PageRequest, Product, ProductId,
    ProductImage, ProductQuery, ProductSearchResult, Review, Sku, Slug, UserId,
};

/// Products with embedded variants, and the search over them.
///
/// Reads hand out products as `Arc`s: an adapter that keeps products in memory shares them
/// instead of copying a few KiB per read, and callers may keep one cheaply (the host caches
/// each product's encoded JSON beside it). A shared product is a snapshot: writes replace it.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait ProductStore: Send + Sync {
    /// Stores a new product.
    ///
    /// # Errors
    /// `Conflict { code: "slug_taken" }` when another product has the slug;
    /// `Conflict { code: "sku_taken" }` when any variant SKU exists in another product.
    async fn insert_product(&self, product: &Product) -> Result<()>;

    /// Stores many new products; each is inserted or refused on its own, in order.
    /// Returns one result per product.
    async fn insert_products(&self, products: &[Product]) -> Result<Vec<Result<()>>>;

    /// The product with this id.
    ///
    /// # Errors
    /// `NotFound { entity: "product" }`.
    async fn get_product(&self, id: ProductId) -> Result<Arc<Product>>;

    /// The product with this slug, if any.
    async fn find_product_by_slug(&self, slug: &Slug) -> Result<Option<Arc<Product>>>;

    /// The products holding these SKUs (each product once, any order).
    async fn find_products_by_skus(&self, skus: &[Sku]) -> Result<Vec<Arc<Product>>>;

    /// Replaces the product's editable content (everything but `rating`, `sales_count` and
    /// `created_at`, which are kept as stored).
    ///
    /// # Errors
    /// `NotFound { entity: "product" }`; `Conflict { code: "slug_taken" | "sku_taken" }` as for insert.
    async fn update_product(&self, product: &Product) -> Result<()>;

    /// Deletes the product.
    ///
    /// # Errors
    /// `NotFound { entity: "product" }`.
    async fn delete_product(&self, id: ProductId) -> Result<()>;

    /// Searches, filters, sorts and pages, with brand and price-band facets over the whole match.
    /// Text terms match name, description, tags and brand (already normalized by
    /// [`crate::search::terms`]); every term must match; with terms, `Relevance` ranks by
    /// [`crate::search::score`]. Ties break by newest first, then id.
    async fn search_products(&self, query: &ProductQuery) -> Result<ProductSearchResult>;

    /// How many products (any status) sit in any of these categories.
    async fn count_products_in_categories(&self, categories: &[CategoryId]) -> Result<u64>;

    /// Sets the product's rating summary from its stored reviews, unless the summary already
    /// counts as many. Reviews are never removed, so of two summaries the one counting more is
    /// the newer: concurrent calls (two reviews at once) leave the fullest, and a call after a
    /// review whose count was interrupted catches it up. Idempotent.
    ///
    /// # Errors
    /// `NotFound { entity: "product" }`.
    async fn recount_rating(&self, id: ProductId) -> Result<()>;

    /// Atomically adds to the product's sales count.
    ///
    /// # Errors
    /// `NotFound { entity: "product" }`.
    async fn add_sales(&self, id: ProductId, units: u64) -> Result<()>;

    /// Appends an image to the product atomically (no read-modify-write, so concurrent uploads
    /// all land); when the product has no thumbnail yet, the image's URL becomes it. Returns the
    /// product as stored.
    ///
    /// # Errors
    /// `NotFound { entity: "product" }`.
    async fn add_product_image(&self, id: ProductId, image: &ProductImage) -> Result<Arc<Product>>;

    /// Removes one image from the product and returns the product as stored.
    ///
    /// # Errors
    /// `NotFound { entity: "product" }` or `NotFound { entity: "image" }`.
    async fn remove_product_image(&self, id: ProductId, image: ImageId) -> Result<Arc<Product>>;
}

/// The category tree.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait CategoryStore: Send + Sync {
    /// Stores a new category.
    ///
    /// # Errors
    /// `Conflict { code: "slug_taken" }`.
    async fn insert_category(&self, category: &Category) -> Result<()>;

    /// The category with this id.
    ///
    /// # Errors
    /// `NotFound { entity: "category" }`.
    async fn get_category(&self, id: CategoryId) -> Result<Category>;

    /// The category with this slug, if any.
    async fn find_category_by_slug(&self, slug: &Slug) -> Result<Option<Category>>;

    /// Every category, ordered by `sort_order` then name.
    async fn list_categories(&self) -> Result<Vec<Category>>;

    /// Ids of every category below this one (not including it).
    async fn descendant_ids(&self, id: CategoryId) -> Result<Vec<CategoryId>>;

    /// Replaces a category. When `parent_id` changed, the service passes the recomputed
    /// `ancestors`, and the adapter rewrites the ancestors of every descendant to match.
    ///
    /// # Errors
    /// `NotFound { entity: "category" }`; `Conflict { code: "slug_taken" }`.
    async fn update_category(&self, category: &Category) -> Result<()>;

    /// Deletes a leaf category.
    ///
    /// # Errors
    /// `NotFound { entity: "category" }`; `Conflict { code: "category_has_children" }`.
    async fn delete_category(&self, id: CategoryId) -> Result<()>;
}

/// Reviews.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait ReviewStore: Send + Sync {
    /// Stores a review.
    ///
    /// # Errors
    /// `Conflict { code: "already_reviewed" }` when the user already reviewed the product.
    async fn insert_review(&self, review: &Review) -> Result<()>;

    /// A product's reviews, newest first.
    async fn list_reviews(&self, product: ProductId, page: PageRequest) -> Result<Page<Review>>;

    /// The user's review of the product, if any.
    async fn find_review(&self, product: ProductId, user: UserId) -> Result<Option<Review>>;
}

/// Carts. Writes use optimistic concurrency on `Cart::version`.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait CartStore: Send + Sync {
    /// The owner's active cart, if any (expired carts are treated as absent).
    async fn find_active_cart(&self, owner: &CartOwner, now: DateTime<Utc>) -> Result<Option<Cart>>;

    /// The cart with this id, whatever its status.
    ///
    /// # Errors
    /// `NotFound { entity: "cart" }`.
    async fn get_cart(&self, id: CartId) -> Result<Cart>;

    /// Stores a new cart.
    ///
    /// # Errors
    /// `Conflict { code: "cart_exists" }` when the owner already has an active cart.
    async fn insert_cart(&self, cart: &Cart) -> Result<()>;

    /// Writes the cart if the stored `version` is `cart.version - 1` (the caller bumps it).
    ///
    /// # Errors
    /// `NotFound { entity: "cart" }`; `Conflict { code: "cart_changed" }` on a version mismatch.
    async fn save_cart(&self, cart: &Cart) -> Result<()>;

    /// Sets the status only if the current one is `from`, or already `to` (idempotent).
    /// Returns the cart as stored.
    ///
    /// # Errors
    /// `NotFound { entity: "cart" }`; `Conflict { code: "cart_changed" }` when the status is
    /// neither `from` nor `to`.
    async fn set_cart_status(&self, id: CartId, from: CartStatus, to: CartStatus, now: DateTime<Utc>) -> Result<Cart>;

    /// Deletes carts whose `expires_at` has passed; returns how many.
    async fn delete_expired_carts(&self, now: DateTime<Utc>) -> Result<u64>;

    /// The cart converted into this order, if any (used by saga recovery).
    async fn find_cart_by_order(&self, order: OrderId) -> Result<Option<Cart>>;
}
