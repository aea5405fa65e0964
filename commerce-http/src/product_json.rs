//! Each product's JSON, encoded once per version of the product and reused by every answer
//! that shows it (product by id or slug, listings, search, category pages).
//!
//! A page of 20 products is ~40 KB of JSON: converting and encoding it cost more than half of a
//! listing's CPU. An entry is served only for the very product it was encoded from:
//! - the same `Arc` (the in-memory store shares a product until it changes, and a change always
//!   makes a new allocation while the entry's `Weak` pins the old one, so the address cannot be
//!   reused by another version);
//! - or, for stores that decode a fresh copy per read, a product with the same content, told by
//!   a 128-bit keyed fingerprint (two SipHash keys drawn per process). Hashing a product costs
//!   about as much as encoding it, so it is taken only once a read brings another `Arc` than the
//!   entry's: a store sharing its products never pays for it, a decoding one re-encodes a
//!   product once more (its second read) and hits from the third.
//!
//! A changed product never matches its old entry, so nothing has to be invalidated and nothing
//! stale can be served; the cache keeps no product alive.
//!
//! Whole pages are kept too, in the same budget, for stores that share their products:
//! putting 20 fragments together (20 lookups, a 40 KB copy, the facets) was a fifth of a
//! listing's CPU. A page entry answers only the very same products (by `Arc`, pinned by `Weak`s
//! as above) in the same order with the same counts and facets, so it cannot be stale either.

use std::hash::{BuildHasher, Hash as _, Hasher as _, RandomState};
use std::io::Write as _;
use std::sync::{Arc, Weak};

use bytes::Bytes;
use commerce_core::domain::{PriceBand, Product, ProductId, ProductSearchResult};
use quick_cache::Weighter;
use quick_cache::sync::Cache;

use crate::api::catalog_types::{ProductFacets, ProductPage, ProductView};
use crate::problem::ApiError;
use crate::reply::EncodedJson;

/// A product's encoding and what identifies the product it is the encoding of.
#[derive(Clone)]
struct Encoded {
    product: Weak<Product>,
    /// `None` until a read of another `Arc` than `product` (see the module docs).
    fingerprint: Option<u128>,
    json: Bytes,
}

/// A page's encoding and everything it was made from.
struct EncodedPage {
    products: Vec<Weak<Product>>,
    total: u64,
    page: u32,
    limit: u32,
    brands: Vec<(String, u64)>,
    price_bands: Vec<PriceBand>,
    json: Bytes,
}

impl EncodedPage {
    fn of(result: &ProductSearchResult, json: Bytes) -> Self {
        Self {
            products: result.page.items.iter().map(Arc::downgrade).collect(),
            total: result.page.total,
            page: result.page.page,
            limit: result.page.limit,
            brands: result.brands.clone(),
            price_bands: result.price_bands.clone(),
            json,
        }
    }

    /// Whether this is the encoding of `result`.
    fn answers(&self, result: &ProductSearchResult) -> bool {
        let page = &result.page;
        self.products.len() == page.items.len()
            && self
                .products
                .iter()
                .zip(&page.items)
                .all(|(kept, p)| std::ptr::eq(kept.as_ptr(), Arc::as_ptr(p)))
            && (self.total, self.page, self.limit) == (page.total, page.page, page.limit)
            && self.brands == result.brands
            && self.price_bands == result.price_bands
    }
}

/// What the cache holds: a product's encoding, or a page's (by [`ProductJson::page_key`]).
#[derive(Clone, PartialEq, Eq, Hash)]
enum Key {
    Product(ProductId),
    Page(u64),
}

#[derive(Clone)]
enum Entry {
    Product(Encoded),
    Page(Arc<EncodedPage>),
}

/// Weighs an entry by its JSON plus what it pins or keeps: a product's allocation (its
/// contents are freed with the store's last reference), a page's record of its result and its
/// products' allocations (counted again: once a product changes, the page may pin the old one
/// alone).
#[derive(Clone)]
struct EntryWeight;

impl Weighter<Key, Entry> for EntryWeight {
    fn weight(&self, _: &Key, entry: &Entry) -> u64 {
        let bytes = match entry {
            Entry::Product(e) => e.json.len() + std::mem::size_of::<Product>(),
            Entry::Page(p) => {
                let names: usize = p.brands.iter().map(|(b, _)| b.len() + 32).sum();
                p.json.len()
                    + p.products.len() * std::mem::size_of::<Product>()
                    + names
                    + std::mem::size_of::<EncodedPage>()
            }
        };
        bytes as u64
    }
}

/// Products' encoded JSON, and whole pages of it, in one budget of bytes (least recently and
/// least often used go first).
pub struct ProductJson {
    cache: Option<Cache<Key, Entry, EntryWeight>>,
    keys: [RandomState; 2],
}

/// An estimate for sizing the cache's table; entries are weighed by their real length.
const TYPICAL_ENTRY: usize = 2 * 1024;

impl ProductJson {
    /// A cache holding at most about `capacity_bytes` of JSON; 0 encodes every time.
    pub fn new(capacity_bytes: usize) -> Self {
        let cache = (capacity_bytes > 0).then(|| {
            Cache::with_weighter(
                (capacity_bytes / TYPICAL_ENTRY).max(1),
                capacity_bytes as u64,
                EntryWeight,
            )
        });
        Self {
            cache,
            keys: [RandomState::new(), RandomState::new()],
        }
    }

    /// The product's content, in 128 bits.
    fn fingerprint(&self, product: &Product) -> u128 {
        let [a, b] = self.keys.each_ref().map(|keys| keys.hash_one(product));
        (u128::from(a) << 64) | u128::from(b)
    }

    /// The product's JSON (a `Product` schema object).
    fn encode(&self, product: &Arc<Product>) -> Result<Bytes, ApiError> {
        self.encode_shared(product).map(|(json, _)| json)
    }

    /// The product's JSON, and whether it was the entry of this very `Arc` (the store shares
    /// its products).
    fn encode_shared(&self, product: &Arc<Product>) -> Result<(Bytes, bool), ApiError> {
        let Some(cache) = &self.cache else {
            return Ok((encode_view(product)?, false));
        };
        let hit = match cache.get(&Key::Product(product.id)) {
            Some(Entry::Product(hit)) => Some(hit),
            _ => None,
        };
        if let Some(hit) = &hit
            && std::ptr::eq(hit.product.as_ptr(), Arc::as_ptr(product))
        {
            return Ok((hit.json.clone(), true));
        }
        // Another copy than the entry's: hashed to tell whether it is the same content.
        let fingerprint = match hit {
            Some(hit) => {
                let fingerprint = self.fingerprint(product);
                if hit.fingerprint == Some(fingerprint) {
                    return Ok((hit.json, false));
                }
                Some(fingerprint)
            }
            None => None,
        };
        let json = encode_view(product)?;
        cache.insert(
            Key::Product(product.id),
            Entry::Product(Encoded {
                product: Arc::downgrade(product),
                fingerprint,
                json: json.clone(),
            }),
        );
        Ok((json, false))
    }

    /// The answer for one product.
    pub fn product(&self, product: &Arc<Product>) -> Result<EncodedJson<ProductView>, ApiError> {
        Ok(EncodedJson::new(self.encode(product)?, || {
            ProductView::from(&**product)
        }))
    }

    /// Where a page's entry is kept: its products' addresses and counts (the facets are
    /// compared on a hit).
    fn page_key(&self, result: &ProductSearchResult) -> u64 {
        let page = &result.page;
        let mut hasher = self.keys[0].build_hasher();
        for product in &page.items {
            hasher.write_usize(Arc::as_ptr(product) as usize);
        }
        (page.total, page.page, page.limit).hash(&mut hasher);
        hasher.finish()
    }

    /// The answer for a page of products: the page kept whole, or the cached products put
    /// together with the page's counts and facets.
    pub fn page(&self, result: &ProductSearchResult) -> Result<EncodedJson<ProductPage>, ApiError> {
        let documented = || ProductPage::from(result);
        let key = self
            .cache
            .as_ref()
            .map(|cache| (cache, Key::Page(self.page_key(result))));
        if let Some((cache, key)) = &key
            && let Some(Entry::Page(kept)) = cache.get(key)
            && kept.answers(result)
        {
            return Ok(EncodedJson::new(kept.json.clone(), documented));
        }
        let mut shared = true;
        let items = result
            .page
            .items
            .iter()
            .map(|p| {
                let (json, by_arc) = self.encode_shared(p)?;
                shared &= by_arc;
                Ok(json)
            })
            .collect::<Result<Vec<_>, ApiError>>()?;
        let mut out = Vec::with_capacity(items.iter().map(|j| j.len() + 1).sum::<usize>() + 1024);
        out.extend_from_slice(b"{\"items\":[");
        for (i, json) in items.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(json);
        }
        let page = &result.page;
        write!(
            out,
            "],\"total\":{},\"page\":{},\"limit\":{},\"facets\":",
            page.total, page.page, page.limit
        )
        .map_err(encoding_failed)?;
        sonic_rs::to_writer(&mut out, &ProductFacets::from(result)).map_err(encoding_failed)?;
        out.push(b'}');
        let json = Bytes::from(out);
        // Only a store sharing its products can bring the same `Arc`s again.
        if shared && let Some((cache, key)) = key {
            cache.insert(key, Entry::Page(Arc::new(EncodedPage::of(result, json.clone()))));
        }
        Ok(EncodedJson::new(json, documented))
    }
}

fn encode_view(product: &Product) -> Result<Bytes, ApiError> {
    let mut json = sonic_rs::to_vec(&wire::ProductOut::from(product)).map_err(encoding_failed)?;
    // Kept for long in the cache: drop the growth headroom (up to as much again).
    json.shrink_to_fit();
    Ok(Bytes::from(json))
}

pub(crate) fn encoding_failed(e: impl std::error::Error + Send + Sync + 'static) -> ApiError {
    ApiError::from(commerce_core::Error::unexpected(e))
}

/// [`ProductView`]'s JSON written from the product in place, without copying its strings
/// into a view first (a cache miss then costs the encoding alone). [`EncodedJson::new`] compares
/// the two in debug builds, so every HTTP test checks they agree.
pub(crate) mod wire {
    use std::collections::BTreeMap;

    use chrono::{DateTime, Utc};
    use commerce_core::domain::{
        CategoryId, Dimensions, ImageId, Money, Product, ProductId, ProductImage, Seo, Variant,
    };
    use serde::{Serialize, Serializer};

    use crate::api::catalog_types::{status_name, visibility_name};

    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    pub(super) struct ProductOut<'a> {
        id: ProductId,
        name: &'a str,
        slug: &'a str,
        description: &'a str,
        short_description: Option<&'a str>,
        brand: Option<&'a str>,
        tags: &'a [String],
        category_id: Option<CategoryId>,
        subcategory_ids: &'a [CategoryId],
        specifications: &'a BTreeMap<String, String>,
        status: &'static str,
        visibility: &'static str,
        #[serde(serialize_with = "images")]
        images: &'a [ProductImage],
        thumbnail: Option<&'a str>,
        seo: SeoOut<'a>,
        #[serde(serialize_with = "variants")]
        variants: &'a [Variant],
        min_price: Option<MoneyOut>,
        rating: RatingOut,
        sales_count: u64,
        #[serde(serialize_with = "crate::reply::rfc3339")]
        created_at: DateTime<Utc>,
        #[serde(serialize_with = "crate::reply::rfc3339")]
        updated_at: DateTime<Utc>,
    }

    impl<'a> From<&'a Product> for ProductOut<'a> {
        fn from(p: &'a Product) -> Self {
            Self {
                id: p.id,
                name: &p.name,
                slug: p.slug.as_str(),
                description: &p.description,
                short_description: p.short_description.as_deref(),
                brand: p.brand.as_deref(),
                tags: &p.tags,
                category_id: p.category_id,
                subcategory_ids: &p.subcategory_ids,
                specifications: &p.specifications,
                status: status_name(p.status),
                visibility: visibility_name(p.visibility),
                images: &p.images,
                thumbnail: p.thumbnail.as_deref(),
                seo: SeoOut::from(&p.seo),
                variants: &p.variants,
                min_price: p.min_price().map(MoneyOut::from),
                rating: RatingOut {
                    count: p.rating.count,
                    average: p.rating.average(),
                },
                sales_count: p.sales_count,
                created_at: p.created_at,
                updated_at: p.updated_at,
            }
        }
    }

    fn images<S: Serializer>(images: &&[ProductImage], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(images.iter().map(ImageOut::from))
    }

    fn variants<S: Serializer>(variants: &&[Variant], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(variants.iter().map(VariantOut::from))
    }

    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct ImageOut<'a> {
        id: ImageId,
        url: &'a str,
        alt: Option<&'a str>,
        content_type: &'a str,
        width: u32,
        height: u32,
        size_bytes: u64,
    }

    impl<'a> From<&'a ProductImage> for ImageOut<'a> {
        fn from(i: &'a ProductImage) -> Self {
            Self {
                id: i.id,
                url: &i.url,
                alt: i.alt.as_deref(),
                content_type: &i.content_type,
                width: i.width,
                height: i.height,
                size_bytes: i.size_bytes,
            }
        }
    }

    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct SeoOut<'a> {
        meta_title: Option<&'a str>,
        meta_description: Option<&'a str>,
        keywords: &'a [String],
    }

    impl<'a> From<&'a Seo> for SeoOut<'a> {
        fn from(s: &'a Seo) -> Self {
            Self {
                meta_title: s.meta_title.as_deref(),
                meta_description: s.meta_description.as_deref(),
                keywords: &s.keywords,
            }
        }
    }

    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct VariantOut<'a> {
        sku: &'a str,
        name: Option<&'a str>,
        options: &'a BTreeMap<String, String>,
        price: MoneyOut,
        compare_at_price: Option<MoneyOut>,
        weight_grams: Option<u32>,
        dimensions: Option<DimensionsOut>,
    }

    impl<'a> From<&'a Variant> for VariantOut<'a> {
        fn from(v: &'a Variant) -> Self {
            Self {
                sku: v.sku.as_str(),
                name: v.name.as_deref(),
                options: &v.options,
                price: v.price.into(),
                compare_at_price: v.compare_at_price.map(MoneyOut::from),
                weight_grams: v.weight_grams,
                dimensions: v.dimensions.map(DimensionsOut::from),
            }
        }
    }

    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct DimensionsOut {
        length_mm: u32,
        width_mm: u32,
        height_mm: u32,
    }

    impl From<Dimensions> for DimensionsOut {
        fn from(d: Dimensions) -> Self {
            Self {
                length_mm: d.length_mm,
                width_mm: d.width_mm,
                height_mm: d.height_mm,
            }
        }
    }

    #[derive(Serialize)]
    pub(crate) struct MoneyOut {
        amount: i64,
        #[serde(serialize_with = "currency")]
        currency: commerce_core::domain::Currency,
    }

    impl From<Money> for MoneyOut {
        fn from(m: Money) -> Self {
            Self {
                amount: m.amount_minor,
                currency: m.currency,
            }
        }
    }

    fn currency<S: Serializer>(c: &commerce_core::domain::Currency, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(c.as_str())
    }

    #[derive(Serialize)]
    struct RatingOut {
        count: u64,
        average: f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use commerce_core::domain::{
        CategoryId, Currency, Dimensions, ImageId, Money, ProductImage, ProductStatus, RatingSummary, Seo, Sku, Slug,
        Variant, Visibility,
    };
    use poem_openapi::types::ToJSON;

    fn product(n: usize) -> Product {
        let at = Utc::now();
        Product {
            id: ProductId::new(),
            name: format!("Product {n}"),
            slug: Slug::parse(&format!("product-{n}")).unwrap(),
            description: "A product to encode. ".repeat(20),
            short_description: None,
            brand: Some("Brand".to_owned()),
            tags: vec!["tag".to_owned()],
            category_id: None,
            subcategory_ids: Vec::new(),
            specifications: Default::default(),
            status: ProductStatus::Active,
            visibility: Visibility::Public,
            images: Vec::new(),
            thumbnail: None,
            seo: Seo::default(),
            variants: vec![Variant {
                sku: Sku::parse(&format!("SKU-{n}")).unwrap(),
                name: None,
                options: Default::default(),
                price: Money {
                    amount_minor: 1_999,
                    currency: Currency::USD,
                },
                compare_at_price: None,
                weight_grams: None,
                dimensions: None,
            }],
            rating: RatingSummary::default(),
            sales_count: 0,
            created_at: at,
            updated_at: at,
        }
    }

    #[test]
    fn an_unchanged_product_is_served_from_the_cache_and_a_changed_one_is_encoded_again() {
        let json = ProductJson::new(1 << 20);
        let product = Arc::new(product(1));
        let first = json.encode(&product).unwrap();
        let again = json.encode(&product).unwrap();
        assert_eq!(
            first.as_ptr(),
            again.as_ptr(),
            "the same Arc is served the cached bytes"
        );
        // A store decoding a fresh copy per read: the second read is encoded again (and
        // fingerprinted), the third and later ones are served the cached bytes.
        let second = json.encode(&Arc::new(Product::clone(&product))).unwrap();
        assert_eq!(second, first);
        let third = json.encode(&Arc::new(Product::clone(&product))).unwrap();
        assert_eq!(
            third.as_ptr(),
            second.as_ptr(),
            "an equal copy (a database read) is served the cached bytes"
        );
        let mut changed = Product::clone(&product);
        changed.name = "Renamed".to_owned();
        changed.sales_count += 1;
        let changed_json = json.encode(&Arc::new(changed)).unwrap();
        let decoded: serde_json::Value = serde_json::from_slice(&changed_json).unwrap();
        assert_eq!(
            decoded["name"], "Renamed",
            "a changed product is never served its old JSON"
        );
        assert_eq!(decoded["salesCount"], product.sales_count + 1);
        let stale = json.encode(&product).unwrap();
        let decoded: serde_json::Value = serde_json::from_slice(&stale).unwrap();
        assert_eq!(decoded["name"], "Product 1", "nor an old version the new JSON");
    }

    #[test]
    fn a_product_changed_in_place_by_its_store_is_encoded_again() {
        // What the in-memory store does on a write: `Arc::make_mut` on its own copy.
        let json = ProductJson::new(1 << 20);
        let mut stored = Arc::new(product(2));
        json.encode(&stored).unwrap();
        assert_eq!(Arc::strong_count(&stored), 1, "the cache keeps no product alive");
        Arc::make_mut(&mut stored).sales_count = 41;
        let decoded: serde_json::Value = serde_json::from_slice(&json.encode(&stored).unwrap()).unwrap();
        assert_eq!(decoded["salesCount"], 41);
        Arc::make_mut(&mut stored).name = "Changed twice".to_owned();
        let decoded: serde_json::Value = serde_json::from_slice(&json.encode(&stored).unwrap()).unwrap();
        assert_eq!(decoded["name"], "Changed twice");
    }

    #[test]
    fn the_in_place_encoding_is_the_documented_one_for_every_field() {
        let mut p = product(7);
        p.short_description = Some("Short \"quoted\" teaser".to_owned());
        p.category_id = Some(CategoryId::new());
        p.subcategory_ids = vec![CategoryId::new()];
        p.specifications = [("material".to_owned(), "oak".to_owned())].into();
        p.status = ProductStatus::Archived;
        p.visibility = Visibility::Featured;
        p.images = vec![ProductImage {
            id: ImageId::new(),
            url: "https://img.example.com/1.jpg".to_owned(),
            storage_key: "products/1.jpg".to_owned(),
            alt: Some("front".to_owned()),
            content_type: "image/jpeg".to_owned(),
            width: 800,
            height: 600,
            size_bytes: 12_345,
        }];
        p.thumbnail = Some("https://img.example.com/1.jpg".to_owned());
        p.seo = Seo {
            meta_title: Some("Title".to_owned()),
            meta_description: None,
            keywords: vec!["oak".to_owned()],
        };
        let mut v = p.variants[0].clone();
        v.sku = Sku::parse("SKU-7-B").unwrap();
        v.name = Some("Large".to_owned());
        v.options = [("size".to_owned(), "L".to_owned())].into();
        v.compare_at_price = Some(v.price);
        v.weight_grams = Some(900);
        v.dimensions = Some(Dimensions {
            length_mm: 1,
            width_mm: 2,
            height_mm: 3,
        });
        p.variants.push(v);
        p.rating = RatingSummary {
            count: 3,
            sum: 11,
            histogram: [0, 0, 1, 0, 2],
        };
        let p = Arc::new(p);
        let served: serde_json::Value = serde_json::from_slice(&encode_view(&p).unwrap()).unwrap();
        assert_eq!(Some(served), ProductView::from(&*p).to_json());
    }

    #[test]
    fn the_cache_stays_within_its_bytes() {
        let json = ProductJson::new(16 * 1024);
        for n in 0..200 {
            json.encode(&Arc::new(product(n))).unwrap();
        }
        let cache = json.cache.as_ref().unwrap();
        assert!(cache.weight() <= 16 * 1024, "held {} bytes", cache.weight());
        assert!(cache.len() < 200, "older entries were evicted, {} held", cache.len());
    }

    fn result(items: Vec<Arc<Product>>, brands: Vec<(String, u64)>) -> ProductSearchResult {
        ProductSearchResult {
            page: commerce_core::domain::Page {
                total: 40,
                page: 1,
                limit: 20,
                items,
            },
            brands,
            price_bands: vec![PriceBand {
                min: 0,
                max: Some(2_500),
                count: 40,
            }],
        }
    }

    fn page_bytes(json: &ProductJson, r: &ProductSearchResult) -> Bytes {
        json.page(r).unwrap().bytes().clone()
    }

    #[test]
    fn a_page_of_shared_products_is_kept_whole_until_a_product_or_a_count_changes() {
        let json = ProductJson::new(1 << 20);
        let products: Vec<_> = (0..3).map(|n| Arc::new(product(n))).collect();
        let brands = vec![("Brand".to_owned(), 40)];
        let r = result(products.clone(), brands.clone());
        // The first read encodes the products; the second finds them by `Arc` and keeps the page.
        let first = page_bytes(&json, &r);
        let kept = page_bytes(&json, &r);
        assert_eq!(first, kept);
        let third = page_bytes(&json, &r);
        assert_eq!(third.as_ptr(), kept.as_ptr(), "the kept page is served as it is");

        // One product changed (a new `Arc`, as the store makes): the page is made again.
        let mut changed = products.clone();
        let mut renamed = product(1);
        renamed.id = products[1].id;
        renamed.name = "Renamed".to_owned();
        changed[1] = Arc::new(renamed);
        let after_change = page_bytes(&json, &result(changed, brands.clone()));
        assert_ne!(after_change.as_ptr(), kept.as_ptr());
        assert!(String::from_utf8_lossy(&after_change).contains("\"Renamed\""));

        // Same products, other counts: the page is made again with them.
        let recount = page_bytes(&json, &result(products.clone(), vec![("Brand".to_owned(), 39)]));
        assert_ne!(recount.as_ptr(), kept.as_ptr());
        assert!(String::from_utf8_lossy(&recount).contains("\"count\":39"));
        // Another order of the same products is another page.
        let reversed: Vec<_> = products.iter().rev().cloned().collect();
        let other_order = page_bytes(&json, &result(reversed.clone(), brands.clone()));
        assert_ne!(other_order, kept);
        assert_eq!(
            page_bytes(&json, &r).as_ptr(),
            kept.as_ptr(),
            "the first page is still kept"
        );
    }

    #[test]
    fn pages_of_fresh_copies_are_not_kept() {
        let json = ProductJson::new(1 << 20);
        let originals: Vec<_> = (0..3).map(product).collect();
        for _ in 0..4 {
            // A store decoding every read hands out new `Arc`s of the same products.
            let copies = originals.iter().cloned().map(Arc::new).collect();
            page_bytes(&json, &result(copies, Vec::new()));
        }
        // Only the three products are kept.
        assert_eq!(json.cache.as_ref().unwrap().len(), 3);
    }
}
