//! The indexes the adapter creates at start-up, by collection, with their names.
//!
//! Uniqueness rules of the ports rest on the unique ones, and duplicate-key errors are
//! translated into [`commerce_core::Error::Conflict`] codes by index name, so renaming one is a
//! breaking change.

use std::time::Duration;

use bson::{Document, doc};
use mongodb::options::IndexOptions;
use mongodb::{Database, IndexModel};

use crate::{CARTS, CATEGORIES, MongoError, PRODUCTS, REVIEWS};

/// products: unique `slug`.
pub const PRODUCT_SLUG: &str = "slug_unique";
/// products: unique `variants.sku` (multikey). It refuses a SKU held by another product; the
/// adapter refuses a SKU repeated inside one product itself, which a multikey index allows.
pub const PRODUCT_SKU: &str = "variants_sku_unique";
/// products: `{categoryIds, status, visibility}` for category listings.
pub const PRODUCT_CATEGORY: &str = "category_status_visibility";
/// products: `minPrice` for price filters and sorts.
pub const PRODUCT_MIN_PRICE: &str = "min_price";
/// products: `ratingAverage` for rating filters and sorts.
pub const PRODUCT_RATING: &str = "rating_average";
/// products: `{createdAt, _id}` for "newest first".
pub const PRODUCT_CREATED_AT: &str = "created_at";
/// products: `salesCount` for "best selling".
pub const PRODUCT_SALES: &str = "sales_count";
/// products: `searchTerms` (multikey) for text search.
pub const PRODUCT_SEARCH_TERMS: &str = "search_terms";
/// products: `brandKey` (lower-cased brand) for the brand filter.
pub const PRODUCT_BRAND: &str = "brand_key";

/// categories: unique `slug`.
pub const CATEGORY_SLUG: &str = "slug_unique";
/// categories: `ancestors` (multikey), so "every descendant" is one query.
pub const CATEGORY_ANCESTORS: &str = "ancestors";
/// categories: `parentId`.
pub const CATEGORY_PARENT: &str = "parent_id";

/// reviews: unique `{productId, userId}` (one review per user per product).
pub const REVIEW_AUTHOR: &str = "product_user_unique";
/// reviews: `{productId, createdAt, _id}` for "newest first".
pub const REVIEW_PRODUCT_CREATED_AT: &str = "product_created_at";

/// carts: unique sparse `activeOwner`, a field present only while the cart is active, so an
/// owner has at most one active cart (a sparse index works everywhere; a partial filter on
/// `status` would do the same on MongoDB).
pub const CART_ACTIVE_OWNER: &str = "active_owner_unique";
/// carts: TTL on `expiresAt`, a backstop one day after expiry: `delete_expired_carts` does the
/// sweeping (and counting); the server removes whatever it missed. See [`CART_TTL_GRACE`].
pub const CART_EXPIRES_AT: &str = "expires_at_ttl";
/// How long after `expiresAt` the server's TTL monitor removes a cart. Not zero, so the
/// monitor never races the adapter's own sweep or a request that has just read the cart.
pub const CART_TTL_GRACE: Duration = Duration::from_secs(24 * 3600);
/// carts: `{ownerKey, status, updatedAt}` to find an owner's active cart.
pub const CART_OWNER: &str = "owner_status";
/// carts: sparse `orderId`, to find the cart converted into an order.
pub const CART_ORDER: &str = "order_id";

/// Every index, as `(collection, index name)`.
pub const ALL: &[(&str, &str)] = &[
    (PRODUCTS, PRODUCT_SLUG),
    (PRODUCTS, PRODUCT_SKU),
    (PRODUCTS, PRODUCT_CATEGORY),
    (PRODUCTS, PRODUCT_MIN_PRICE),
    (PRODUCTS, PRODUCT_RATING),
    (PRODUCTS, PRODUCT_CREATED_AT),
    (PRODUCTS, PRODUCT_SALES),
    (PRODUCTS, PRODUCT_SEARCH_TERMS),
    (PRODUCTS, PRODUCT_BRAND),
    (CATEGORIES, CATEGORY_SLUG),
    (CATEGORIES, CATEGORY_ANCESTORS),
    (CATEGORIES, CATEGORY_PARENT),
    (REVIEWS, REVIEW_AUTHOR),
    (REVIEWS, REVIEW_PRODUCT_CREATED_AT),
    (CARTS, CART_ACTIVE_OWNER),
    (CARTS, CART_EXPIRES_AT),
    (CARTS, CART_OWNER),
    (CARTS, CART_ORDER),
];

fn index(name: &str, keys: Document) -> IndexModel {
    let options = IndexOptions::builder().name(name.to_owned()).build();
    IndexModel::builder().keys(keys).options(options).build()
}

fn unique(name: &str, keys: Document) -> IndexModel {
    let options = IndexOptions::builder().name(name.to_owned()).unique(true).build();
    IndexModel::builder().keys(keys).options(options).build()
}

fn sparse(name: &str, keys: Document, unique: bool) -> IndexModel {
    let mut options = IndexOptions::builder().name(name.to_owned()).sparse(true).build();
    if unique {
        // Only when set: some servers compare `unique: false` with an absent flag as different.
        options.unique = Some(true);
    }
    IndexModel::builder().keys(keys).options(options).build()
}

/// Creates the indexes; the server skips those that exist with the same definition.
pub(crate) async fn ensure(db: &Database) -> Result<(), MongoError> {
    db.collection::<Document>(PRODUCTS)
        .create_indexes([
            unique(PRODUCT_SLUG, doc! { "slug": 1 }),
            unique(PRODUCT_SKU, doc! { "variants.sku": 1 }),
            index(
                PRODUCT_CATEGORY,
                doc! { "categoryIds": 1, "status": 1, "visibility": 1 },
            ),
            index(PRODUCT_MIN_PRICE, doc! { "minPrice": 1 }),
            index(PRODUCT_RATING, doc! { "ratingAverage": -1 }),
            index(PRODUCT_CREATED_AT, doc! { "createdAt": -1, "_id": -1 }),
            index(PRODUCT_SALES, doc! { "salesCount": -1 }),
            index(PRODUCT_SEARCH_TERMS, doc! { "searchTerms": 1 }),
            index(PRODUCT_BRAND, doc! { "brandKey": 1 }),
        ])
        .await?;
    db.collection::<Document>(CATEGORIES)
        .create_indexes([
            unique(CATEGORY_SLUG, doc! { "slug": 1 }),
            index(CATEGORY_ANCESTORS, doc! { "ancestors": 1 }),
            index(CATEGORY_PARENT, doc! { "parentId": 1 }),
        ])
        .await?;
    db.collection::<Document>(REVIEWS)
        .create_indexes([
            unique(REVIEW_AUTHOR, doc! { "productId": 1, "userId": 1 }),
            index(
                REVIEW_PRODUCT_CREATED_AT,
                doc! { "productId": 1, "createdAt": -1, "_id": -1 },
            ),
        ])
        .await?;
    let ttl = IndexOptions::builder()
        .name(CART_EXPIRES_AT.to_owned())
        .expire_after(CART_TTL_GRACE)
        .build();
    db.collection::<Document>(CARTS)
        .create_indexes([
            sparse(CART_ACTIVE_OWNER, doc! { "activeOwner": 1 }, true),
            IndexModel::builder().keys(doc! { "expiresAt": 1 }).options(ttl).build(),
            index(CART_OWNER, doc! { "ownerKey": 1, "status": 1, "updatedAt": -1 }),
            sparse(CART_ORDER, doc! { "orderId": 1 }, false),
        ])
        .await?;
    Ok(())
}
