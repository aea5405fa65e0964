//! Each product's JSON, encoded once per version of the product and reused by every answer
//! that shows it (product by id or slug, listings, search, category pages).
//!
//! A page of 20 products is ~40 KB of JSON: converting and encoding it cost more than half of a
//! listing's CPU. Stores hand out products as `Arc`s, so the cache keeps the product it encoded
//! beside the bytes and serves them only for a product equal to it: the same `Arc` (the
//! in-memory store shares its products until they change) or an equal value (stores that
//! decode a fresh copy per read). A changed product never matches its old entry, so nothing
//! has to be invalidated and nothing stale can be served.

use std::io::Write as _;
use std::sync::Arc;

use bytes::Bytes;
use commerce_core::domain::{Product, ProductId, ProductSearchResult};
use quick_cache::Weighter;
use quick_cache::sync::Cache;

use crate::api::catalog_types::{ProductFacets, ProductPage, ProductView};
use crate::problem::ApiError;
use crate::reply::EncodedJson;

/// A product's encoding and the product it is the encoding of.
#[derive(Clone)]
struct Encoded {
    product: Arc<Product>,
    json: Bytes,
}

/// Weighs an entry by its JSON: the product beside it is usually the store's own copy.
#[derive(Clone)]
struct JsonLength;

impl Weighter<ProductId, Encoded> for JsonLength {
    fn weight(&self, _: &ProductId, entry: &Encoded) -> u64 {
        entry.json.len() as u64
    }
}

/// Products' encoded JSON, bounded in bytes (least recently and least often used go first).
pub struct ProductJson {
    cache: Option<Cache<ProductId, Encoded, JsonLength>>,
}

/// An estimate for sizing the cache's table; entries are weighed by their real length.
const TYPICAL_PRODUCT_JSON: usize = 2 * 1024;

impl ProductJson {
    /// A cache holding at most `capacity_bytes` of JSON; 0 encodes every time.
    pub fn new(capacity_bytes: usize) -> Self {
        let cache = (capacity_bytes > 0).then(|| {
            Cache::with_weighter(
                (capacity_bytes / TYPICAL_PRODUCT_JSON).max(1),
                capacity_bytes as u64,
                JsonLength,
            )
        });
        Self { cache }
    }

    /// The product's JSON (a `Product` schema object).
    fn encode(&self, product: &Arc<Product>) -> Result<Bytes, ApiError> {
        let Some(cache) = &self.cache else {
            return encode_view(product);
        };
        if let Some(hit) = cache.get(&product.id)
            && (Arc::ptr_eq(&hit.product, product) || hit.product == *product)
        {
            return Ok(hit.json);
        }
        let json = encode_view(product)?;
        cache.insert(
            product.id,
            Encoded {
                product: Arc::clone(product),
                json: json.clone(),
            },
        );
        Ok(json)
    }

    /// The answer for one product.
    pub fn product(&self, product: &Arc<Product>) -> Result<EncodedJson<ProductView>, ApiError> {
        Ok(EncodedJson::new(self.encode(product)?, || {
            ProductView::from(&**product)
        }))
    }

    /// The answer for a page of products: the cached products put together with the page's
    /// counts and facets.
    pub fn page(&self, result: &ProductSearchResult) -> Result<EncodedJson<ProductPage>, ApiError> {
        let items = result
            .page
            .items
            .iter()
            .map(|p| self.encode(p))
            .collect::<Result<Vec<_>, _>>()?;
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
        Ok(EncodedJson::new(out, || ProductPage::from(result)))
    }
}

fn encode_view(product: &Product) -> Result<Bytes, ApiError> {
    sonic_rs::to_vec(&ProductView::from(product))
        .map(Bytes::from)
        .map_err(encoding_failed)
}

fn encoding_failed(e: impl std::error::Error + Send + Sync + 'static) -> ApiError {
    ApiError::from(commerce_core::Error::unexpected(e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use commerce_core::domain::{Currency, Money, ProductStatus, RatingSummary, Seo, Sku, Slug, Variant, Visibility};

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
        let copy = Arc::new(Product::clone(&product));
        assert_eq!(
            json.encode(&copy).unwrap().as_ptr(),
            first.as_ptr(),
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
    fn the_cache_stays_within_its_bytes() {
        let json = ProductJson::new(16 * 1024);
        for n in 0..200 {
            json.encode(&Arc::new(product(n))).unwrap();
        }
        let cache = json.cache.as_ref().unwrap();
        assert!(cache.weight() <= 16 * 1024, "held {} bytes", cache.weight());
        assert!(cache.len() < 200, "older entries were evicted, {} held", cache.len());
    }
}
