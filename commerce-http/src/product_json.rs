//! Products' JSON, written field by field straight from the store's products, and whole
//! listing pages of it, kept while they show the very same products.
//!
//! A page of 20 products is ~40 KB of JSON. Through serde (sonic-rs, from a borrowing view) a
//! demo product cost ~2.8 µs, which is why this module used to keep every product's JSON
//! (LZ4-compressed against a dictionary, ~640 bytes of RSS a product: 60 MiB for a
//! 100,000-product catalog, 60 % of the host's whole allowance over its data). Written here with
//! the keys as constants, the numbers by itoa and ryu and the texts escaped by sonic-rs's SIMD
//! routine, it costs ~0.8 µs: what unpacking a kept entry cost. So no product's JSON is kept.
//! `EncodedJson::new` compares what is written with poem-openapi's encoding of [`ProductView`]
//! in debug builds, so every HTTP test checks the two agree.
//!
//! Whole pages are kept, in a budget of bytes: putting 20 products together (and the facets)
//! is most of a listing's CPU, and searches and category pages repeat. A page entry answers only
//! the very same products (by `Arc`: the in-memory store shares a product until it changes, and
//! a change always makes a new allocation while the entry's `Weak`s pin the old one, so an
//! address cannot be reused by another version) in the same order with the same counts and
//! facets, so nothing has to be invalidated and nothing stale can be served; the cache keeps no
//! product alive. A page is kept the second time it is made: a store that decodes a fresh copy
//! per read never brings the same `Arc`s twice, and random pages over a large catalog are seldom
//! asked for twice; neither fills the budget with pages no one will be served.

use std::hash::{BuildHasher, Hash as _, Hasher as _, RandomState};
use std::io::{self, Write as _};
use std::sync::{Arc, Weak};

use bytes::Bytes;
use commerce_core::domain::{PriceBand, Product, ProductSearchResult};
use quick_cache::Weighter;
use quick_cache::sync::Cache;

use crate::api::catalog_types::{ProductPage, ProductView};
use crate::problem::ApiError;
use crate::reply::EncodedJson;

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

/// Weighs a page by its JSON, its record of the result and its products' allocations (once a
/// product changes, the page may pin the old one alone).
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

/// Products' JSON, and whole pages of it kept within a budget of bytes (least recently and
/// least often used go first).
pub struct ProductJson {
    pages: Option<Kept>,
    key: RandomState,
}

/// The kept pages, and the keys of pages made once (see the module docs).
struct Kept {
    pages: Cache<u64, Arc<EncodedPage>, PageWeight>,
    made_once: Cache<u64, ()>,
}

/// A page's JSON around its products and facets, at most: the keys and three numbers.
const PAGE_FRAME: usize = 96;
/// A page's weight, about (for sizing the cache's table; pages are weighed by their real size).
const TYPICAL_PAGE_WEIGHT: usize = 48 * 1024;
/// Keys of pages made once, remembered per page the budget holds: a page asked for again
/// within a few budgets' worth of other pages is kept (8 bytes and a slot each).
const MADE_ONCE_PER_PAGE: usize = 8;

impl ProductJson {
    /// Pages kept in at most about `capacity_bytes`; 0 keeps none.
    pub fn new(capacity_bytes: usize) -> Self {
        let pages = (capacity_bytes / TYPICAL_PAGE_WEIGHT).max(1);
        Self {
            pages: (capacity_bytes > 0).then(|| Kept {
                pages: Cache::with_weighter(pages, capacity_bytes as u64, PageWeight),
                made_once: Cache::new(pages * MADE_ONCE_PER_PAGE),
            }),
            key: RandomState::new(),
        }
    }

    /// The answer for one product.
    pub fn product(&self, product: &Arc<Product>) -> Result<EncodedJson<ProductView>, ApiError> {
        let mut out = Vec::with_capacity(Room::of(product).bytes());
        write_product(product, &mut out).map_err(encoding_failed)?;
        Ok(EncodedJson::new(out, || ProductView::from(&**product)))
    }

    /// Where a page's entry is kept: its products' addresses and counts (the facets are
    /// compared on a hit).
    fn page_key(&self, result: &ProductSearchResult) -> u64 {
        let page = &result.page;
        let mut hasher = self.key.build_hasher();
        for product in &page.items {
            hasher.write_usize(Arc::as_ptr(product) as usize);
        }
        (page.total, page.page, page.limit).hash(&mut hasher);
        hasher.finish()
    }

    /// The answer for a page of products: the page kept whole, or written from its products,
    /// counts and facets.
    pub fn page(&self, result: &ProductSearchResult) -> Result<EncodedJson<ProductPage>, ApiError> {
        let documented = || ProductPage::from(result);
        let key = self.pages.as_ref().map(|kept| (kept, self.page_key(result)));
        if let Some((kept, key)) = &key
            && let Some(page) = kept.pages.get(key)
            && page.answers(result)
        {
            return Ok(EncodedJson::new(page.json.clone(), documented));
        }
        let json = Bytes::from(write_page(result).map_err(encoding_failed)?);
        if let Some((kept, key)) = key {
            if kept.made_once.remove(&key).is_some() {
                kept.pages.insert(key, Arc::new(EncodedPage::of(result, json.clone())));
            } else {
                kept.made_once.insert(key, ());
            }
        }
        Ok(EncodedJson::new(json, documented))
    }
}

/// A page's JSON (a `ProductPage` schema object).
fn write_page(result: &ProductSearchResult) -> io::Result<Vec<u8>> {
    let page = &result.page;
    // Every product's memory asked for at once, before any is written: see `touch`.
    let mut room = touch(&page.items);
    room.add_facets(result);
    let mut out = Vec::with_capacity(room.bytes() + PAGE_FRAME);
    out.extend_from_slice(b"{\"items\":[");
    for (i, product) in page.items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_product(product, &mut out)?;
    }
    write!(
        out,
        "],\"total\":{},\"page\":{},\"limit\":{},\"facets\":",
        page.total, page.page, page.limit
    )?;
    write_facets(result, &mut out)?;
    out.push(b'}');
    Ok(out)
}

pub(crate) fn encoding_failed(e: impl std::error::Error + Send + Sync + 'static) -> ApiError {
    ApiError::from(commerce_core::Error::unexpected(e))
}

use write::{Room, touch, write_facets, write_product};

/// [`ProductView`]'s JSON written from the product in place: keys as constants, in the
/// schema's order (poem-openapi's `Object` derive and `ToJSON` decide the documented form;
/// the tests compare the two on every field).
mod write {
    use std::io;

    use std::sync::Arc;

    use chrono::{DateTime, Datelike as _, Timelike as _, Utc};
    use commerce_core::domain::{Attributes, Money, Product, ProductSearchResult};
    use sonic_rs::format::{CompactFormatter, Formatter as _};
    use uuid::Uuid;

    use crate::api::catalog_types::{status_name, visibility_name};

    /// Appends the product's JSON to `out`.
    pub(super) fn write_product(p: &Product, out: &mut Vec<u8>) -> io::Result<()> {
        raw(out, "{\"id\":");
        uuid(out, &p.id.0);
        raw(out, ",\"name\":");
        text(out, &p.name)?;
        raw(out, ",\"slug\":");
        text(out, p.slug.as_str())?;
        raw(out, ",\"description\":");
        text(out, &p.description)?;
        raw(out, ",\"shortDescription\":");
        optional_text(out, p.short_description.as_deref())?;
        raw(out, ",\"brand\":");
        optional_text(out, p.brand.as_deref())?;
        raw(out, ",\"tags\":");
        texts(out, &p.tags)?;
        raw(out, ",\"categoryId\":");
        match &p.category_id {
            Some(c) => uuid(out, &c.0),
            None => raw(out, "null"),
        }
        raw(out, ",\"subcategoryIds\":[");
        for (i, c) in p.subcategory_ids.iter().enumerate() {
            comma(out, i);
            uuid(out, &c.0);
        }
        raw(out, "],\"specifications\":");
        attributes(out, &p.specifications)?;
        raw(out, ",\"status\":\"");
        raw(out, status_name(p.status));
        raw(out, "\",\"visibility\":\"");
        raw(out, visibility_name(p.visibility));
        raw(out, "\",\"images\":[");
        for (i, image) in p.images.iter().enumerate() {
            comma(out, i);
            raw(out, "{\"id\":");
            uuid(out, &image.id.0);
            raw(out, ",\"url\":");
            text(out, &image.url)?;
            raw(out, ",\"alt\":");
            optional_text(out, image.alt.as_deref())?;
            raw(out, ",\"contentType\":");
            text(out, &image.content_type)?;
            raw(out, ",\"width\":");
            integer(out, image.width);
            raw(out, ",\"height\":");
            integer(out, image.height);
            raw(out, ",\"sizeBytes\":");
            integer(out, image.size_bytes);
            raw(out, "}");
        }
        raw(out, "],\"thumbnail\":");
        optional_text(out, p.thumbnail.as_deref())?;
        raw(out, ",\"seo\":{\"metaTitle\":");
        optional_text(out, p.seo.meta_title.as_deref())?;
        raw(out, ",\"metaDescription\":");
        optional_text(out, p.seo.meta_description.as_deref())?;
        raw(out, ",\"keywords\":");
        texts(out, &p.seo.keywords)?;
        raw(out, "},\"variants\":[");
        for (i, v) in p.variants.iter().enumerate() {
            comma(out, i);
            raw(out, "{\"sku\":");
            text(out, v.sku.as_str())?;
            raw(out, ",\"name\":");
            optional_text(out, v.name.as_deref())?;
            raw(out, ",\"options\":");
            attributes(out, &v.options)?;
            raw(out, ",\"price\":");
            money(out, v.price);
            raw(out, ",\"compareAtPrice\":");
            optional_money(out, v.compare_at_price);
            raw(out, ",\"weightGrams\":");
            optional_integer(out, v.weight_grams);
            raw(out, ",\"dimensions\":");
            match v.dimensions {
                Some(d) => {
                    raw(out, "{\"lengthMm\":");
                    integer(out, d.length_mm);
                    raw(out, ",\"widthMm\":");
                    integer(out, d.width_mm);
                    raw(out, ",\"heightMm\":");
                    integer(out, d.height_mm);
                    raw(out, "}");
                }
                None => raw(out, "null"),
            }
            raw(out, "}");
        }
        raw(out, "],\"minPrice\":");
        optional_money(out, p.min_price());
        raw(out, ",\"rating\":{\"count\":");
        integer(out, p.rating.count);
        raw(out, ",\"average\":");
        float(out, p.rating.average());
        raw(out, "},\"salesCount\":");
        integer(out, p.sales_count);
        raw(out, ",\"createdAt\":");
        timestamp(out, &p.created_at);
        raw(out, ",\"updatedAt\":");
        timestamp(out, &p.updated_at);
        raw(out, "}");
        Ok(())
    }

    /// A [`ProductFacets`](crate::api::catalog_types::ProductFacets) object, written from the
    /// result's counts (through the documented types, each brand was cloned twice a page).
    pub(super) fn write_facets(result: &ProductSearchResult, out: &mut Vec<u8>) -> io::Result<()> {
        raw(out, "{\"brands\":[");
        for (i, (brand, count)) in result.brands.iter().enumerate() {
            comma(out, i);
            raw(out, "{\"value\":");
            text(out, brand)?;
            raw(out, ",\"count\":");
            integer(out, *count);
            raw(out, "}");
        }
        raw(out, "],\"priceBands\":[");
        for (i, band) in result.price_bands.iter().enumerate() {
            comma(out, i);
            raw(out, "{\"min\":");
            integer(out, band.min);
            raw(out, ",\"max\":");
            optional_integer(out, band.max);
            raw(out, ",\"count\":");
            integer(out, band.count);
            raw(out, "}");
        }
        raw(out, "]}");
        Ok(())
    }

    /// The facets' keys and brackets; a brand's object besides its name; a price band's.
    const FACETS_FRAME: usize = 32;
    const BRAND_FRAME: usize = 40;
    const BAND_FRAME: usize = 80;

    /// Calls `f` with every text of the product its JSON holds.
    fn each_text(p: &Product, mut f: impl FnMut(&str)) {
        let table = |t: &Attributes, f: &mut dyn FnMut(&str)| {
            for (key, value) in t.iter() {
                f(key);
                f(value);
            }
        };
        let single = [
            Some(p.name.as_str()),
            Some(p.slug.as_str()),
            Some(p.description.as_str()),
            p.short_description.as_deref(),
            p.brand.as_deref(),
            p.thumbnail.as_deref(),
            p.seo.meta_title.as_deref(),
            p.seo.meta_description.as_deref(),
        ];
        single.into_iter().flatten().for_each(&mut f);
        p.tags.iter().chain(&p.seo.keywords).for_each(|t| f(t));
        table(&p.specifications, &mut f);
        for image in &p.images {
            [
                Some(image.url.as_str()),
                image.alt.as_deref(),
                Some(image.content_type.as_str()),
            ]
            .into_iter()
            .flatten()
            .for_each(&mut f);
        }
        for v in &p.variants {
            f(v.sku.as_str());
            v.name.as_deref().into_iter().for_each(&mut f);
            table(&v.options, &mut f);
        }
    }

    /// A product's JSON besides its texts, at most: keys, ids, numbers, timestamps.
    const PRODUCT_FRAME: usize = 700;
    const VARIANT_FRAME: usize = 300;
    const IMAGE_FRAME: usize = 160;
    const ID_FRAME: usize = 40;
    /// A text's quotes, separator and key-value colon.
    const TEXT_FRAME: usize = 4;
    /// What `write_string_fast` reserves before escaping a text: six bytes a byte of it (a
    /// control character becomes `\u00XX`) and 35 more.
    const ESCAPE_BYTES_PER_BYTE: usize = 6;
    const ESCAPE_SLACK: usize = 35;

    /// Room for writing products' JSON without growing the buffer, from their texts' lengths:
    /// their bytes unescaped, plus what sonic-rs's escaping reserves beyond the longest (six
    /// bytes a byte). Sized at a guess, a page's buffer grew once on most pages (a 40 KB copy
    /// and a fresh 80 KB allocation: ~3 % of a random page's CPU) and a product's every time.
    #[derive(Default)]
    pub(super) struct Room {
        bytes: usize,
        longest: usize,
    }

    impl Room {
        pub(super) fn of(p: &Product) -> Self {
            let mut room = Self::default();
            room.add(p, |_| ());
            room
        }

        /// Adds a product, calling `read` with each of its texts.
        fn add(&mut self, p: &Product, mut read: impl FnMut(&str)) {
            self.bytes += PRODUCT_FRAME
                + p.variants.len() * VARIANT_FRAME
                + p.images.len() * IMAGE_FRAME
                + p.subcategory_ids.len() * ID_FRAME;
            each_text(p, |text| {
                read(text);
                self.text(text);
            });
        }

        /// Adds a page's facets ([`write_facets`]).
        pub(super) fn add_facets(&mut self, result: &ProductSearchResult) {
            self.bytes += FACETS_FRAME + result.brands.len() * BRAND_FRAME + result.price_bands.len() * BAND_FRAME;
            for (brand, _) in &result.brands {
                self.text(brand);
            }
        }

        fn text(&mut self, text: &str) {
            self.bytes += text.len() + TEXT_FRAME;
            self.longest = self.longest.max(text.len());
        }

        /// The texts are counted once already; the longest one's reservation is what else
        /// must fit when it is written.
        pub(super) fn bytes(&self) -> usize {
            self.bytes + self.longest * (ESCAPE_BYTES_PER_BYTE - 1) + ESCAPE_SLACK
        }
    }

    /// Reads a byte of every cache line the products' JSON is written from, product by
    /// product, so that their memory is fetched many lines at a time instead of one line at a
    /// time as writing reaches it (the reads do not depend on one another, so the CPU has
    /// many in flight at once), and returns the room their JSON needs. In a large catalog a
    /// random page's products are out of the CPU's caches, each spread over several
    /// allocations (a dozen, and ~45 before short texts were held inline): writing a page of
    /// 20 of 94,000 demo products took 48 µs, 30 µs after this (16 µs when they are in the
    /// caches); reading level by level for all products at once (the products, then their
    /// texts, then what their lists hold) was no faster (29 µs), nor was reading them in
    /// address order. The products' spread over the heap is most of what is left: the same
    /// pages cloned in listing order into fresh memory were written in 22 µs.
    pub(super) fn touch(products: &[Arc<Product>]) -> Room {
        let mut room = Room::default();
        for p in products {
            room.add(p, |text| {
                for line in text.as_bytes().chunks(64) {
                    std::hint::black_box(line.first().copied());
                }
            });
        }
        room
    }

    /// JSON written as it is: keys, punctuation, names that need no escaping.
    fn raw(out: &mut Vec<u8>, json: &str) {
        out.extend_from_slice(json.as_bytes());
    }

    fn comma(out: &mut Vec<u8>, index: usize) {
        if index > 0 {
            out.push(b',');
        }
    }

    /// A string, quoted and escaped (sonic-rs's SIMD routine, as its serializer uses; a
    /// scalar copy of short texts that need no escaping was slower).
    fn text(out: &mut Vec<u8>, value: &str) -> io::Result<()> {
        CompactFormatter.write_string_fast(out, value, true)
    }

    fn optional_text(out: &mut Vec<u8>, value: Option<&str>) -> io::Result<()> {
        match value {
            Some(value) => text(out, value),
            None => {
                raw(out, "null");
                Ok(())
            }
        }
    }

    fn texts(out: &mut Vec<u8>, values: &[String]) -> io::Result<()> {
        raw(out, "[");
        for (i, value) in values.iter().enumerate() {
            comma(out, i);
            text(out, value)?;
        }
        raw(out, "]");
        Ok(())
    }

    /// An object of texts in the table's order (an empty one too).
    fn attributes(out: &mut Vec<u8>, table: &Attributes) -> io::Result<()> {
        raw(out, "{");
        for (i, (key, value)) in table.iter().enumerate() {
            comma(out, i);
            text(out, key)?;
            raw(out, ":");
            text(out, value)?;
        }
        raw(out, "}");
        Ok(())
    }

    /// Hyphenated and lower-case, as `Uuid`'s `Serialize` writes it.
    fn uuid(out: &mut Vec<u8>, id: &Uuid) {
        let mut buffer = Uuid::encode_buffer();
        raw(out, "\"");
        raw(out, id.hyphenated().encode_lower(&mut buffer));
        raw(out, "\"");
    }

    fn integer(out: &mut Vec<u8>, value: impl itoa::Integer) {
        raw(out, itoa::Buffer::new().format(value));
    }

    fn optional_integer(out: &mut Vec<u8>, value: Option<impl itoa::Integer>) {
        match value {
            Some(value) => integer(out, value),
            None => raw(out, "null"),
        }
    }

    /// A finite number always has a fraction or exponent (`0.0`, as serde writes an `f64`);
    /// JSON has no other, so those are `null`, as serde_json writes them.
    fn float(out: &mut Vec<u8>, value: f64) {
        if value.is_finite() {
            raw(out, ryu::Buffer::new().format_finite(value));
        } else {
            raw(out, "null");
        }
    }

    fn money(out: &mut Vec<u8>, m: Money) {
        raw(out, "{\"amount\":");
        integer(out, m.amount_minor);
        raw(out, ",\"currency\":\"");
        raw(out, m.currency.as_str());
        raw(out, "\"}");
    }

    fn optional_money(out: &mut Vec<u8>, m: Option<Money>) {
        match m {
            Some(m) => money(out, m),
            None => raw(out, "null"),
        }
    }

    /// As `to_rfc3339` writes it (`2026-11-27T06:07:27.118+00:00`: seconds with no fraction, or
    /// 3, 6 or 9 digits, whichever is exact), without a `String` per timestamp. Years outside
    /// 0–9999 and leap seconds are left to chrono.
    fn timestamp(out: &mut Vec<u8>, utc: &DateTime<Utc>) {
        // The naive time: `DateTime`'s own field getters add the (zero) offset each time.
        let at = utc.naive_utc();
        let nanos = at.nanosecond();
        let year = u16::try_from(at.year()).ok().filter(|year| *year <= 9999);
        let Some(year) = year.filter(|_| nanos < 1_000_000_000) else {
            return raw(out, &format!("\"{}\"", utc.to_rfc3339()));
        };
        let two = |out: &mut Vec<u8>, n: u32| out.extend_from_slice(&[b'0' + (n / 10) as u8, b'0' + (n % 10) as u8]);
        raw(out, "\"");
        two(out, u32::from(year / 100));
        two(out, u32::from(year % 100));
        raw(out, "-");
        two(out, at.month());
        raw(out, "-");
        two(out, at.day());
        raw(out, "T");
        two(out, at.hour());
        raw(out, ":");
        two(out, at.minute());
        raw(out, ":");
        two(out, at.second());
        let (fraction, digits) = if nanos == 0 {
            (0, 0)
        } else if nanos.is_multiple_of(1_000_000) {
            (nanos / 1_000_000, 3)
        } else if nanos.is_multiple_of(1_000) {
            (nanos / 1_000, 6)
        } else {
            (nanos, 9)
        };
        if digits > 0 {
            let mut buffer = itoa::Buffer::new();
            let written = buffer.format(fraction);
            raw(out, ".");
            for _ in written.len()..digits {
                raw(out, "0");
            }
            raw(out, written);
        }
        raw(out, "+00:00\"");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone as _, Utc};
    use commerce_core::domain::{
        Attributes, CategoryId, Currency, Dimensions, ImageId, Money, PRICE_BANDS, ProductId, ProductImage,
        ProductStatus, RatingSummary, Seo, Sku, Slug, Variant, Visibility,
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
            specifications: Attributes::default(),
            status: ProductStatus::Active,
            visibility: Visibility::Public,
            images: Vec::new(),
            thumbnail: None,
            seo: Seo::default(),
            variants: vec![Variant {
                sku: Sku::parse(&format!("SKU-{n}")).unwrap(),
                name: None,
                options: Attributes::default(),
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

    /// What is written for `p`, and what poem-openapi writes for its documented view.
    fn written_and_documented(p: &Product) -> (serde_json::Value, serde_json::Value) {
        let mut written = Vec::new();
        write_product(p, &mut written).unwrap();
        let written =
            serde_json::from_slice(&written).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&written)));
        (written, ProductView::from(p).to_json().unwrap())
    }

    /// A product with every field set, lists of two.
    fn full_product(n: usize) -> Product {
        let mut p = product(n);
        p.short_description = Some("Short \"quoted\" teaser".to_owned());
        p.category_id = Some(CategoryId::new());
        p.subcategory_ids = vec![CategoryId::new(), CategoryId::new()];
        p.specifications = Attributes::from_iter([
            ("material".to_owned(), "oak".to_owned()),
            ("finish".to_owned(), "oiled".to_owned()),
        ]);
        p.tags = vec!["a".to_owned(), "b".to_owned()];
        p.status = ProductStatus::Archived;
        p.visibility = Visibility::Featured;
        let image = ProductImage {
            id: ImageId::new(),
            url: "https://img.example.com/1.jpg".to_owned(),
            storage_key: "products/1.jpg".to_owned(),
            alt: Some("front".to_owned()),
            content_type: "image/jpeg".to_owned(),
            width: 800,
            height: 600,
            size_bytes: 12_345,
        };
        p.images = vec![image.clone(), ProductImage { alt: None, ..image }];
        p.thumbnail = Some("https://img.example.com/1.jpg".to_owned());
        p.seo = Seo {
            meta_title: Some("Title".to_owned()),
            meta_description: None,
            keywords: vec!["oak".to_owned(), "table".to_owned()],
        };
        let mut v = p.variants[0].clone();
        v.sku = Sku::parse(&format!("SKU-{n}-B")).unwrap();
        v.name = Some("Large".into());
        v.options = Attributes::from_iter([("size".to_owned(), "L".to_owned())]);
        v.price.amount_minor = 999;
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
        p.sales_count = 12;
        p
    }

    #[test]
    fn the_written_json_is_the_documented_one_for_every_field() {
        let p = full_product(7);
        let (written, documented) = written_and_documented(&p);
        assert_eq!(written, documented);
        assert_eq!(written["minPrice"]["amount"], 999, "the lowest variant price");
        assert_eq!(
            written["specifications"],
            serde_json::json!({"finish": "oiled", "material": "oak"})
        );
        // Empty and absent values the same way too.
        let (written, documented) = written_and_documented(&product(8));
        assert_eq!(written, documented);
        assert_eq!(
            written["specifications"],
            serde_json::json!({}),
            "an empty table is an object"
        );
        assert_eq!(written["rating"]["average"].as_f64(), Some(0.0));
    }

    #[test]
    fn a_product_is_written_in_the_room_made_for_it_without_growing_it() {
        let mut widest = full_product(9);
        // The longest numbers each field can hold, and a timestamp with nanoseconds.
        widest.sales_count = u64::MAX;
        widest.rating = RatingSummary {
            count: u64::MAX,
            sum: u64::MAX / 3,
            histogram: [u64::MAX; 5],
        };
        for v in &mut widest.variants {
            v.price.amount_minor = i64::MIN;
            v.compare_at_price = Some(v.price);
            v.weight_grams = Some(u32::MAX);
            v.dimensions = Some(Dimensions {
                length_mm: u32::MAX,
                width_mm: u32::MAX,
                height_mm: u32::MAX,
            });
        }
        for image in &mut widest.images {
            (image.width, image.height, image.size_bytes) = (u32::MAX, u32::MAX, u64::MAX);
        }
        widest.created_at = Utc.timestamp_opt(253_402_300_799, 999_999_999).unwrap();
        widest.updated_at = widest.created_at;
        let mut long = product(3);
        long.description = "é".repeat(2_500);
        for p in [product(1), full_product(2), widest, long] {
            let room = Room::of(&p).bytes();
            let mut out = Vec::with_capacity(room);
            write_product(&p, &mut out).unwrap();
            assert_eq!(out.capacity(), room, "{} bytes written", out.len());
            assert!(
                room < out.len() + 6 * p.description.len() + 2_048,
                "{room} for {}",
                out.len()
            );
        }
    }

    #[test]
    fn texts_are_escaped_as_json_requires() {
        let mut p = product(1);
        p.name = "Quote \" backslash \\ newline \n tab \t bell \u{7} end".to_owned();
        p.description = "Unicode: é, 日本, 🦀; a </script> tag".to_owned();
        p.brand = Some(String::new());
        p.short_description = Some("a\"b\\c\u{1f}d".to_owned());
        p.tags = vec!["é/\u{7f}".to_owned(), "tab\t".to_owned()];
        p.specifications = Attributes::from_iter([("key \"with\" quotes".to_owned(), "line\r\nbreak".to_owned())]);
        let (written, documented) = written_and_documented(&p);
        assert_eq!(written, documented);
        assert_eq!(written["name"], p.name);
        assert_eq!(written["description"], p.description);
        assert_eq!(written["shortDescription"], "a\"b\\c\u{1f}d");
        assert_eq!(written["tags"], serde_json::json!(["é/\u{7f}", "tab\t"]));
    }

    #[test]
    fn timestamps_are_written_as_rfc3339_with_the_exact_fraction() {
        let second = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
        let cases = [
            (0, "2026-01-02T03:04:05+00:00"),
            (120_000_000, "2026-01-02T03:04:05.120+00:00"),
            (1_000, "2026-01-02T03:04:05.000001+00:00"),
            (7, "2026-01-02T03:04:05.000000007+00:00"),
            (999_999_999, "2026-01-02T03:04:05.999999999+00:00"),
        ];
        for (nanos, expected) in cases {
            let mut p = product(1);
            p.created_at = second + chrono::Duration::nanoseconds(nanos);
            p.updated_at = Utc.with_ymd_and_hms(9, 12, 31, 23, 59, 59).unwrap();
            let (written, documented) = written_and_documented(&p);
            assert_eq!(written["createdAt"], expected);
            assert_eq!(written["updatedAt"], "0009-12-31T23:59:59+00:00");
            assert_eq!(written, documented);
        }
        // Beyond four digits of year, chrono writes it.
        let mut p = product(1);
        p.created_at = Utc.with_ymd_and_hms(12_345, 1, 1, 0, 0, 0).unwrap();
        let (written, documented) = written_and_documented(&p);
        assert_eq!(written, documented);
    }

    #[test]
    fn a_product_is_written_from_what_it_holds_now() {
        // What the in-memory store does on a write: `Arc::make_mut` on its own copy.
        let json = ProductJson::new(1 << 20);
        let mut stored = Arc::new(product(2));
        let decoded = |json: &ProductJson, p: &Arc<Product>| -> serde_json::Value {
            serde_json::from_slice(json.product(p).unwrap().bytes()).unwrap()
        };
        assert_eq!(decoded(&json, &stored)["salesCount"], 0);
        Arc::make_mut(&mut stored).sales_count = 41;
        assert_eq!(decoded(&json, &stored)["salesCount"], 41);
        assert_eq!(Arc::strong_count(&stored), 1, "nothing keeps the product");
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
    fn a_page_is_written_with_its_products_counts_and_facets() {
        let json = ProductJson::new(0);
        let products: Vec<_> = (0..3).map(|n| Arc::new(product(n))).collect();
        let r = result(products.clone(), vec![("Brand".to_owned(), 40)]);
        let page: serde_json::Value = serde_json::from_slice(&page_bytes(&json, &r)).unwrap();
        assert_eq!(page, ProductPage::from(&r).to_json().unwrap());
        assert_eq!(page["items"][2]["name"], "Product 2");
        assert_eq!(page["total"], 40);
        assert_eq!(page["facets"]["brands"][0]["count"], 40);
        let empty = result(Vec::new(), Vec::new());
        let page: serde_json::Value = serde_json::from_slice(&page_bytes(&json, &empty)).unwrap();
        assert_eq!(page, ProductPage::from(&empty).to_json().unwrap());
    }

    #[test]
    fn a_page_and_its_facets_are_written_in_the_room_made_for_them_without_growing_it() {
        let products: Vec<_> = (0..3).map(|n| Arc::new(full_product(n))).collect();
        let brands = vec![
            ("\u{1}".repeat(60), u64::MAX),
            ("Brand \"quoted\"".to_owned(), u64::MAX),
        ];
        let mut widest = result(products, brands);
        widest.page.total = u64::MAX;
        (widest.page.page, widest.page.limit) = (u32::MAX, u32::MAX);
        widest.price_bands = vec![
            PriceBand {
                min: i64::MIN,
                max: Some(i64::MIN),
                count: u64::MAX,
            };
            PRICE_BANDS.len()
        ];
        widest.price_bands.push(PriceBand {
            min: i64::MIN,
            max: None,
            count: u64::MAX,
        });
        for r in [widest, result(Vec::new(), Vec::new())] {
            let mut facets_room = Room::default();
            facets_room.add_facets(&r);
            let mut facets = Vec::with_capacity(facets_room.bytes());
            write_facets(&r, &mut facets).unwrap();
            assert_eq!(
                facets.capacity(),
                facets_room.bytes(),
                "{} bytes of facets",
                facets.len()
            );
            let mut page_room = touch(&r.page.items);
            page_room.add_facets(&r);
            let room = page_room.bytes() + PAGE_FRAME;
            let out = write_page(&r).unwrap();
            assert_eq!(out.capacity(), room, "{} bytes written", out.len());
            let page: serde_json::Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(page, ProductPage::from(&r).to_json().unwrap());
        }
    }

    #[test]
    fn a_page_of_shared_products_is_kept_from_its_second_request_until_a_product_or_a_count_changes() {
        let json = ProductJson::new(1 << 20);
        let products: Vec<_> = (0..3).map(|n| Arc::new(product(n))).collect();
        let brands = vec![("Brand".to_owned(), 40)];
        let r = result(products.clone(), brands.clone());
        let kept_pages = |json: &ProductJson| json.pages.as_ref().unwrap().pages.len();
        let held = Arc::strong_count(&products[0]);
        let first = page_bytes(&json, &r);
        assert_eq!(kept_pages(&json), 0, "a page asked for once is not kept");
        let second = page_bytes(&json, &r);
        assert_eq!(first, second);
        assert_eq!(kept_pages(&json), 1, "asked for again, it is");
        let third = page_bytes(&json, &r);
        assert_eq!(third.as_ptr(), second.as_ptr(), "the kept page is served as it is");
        assert_eq!(
            Arc::strong_count(&products[0]),
            held,
            "the cache keeps no product alive"
        );

        // One product changed (a new `Arc`, as the store makes): the page is written again.
        let mut changed = products.clone();
        let mut renamed = product(1);
        renamed.id = products[1].id;
        renamed.name = "Renamed".to_owned();
        changed[1] = Arc::new(renamed);
        let after_change = page_bytes(&json, &result(changed, brands.clone()));
        assert_ne!(after_change.as_ptr(), second.as_ptr());
        assert!(String::from_utf8_lossy(&after_change).contains("\"Renamed\""));

        // Same products, other counts: written again with them.
        let recount = page_bytes(&json, &result(products.clone(), vec![("Brand".to_owned(), 39)]));
        assert_ne!(recount.as_ptr(), second.as_ptr());
        assert!(String::from_utf8_lossy(&recount).contains("\"count\":39"));
        // Another order of the same products is another page.
        let reversed: Vec<_> = products.iter().rev().cloned().collect();
        let other_order = page_bytes(&json, &result(reversed, brands.clone()));
        assert_ne!(other_order, second);
        assert_eq!(
            page_bytes(&json, &r).as_ptr(),
            second.as_ptr(),
            "the first page is still kept"
        );
    }

    #[test]
    fn pages_of_fresh_copies_are_not_kept() {
        let json = ProductJson::new(1 << 20);
        let originals: Vec<_> = (0..3).map(product).collect();
        let (mut pages, mut held) = (Vec::new(), Vec::new());
        for _ in 0..4 {
            // A store decoding every read hands out new `Arc`s of the same products (held
            // here, so that no address is reused).
            let copies: Vec<_> = originals.iter().cloned().map(Arc::new).collect();
            pages.push(page_bytes(&json, &result(copies.clone(), Vec::new())));
            held.push(copies);
        }
        assert!(pages.windows(2).all(|w| w[0] == w[1]), "the same JSON each time");
        assert_eq!(json.pages.as_ref().unwrap().pages.len(), 0);
    }

    #[test]
    fn kept_pages_stay_within_their_bytes() {
        let json = ProductJson::new(64 * 1024);
        let products: Vec<_> = (0..200).map(|n| Arc::new(product(n))).collect();
        for chunk in products.chunks(5) {
            let r = result(chunk.to_vec(), Vec::new());
            page_bytes(&json, &r);
            page_bytes(&json, &r);
        }
        let pages = &json.pages.as_ref().unwrap().pages;
        assert!(pages.weight() <= 64 * 1024, "held {} bytes", pages.weight());
        assert!(
            (1..40).contains(&pages.len()),
            "older pages were evicted, {} held",
            pages.len()
        );
    }
}
