//! Catalog wire types (products, categories, reviews, images, bulk results) and their
//! conversions to and from the catalog service's inputs and domain types.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use commerce_core::domain::{
    Category, CompactString, Dimensions, Money, PriceBand, Product, ProductImage, ProductSearchResult, ProductStatus,
    RatingSummary, Review, Seo, Variant, Visibility,
};
use commerce_core::services::{
    CategoryInput, CategoryNode, MoneyInput, ProductInput, ProductRemoval, ReviewInput, ReviewPage, VariantInput,
};
use poem_openapi::Object;
use serde::{Deserialize, Serialize};

use crate::problem::{Problem, problem_for};

/// An amount of money: integer minor units (cents for USD) and an ISO 4217 currency code.
#[derive(Debug, Clone, PartialEq, Eq, Object, Deserialize, Serialize)]
#[oai(rename = "Money")]
pub struct MoneyView {
    /// Amount in the currency's minor unit, e.g. `1999` for 19.99.
    pub amount: i64,
    /// ISO 4217 code, e.g. `USD`.
    pub currency: String,
}

impl From<Money> for MoneyView {
    fn from(m: Money) -> Self {
        Self {
            amount: m.amount_minor,
            currency: m.currency.as_str().to_owned(),
        }
    }
}

impl MoneyView {
    fn into_input(self) -> MoneyInput {
        MoneyInput {
            amount: self.amount,
            currency: self.currency,
        }
    }
}

/// Shipping dimensions in millimetres (each side 0 to 100000).
#[derive(Debug, Clone, PartialEq, Eq, Object, Deserialize, Serialize)]
#[oai(rename = "Dimensions", rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct DimensionsView {
    /// Length.
    pub length_mm: i64,
    /// Width.
    pub width_mm: i64,
    /// Height.
    pub height_mm: i64,
}

impl From<Dimensions> for DimensionsView {
    fn from(d: Dimensions) -> Self {
        Self {
            length_mm: i64::from(d.length_mm),
            width_mm: i64::from(d.width_mm),
            height_mm: i64::from(d.height_mm),
        }
    }
}

/// Search-engine fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Object, Deserialize, Serialize)]
#[oai(rename = "Seo", rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct SeoView {
    /// Page title, at most 60 characters.
    pub meta_title: Option<String>,
    /// Page description, at most 160 characters.
    pub meta_description: Option<String>,
    /// Keywords (at most 20 are kept).
    #[serde(default)]
    #[oai(default)]
    pub keywords: Vec<String>,
}

impl From<Seo> for SeoView {
    fn from(s: Seo) -> Self {
        Self {
            meta_title: s.meta_title,
            meta_description: s.meta_description,
            keywords: s.keywords,
        }
    }
}

/// A variant as staff send it.
#[derive(Debug, Clone, Object, Deserialize)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct VariantRequest {
    /// SKU, unique across the catalog: 1-64 of `A-Z a-z 0-9 - _ .`, stored upper-case.
    pub sku: String,
    /// Display name, e.g. "Black / M" (at most 100 characters).
    pub name: Option<String>,
    /// Options such as size or colour (at most 10).
    #[serde(default)]
    #[oai(default)]
    pub options: BTreeMap<String, String>,
    /// Selling price, zero or more; every variant of a product uses one currency.
    pub price: MoneyView,
    /// Crossed-out "was" price, same currency as the price.
    pub compare_at_price: Option<MoneyView>,
    /// Shipping weight in grams.
    pub weight_grams: Option<i64>,
    /// Shipping dimensions.
    pub dimensions: Option<DimensionsView>,
}

impl VariantRequest {
    fn into_input(self) -> VariantInput {
        VariantInput {
            sku: self.sku,
            name: self.name,
            options: self.options,
            price: self.price.into_input(),
            compare_at_price: self.compare_at_price.map(MoneyView::into_input),
            weight_grams: self.weight_grams,
            dimensions: self.dimensions.map(|d| (d.length_mm, d.width_mm, d.height_mm)),
        }
    }
}

/// A product as staff send it: the whole editable content (create, or replace with PUT).
#[derive(Debug, Clone, Object, Deserialize)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct ProductRequest {
    /// 1-200 characters.
    pub name: String,
    /// URL slug (`a-z 0-9` and single hyphens). Derived from the name when absent (with `-2`,
    /// `-3`... when taken); on PUT, absent keeps the current slug.
    pub slug: Option<String>,
    /// At most 5000 characters.
    pub description: String,
    /// Teaser, at most 500 characters.
    pub short_description: Option<String>,
    /// Brand, at most 100 characters.
    pub brand: Option<String>,
    /// Tags (at most 30, duplicates ignored).
    #[serde(default)]
    #[oai(default)]
    pub tags: Vec<String>,
    /// Main category id.
    pub category_id: Option<String>,
    /// Further category ids.
    #[serde(default)]
    #[oai(default)]
    pub subcategory_ids: Vec<String>,
    /// Specification table (at most 50 entries).
    #[serde(default)]
    #[oai(default)]
    pub specifications: BTreeMap<String, String>,
    /// `draft` (default), `active` or `archived`. Customers see active products only.
    pub status: Option<String>,
    /// `public` (default), `hidden` (by link only) or `featured`.
    pub visibility: Option<String>,
    /// Search-engine fields.
    pub seo: Option<SeoView>,
    /// 1-100 variants.
    pub variants: Vec<VariantRequest>,
}

impl ProductRequest {
    /// The service input (the service validates it).
    pub fn into_input(self) -> ProductInput {
        let seo = self.seo.unwrap_or_default();
        ProductInput {
            name: self.name,
            slug: self.slug,
            description: self.description,
            short_description: self.short_description,
            brand: self.brand,
            tags: self.tags,
            category_id: self.category_id,
            subcategory_ids: self.subcategory_ids,
            specifications: self.specifications,
            status: self.status,
            visibility: self.visibility,
            meta_title: seo.meta_title,
            meta_description: seo.meta_description,
            keywords: seo.keywords,
            variants: self.variants.into_iter().map(VariantRequest::into_input).collect(),
        }
    }
}

/// A purchasable variant.
#[derive(Debug, Clone, Object, Serialize)]
#[oai(rename = "Variant", rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct VariantView {
    /// SKU, upper-case.
    pub sku: String,
    /// Display name.
    pub name: Option<String>,
    /// Options such as size or colour.
    pub options: BTreeMap<String, String>,
    /// Selling price.
    pub price: MoneyView,
    /// Crossed-out "was" price.
    pub compare_at_price: Option<MoneyView>,
    /// Shipping weight in grams.
    pub weight_grams: Option<u32>,
    /// Shipping dimensions.
    pub dimensions: Option<DimensionsView>,
}

impl From<Variant> for VariantView {
    fn from(v: Variant) -> Self {
        Self {
            sku: v.sku.into_inner(),
            name: v.name.map(CompactString::into_string),
            options: v.options.into(),
            price: v.price.into(),
            compare_at_price: v.compare_at_price.map(MoneyView::from),
            weight_grams: v.weight_grams,
            dimensions: v.dimensions.map(DimensionsView::from),
        }
    }
}

/// An image of a product.
#[derive(Debug, Clone, Object, Serialize)]
#[oai(rename = "ProductImage", rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct ImageView {
    /// Id.
    pub id: String,
    /// Where clients fetch it.
    pub url: String,
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

impl From<ProductImage> for ImageView {
    fn from(i: ProductImage) -> Self {
        Self {
            id: i.id.to_string(),
            url: i.url,
            alt: i.alt,
            content_type: i.content_type,
            width: i.width,
            height: i.height,
            size_bytes: i.size_bytes,
        }
    }
}

/// A product's review count and mean rating.
#[derive(Debug, Clone, Object, Serialize)]
#[oai(rename = "ProductRating")]
pub struct RatingView {
    /// Number of reviews.
    pub count: u64,
    /// Mean rating from 1 to 5; 0 without reviews.
    pub average: f64,
}

pub(crate) fn status_name(s: ProductStatus) -> &'static str {
    match s {
        ProductStatus::Draft => "draft",
        ProductStatus::Active => "active",
        ProductStatus::Archived => "archived",
    }
}

pub(crate) fn visibility_name(v: Visibility) -> &'static str {
    match v {
        Visibility::Public => "public",
        Visibility::Hidden => "hidden",
        Visibility::Featured => "featured",
    }
}

/// A product with its variants.
#[derive(Debug, Clone, Object, Serialize)]
#[oai(rename = "Product", rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct ProductView {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Unique URL slug.
    pub slug: String,
    /// Description.
    pub description: String,
    /// Teaser.
    pub short_description: Option<String>,
    /// Brand.
    pub brand: Option<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Main category id.
    pub category_id: Option<String>,
    /// Further category ids.
    pub subcategory_ids: Vec<String>,
    /// Specification table.
    pub specifications: BTreeMap<String, String>,
    /// `draft`, `active` or `archived`.
    pub status: String,
    /// `public`, `hidden` or `featured`.
    pub visibility: String,
    /// Images, in upload order.
    pub images: Vec<ImageView>,
    /// Thumbnail URL (the first image's, unless changed).
    pub thumbnail: Option<String>,
    /// Search-engine fields.
    pub seo: SeoView,
    /// Variants.
    pub variants: Vec<VariantView>,
    /// The lowest variant price (the "from" price used for sorting and filtering).
    pub min_price: Option<MoneyView>,
    /// Reviews aggregate.
    pub rating: RatingView,
    /// Units sold.
    pub sales_count: u64,
    /// Created.
    #[serde(serialize_with = "crate::reply::rfc3339")]
    pub created_at: DateTime<Utc>,
    /// Last changed.
    #[serde(serialize_with = "crate::reply::rfc3339")]
    pub updated_at: DateTime<Utc>,
}

impl From<Product> for ProductView {
    fn from(p: Product) -> Self {
        let min_price = p.min_price().map(MoneyView::from);
        Self {
            id: p.id.to_string(),
            name: p.name,
            slug: p.slug.into_inner(),
            description: p.description,
            short_description: p.short_description,
            brand: p.brand,
            tags: p.tags,
            category_id: p.category_id.map(|c| c.to_string()),
            subcategory_ids: p.subcategory_ids.iter().map(ToString::to_string).collect(),
            specifications: p.specifications.into(),
            status: status_name(p.status).to_owned(),
            visibility: visibility_name(p.visibility).to_owned(),
            images: p.images.into_iter().map(ImageView::from).collect(),
            thumbnail: p.thumbnail,
            seo: p.seo.into(),
            variants: p.variants.into_iter().map(VariantView::from).collect(),
            min_price,
            rating: RatingView {
                count: p.rating.count,
                average: p.rating.average(),
            },
            sales_count: p.sales_count,
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

impl From<&Product> for ProductView {
    fn from(p: &Product) -> Self {
        p.clone().into()
    }
}

/// Matching products of one brand.
#[derive(Debug, Clone, Object, Serialize)]
pub struct BrandFacet {
    /// The brand.
    pub value: String,
    /// Matching products.
    pub count: u64,
}

/// Matching products in one price band.
#[derive(Debug, Clone, Object, Serialize)]
pub struct PriceBandFacet {
    /// Inclusive lower bound of the "from" price, minor units.
    pub min: i64,
    /// Exclusive upper bound, minor units; absent for the open top band.
    pub max: Option<i64>,
    /// Matching products.
    pub count: u64,
}

impl From<PriceBand> for PriceBandFacet {
    fn from(b: PriceBand) -> Self {
        Self {
            min: b.min,
            max: b.max,
            count: b.count,
        }
    }
}

/// Counts over the whole match (not just the page).
#[derive(Debug, Clone, Object, Serialize)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct ProductFacets {
    /// Matching products per brand.
    pub brands: Vec<BrandFacet>,
    /// Matching products per price band (under 25, 25-50, 50-100, 100-250, 250+ in major units).
    pub price_bands: Vec<PriceBandFacet>,
}

/// A page of products with facet counts.
#[derive(Debug, Object, Serialize)]
pub struct ProductPage {
    /// The products.
    pub items: Vec<ProductView>,
    /// Matching products in all.
    pub total: u64,
    /// Page number, from 1.
    pub page: u32,
    /// Page size.
    pub limit: u32,
    /// Brand and price-band counts over the whole match.
    pub facets: ProductFacets,
}

impl From<&ProductSearchResult> for ProductPage {
    fn from(r: &ProductSearchResult) -> Self {
        Self {
            items: r.page.items.iter().map(|p| ProductView::from(&**p)).collect(),
            total: r.page.total,
            page: r.page.page,
            limit: r.page.limit,
            facets: r.into(),
        }
    }
}

impl From<&ProductSearchResult> for ProductFacets {
    fn from(r: &ProductSearchResult) -> Self {
        Self {
            brands: r
                .brands
                .iter()
                .map(|(value, count)| BrandFacet {
                    value: value.clone(),
                    count: *count,
                })
                .collect(),
            price_bands: r.price_bands.iter().copied().map(PriceBandFacet::from).collect(),
        }
    }
}

/// What deleting a product did.
#[derive(Debug, Object)]
pub struct ProductRemovalView {
    /// `deleted` (gone, with its images) or `archived` (orders reference it, so it was
    /// archived instead).
    pub result: String,
}

impl From<ProductRemoval> for ProductRemovalView {
    fn from(r: ProductRemoval) -> Self {
        let result = match r {
            ProductRemoval::Deleted => "deleted",
            ProductRemoval::Archived => "archived",
        };
        Self {
            result: result.to_owned(),
        }
    }
}

/// An uploaded image and the product it was added to.
#[derive(Debug, Object)]
pub struct ImageUploaded {
    /// The new image.
    pub image: ImageView,
    /// The product as stored now (its thumbnail is the first image's URL).
    pub product: ProductView,
}

/// A category as staff send it.
#[derive(Debug, Clone, Object, Deserialize)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct CategoryRequest {
    /// 1-100 characters.
    pub name: String,
    /// URL slug; derived from the name when absent (on PUT, absent keeps the current slug).
    pub slug: Option<String>,
    /// Description, at most 2000 characters.
    pub description: Option<String>,
    /// Parent category id; absent for a root. Changing it moves the category with its subtree.
    pub parent_id: Option<String>,
    /// Order among siblings (default 0).
    pub sort_order: Option<i32>,
}

impl CategoryRequest {
    /// The service input (the service validates it).
    pub fn into_input(self) -> CategoryInput {
        CategoryInput {
            name: self.name,
            slug: self.slug,
            description: self.description,
            parent_id: self.parent_id,
            sort_order: self.sort_order,
        }
    }
}

/// A category.
#[derive(Debug, Clone, Object, Serialize)]
#[oai(rename = "Category", rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct CategoryView {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Unique URL slug.
    pub slug: String,
    /// Description.
    pub description: Option<String>,
    /// Parent id; absent for a root.
    pub parent_id: Option<String>,
    /// Ids from the root down to the parent.
    pub ancestors: Vec<String>,
    /// Order among siblings.
    pub sort_order: i32,
    /// Created.
    #[serde(serialize_with = "crate::reply::rfc3339")]
    pub created_at: DateTime<Utc>,
    /// Last changed.
    #[serde(serialize_with = "crate::reply::rfc3339")]
    pub updated_at: DateTime<Utc>,
}

impl From<Category> for CategoryView {
    fn from(c: Category) -> Self {
        Self {
            id: c.id.to_string(),
            name: c.name,
            slug: c.slug.into_inner(),
            description: c.description,
            parent_id: c.parent_id.map(|p| p.to_string()),
            ancestors: c.ancestors.iter().map(ToString::to_string).collect(),
            sort_order: c.sort_order,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

/// A node of the category tree.
#[derive(Debug, Clone, Object, Serialize)]
#[oai(rename = "CategoryNode", rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct CategoryNodeView {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Unique URL slug.
    pub slug: String,
    /// Description.
    pub description: Option<String>,
    /// Parent id; absent for a root.
    pub parent_id: Option<String>,
    /// Order among siblings.
    pub sort_order: i32,
    /// Children, in sort order.
    pub children: Vec<CategoryNodeView>,
}

impl From<CategoryNode> for CategoryNodeView {
    fn from(n: CategoryNode) -> Self {
        let c = n.category;
        Self {
            id: c.id.to_string(),
            name: c.name,
            slug: c.slug.into_inner(),
            description: c.description,
            parent_id: c.parent_id.map(|p| p.to_string()),
            sort_order: c.sort_order,
            children: n.children.into_iter().map(CategoryNodeView::from).collect(),
        }
    }
}

/// The category tree.
#[derive(Debug, Object, Serialize)]
pub struct CategoryTree {
    /// Root categories in sort order, each with its children.
    pub items: Vec<CategoryNodeView>,
}

/// A review as a customer sends it.
#[derive(Debug, Clone, Object, Deserialize)]
pub struct ReviewRequest {
    /// Stars, a whole number from 1 to 5.
    pub rating: i64,
    /// Headline, 1-120 characters.
    pub title: String,
    /// Text, 1-5000 characters.
    pub body: String,
}

impl ReviewRequest {
    /// The service input (the service validates it).
    pub fn into_input(self) -> ReviewInput {
        ReviewInput {
            rating: self.rating,
            title: self.title,
            body: self.body,
        }
    }
}

/// A review.
#[derive(Debug, Clone, Object)]
#[oai(rename = "Review", rename_all = "camelCase")]
pub struct ReviewView {
    /// Id.
    pub id: String,
    /// Reviewed product.
    pub product_id: String,
    /// Author's display name ("Ada L.").
    pub author_name: String,
    /// Stars, 1 to 5.
    pub rating: u8,
    /// Headline.
    pub title: String,
    /// Text.
    pub body: String,
    /// The author bought the product.
    pub verified_purchase: bool,
    /// Written.
    pub created_at: DateTime<Utc>,
}

impl From<Review> for ReviewView {
    fn from(r: Review) -> Self {
        Self {
            id: r.id.to_string(),
            product_id: r.product_id.to_string(),
            author_name: r.author_name,
            rating: r.rating.get(),
            title: r.title,
            body: r.body,
            verified_purchase: r.verified_purchase,
            created_at: r.created_at,
        }
    }
}

/// Reviews per number of stars.
#[derive(Debug, Clone, Object)]
pub struct RatingHistogram {
    /// One star.
    #[oai(rename = "1")]
    pub one: u64,
    /// Two stars.
    #[oai(rename = "2")]
    pub two: u64,
    /// Three stars.
    #[oai(rename = "3")]
    pub three: u64,
    /// Four stars.
    #[oai(rename = "4")]
    pub four: u64,
    /// Five stars.
    #[oai(rename = "5")]
    pub five: u64,
}

/// A product's rating summary over all its reviews.
#[derive(Debug, Clone, Object)]
pub struct RatingSummaryView {
    /// Number of reviews.
    pub count: u64,
    /// Mean rating; 0 without reviews.
    pub average: f64,
    /// Reviews per number of stars.
    pub histogram: RatingHistogram,
}

impl From<RatingSummary> for RatingSummaryView {
    fn from(s: RatingSummary) -> Self {
        let [one, two, three, four, five] = s.histogram;
        Self {
            count: s.count,
            average: s.average(),
            histogram: RatingHistogram {
                one,
                two,
                three,
                four,
                five,
            },
        }
    }
}

/// A page of a product's reviews, newest first, with the rating summary.
#[derive(Debug, Object)]
pub struct ReviewList {
    /// The reviews.
    pub items: Vec<ReviewView>,
    /// Reviews in all.
    pub total: u64,
    /// Page number, from 1.
    pub page: u32,
    /// Page size.
    pub limit: u32,
    /// Count, mean and histogram over every review.
    pub summary: RatingSummaryView,
}

impl From<ReviewPage> for ReviewList {
    fn from(r: ReviewPage) -> Self {
        Self {
            items: r.page.items.into_iter().map(ReviewView::from).collect(),
            total: r.page.total,
            page: r.page.page,
            limit: r.page.limit,
            summary: r.summary.into(),
        }
    }
}

/// Many products to create (at most 100).
#[derive(Debug, Object, Deserialize)]
pub struct BulkCreateRequest {
    /// The products; each is created or refused on its own.
    pub items: Vec<ProductRequest>,
}

/// One product to replace.
#[derive(Debug, Object, Deserialize)]
pub struct BulkUpdateItem {
    /// The product's id.
    pub id: String,
    /// Its new content.
    pub product: ProductRequest,
}

/// Many products to replace (at most 100).
#[derive(Debug, Object, Deserialize)]
pub struct BulkUpdateRequest {
    /// The replacements; each is applied or refused on its own.
    pub items: Vec<BulkUpdateItem>,
}

/// Products to archive (at most 100).
#[derive(Debug, Object, Deserialize)]
pub struct BulkArchiveRequest {
    /// Product ids.
    pub ids: Vec<String>,
}

/// The outcome for one item of a bulk request.
#[derive(Debug, Object)]
pub struct BulkItemResult {
    /// Position of the item in the request, from 0.
    pub index: u32,
    /// Whether it worked.
    pub ok: bool,
    /// The product as stored, when it worked.
    #[oai(skip_serializing_if_is_none)]
    pub product: Option<ProductView>,
    /// Why it failed (the problem a single request would have answered with).
    #[oai(skip_serializing_if_is_none)]
    pub error: Option<Problem>,
}

/// Per-item outcomes of a bulk request, in request order.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct BulkResult {
    /// One result per item.
    pub items: Vec<BulkItemResult>,
    /// Items that worked.
    pub succeeded: u32,
    /// Items that failed.
    pub failed: u32,
}

impl From<Vec<commerce_core::Result<Product>>> for BulkResult {
    fn from(results: Vec<commerce_core::Result<Product>>) -> Self {
        let items: Vec<BulkItemResult> = results
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                let index = u32::try_from(i).unwrap_or(u32::MAX);
                match r {
                    Ok(p) => BulkItemResult {
                        index,
                        ok: true,
                        product: Some(p.into()),
                        error: None,
                    },
                    Err(e) => BulkItemResult {
                        index,
                        ok: false,
                        product: None,
                        error: Some(problem_for(&e)),
                    },
                }
            })
            .collect();
        let succeeded = u32::try_from(items.iter().filter(|i| i.ok).count()).unwrap_or(u32::MAX);
        let failed = u32::try_from(items.len()).unwrap_or(u32::MAX).saturating_sub(succeeded);
        Self {
            items,
            succeeded,
            failed,
        }
    }
}
