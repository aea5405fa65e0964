//! Catalog: products with embedded variants, categories (a tree), images, search.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use compact_str::CompactString;
use serde::{Deserialize, Serialize};

use super::{Attributes, CategoryId, ImageId, Money, ProductId, Sku, Slug};

/// Publication state of a product.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProductStatus {
    /// Being prepared; never shown to customers.
    Draft,
    /// On sale.
    Active,
    /// Withdrawn; kept because orders reference it.
    Archived,
}

/// Where a product is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    /// Listed and searchable.
    Public,
    /// Reachable by link only.
    Hidden,
    /// Public and promoted.
    Featured,
}

/// Physical size of a variant, in millimetres.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Dimensions {
    /// Length.
    pub length_mm: u32,
    /// Width.
    pub width_mm: u32,
    /// Height.
    pub height_mm: u32,
}

/// A purchasable variant of a product (a size/colour combination), identified by its SKU.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Variant {
    /// Unique across the whole catalog.
    pub sku: Sku,
    /// Display name, e.g. "Black / M".
    pub name: Option<CompactString>,
    /// Options such as size, color, material.
    pub options: Attributes,
    /// Selling price.
    pub price: Money,
    /// Crossed-out "was" price.
    pub compare_at_price: Option<Money>,
    /// Shipping weight in grams.
    pub weight_grams: Option<u32>,
    /// Shipping dimensions.
    pub dimensions: Option<Dimensions>,
}

/// An image attached to a product.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProductImage {
    /// Id.
    pub id: ImageId,
    /// Where clients fetch it.
    pub url: String,
    /// Key in the image store.
    pub storage_key: String,
    /// Alternative text.
    pub alt: Option<String>,
    /// `image/jpeg`, `image/png` or `image/webp`.
    pub content_type: String,
    /// Pixels.
    pub width: u32,
    /// Pixels.
    pub height: u32,
    /// Bytes.
    pub size_bytes: u64,
}

/// Search-engine fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Seo {
    /// At most 60 characters.
    pub meta_title: Option<String>,
    /// At most 160 characters.
    pub meta_description: Option<String>,
    /// Keywords.
    pub keywords: Vec<String>,
}

/// Aggregate of a product's reviews, updated atomically with each review.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RatingSummary {
    /// Number of reviews.
    pub count: u64,
    /// Sum of all ratings (so the average is exact).
    pub sum: u64,
    /// Reviews per star, index 0 = one star.
    pub histogram: [u64; 5],
}

impl RatingSummary {
    /// Mean rating, 0 when there are no reviews.
    pub fn average(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum as f64 / self.count as f64
        }
    }
}

/// A product with its embedded variants.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Product {
    /// Id.
    pub id: ProductId,
    /// At most 200 characters.
    pub name: String,
    /// Unique.
    pub slug: Slug,
    /// At most 5000 characters.
    pub description: String,
    /// Teaser.
    pub short_description: Option<String>,
    /// Brand.
    pub brand: Option<String>,
    /// Free tags.
    pub tags: Vec<String>,
    /// Main category.
    pub category_id: Option<CategoryId>,
    /// Further categories.
    pub subcategory_ids: Vec<CategoryId>,
    /// Specification table.
    pub specifications: Attributes,
    /// Publication state.
    pub status: ProductStatus,
    /// Where shown.
    pub visibility: Visibility,
    /// Images.
    pub images: Vec<ProductImage>,
    /// Thumbnail URL.
    pub thumbnail: Option<String>,
    /// SEO fields.
    pub seo: Seo,
    /// At least one variant.
    pub variants: Vec<Variant>,
    /// Reviews aggregate.
    pub rating: RatingSummary,
    /// Units sold.
    pub sales_count: u64,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

impl Product {
    /// Whether customers may see it.
    pub fn is_listed(&self) -> bool {
        self.status == ProductStatus::Active && self.visibility != Visibility::Hidden
    }

    /// The variant with this SKU.
    pub fn variant(&self, sku: &Sku) -> Option<&Variant> {
        self.variants.iter().find(|v| &v.sku == sku)
    }

    /// The lowest variant price (the "from" price used for sorting and filtering).
    pub fn min_price(&self) -> Option<Money> {
        self.variants.iter().map(|v| v.price).min_by_key(|p| p.amount_minor)
    }

    /// Every category the product sits in.
    pub fn category_ids(&self) -> impl Iterator<Item = CategoryId> + '_ {
        self.category_id.into_iter().chain(self.subcategory_ids.iter().copied())
    }
}

/// A node of the category tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Category {
    /// Id.
    pub id: CategoryId,
    /// Display name.
    pub name: String,
    /// Unique.
    pub slug: Slug,
    /// Description.
    pub description: Option<String>,
    /// Parent, `None` for a root.
    pub parent_id: Option<CategoryId>,
    /// Path from the root down to the parent (materialized path, so "all descendants" is one query).
    pub ancestors: Vec<CategoryId>,
    /// Order among siblings.
    pub sort_order: i32,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

/// How to order a product listing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProductSort {
    /// Best match first (the newest when there is no query).
    #[default]
    Relevance,
    /// Cheapest first.
    PriceAsc,
    /// Dearest first.
    PriceDesc,
    /// Most recent first.
    Newest,
    /// Highest average rating first.
    Rating,
    /// Most units sold first.
    BestSelling,
}

/// A product search: text, filters, sort and page.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProductQuery {
    /// Normalized search terms (see [`crate::search::terms`]); empty means "everything".
    pub terms: Vec<String>,
    /// Category ids to match (a category and all its descendants, resolved by the service).
    pub category_ids: Vec<CategoryId>,
    /// Brand, case-insensitive.
    pub brand: Option<String>,
    /// Lowest "from" price, minor units.
    pub min_price: Option<i64>,
    /// Highest "from" price, minor units.
    pub max_price: Option<i64>,
    /// All of these tags.
    pub tags: Vec<String>,
    /// Minimum average rating.
    pub min_rating: Option<f64>,
    /// Only these SKUs qualify as "in stock" (resolved by the service from inventory).
    pub in_stock_skus: Option<Vec<Sku>>,
    /// Only listed products (customers); `false` shows all (admins).
    pub listed_only: bool,
    /// Order.
    pub sort: ProductSort,
    /// Page window.
    pub page: super::PageRequest,
}

/// A page of products plus facet counts over the whole match.
#[derive(Debug, Clone, PartialEq)]
pub struct ProductSearchResult {
    /// The page.
    pub page: super::Page<Arc<Product>>,
    /// Matching products per brand.
    pub brands: Vec<(String, u64)>,
    /// Matching products per price band.
    pub price_bands: Vec<PriceBand>,
}

/// A price range and how many matching products fall in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PriceBand {
    /// Inclusive lower bound, minor units.
    pub min: i64,
    /// Exclusive upper bound, minor units; `None` is open.
    pub max: Option<i64>,
    /// Products in the band.
    pub count: u64,
}

/// The fixed price bands used for facets (minor units): under 25, 25-50, 50-100, 100-250, 250+.
pub const PRICE_BANDS: [(i64, Option<i64>); 5] = [
    (0, Some(2_500)),
    (2_500, Some(5_000)),
    (5_000, Some(10_000)),
    (10_000, Some(25_000)),
    (25_000, None),
];
