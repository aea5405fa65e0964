//! Catalog: products and variants, the category tree, search, reviews and images.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, SubsecRound, Utc};

use super::tokens::Principal;
use crate::domain::{
    Attributes, Category, CategoryId, CompactString, Currency, Dimensions, ImageId, Money, Page, PageRequest, Product,
    ProductId, ProductImage, ProductQuery, ProductSearchResult, ProductSort, ProductStatus, Rating, RatingSummary,
    Review, ReviewId, Seo, Sku, Slug, Variant, Visibility,
};
use crate::ports::{CategoryStore, ImageStore, InventoryStore, OrderStore, ProductStore, ReviewStore, UserStore};
use crate::search;
use crate::{Error, Result, Validator};

/// Largest accepted image upload.
pub const MAX_IMAGE_BYTES: usize = 5 * 1024 * 1024;
/// Largest accepted image side, in pixels.
pub const MAX_IMAGE_SIDE: usize = 10_000;
/// Most items one bulk call (create, update, archive) takes.
const MAX_BULK_ITEMS: usize = 100;

/// Refuses a bulk call over `MAX_BULK_ITEMS`, naming the list field.
fn check_bulk(len: usize, field: &str) -> Result<()> {
    if len > MAX_BULK_ITEMS {
        return Err(Error::invalid(
            field,
            format!("must have at most {MAX_BULK_ITEMS} items"),
        ));
    }
    Ok(())
}

/// Money as a client sends it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MoneyInput {
    /// Minor units.
    pub amount: i64,
    /// ISO 4217 code.
    pub currency: String,
}

/// A variant as an admin sends it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VariantInput {
    /// Unique SKU.
    pub sku: String,
    /// Display name.
    pub name: Option<String>,
    /// Size, colour, material...
    pub options: BTreeMap<String, String>,
    /// Price, at least zero.
    pub price: MoneyInput,
    /// "Was" price, at least zero, same currency.
    pub compare_at_price: Option<MoneyInput>,
    /// Grams.
    pub weight_grams: Option<i64>,
    /// Millimetres: length, width, height.
    pub dimensions: Option<(i64, i64, i64)>,
}

/// A product as an admin sends it (create, or replace with PUT).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProductInput {
    /// 1-200 characters.
    pub name: String,
    /// Derived from the name when absent.
    pub slug: Option<String>,
    /// At most 5000 characters.
    pub description: String,
    /// At most 500 characters.
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
    /// `draft` (default), `active` or `archived`.
    pub status: Option<String>,
    /// `public` (default), `hidden` or `featured`.
    pub visibility: Option<String>,
    /// SEO title, at most 60 characters.
    pub meta_title: Option<String>,
    /// SEO description, at most 160 characters.
    pub meta_description: Option<String>,
    /// SEO keywords.
    pub keywords: Vec<String>,
    /// 1-100 variants.
    pub variants: Vec<VariantInput>,
}

/// A category as an admin sends it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CategoryInput {
    /// 1-100 characters.
    pub name: String,
    /// Derived from the name when absent.
    pub slug: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Parent id; none for a root.
    pub parent_id: Option<String>,
    /// Order among siblings.
    pub sort_order: Option<i32>,
}

/// A category with its children, for the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CategoryNode {
    /// The category.
    pub category: Category,
    /// Children, in sort order.
    pub children: Vec<CategoryNode>,
}

/// A listing request as a client sends it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SearchInput {
    /// Free text.
    pub q: Option<String>,
    /// Category id or slug (includes its descendants).
    pub category: Option<String>,
    /// Brand, case-insensitive.
    pub brand: Option<String>,
    /// Lowest price, minor units.
    pub min_price: Option<i64>,
    /// Highest price, minor units.
    pub max_price: Option<i64>,
    /// Every one of these tags.
    pub tags: Vec<String>,
    /// Minimum average rating, 0-5.
    pub min_rating: Option<f64>,
    /// Only products with a variant in stock.
    pub in_stock: bool,
    /// `relevance`, `price-asc`, `price-desc`, `newest`, `rating`, `best-selling`.
    pub sort: Option<String>,
    /// Page window.
    pub page: PageRequest,
}

/// A review as a customer sends it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReviewInput {
    /// 1-5.
    pub rating: i64,
    /// 1-120 characters.
    pub title: String,
    /// 1-5000 characters.
    pub body: String,
}

/// A page of reviews with the product's rating summary.
#[derive(Debug, Clone, PartialEq)]
pub struct ReviewPage {
    /// The reviews, newest first.
    pub page: Page<Review>,
    /// Count, sum and histogram over all reviews.
    pub summary: RatingSummary,
}

/// What deleting a product did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProductRemoval {
    /// Gone, with its images.
    Deleted,
    /// Orders reference it, so it was archived instead.
    Archived,
}

/// Ports the catalog service needs.
#[derive(Clone)]
pub struct CatalogPorts {
    /// Products.
    pub products: Arc<dyn ProductStore>,
    /// Categories.
    pub categories: Arc<dyn CategoryStore>,
    /// Reviews.
    pub reviews: Arc<dyn ReviewStore>,
    /// Users (review author names).
    pub users: Arc<dyn UserStore>,
    /// Orders (verified purchases, whether a product may be deleted).
    pub orders: Arc<dyn OrderStore>,
    /// Stock ("in stock" filter).
    pub inventory: Arc<dyn InventoryStore>,
    /// Image bytes.
    pub images: Arc<dyn ImageStore>,
}

/// Catalog use cases.
#[derive(Clone)]
pub struct CatalogService {
    ports: CatalogPorts,
}

/// Now, in whole milliseconds: what every backend stores (BSON dates are milliseconds), so
/// the record a write returns equals the one a later read returns.
fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(3)
}

fn is_staff(viewer: Option<&Principal>) -> bool {
    viewer.is_some_and(|p| p.role.is_staff())
}

fn text(v: &mut Validator, field: &str, value: &str, min: usize, max: usize) -> String {
    let value = value.trim();
    let n = value.chars().count();
    if n < min {
        v.push(
            field,
            if min == 1 {
                "must not be empty".to_owned()
            } else {
                format!("must be at least {min} characters")
            },
        );
    } else if n > max {
        v.push(field, format!("must be at most {max} characters"));
    }
    value.to_owned()
}

fn optional_text(v: &mut Validator, field: &str, value: Option<&str>, max: usize) -> Option<String> {
    let value = value.map(str::trim).filter(|s| !s.is_empty())?;
    Some(text(v, field, value, 1, max))
}

fn money(v: &mut Validator, field: &str, input: &MoneyInput) -> Option<Money> {
    let currency = v.check(&format!("{field}.currency"), Currency::parse(&input.currency));
    v.ensure(input.amount >= 0, &format!("{field}.amount"), "must be zero or more");
    currency.map(|c| Money::new(input.amount, c))
}

fn parse_status(v: &mut Validator, raw: Option<&str>) -> ProductStatus {
    match raw.map(str::trim) {
        None | Some("draft") => ProductStatus::Draft,
        Some("active") => ProductStatus::Active,
        Some("archived") => ProductStatus::Archived,
        Some(_) => {
            v.push("status", "must be draft, active or archived");
            ProductStatus::Draft
        }
    }
}

fn parse_visibility(v: &mut Validator, raw: Option<&str>) -> Visibility {
    match raw.map(str::trim) {
        None | Some("public") => Visibility::Public,
        Some("hidden") => Visibility::Hidden,
        Some("featured") => Visibility::Featured,
        Some(_) => {
            v.push("visibility", "must be public, hidden or featured");
            Visibility::Public
        }
    }
}

/// Parses `relevance`, `price-asc`, `price-desc`, `newest`, `rating`, `best-selling`.
///
/// # Errors
/// `Validation { field: "sort" }` for anything else.
pub fn parse_sort(raw: &str) -> Result<ProductSort> {
    match raw.trim().replace('_', "-").as_str() {
        "relevance" => Ok(ProductSort::Relevance),
        "price-asc" | "price" => Ok(ProductSort::PriceAsc),
        "price-desc" => Ok(ProductSort::PriceDesc),
        "newest" => Ok(ProductSort::Newest),
        "rating" => Ok(ProductSort::Rating),
        "best-selling" => Ok(ProductSort::BestSelling),
        _ => Err(Error::invalid(
            "sort",
            "must be relevance, price-asc, price-desc, newest, rating or best-selling",
        )),
    }
}

/// Checks an upload by its bytes: JPEG, PNG or WebP by magic number, size and dimensions.
/// Returns the content type, file extension, width and height.
///
/// # Errors
/// `Validation { field: "file" }` naming what is wrong.
pub fn inspect_image(bytes: &[u8]) -> Result<(&'static str, &'static str, u32, u32)> {
    if bytes.is_empty() {
        return Err(Error::invalid("file", "must not be empty"));
    }
    if bytes.len() > MAX_IMAGE_BYTES {
        return Err(Error::invalid(
            "file",
            format!("must be at most {} MiB", MAX_IMAGE_BYTES / (1024 * 1024)),
        ));
    }
    let (content_type, ext) = if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        ("image/jpeg", "jpg")
    } else if bytes.starts_with(&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]) {
        ("image/png", "png")
    } else if bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        ("image/webp", "webp")
    } else {
        return Err(Error::invalid("file", "must be a JPEG, PNG or WebP image"));
    };
    let size = imagesize::blob_size(bytes).map_err(|_| Error::invalid("file", "is not a readable image"))?;
    if size.width == 0 || size.height == 0 || size.width > MAX_IMAGE_SIDE || size.height > MAX_IMAGE_SIDE {
        return Err(Error::invalid(
            "file",
            format!("must be 1 to {MAX_IMAGE_SIDE} pixels on each side"),
        ));
    }
    let w = u32::try_from(size.width).map_err(|_| Error::invalid("file", "is too large"))?;
    let h = u32::try_from(size.height).map_err(|_| Error::invalid("file", "is too large"))?;
    Ok((content_type, ext, w, h))
}

fn slug_given(input: &ProductInput) -> bool {
    input.slug.as_deref().is_some_and(|s| !s.trim().is_empty())
}

impl CatalogService {
    /// Wires the service.
    pub fn new(ports: CatalogPorts) -> Self {
        Self { ports }
    }

    /// Validates an input into the editable part of a product (no id, counters or images).
    /// `known` caches categories already found to exist (bulk imports check each once).
    async fn validate(&self, input: &ProductInput, known: &mut HashSet<CategoryId>) -> Result<Product> {
        let mut v = Validator::new();
        let name = text(&mut v, "name", &input.name, 1, 200);
        let slug = match input.slug.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            Some(raw) => v.check("slug", Slug::parse(raw)),
            None => Slug::from_name(&name).ok().or_else(|| Slug::parse("product").ok()),
        };
        let description = text(&mut v, "description", &input.description, 0, 5000);
        let short_description = optional_text(&mut v, "shortDescription", input.short_description.as_deref(), 500);
        let brand = optional_text(&mut v, "brand", input.brand.as_deref(), 100);
        v.ensure(input.tags.len() <= 30, "tags", "must be at most 30 tags");
        let mut tags: Vec<String> = Vec::new();
        for (i, tag) in input.tags.iter().enumerate() {
            let tag = text(&mut v, &format!("tags[{i}]"), tag, 1, 50);
            if !tags.iter().any(|t| t.eq_ignore_ascii_case(&tag)) {
                tags.push(tag);
            }
        }
        let category_id = input
            .category_id
            .as_deref()
            .filter(|s| !s.trim().is_empty())
            .and_then(|raw| v.check("categoryId", raw.trim().parse::<CategoryId>()));
        let mut subcategory_ids = Vec::new();
        for (i, raw) in input.subcategory_ids.iter().enumerate() {
            if let Some(id) = v.check(&format!("subcategoryIds[{i}]"), raw.trim().parse::<CategoryId>())
                && !subcategory_ids.contains(&id)
                && Some(id) != category_id
            {
                subcategory_ids.push(id);
            }
        }
        v.ensure(
            input.specifications.len() <= 50,
            "specifications",
            "must have at most 50 entries",
        );
        let mut specifications = Attributes::with_capacity(input.specifications.len());
        for (k, val) in &input.specifications {
            let key = text(&mut v, "specifications", k, 1, 100);
            let value = text(&mut v, &format!("specifications.{key}"), val, 0, 500);
            specifications.insert(key.into(), value.into());
        }
        let status = parse_status(&mut v, input.status.as_deref());
        let visibility = parse_visibility(&mut v, input.visibility.as_deref());
        let seo = Seo {
            meta_title: optional_text(&mut v, "metaTitle", input.meta_title.as_deref(), 60),
            meta_description: optional_text(&mut v, "metaDescription", input.meta_description.as_deref(), 160),
            keywords: input
                .keywords
                .iter()
                .map(|k| k.trim().to_owned())
                .filter(|k| !k.is_empty())
                .take(20)
                .collect(),
        };
        v.ensure(!input.variants.is_empty(), "variants", "must have at least one variant");
        v.ensure(
            input.variants.len() <= 100,
            "variants",
            "must have at most 100 variants",
        );
        let mut variants = Vec::new();
        let mut seen = HashSet::new();
        let mut currency: Option<Currency> = None;
        for (i, vi) in input.variants.iter().enumerate() {
            let f = |name: &str| format!("variants[{i}].{name}");
            let sku = v.check(&f("sku"), Sku::parse(&vi.sku));
            if let Some(sku) = &sku
                && !seen.insert(sku.clone())
            {
                v.push(f("sku"), "appears twice in this product");
            }
            let price = money(&mut v, &f("price"), &vi.price);
            let compare_at_price = vi
                .compare_at_price
                .as_ref()
                .and_then(|m| money(&mut v, &f("compareAtPrice"), m));
            if let Some(p) = price {
                match currency {
                    None => currency = Some(p.currency),
                    Some(c) if c != p.currency => {
                        v.push(f("price.currency"), format!("must be {c} like the first variant"))
                    }
                    Some(_) => {}
                }
                if let Some(cmp) = compare_at_price
                    && cmp.currency != p.currency
                {
                    v.push(f("compareAtPrice.currency"), "must match the price's currency");
                }
            }
            v.ensure(vi.options.len() <= 10, &f("options"), "must have at most 10 options");
            let mut options = Attributes::with_capacity(vi.options.len());
            for (k, val) in &vi.options {
                let key = text(&mut v, &f("options"), k, 1, 50);
                let value = text(&mut v, &f(&format!("options.{k}")), val, 1, 100);
                options.insert(key.into(), value.into());
            }
            let weight_grams = vi.weight_grams.and_then(|w| {
                let ok = (0..=10_000_000).contains(&w);
                v.ensure(ok, &f("weightGrams"), "must be from 0 to 10000000");
                u32::try_from(w).ok()
            });
            let dimensions = vi.dimensions.and_then(|(l, w, h)| {
                let ok = [l, w, h].iter().all(|d| (0..=100_000).contains(d));
                v.ensure(ok, &f("dimensions"), "each side must be from 0 to 100000 mm");
                Some(Dimensions {
                    length_mm: u32::try_from(l).ok()?,
                    width_mm: u32::try_from(w).ok()?,
                    height_mm: u32::try_from(h).ok()?,
                })
            });
            let name = optional_text(&mut v, &f("name"), vi.name.as_deref(), 100);
            if let (Some(sku), Some(price)) = (sku, price) {
                variants.push(Variant {
                    sku,
                    name: name.map(CompactString::from),
                    options,
                    price,
                    compare_at_price,
                    weight_grams,
                    dimensions,
                });
            }
        }
        v.finish()?;
        // Referenced categories must exist (checked after the cheap checks).
        let mut v = Validator::new();
        for (field, id) in category_id.iter().map(|id| ("categoryId".to_owned(), *id)).chain(
            subcategory_ids
                .iter()
                .enumerate()
                .map(|(i, id)| (format!("subcategoryIds[{i}]"), *id)),
        ) {
            if known.contains(&id) {
                continue;
            }
            match self.ports.categories.get_category(id).await {
                Ok(_) => {
                    known.insert(id);
                }
                Err(Error::NotFound { .. }) => v.push(field, "no such category"),
                Err(e) => return Err(e),
            }
        }
        v.finish()?;
        let slug = slug.ok_or_else(|| Error::invalid("slug", "cannot be derived from the name"))?;
        let now = now();
        Ok(Product {
            id: ProductId::new(),
            name,
            slug,
            description,
            short_description,
            brand,
            tags,
            category_id,
            subcategory_ids,
            specifications,
            status,
            visibility,
            images: Vec::new(),
            thumbnail: None,
            seo,
            variants,
            rating: RatingSummary::default(),
            sales_count: 0,
            created_at: now,
            updated_at: now,
        })
    }

    /// Inserts, and when the slug was derived from the name and is taken, tries `-2`, `-3`...
    async fn insert_with_free_slug(&self, mut product: Product, slug_given: bool) -> Result<Product> {
        let base = product.slug.clone();
        for n in 2..=50 {
            match self.ports.products.insert_product(&product).await {
                Err(Error::Conflict { code: "slug_taken", .. }) if !slug_given => {
                    let mut candidate = format!("{}-{n}", base.as_str());
                    if candidate.len() > 200 {
                        candidate = format!("{}-{n}", &base.as_str()[..190].trim_end_matches('-'));
                    }
                    product.slug = Slug::parse(&candidate).map_err(Error::unexpected)?;
                }
                Ok(()) => return Ok(product),
                Err(e) => return Err(e),
            }
        }
        Err(Error::conflict(
            "slug_taken",
            "no free slug could be derived from the name; give one",
        ))
    }

    /// Creates a product (staff only).
    ///
    /// # Errors
    /// `Forbidden`; `Validation` naming every bad field (including unknown categories);
    /// `Conflict { code: "slug_taken" | "sku_taken" }`.
    pub async fn create_product(&self, who: &Principal, input: ProductInput) -> Result<Product> {
        who.require_staff()?;
        let product = self.validate(&input, &mut HashSet::new()).await?;
        self.insert_with_free_slug(product, slug_given(&input)).await
    }

    /// Creates many products (at most 100) in one batch write; each succeeds or
    /// fails on its own, and a failed one leaves nothing behind.
    ///
    /// # Errors
    /// `Forbidden`; `Validation { field: "items" }` for too many; per product, as
    /// [`Self::create_product`].
    pub async fn create_products(&self, who: &Principal, inputs: Vec<ProductInput>) -> Result<Vec<Result<Product>>> {
        who.require_staff()?;
        check_bulk(inputs.len(), "items")?;
        let mut known = HashSet::new();
        let mut results: Vec<Option<Result<Product>>> = Vec::with_capacity(inputs.len());
        let mut batch = Vec::new();
        let mut positions = Vec::new();
        for (i, input) in inputs.iter().enumerate() {
            match self.validate(input, &mut known).await {
                Ok(product) => {
                    batch.push(product);
                    positions.push((i, slug_given(input)));
                    results.push(None);
                }
                Err(e) => results.push(Some(Err(e))),
            }
        }
        let outcomes = self.ports.products.insert_products(&batch).await?;
        for (((i, given), product), outcome) in positions.into_iter().zip(batch).zip(outcomes) {
            let result = match outcome {
                Ok(()) => Ok(product),
                // A derived slug clashed: retry this one with a numbered slug.
                Err(Error::Conflict { code: "slug_taken", .. }) if !given => {
                    self.insert_with_free_slug(product, false).await
                }
                Err(e) => Err(e),
            };
            if let Some(slot) = results.get_mut(i) {
                *slot = Some(result);
            }
        }
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Error::unexpected_msg("product left unprocessed"))))
            .collect())
    }

    /// Replaces a product's editable content (staff only); reviews, sales, images and
    /// creation time are kept.
    ///
    /// # Errors
    /// `Forbidden`; `NotFound { entity: "product" }`; `Validation`; `Conflict`.
    pub async fn update_product(&self, who: &Principal, id: ProductId, input: ProductInput) -> Result<Product> {
        who.require_staff()?;
        let current = self.ports.products.get_product(id).await?;
        let mut product = self.validate(&input, &mut HashSet::new()).await?;
        if input.slug.as_deref().is_none_or(|s| s.trim().is_empty()) {
            product.slug = current.slug.clone();
        }
        product.id = id;
        product.images = current.images.clone();
        product.thumbnail = current.thumbnail.clone();
        product.rating = current.rating;
        product.sales_count = current.sales_count;
        product.created_at = current.created_at;
        self.ports.products.update_product(&product).await?;
        Ok(product)
    }

    /// Replaces many products (at most 100); each succeeds or fails on its own.
    ///
    /// # Errors
    /// `Forbidden`; `Validation { field: "items" }` for too many; per product, as
    /// [`Self::update_product`].
    pub async fn update_products(
        &self,
        who: &Principal,
        items: Vec<(ProductId, ProductInput)>,
    ) -> Result<Vec<Result<Product>>> {
        who.require_staff()?;
        check_bulk(items.len(), "items")?;
        let mut out = Vec::with_capacity(items.len());
        for (id, input) in items {
            out.push(self.update_product(who, id, input).await);
        }
        Ok(out)
    }

    /// Deletes a product, or archives it when orders reference it (staff only).
    ///
    /// # Errors
    /// `Forbidden`; `NotFound { entity: "product" }`.
    pub async fn delete_product(&self, who: &Principal, id: ProductId) -> Result<ProductRemoval> {
        who.require_staff()?;
        let product = self.ports.products.get_product(id).await?;
        if self.ports.orders.count_orders_with_product(id).await? > 0 {
            let mut product = Arc::unwrap_or_clone(product);
            product.status = ProductStatus::Archived;
            product.updated_at = now();
            self.ports.products.update_product(&product).await?;
            return Ok(ProductRemoval::Archived);
        }
        self.ports.products.delete_product(id).await?;
        for image in &product.images {
            if let Err(e) = self.ports.images.delete_image(&image.storage_key).await {
                tracing::warn!(key = %image.storage_key, error = %e, "could not delete the image of a deleted product");
            }
        }
        Ok(ProductRemoval::Deleted)
    }

    /// Archives products (staff only, at most 100); returns per product whether
    /// it worked.
    ///
    /// # Errors
    /// `Forbidden`; `Validation { field: "ids" }` for too many; per product
    /// `NotFound { entity: "product" }`.
    pub async fn archive_products(&self, who: &Principal, ids: &[ProductId]) -> Result<Vec<Result<Product>>> {
        who.require_staff()?;
        check_bulk(ids.len(), "ids")?;
        let mut out = Vec::with_capacity(ids.len());
        for &id in ids {
            let result = async {
                let mut product = Arc::unwrap_or_clone(self.ports.products.get_product(id).await?);
                product.status = ProductStatus::Archived;
                product.updated_at = now();
                self.ports.products.update_product(&product).await?;
                Ok(product)
            }
            .await;
            out.push(result);
        }
        Ok(out)
    }

    /// A product by id or slug. Customers see active products only (hidden ones by link too);
    /// staff see every product.
    ///
    /// # Errors
    /// `NotFound { entity: "product" }`.
    pub async fn product(&self, viewer: Option<&Principal>, id_or_slug: &str) -> Result<Arc<Product>> {
        let product = match id_or_slug.parse::<ProductId>() {
            Ok(id) => self.ports.products.get_product(id).await?,
            Err(_) => {
                let slug = Slug::parse(id_or_slug).map_err(|_| Error::NotFound { entity: "product" })?;
                self.ports
                    .products
                    .find_product_by_slug(&slug)
                    .await?
                    .ok_or(Error::NotFound { entity: "product" })?
            }
        };
        if product.status != ProductStatus::Active && !is_staff(viewer) {
            return Err(Error::NotFound { entity: "product" });
        }
        Ok(product)
    }

    async fn resolve_category(&self, id_or_slug: &str) -> Result<Category> {
        match id_or_slug.parse::<CategoryId>() {
            Ok(id) => self.ports.categories.get_category(id).await,
            Err(_) => {
                let slug = Slug::parse(id_or_slug).map_err(|_| Error::NotFound { entity: "category" })?;
                self.ports
                    .categories
                    .find_category_by_slug(&slug)
                    .await?
                    .ok_or(Error::NotFound { entity: "category" })
            }
        }
    }

    /// Searches and filters the catalog; customers see listed products only.
    ///
    /// # Errors
    /// `Validation` for bad filters; `NotFound { entity: "category" }` for an unknown category.
    pub async fn search(&self, viewer: Option<&Principal>, input: SearchInput) -> Result<ProductSearchResult> {
        let mut v = Validator::new();
        let sort = match input.sort.as_deref() {
            Some(raw) => v.absorb("sort", parse_sort(raw)).unwrap_or_default(),
            None => ProductSort::Relevance,
        };
        for (field, value) in [("minPrice", input.min_price), ("maxPrice", input.max_price)] {
            v.ensure(value.is_none_or(|p| p >= 0), field, "must be zero or more");
        }
        if let (Some(lo), Some(hi)) = (input.min_price, input.max_price) {
            v.ensure(lo <= hi, "maxPrice", "must not be below minPrice");
        }
        v.ensure(
            input.min_rating.is_none_or(|r| (0.0..=5.0).contains(&r)),
            "minRating",
            "must be from 0 to 5",
        );
        let q = input.q.as_deref().map(str::trim).unwrap_or_default();
        v.ensure(q.chars().count() <= 200, "q", "must be at most 200 characters");
        v.finish()?;
        let category_ids = match input.category.as_deref().map(str::trim).filter(|c| !c.is_empty()) {
            Some(c) => {
                let category = self.resolve_category(c).await?;
                let mut ids = vec![category.id];
                ids.extend(self.ports.categories.descendant_ids(category.id).await?);
                ids
            }
            None => Vec::new(),
        };
        let in_stock_skus = if input.in_stock {
            Some(self.ports.inventory.skus_in_stock().await?)
        } else {
            None
        };
        let query = ProductQuery {
            terms: search::terms(q),
            category_ids,
            brand: input.brand.map(|b| b.trim().to_owned()).filter(|b| !b.is_empty()),
            min_price: input.min_price,
            max_price: input.max_price,
            tags: input
                .tags
                .into_iter()
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty())
                .collect(),
            min_rating: input.min_rating,
            in_stock_skus,
            listed_only: !is_staff(viewer),
            sort,
            page: input.page,
        };
        self.ports.products.search_products(&query).await
    }

    /// The category tree, roots first, children in sort order.
    ///
    /// # Errors
    /// Storage failures only.
    pub async fn category_tree(&self) -> Result<Vec<CategoryNode>> {
        let all = self.ports.categories.list_categories().await?;
        fn children(parent: Option<CategoryId>, all: &[Category]) -> Vec<CategoryNode> {
            all.iter()
                .filter(|c| c.parent_id == parent)
                .map(|c| CategoryNode {
                    category: c.clone(),
                    children: children(Some(c.id), all),
                })
                .collect()
        }
        Ok(children(None, &all))
    }

    /// One category by id or slug.
    ///
    /// # Errors
    /// `NotFound { entity: "category" }`.
    pub async fn category(&self, id_or_slug: &str) -> Result<Category> {
        self.resolve_category(id_or_slug).await
    }

    async fn validate_category(&self, input: &CategoryInput, id: Option<CategoryId>) -> Result<Category> {
        let mut v = Validator::new();
        let name = text(&mut v, "name", &input.name, 1, 100);
        let slug = match input.slug.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            Some(raw) => v.check("slug", Slug::parse(raw)),
            None => v.check("name", Slug::from_name(&name)),
        };
        let description = optional_text(&mut v, "description", input.description.as_deref(), 2000);
        let parent_id = input
            .parent_id
            .as_deref()
            .filter(|s| !s.trim().is_empty())
            .and_then(|raw| v.check("parentId", raw.trim().parse::<CategoryId>()));
        v.finish()?;
        let ancestors = match parent_id {
            None => Vec::new(),
            Some(pid) => {
                let parent = match self.ports.categories.get_category(pid).await {
                    Err(Error::NotFound { .. }) => return Err(Error::invalid("parentId", "no such category")),
                    other => other?,
                };
                if let Some(id) = id
                    && (pid == id || parent.ancestors.contains(&id))
                {
                    return Err(Error::invalid(
                        "parentId",
                        "cannot move a category under itself or its descendants",
                    ));
                }
                let mut a = parent.ancestors;
                a.push(pid);
                a
            }
        };
        let slug = slug.ok_or_else(|| Error::invalid("slug", "cannot be derived from the name"))?;
        let now = now();
        Ok(Category {
            id: id.unwrap_or_default(),
            name,
            slug,
            description,
            parent_id,
            ancestors,
            sort_order: input.sort_order.unwrap_or(0),
            created_at: now,
            updated_at: now,
        })
    }

    /// Creates a category (staff only).
    ///
    /// # Errors
    /// `Forbidden`; `Validation` (including an unknown parent); `Conflict { code: "slug_taken" }`.
    pub async fn create_category(&self, who: &Principal, input: CategoryInput) -> Result<Category> {
        who.require_staff()?;
        let category = self.validate_category(&input, None).await?;
        self.ports.categories.insert_category(&category).await?;
        Ok(category)
    }

    /// Replaces a category, moving it (and its subtree) when the parent changes (staff only).
    ///
    /// # Errors
    /// `Forbidden`; `NotFound { entity: "category" }`; `Validation` (including a move under
    /// itself or a descendant); `Conflict { code: "slug_taken" }`.
    pub async fn update_category(&self, who: &Principal, id: CategoryId, input: CategoryInput) -> Result<Category> {
        who.require_staff()?;
        let current = self.ports.categories.get_category(id).await?;
        let mut category = self.validate_category(&input, Some(id)).await?;
        if input.slug.as_deref().is_none_or(|s| s.trim().is_empty()) {
            category.slug = current.slug;
        }
        category.created_at = current.created_at;
        self.ports.categories.update_category(&category).await?;
        Ok(category)
    }

    /// Deletes an empty leaf category (staff only).
    ///
    /// # Errors
    /// `Forbidden`; `NotFound { entity: "category" }`;
    /// `Conflict { code: "category_has_children" | "category_has_products" }`.
    pub async fn delete_category(&self, who: &Principal, id: CategoryId) -> Result<()> {
        who.require_staff()?;
        self.ports.categories.get_category(id).await?;
        if self.ports.products.count_products_in_categories(&[id]).await? > 0 {
            return Err(Error::conflict(
                "category_has_products",
                "the category still has products; move them first",
            ));
        }
        self.ports.categories.delete_category(id).await
    }

    /// Reviews a product (one review per customer and product). The review is marked
    /// verified when the customer bought the product.
    ///
    /// # Errors
    /// `Validation`; `NotFound { entity: "product" }` for unknown or unpublished products;
    /// `Conflict { code: "already_reviewed" }`.
    pub async fn add_review(&self, who: &Principal, product_id: ProductId, input: ReviewInput) -> Result<Review> {
        let mut v = Validator::new();
        let rating = v.check("rating", Rating::new(input.rating));
        let title = text(&mut v, "title", &input.title, 1, 120);
        let body = text(&mut v, "body", &input.body, 1, 5000);
        v.finish()?;
        let rating = rating.ok_or_else(|| Error::unexpected_msg("validator passed without a rating"))?;
        let product = self.ports.products.get_product(product_id).await?;
        if product.status != ProductStatus::Active {
            return Err(Error::NotFound { entity: "product" });
        }
        let author = self.ports.users.get_user(who.user_id).await?;
        let initial = author
            .last_name
            .chars()
            .next()
            .map(|c| format!(" {c}."))
            .unwrap_or_default();
        let review = Review {
            id: ReviewId::new(),
            product_id,
            user_id: who.user_id,
            author_name: format!("{}{initial}", author.first_name),
            rating,
            title,
            body,
            verified_purchase: self.ports.orders.has_purchased(who.user_id, product_id).await?,
            created_at: now(),
        };
        let stored = self.ports.reviews.insert_review(&review).await;
        // Counted from the stored reviews, not incremented: a review whose count was
        // interrupted (a crash, a lost connection) is caught up by the next one, or by its
        // author trying again and being told it is already there.
        if matches!(
            &stored,
            Ok(())
                | Err(Error::Conflict {
                    code: "already_reviewed",
                    ..
                })
        ) {
            self.ports.products.recount_rating(product_id).await?;
        }
        stored.map(|()| review)
    }

    /// A product's reviews, newest first, with its rating summary.
    ///
    /// # Errors
    /// `NotFound { entity: "product" }` for unknown or unpublished products.
    pub async fn reviews(
        &self,
        viewer: Option<&Principal>,
        product_id: ProductId,
        page: PageRequest,
    ) -> Result<ReviewPage> {
        let product = self.ports.products.get_product(product_id).await?;
        if product.status != ProductStatus::Active && !is_staff(viewer) {
            return Err(Error::NotFound { entity: "product" });
        }
        let page = self.ports.reviews.list_reviews(product_id, page).await?;
        Ok(ReviewPage {
            page,
            summary: product.rating,
        })
    }

    /// Uploads an image to a product (staff only), checked by its bytes.
    ///
    /// # Errors
    /// `Forbidden`; `NotFound { entity: "product" }`; `Validation { field: "file" | "alt" }`.
    pub async fn add_image(
        &self,
        who: &Principal,
        product_id: ProductId,
        bytes: Vec<u8>,
        alt: Option<String>,
    ) -> Result<(Arc<Product>, ProductImage)> {
        who.require_staff()?;
        let (content_type, ext, width, height) = inspect_image(&bytes)?;
        let mut v = Validator::new();
        let alt = optional_text(&mut v, "alt", alt.as_deref(), 200);
        v.finish()?;
        self.ports.products.get_product(product_id).await?;
        let id = ImageId::new();
        let key = format!("products/{product_id}/{id}.{ext}");
        let size_bytes = bytes.len() as u64;
        let url = self.ports.images.put_image(&key, bytes, content_type).await?;
        let image = ProductImage {
            id,
            url,
            storage_key: key.clone(),
            alt,
            content_type: content_type.to_owned(),
            width,
            height,
            size_bytes,
        };
        match self.ports.products.add_product_image(product_id, &image).await {
            Ok(product) => Ok((product, image)),
            Err(e) => {
                // Leave no orphan object behind.
                let _ = self.ports.images.delete_image(&key).await;
                Err(e)
            }
        }
    }

    /// Removes an image from a product and deletes the object (staff only).
    ///
    /// # Errors
    /// `Forbidden`; `NotFound { entity: "product" | "image" }`.
    pub async fn remove_image(
        &self,
        who: &Principal,
        product_id: ProductId,
        image_id: ImageId,
    ) -> Result<Arc<Product>> {
        who.require_staff()?;
        let before = self.ports.products.get_product(product_id).await?;
        let image = before
            .images
            .iter()
            .find(|i| i.id == image_id)
            .cloned()
            .ok_or(Error::NotFound { entity: "image" })?;
        let mut product = self.ports.products.remove_product_image(product_id, image_id).await?;
        self.ports.images.delete_image(&image.storage_key).await?;
        if product.thumbnail.as_deref() == Some(image.url.as_str()) {
            Arc::make_mut(&mut product).thumbnail = product.images.first().map(|i| i.url.clone());
            self.ports.products.update_product(&product).await?;
        }
        Ok(product)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use mockall::predicate::eq;

    use super::*;
    use crate::domain::{Role, UserId};
    use crate::memory::{MemoryImageStore, MemoryStore};
    use crate::ports::{MockImageStore, MockOrderStore};

    fn staff() -> Principal {
        Principal {
            user_id: UserId::new(),
            role: Role::Admin,
        }
    }

    fn service(orders: Arc<dyn OrderStore>, images: Arc<dyn ImageStore>) -> (CatalogService, MemoryStore) {
        let memory = MemoryStore::new();
        let m = Arc::new(memory.clone());
        let ports = CatalogPorts {
            products: m.clone(),
            categories: m.clone(),
            reviews: m.clone(),
            users: m.clone(),
            orders,
            inventory: m,
            images,
        };
        (CatalogService::new(ports), memory)
    }

    fn input(name: &str, sku: &str) -> ProductInput {
        ProductInput {
            name: name.into(),
            status: Some("active".into()),
            variants: vec![VariantInput {
                sku: sku.into(),
                price: MoneyInput {
                    amount: 1999,
                    currency: "usd".into(),
                },
                ..VariantInput::default()
            }],
            ..ProductInput::default()
        }
    }

    #[tokio::test]
    async fn a_review_whose_count_was_interrupted_is_counted_when_its_author_tries_again() {
        use crate::domain::{Email, Rating, Review, ReviewId, User, UserStatus};
        use crate::ports::{ReviewStore, UserStore};
        let mut orders = MockOrderStore::new();
        orders.expect_has_purchased().returning(|_, _| Ok(false));
        let (svc, memory) = service(Arc::new(orders), Arc::new(MemoryImageStore::new()));
        let p = svc.create_product(&staff(), input("Kettle", "KET-9")).await.unwrap();
        let at = now();
        let author = User {
            id: UserId::new(),
            email: Email::parse("ada@example.com").unwrap(),
            password_hash: String::new(),
            first_name: "Ada".into(),
            last_name: "Lovelace".into(),
            phone: None,
            role: Role::Customer,
            status: UserStatus::Active,
            created_at: at,
            updated_at: at,
        };
        memory.insert_user(&author).await.unwrap();
        // A first attempt stored the review, and the process stopped before counting it.
        let first = Review {
            id: ReviewId::new(),
            product_id: p.id,
            user_id: author.id,
            author_name: "Ada L.".into(),
            rating: Rating::new(4).unwrap(),
            title: "Good".into(),
            body: "Boils fast.".into(),
            verified_purchase: false,
            created_at: at,
        };
        memory.insert_review(&first).await.unwrap();
        let rating = || async { svc.product(None, &p.id.to_string()).await.unwrap().rating };
        assert_eq!(rating().await.count, 0, "not counted yet");

        let who = Principal {
            user_id: author.id,
            role: Role::Customer,
        };
        let again = ReviewInput {
            rating: 4,
            title: "Good".into(),
            body: "Boils fast.".into(),
        };
        let err = svc.add_review(&who, p.id, again).await.unwrap_err();
        assert!(
            matches!(
                err,
                Error::Conflict {
                    code: "already_reviewed",
                    ..
                }
            ),
            "{err:?}"
        );
        let r = rating().await;
        assert_eq!((r.count, r.sum, r.histogram), (1, 4, [0, 0, 0, 1, 0]), "counted once");
    }

    #[tokio::test]
    async fn deleting_an_ordered_product_archives_it_and_keeps_its_images() {
        let mut orders = MockOrderStore::new();
        orders.expect_count_orders_with_product().returning(|_| Ok(3));
        // No image may be deleted: the mock panics on any call.
        let (svc, _) = service(Arc::new(orders), Arc::new(MockImageStore::new()));
        let p = svc.create_product(&staff(), input("Mug", "MUG-1")).await.unwrap();
        assert_eq!(
            svc.delete_product(&staff(), p.id).await.unwrap(),
            ProductRemoval::Archived
        );
        let again = svc.product(Some(&staff()), &p.id.to_string()).await.unwrap();
        assert_eq!(again.status, ProductStatus::Archived);
        assert!(
            svc.product(None, &p.id.to_string()).await.unwrap_err().is_not_found(),
            "customers no longer see it"
        );
    }

    #[tokio::test]
    async fn deleting_an_unordered_product_removes_its_images() {
        let mut orders = MockOrderStore::new();
        orders.expect_count_orders_with_product().returning(|_| Ok(0));
        let images = MemoryImageStore::new();
        let (svc, _) = service(Arc::new(orders), Arc::new(images.clone()));
        let p = svc.create_product(&staff(), input("Lamp", "LAMP-1")).await.unwrap();
        svc.add_image(&staff(), p.id, PNG_1X1.to_vec(), None).await.unwrap();
        assert_eq!(images.len().unwrap(), 1);
        assert_eq!(
            svc.delete_product(&staff(), p.id).await.unwrap(),
            ProductRemoval::Deleted
        );
        assert_eq!(images.len().unwrap(), 0);
    }

    #[tokio::test]
    async fn a_failed_image_attach_deletes_the_stored_object() {
        // The product vanishes between the check and the attach: the object must not linger.
        let (svc, memory) = service(Arc::new(MockOrderStore::new()), Arc::new(MemoryImageStore::new()));
        let p = svc.create_product(&staff(), input("Vase", "VASE-1")).await.unwrap();
        let mut products = crate::ports::MockProductStore::new();
        let snapshot = Arc::new(p.clone());
        products
            .expect_get_product()
            .with(eq(p.id))
            .returning(move |_| Ok(snapshot.clone()));
        products
            .expect_add_product_image()
            .returning(|_, _| Err(Error::NotFound { entity: "product" }));
        let mut images = MockImageStore::new();
        images
            .expect_put_image()
            .times(1)
            .returning(|k, _, _| Ok(format!("/media/{k}")));
        images.expect_delete_image().times(1).returning(|_| Ok(()));
        let m = Arc::new(memory);
        let svc = CatalogService::new(CatalogPorts {
            products: Arc::new(products),
            categories: m.clone(),
            reviews: m.clone(),
            users: m.clone(),
            orders: Arc::new(MockOrderStore::new()),
            inventory: m,
            images: Arc::new(images),
        });
        let err = svc.add_image(&staff(), p.id, PNG_1X1.to_vec(), None).await.unwrap_err();
        assert!(err.is_not_found());
    }

    #[test]
    fn images_are_checked_by_their_bytes() {
        assert_eq!(
            inspect_image(PNG_1X1).map(|i| (i.0, i.2, i.3)).unwrap(),
            ("image/png", 1, 1)
        );
        let err = inspect_image(b"GIF89a not allowed").unwrap_err();
        assert!(matches!(&err, Error::Validation(f) if f[0].field == "file"), "{err:?}");
        assert!(
            inspect_image(&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0]).is_err(),
            "truncated"
        );
        assert!(inspect_image(&vec![0xFF; MAX_IMAGE_BYTES + 1]).is_err(), "too large");
        assert!(inspect_image(&[]).is_err());
    }

    #[tokio::test]
    async fn customers_never_write_the_catalog() {
        let (svc, _) = service(Arc::new(MockOrderStore::new()), Arc::new(MockImageStore::new()));
        let customer = Principal {
            user_id: UserId::new(),
            role: Role::Customer,
        };
        assert!(matches!(
            svc.create_product(&customer, input("X", "X-1")).await,
            Err(Error::Forbidden(_))
        ));
        let cat = CategoryInput {
            name: "C".into(),
            ..CategoryInput::default()
        };
        assert!(matches!(
            svc.create_category(&customer, cat).await,
            Err(Error::Forbidden(_))
        ));
    }

    /// A valid 1x1 PNG.
    const PNG_1X1: &[u8] = &[
        0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00,
        0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4, 0x89, 0x00, 0x00, 0x00,
        0x0A, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9C, 0x63, 0x00, 0x01, 0x00, 0x00, 0x05, 0x00, 0x01, 0x0D, 0x0A, 0x2D,
        0xB4, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82,
    ];
}
