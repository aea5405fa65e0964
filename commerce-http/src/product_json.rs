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
//! A product's entry is kept LZ4-compressed against a dictionary: the keys every product's JSON
//! repeats, followed, once this many have been encoded, by the first few products' own JSON,
//! whose brands, wording and values the rest of a catalog repeats too (entries 4.4× smaller
//! than the JSON on the demo catalog, 2.9× against the keys alone). Unpacking 2 KB costs well
//! under a microsecond where encoding it costs ~6 µs out of cache, and the default budget then
//! holds a 100,000-product catalog instead of a third of it, so random pages of a large catalog
//! are put together from kept products instead of encoded.
//!
//! Whole pages are kept too, in a tenth of the budget of their own, for stores that share their
//! products:
//! putting 20 fragments together (20 lookups, a 40 KB copy, the facets) was a fifth of a
//! listing's CPU. A page entry answers only the very same products (by `Arc`, pinned by `Weak`s
//! as above) in the same order with the same counts and facets, so it cannot be stale either.

use std::hash::{BuildHasher, Hash as _, Hasher as _, RandomState};
use std::io::Write as _;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};

use bytes::Bytes;
use commerce_core::domain::{PageRequest, PriceBand, Product, ProductId, ProductSearchResult};
use commerce_core::services::{CatalogService, SearchInput};
use quick_cache::Weighter;
use quick_cache::sync::Cache;

use crate::api::catalog_types::{ProductFacets, ProductPage, ProductView};
use crate::problem::ApiError;
use crate::reply::EncodedJson;

/// A product's encoding and what identifies the product it is the encoding of. Kept behind an
/// `Arc`: a hit then costs one count on the entry, where cloning the fields touched the
/// product's allocation (the `Weak`) and a shared buffer's count besides — at 100,000 products
/// each of those is a cache miss, twenty times a page.
struct Encoded {
    product: Weak<Product>,
    /// `None` until a read of another `Arc` than `product` (see the module docs).
    fingerprint: Option<u128>,
    /// The JSON as an LZ4 block against [`ProductJson::sampled`] if `sampled`, else against
    /// [`ProductJson::keys_only`].
    packed: Box<[u8]>,
    sampled: bool,
    /// The JSON's length.
    len: usize,
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

/// Weighs a product's entry by its packed JSON, itself and the allocation its `Weak` pins (the
/// product's contents are freed with the store's last reference, its allocation only with the
/// entry).
#[derive(Clone)]
struct ProductWeight;

impl Weighter<ProductId, Arc<Encoded>> for ProductWeight {
    fn weight(&self, _: &ProductId, entry: &Arc<Encoded>) -> u64 {
        // The `Arc`'s allocation is its two counts and the entry.
        let entry_bytes = 2 * std::mem::size_of::<usize>() + std::mem::size_of::<Encoded>();
        (entry.packed.len() + entry_bytes + std::mem::size_of::<Product>()) as u64
    }
}

/// Weighs a page by its JSON, its record of the result and its products' allocations (counted
/// again: once a product changes, the page may pin the old one alone).
#[derive(Clone)]
struct PageWeight;

impl Weighter<u64, Arc<EncodedPage>> for PageWeight {
    fn weight(&self, _: &u64, page: &Arc<EncodedPage>) -> u64 {
        let names: usize = page.brands.iter().map(|(b, _)| b.len() + 32).sum();
        let bytes = page.json.len()
            + page.products.len() * std::mem::size_of::<Product>()
            + names
            + std::mem::size_of::<EncodedPage>();
        bytes as u64
    }
}

/// Products' encoded JSON, and whole pages of it, each in its own budget of bytes (least
/// recently and least often used go first).
///
/// Pages get a tenth of the budget, so that the pages of a large catalog, each read too seldom
/// to be worth keeping, never push out the products they are put together from.
pub struct ProductJson {
    products: Option<Cache<ProductId, Arc<Encoded>, ProductWeight>>,
    pages: Option<Cache<u64, Arc<EncodedPage>, PageWeight>>,
    keys: [RandomState; 2],
    /// What products' entries are compressed against until `sampled` is made (see
    /// [`dictionary`]).
    keys_only: Vec<u8>,
    /// What they are compressed against from then on: `keys_only` followed by the JSON of the
    /// first [`SAMPLES`] products encoded, gathered in `samples`.
    sampled: OnceLock<Vec<u8>>,
    samples: Mutex<Vec<Vec<u8>>>,
    /// Products encoded, for tests to tell a kept entry from a new encoding.
    #[cfg(test)]
    encoded: std::sync::atomic::AtomicUsize,
}

/// Products whose JSON joins the dictionary, and the most of it that does: a larger dictionary
/// made entries little smaller (4.3× with 8 demo products, 4.4× with 4) and costs compressing
/// more (LZ4 indexes the dictionary on every call: 3.4 µs a product at 7 KB, 5 µs at 15 KB).
const SAMPLES: usize = 4;
const SAMPLED_BYTES: usize = 8 * 1024;

/// The budget's share for pages: a tenth. Hot pages (a category's first, a common search) fit
/// many times over; a fifth bought random pages of 10,000 and 100,000 products no speed (A/B,
/// 32 clients) and cost 10-16 MiB more.
const PAGE_SHARE: usize = 10;
/// A product's JSON, about (for buffers).
const TYPICAL_JSON: usize = 2 * 1024;
/// A page's JSON around its products and facets, at most: the keys and three numbers.
const PAGE_FRAME: usize = 96;
/// A product entry's weight and a page's, about (for sizing the caches' tables; entries are
/// weighed by their real length).
const TYPICAL_PRODUCT_WEIGHT: usize = 1024;
const TYPICAL_PAGE_WEIGHT: usize = 48 * 1024;

impl ProductJson {
    /// Caches holding at most about `capacity_bytes` in all; 0 encodes every time.
    pub fn new(capacity_bytes: usize) -> Self {
        let for_pages = capacity_bytes / PAGE_SHARE;
        Self {
            products: (capacity_bytes > 0).then(|| {
                let bytes = capacity_bytes - for_pages;
                Cache::with_weighter((bytes / TYPICAL_PRODUCT_WEIGHT).max(1), bytes as u64, ProductWeight)
            }),
            pages: (for_pages > 0)
                .then(|| Cache::with_weighter((for_pages / TYPICAL_PAGE_WEIGHT).max(1), for_pages as u64, PageWeight)),
            keys: [RandomState::new(), RandomState::new()],
            keys_only: dictionary(),
            sampled: OnceLock::new(),
            samples: Mutex::new(Vec::with_capacity(SAMPLES)),
            #[cfg(test)]
            encoded: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// The product's content, in 128 bits.
    fn fingerprint(&self, product: &Product) -> u128 {
        let [a, b] = self.keys.each_ref().map(|keys| keys.hash_one(product));
        (u128::from(a) << 64) | u128::from(b)
    }

    /// The product's JSON (a `Product` schema object).
    fn encode(&self, product: &Arc<Product>) -> Result<Bytes, ApiError> {
        let mut out = Vec::with_capacity(TYPICAL_JSON);
        self.write(product, &mut out)?;
        Ok(Bytes::from(out))
    }

    /// The entry kept for the product's id, if any (not yet checked to be this product's).
    fn kept(&self, product: &Product) -> Option<Arc<Encoded>> {
        self.products.as_ref()?.get(&product.id)
    }

    /// Appends the product's JSON to `out`: unpacked from its entry, or encoded (and kept).
    /// `true` when the entry was this very `Arc`'s (the store shares its products).
    fn write(&self, product: &Arc<Product>, out: &mut Vec<u8>) -> Result<bool, ApiError> {
        self.write_kept(product, self.kept(product), out)
    }

    /// [`Self::write`] with the product's entry already looked up.
    fn write_kept(
        &self,
        product: &Arc<Product>,
        hit: Option<Arc<Encoded>>,
        out: &mut Vec<u8>,
    ) -> Result<bool, ApiError> {
        let Some(cache) = &self.products else {
            self.encode_into(product, out)?;
            return Ok(false);
        };
        if let Some(hit) = &hit
            && std::ptr::eq(hit.product.as_ptr(), Arc::as_ptr(product))
            && self.unpack(hit, out)
        {
            return Ok(true);
        }
        // Another copy than the entry's: hashed to tell whether it is the same content.
        let fingerprint = match hit {
            Some(hit) => {
                let fingerprint = self.fingerprint(product);
                if hit.fingerprint == Some(fingerprint) && self.unpack(&hit, out) {
                    return Ok(false);
                }
                Some(fingerprint)
            }
            None => None,
        };
        let start = out.len();
        self.encode_into(product, out)?;
        let json = out.get(start..).unwrap_or_default();
        let (packed, sampled) = self.pack(json);
        cache.insert(
            product.id,
            Arc::new(Encoded {
                product: Arc::downgrade(product),
                fingerprint,
                packed,
                sampled,
                len: json.len(),
            }),
        );
        Ok(false)
    }

    /// `json` as an LZ4 block, in an allocation of its own size (it is kept), and whether it is
    /// packed against the sampled dictionary. Until that is made, `json` may join it.
    fn pack(&self, json: &[u8]) -> (Box<[u8]>, bool) {
        let sampled = self.sampled.get().or_else(|| self.sample(json));
        let dictionary = sampled.unwrap_or(&self.keys_only);
        (
            lz4_flex::block::compress_with_dict(json, dictionary).into_boxed_slice(),
            sampled.is_some(),
        )
    }

    /// Adds `json` to the samples; the dictionary, once there are [`SAMPLES`].
    fn sample(&self, json: &[u8]) -> Option<&Vec<u8>> {
        let mut samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(made) = self.sampled.get() {
            return Some(made);
        }
        samples.push(json.get(..SAMPLED_BYTES / SAMPLES).unwrap_or(json).to_vec());
        if samples.len() < SAMPLES {
            return None;
        }
        let mut dictionary = self.keys_only.clone();
        dictionary.extend(samples.drain(..).flatten());
        Some(self.sampled.get_or_init(|| dictionary))
    }

    /// Appends the entry's JSON to `out`; `false`, with `out` as it was, if it does not unpack
    /// (it always does: the entry is then encoded again rather than trusted).
    fn unpack(&self, entry: &Encoded, out: &mut Vec<u8>) -> bool {
        let dictionary = if entry.sampled {
            match self.sampled.get() {
                Some(sampled) => sampled,
                None => return false,
            }
        } else {
            &self.keys_only
        };
        let start = out.len();
        out.resize(start + entry.len, 0);
        let into = out.get_mut(start..).unwrap_or_default();
        match lz4_flex::block::decompress_into_with_dict(&entry.packed, into, dictionary) {
            Ok(n) if n == entry.len => true,
            _ => {
                out.truncate(start);
                false
            }
        }
    }

    fn encode_into(&self, product: &Product, out: &mut Vec<u8>) -> Result<(), ApiError> {
        #[cfg(test)]
        self.encoded.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        encode_into(product, out)
    }

    /// The answer for one product.
    pub fn product(&self, product: &Arc<Product>) -> Result<EncodedJson<ProductView>, ApiError> {
        Ok(EncodedJson::new(self.encode(product)?, || {
            ProductView::from(&**product)
        }))
    }

    /// Encodes the listed products into the cache, newest first, a hundred at a time, until
    /// every one is kept or the next hundred would not fit; returns how many it encoded.
    /// Without it the first visitors after a start each pay for encoding their products:
    /// random pages of a 100,000-product catalog were ~1.5× slower at the 99th percentile
    /// until their products were kept. Worth it only for a store that shares its products (see the module docs): a
    /// decoding store's next read brings another copy, which must be hashed to be matched.
    pub async fn warm(&self, catalog: &CatalogService) -> usize {
        let Some(cache) = &self.products else {
            return 0;
        };
        let mut encoded = 0;
        let mut scratch = Vec::with_capacity(TYPICAL_JSON);
        let mut page = 1;
        while cache.weight() < cache.capacity() {
            let Ok(window) = PageRequest::new(page, PageRequest::MAX_LIMIT) else {
                break;
            };
            let input = SearchInput {
                page: window,
                ..SearchInput::default()
            };
            let Ok(result) = catalog.search(None, input).await else {
                break;
            };
            for product in &result.page.items {
                scratch.clear();
                if self.write(product, &mut scratch).is_ok() {
                    encoded += 1;
                }
            }
            // The last page, or one more would not fit: warming must not evict what it (or the
            // traffic meanwhile) has kept.
            let per_entry = cache.weight() / (cache.len().max(1) as u64);
            if result.page.items.len() < window.limit() as usize
                || cache.weight() + per_entry * u64::from(window.limit()) > cache.capacity()
            {
                break;
            }
            page += 1;
            // A hundred products is ~1 ms of encoding: requests arriving meanwhile go first.
            tokio::task::yield_now().await;
        }
        encoded
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
        let key = self.pages.as_ref().map(|cache| (cache, self.page_key(result)));
        if let Some((cache, key)) = &key
            && let Some(kept) = cache.get(key)
            && kept.answers(result)
        {
            return Ok(EncodedJson::new(kept.json.clone(), documented));
        }
        let page = &result.page;
        let facets = sonic_rs::to_vec(&ProductFacets::from(result)).map_err(encoding_failed)?;
        let entries: Vec<_> = page.items.iter().map(|p| self.kept(p)).collect();
        // Sized from the kept entries' own lengths: a kept page lives a while, and an estimate
        // a few KB over its length put it in the allocator's next size class (48 KiB for a
        // 37 KB page of 20 demo products, 40 KiB when exact).
        let products: usize = entries
            .iter()
            .map(|k| k.as_ref().map_or(TYPICAL_JSON, |k| k.len) + 1)
            .sum();
        let mut out = Vec::with_capacity(products + PAGE_FRAME + facets.len());
        let mut shared = true;
        out.extend_from_slice(b"{\"items\":[");
        for (i, (product, entry)) in page.items.iter().zip(entries).enumerate() {
            if i > 0 {
                out.push(b',');
            }
            shared &= self.write_kept(product, entry, &mut out)?;
        }
        write!(
            out,
            "],\"total\":{},\"page\":{},\"limit\":{},\"facets\":",
            page.total, page.page, page.limit
        )
        .map_err(encoding_failed)?;
        out.extend_from_slice(&facets);
        out.push(b'}');
        let json = Bytes::from(out);
        // Only a store sharing its products can bring the same `Arc`s again.
        if shared && let Some((cache, key)) = key {
            cache.insert(key, Arc::new(EncodedPage::of(result, json.clone())));
        }
        Ok(EncodedJson::new(json, documented))
    }
}

/// Appends the product's JSON to `out`.
fn encode_into(product: &Product, out: &mut Vec<u8>) -> Result<(), ApiError> {
    sonic_rs::to_writer(out, &wire::ProductOut::from(product)).map_err(encoding_failed)
}

/// The JSON of a product with every field, one of each nested object, and empty strings: the
/// keys every product's JSON repeats, in their order, with the enum values and formats most
/// products share. The first products' entries are compressed against it, the rest against it
/// and those products' JSON.
fn dictionary() -> Vec<u8> {
    use commerce_core::domain::{
        Attributes, CategoryId, Currency, Dimensions, ImageId, Money, ProductImage, ProductStatus, RatingSummary, Seo,
        Sku, Slug, Variant, Visibility,
    };
    let at = chrono::DateTime::UNIX_EPOCH;
    let price = Money::new(0, Currency::USD);
    let text = || Some(String::new());
    let (Ok(slug), Ok(sku)) = (Slug::parse("x"), Sku::parse("X")) else {
        return Vec::new();
    };
    let product = Product {
        id: ProductId::new(),
        name: String::new(),
        slug,
        description: String::new(),
        short_description: text(),
        brand: text(),
        tags: Vec::new(),
        category_id: Some(CategoryId::new()),
        subcategory_ids: Vec::new(),
        specifications: Attributes::from_iter([(String::new(), String::new())]),
        status: ProductStatus::Active,
        visibility: Visibility::Public,
        images: vec![ProductImage {
            id: ImageId::new(),
            url: String::new(),
            storage_key: String::new(),
            alt: text(),
            content_type: "image/jpeg".to_owned(),
            width: 0,
            height: 0,
            size_bytes: 0,
        }],
        thumbnail: text(),
        seo: Seo {
            meta_title: text(),
            meta_description: text(),
            keywords: Vec::new(),
        },
        variants: vec![Variant {
            sku,
            name: text(),
            options: Attributes::from_iter([("color".to_owned(), String::new()), ("size".to_owned(), String::new())]),
            price,
            compare_at_price: Some(price),
            weight_grams: Some(0),
            dimensions: Some(Dimensions {
                length_mm: 0,
                width_mm: 0,
                height_mm: 0,
            }),
        }],
        rating: RatingSummary::default(),
        sales_count: 0,
        created_at: at,
        updated_at: at,
    };
    let mut out = Vec::with_capacity(TYPICAL_JSON);
    // An empty dictionary if it ever failed: entries would only be bigger.
    if encode_into(&product, &mut out).is_err() {
        out.clear();
    }
    out
}

pub(crate) fn encoding_failed(e: impl std::error::Error + Send + Sync + 'static) -> ApiError {
    ApiError::from(commerce_core::Error::unexpected(e))
}

/// [`ProductView`]'s JSON written from the product in place, without copying its strings
/// into a view first (a cache miss then costs the encoding alone). [`EncodedJson::new`] compares
/// the two in debug builds, so every HTTP test checks they agree.
pub(crate) mod wire {
    use chrono::{DateTime, Utc};
    use commerce_core::domain::{
        Attributes, CategoryId, Dimensions, ImageId, Money, Product, ProductId, ProductImage, Seo, Variant,
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
        specifications: &'a Attributes,
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
        options: &'a Attributes,
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
        Attributes, CategoryId, Currency, Dimensions, ImageId, Money, ProductImage, ProductStatus, RatingSummary, Seo,
        Sku, Slug, Variant, Visibility,
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
        let encoded = || json.encoded.load(std::sync::atomic::Ordering::Relaxed);
        let product = Arc::new(product(1));
        let first = json.encode(&product).unwrap();
        let again = json.encode(&product).unwrap();
        assert_eq!(again, first, "the kept entry unpacks to the same JSON");
        assert_eq!(encoded(), 1, "the same Arc is served its kept entry");
        // A store decoding a fresh copy per read: the second read is encoded again (and
        // fingerprinted), the third and later ones are served the kept entry.
        let second = json.encode(&Arc::new(Product::clone(&product))).unwrap();
        assert_eq!(second, first);
        assert_eq!(encoded(), 2);
        let third = json.encode(&Arc::new(Product::clone(&product))).unwrap();
        assert_eq!(third, first);
        assert_eq!(encoded(), 2, "an equal copy (a database read) is served the kept entry");
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
        p.specifications = Attributes::from_iter([("material".to_owned(), "oak".to_owned())]);
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
        v.options = Attributes::from_iter([("size".to_owned(), "L".to_owned())]);
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
        let mut encoded = Vec::new();
        encode_into(&p, &mut encoded).unwrap();
        let served: serde_json::Value = serde_json::from_slice(&encoded).unwrap();
        assert_eq!(Some(served), ProductView::from(&*p).to_json());
    }

    #[test]
    fn entries_are_kept_compressed_and_unpack_to_the_encoding() {
        let json = ProductJson::new(1 << 20);
        let p = Arc::new(product(3));
        let fresh = json.encode(&p).unwrap();
        let entry = json
            .products
            .as_ref()
            .unwrap()
            .get(&p.id)
            .expect("the product's entry is kept");
        assert_eq!(entry.len, fresh.len());
        assert!(
            entry.packed.len() * 2 < fresh.len(),
            "kept in {} bytes for {} of JSON",
            entry.packed.len(),
            fresh.len()
        );
        // A page puts kept entries together unpacked, each exactly as encoded.
        let page = page_bytes(&json, &result(vec![p.clone(), p.clone()], Vec::new()));
        let decoded: serde_json::Value = serde_json::from_slice(&page).unwrap();
        let expected: serde_json::Value = serde_json::from_slice(&fresh).unwrap();
        assert_eq!(decoded["items"][0], expected);
        assert_eq!(decoded["items"][1], expected);
        // An entry that does not unpack (never seen; guarded all the same) is encoded again.
        let broken = Encoded {
            product: entry.product.clone(),
            fingerprint: entry.fingerprint,
            packed: Box::from(&b"\xff\xff"[..]),
            sampled: entry.sampled,
            len: entry.len,
        };
        let mut out = b"kept".to_vec();
        assert!(!json.unpack(&broken, &mut out));
        assert_eq!(out, b"kept", "a failed unpack leaves the output as it was");
    }

    #[test]
    fn after_the_first_products_entries_are_packed_against_their_json_too() {
        let json = ProductJson::new(1 << 20);
        let entry = |p: &Arc<Product>| json.products.as_ref().unwrap().get(&p.id).unwrap();
        let first: Vec<_> = (0..SAMPLES).map(|n| Arc::new(product(n))).collect();
        for p in &first {
            json.encode(p).unwrap();
        }
        let (before, last) = first.split_at(SAMPLES - 1);
        assert!(before.iter().all(|p| !entry(p).sampled), "until the dictionary is made");
        assert!(entry(&last[0]).sampled, "the last sample makes it");
        let later = Arc::new(product(SAMPLES + 1));
        let fresh = json.encode(&later).unwrap();
        let kept = entry(&later);
        assert!(kept.sampled);
        let keys_only = lz4_flex::block::compress_with_dict(&fresh, &json.keys_only);
        assert!(
            kept.packed.len() < keys_only.len() / 2,
            "{} bytes against the samples, {} against the keys",
            kept.packed.len(),
            keys_only.len()
        );
        // Both kinds unpack to exactly what was encoded, alone or on a page.
        assert_eq!(json.encode(&later).unwrap(), fresh);
        assert_eq!(json.encoded.load(std::sync::atomic::Ordering::Relaxed), SAMPLES + 1);
        let page = page_bytes(&json, &result(vec![first[0].clone(), later.clone()], Vec::new()));
        let decoded: serde_json::Value = serde_json::from_slice(&page).unwrap();
        assert_eq!(decoded["items"][0]["name"], "Product 0");
        assert_eq!(
            decoded["items"][1],
            serde_json::from_slice::<serde_json::Value>(&fresh).unwrap()
        );
    }

    /// An in-memory engine with `products` demo products.
    async fn demo_store(products: usize) -> commerce_core::Commerce {
        let config = commerce_core::CommerceConfig {
            hash_cost: commerce_core::services::HashCost::insecure_for_tests(),
            tokens: commerce_core::services::TokenConfig::ephemeral(),
            ..Default::default()
        };
        let commerce = commerce_core::Commerce::in_memory(config).unwrap();
        let owner = commerce
            .accounts()
            .ensure_superadmin("owner@warm.example", "owner-password-123")
            .await
            .unwrap();
        let options = commerce_core::demo::DemoOptions {
            products,
            ..Default::default()
        };
        commerce_core::demo::seed(&commerce, &commerce_core::demo::seeding_principal(owner.id), options)
            .await
            .unwrap();
        commerce
    }

    #[tokio::test]
    async fn warming_keeps_every_listed_product_so_pages_encode_nothing() {
        let commerce = demo_store(230).await;
        let listed = commerce.catalog().search(None, SearchInput::default()).await.unwrap();
        let json = ProductJson::new(1 << 24);
        let warmed = json.warm(commerce.catalog()).await;
        assert_eq!(warmed as u64, listed.page.total, "one encoding per listed product");
        assert_eq!(json.products.as_ref().unwrap().len() as u64, listed.page.total);
        let input = SearchInput {
            page: PageRequest::new(3, 20).unwrap(),
            ..SearchInput::default()
        };
        let page = commerce.catalog().search(None, input).await.unwrap();
        assert_eq!(page.page.items.len(), 20);
        let served = page_bytes(&json, &page);
        assert_eq!(
            json.encoded.load(std::sync::atomic::Ordering::Relaxed),
            warmed,
            "the page was put together from kept products"
        );
        let decoded: serde_json::Value = serde_json::from_slice(&served).unwrap();
        assert_eq!(decoded["items"][19]["id"], page.page.items[19].id.to_string());
    }

    #[tokio::test]
    async fn warming_stops_once_the_cache_is_full() {
        let commerce = demo_store(230).await;
        let json = ProductJson::new(64 * 1024);
        let warmed = json.warm(commerce.catalog()).await;
        let cache = json.products.as_ref().unwrap();
        assert!(warmed < 230, "{warmed} encoded");
        assert!(cache.weight() <= cache.capacity());
        // A hundred products at a time, and none once the next hundred would not fit.
        assert_eq!(warmed, 100, "{} kept", cache.len());
        assert_eq!(
            ProductJson::new(0).warm(commerce.catalog()).await,
            0,
            "no cache, no warming"
        );
    }

    #[test]
    fn the_cache_stays_within_its_bytes() {
        let json = ProductJson::new(16 * 1024);
        for n in 0..200 {
            json.encode(&Arc::new(product(n))).unwrap();
        }
        let cache = json.products.as_ref().unwrap();
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
        assert_eq!(json.products.as_ref().unwrap().len(), 3);
        assert_eq!(json.pages.as_ref().unwrap().len(), 0);
    }
}
