//! Products with embedded variants, their search terms, and the search over them.
//!
//! Each product document carries denormalized fields for filtering and sorting, rewritten with
//! every insert or update: `categoryIds` (main category and subcategories), `brandKey` and
//! `tagKeys` (lower-cased), `minPrice` and `hasPrice` (the "from" price), `ratingAverage`
//! (kept by [`ProductStore::recount_rating`]), and for text search `searchTerms` (the terms
//! of [`commerce_core::search::index_terms`], multikey-indexed) with `searchWeights`
//! (`[{t, w}]`), from which an aggregation computes [`commerce_core::search::score`]. This
//! needs no `$text` index, so it behaves the same on MongoDB and on wire-compatible servers.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use bson::{Bson, Document, doc};
use futures::TryStreamExt;
use mongodb::Collection;
use mongodb::options::ReturnDocument;
use serde::{Deserialize, Serialize};

use commerce_core::domain::{
    CategoryId, CompactString, Dimensions, ImageId, PRICE_BANDS, Page, PriceBand, Product, ProductId, ProductImage,
    ProductQuery, ProductSearchResult, ProductSort, ProductStatus, RatingSummary, Seo, Sku, Slug, Variant, Visibility,
};
use commerce_core::ports::ProductStore;
use commerce_core::search::index_terms;
use commerce_core::{Error, Result};

use crate::convert::{self, MoneyDoc, PairDoc, Reader};
use crate::error::{OrStorage, duplicate_key_index};
use crate::{MongoError, MongoStore, PRODUCTS, indexes};

/// A product as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ProductDoc {
    #[serde(rename = "_id")]
    id: String,
    name: String,
    slug: String,
    description: String,
    short_description: Option<String>,
    brand: Option<String>,
    /// `brand`, lower-cased, for the case-insensitive brand filter.
    brand_key: Option<String>,
    tags: Vec<String>,
    /// `tags`, lower-cased, for the case-insensitive tag filter.
    tag_keys: Vec<String>,
    category_id: Option<String>,
    subcategory_ids: Vec<String>,
    /// `categoryId` and `subcategoryIds` together.
    category_ids: Vec<String>,
    specifications: Vec<PairDoc>,
    status: String,
    visibility: String,
    images: Vec<ImageDoc>,
    thumbnail: Option<String>,
    seo: SeoDoc,
    variants: Vec<VariantDoc>,
    rating: RatingDoc,
    /// `rating.sum / rating.count`, 0 without ratings.
    rating_average: f64,
    sales_count: i64,
    /// Lowest variant price, minor units; null without variants.
    min_price: Option<i64>,
    /// Whether `minPrice` is set (sorts priceless products last in both directions).
    has_price: bool,
    created_at: bson::DateTime,
    updated_at: bson::DateTime,
    /// Normalized terms (left out of reads by a projection, hence the defaults).
    #[serde(default)]
    search_terms: Vec<CompactString>,
    /// Each term's weight.
    #[serde(default)]
    search_weights: Vec<TermWeight>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct VariantDoc {
    sku: String,
    name: Option<CompactString>,
    options: Vec<PairDoc>,
    price: MoneyDoc,
    compare_at_price: Option<MoneyDoc>,
    weight_grams: Option<i64>,
    dimensions: Option<DimensionsDoc>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DimensionsDoc {
    length_mm: i64,
    width_mm: i64,
    height_mm: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ImageDoc {
    id: String,
    url: String,
    storage_key: String,
    alt: Option<String>,
    content_type: String,
    width: i64,
    height: i64,
    size_bytes: i64,
}

impl From<&ProductImage> for ImageDoc {
    fn from(i: &ProductImage) -> Self {
        Self {
            id: convert::id(i.id),
            url: i.url.clone(),
            storage_key: i.storage_key.clone(),
            alt: i.alt.clone(),
            content_type: i.content_type.clone(),
            width: i64::from(i.width),
            height: i64::from(i.height),
            size_bytes: convert::count(i.size_bytes),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SeoDoc {
    meta_title: Option<String>,
    meta_description: Option<String>,
    keywords: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RatingDoc {
    count: i64,
    sum: i64,
    /// Ratings per star, index 0 = one star.
    histogram: Vec<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct TermWeight {
    t: CompactString,
    w: i64,
}

fn status_str(status: ProductStatus) -> &'static str {
    match status {
        ProductStatus::Draft => "draft",
        ProductStatus::Active => "active",
        ProductStatus::Archived => "archived",
    }
}

fn visibility_str(visibility: Visibility) -> &'static str {
    match visibility {
        Visibility::Public => "public",
        Visibility::Hidden => "hidden",
        Visibility::Featured => "featured",
    }
}

impl ProductDoc {
    fn new(p: &Product) -> Self {
        let index = index_terms(p);
        let min_price = p.min_price().map(|m| m.amount_minor);
        Self {
            id: convert::id(p.id),
            name: p.name.clone(),
            slug: p.slug.as_str().to_owned(),
            description: p.description.clone(),
            short_description: p.short_description.clone(),
            brand: p.brand.clone(),
            brand_key: p.brand.as_deref().map(str::to_lowercase),
            tags: p.tags.clone(),
            tag_keys: p.tags.iter().map(|t| t.to_lowercase()).collect(),
            category_id: p.category_id.map(convert::id),
            subcategory_ids: convert::ids(&p.subcategory_ids),
            category_ids: p.category_ids().map(convert::id).collect(),
            specifications: convert::pairs(&p.specifications),
            status: status_str(p.status).to_owned(),
            visibility: visibility_str(p.visibility).to_owned(),
            images: p.images.iter().map(ImageDoc::from).collect(),
            thumbnail: p.thumbnail.clone(),
            seo: SeoDoc {
                meta_title: p.seo.meta_title.clone(),
                meta_description: p.seo.meta_description.clone(),
                keywords: p.seo.keywords.clone(),
            },
            variants: p
                .variants
                .iter()
                .map(|v| VariantDoc {
                    sku: v.sku.as_str().to_owned(),
                    name: v.name.clone(),
                    options: convert::pairs(&v.options),
                    price: v.price.into(),
                    compare_at_price: v.compare_at_price.map(MoneyDoc::from),
                    weight_grams: v.weight_grams.map(i64::from),
                    dimensions: v.dimensions.map(|d| DimensionsDoc {
                        length_mm: i64::from(d.length_mm),
                        width_mm: i64::from(d.width_mm),
                        height_mm: i64::from(d.height_mm),
                    }),
                })
                .collect(),
            rating: RatingDoc {
                count: convert::count(p.rating.count),
                sum: convert::count(p.rating.sum),
                histogram: p.rating.histogram.iter().map(|n| convert::count(*n)).collect(),
            },
            rating_average: p.rating.average(),
            sales_count: convert::count(p.sales_count),
            min_price,
            has_price: min_price.is_some(),
            created_at: convert::date(p.created_at),
            updated_at: convert::date(p.updated_at),
            search_terms: index.keys().cloned().collect(),
            search_weights: index
                .into_iter()
                .map(|(t, w)| TermWeight { t, w: i64::from(w) })
                .collect(),
        }
    }

    fn into_product(self) -> Result<Product, MongoError> {
        let r = Reader {
            collection: PRODUCTS,
            id: &self.id,
        };
        let histogram: [u64; 5] = self
            .rating
            .histogram
            .iter()
            .map(|n| r.u64("rating.histogram", *n))
            .collect::<Result<Vec<_>, _>>()?
            .try_into()
            .map_err(|_| r.corrupt("rating.histogram does not have 5 entries"))?;
        let images = self
            .images
            .iter()
            .map(|i| {
                Ok(ProductImage {
                    id: r.id::<ImageId>("images.id", &i.id)?,
                    url: i.url.clone(),
                    storage_key: i.storage_key.clone(),
                    alt: i.alt.clone(),
                    content_type: i.content_type.clone(),
                    width: r.u32("images.width", i.width)?,
                    height: r.u32("images.height", i.height)?,
                    size_bytes: r.u64("images.sizeBytes", i.size_bytes)?,
                })
            })
            .collect::<Result<Vec<_>, MongoError>>()?;
        let variants = self
            .variants
            .into_iter()
            .map(|v| {
                Ok(Variant {
                    sku: r.parse("variants.sku", Sku::parse(&v.sku))?,
                    name: v.name,
                    options: convert::map(v.options),
                    price: r.money("variants.price", &v.price)?,
                    compare_at_price: v
                        .compare_at_price
                        .map(|m| r.money("variants.compareAtPrice", &m))
                        .transpose()?,
                    weight_grams: v.weight_grams.map(|g| r.u32("variants.weightGrams", g)).transpose()?,
                    dimensions: v
                        .dimensions
                        .map(|d| {
                            Ok::<_, MongoError>(Dimensions {
                                length_mm: r.u32("variants.dimensions.lengthMm", d.length_mm)?,
                                width_mm: r.u32("variants.dimensions.widthMm", d.width_mm)?,
                                height_mm: r.u32("variants.dimensions.heightMm", d.height_mm)?,
                            })
                        })
                        .transpose()?,
                })
            })
            .collect::<Result<Vec<_>, MongoError>>()?;
        let status = match self.status.as_str() {
            "draft" => ProductStatus::Draft,
            "active" => ProductStatus::Active,
            "archived" => ProductStatus::Archived,
            other => return Err(r.corrupt(format!("unknown status {other:?}"))),
        };
        let visibility = match self.visibility.as_str() {
            "public" => Visibility::Public,
            "hidden" => Visibility::Hidden,
            "featured" => Visibility::Featured,
            other => return Err(r.corrupt(format!("unknown visibility {other:?}"))),
        };
        Ok(Product {
            id: r.id("_id", &self.id)?,
            name: self.name,
            slug: r.parse("slug", Slug::parse(&self.slug))?,
            description: self.description,
            short_description: self.short_description,
            brand: self.brand,
            tags: self.tags,
            category_id: self.category_id.as_deref().map(|c| r.id("categoryId", c)).transpose()?,
            subcategory_ids: r.ids("subcategoryIds", &self.subcategory_ids)?,
            specifications: convert::map(self.specifications),
            status,
            visibility,
            images,
            thumbnail: self.thumbnail,
            seo: Seo {
                meta_title: self.seo.meta_title,
                meta_description: self.seo.meta_description,
                keywords: self.seo.keywords,
            },
            variants,
            rating: RatingSummary {
                count: r.u64("rating.count", self.rating.count)?,
                sum: r.u64("rating.sum", self.rating.sum)?,
                histogram,
            },
            sales_count: r.u64("salesCount", self.sales_count)?,
            created_at: convert::time(self.created_at),
            updated_at: convert::time(self.updated_at),
        })
    }
}

/// Reads leave out the search fields, which only queries need.
fn without_search_fields() -> Document {
    doc! { "searchTerms": 0, "searchWeights": 0 }
}

/// Fields [`ProductStore::update_product`] keeps as stored.
const KEPT_ON_UPDATE: [&str; 5] = ["_id", "rating", "ratingAverage", "salesCount", "createdAt"];

fn slug_taken(slug: &Slug) -> Error {
    Error::conflict("slug_taken", format!("the slug {slug} is taken"))
}

fn sku_taken(sku: &str) -> Error {
    Error::conflict("sku_taken", format!("the SKU {sku} is taken"))
}

fn not_found() -> Error {
    Error::NotFound { entity: "product" }
}

/// A unique multikey index lets one document repeat a key, so a SKU that appears twice in
/// the same product is refused here, before writing.
fn check_repeated_skus(product: &Product) -> Result<()> {
    let mut seen = HashSet::new();
    match product.variants.iter().find(|v| !seen.insert(&v.sku)) {
        Some(v) => Err(Error::conflict(
            "sku_taken",
            format!("the SKU {} appears twice in the product", v.sku),
        )),
        None => Ok(()),
    }
}

/// The position of the write that failed in an ordered `insert_many`.
fn failed_insert(error: &mongodb::error::Error) -> Option<usize> {
    match error.kind.as_ref() {
        mongodb::error::ErrorKind::InsertMany(e) => e.write_errors.as_ref()?.iter().map(|w| w.index).min(),
        _ => None,
    }
}

impl MongoStore {
    fn raw_products(&self) -> Collection<Document> {
        self.products.clone_with_type()
    }

    /// Translates a failed insert or update of `product`: duplicate keys become the contract's
    /// conflicts, checked in the order the other adapters use (id, slug, then SKUs) so the code
    /// does not depend on which unique index the server happened to check first.
    async fn product_write_error(&self, error: mongodb::error::Error, product: &Product, inserting: bool) -> Error {
        let Some(index) = duplicate_key_index(&error) else {
            return MongoError::from(error).into();
        };
        if inserting && index == "_id_" {
            return Error::conflict("product_exists", "a product with this id exists");
        }
        match self.taken_by_another(product).await {
            Ok(Some(conflict)) => conflict,
            Ok(None) if index == indexes::PRODUCT_SLUG => slug_taken(&product.slug),
            Ok(None) if index == indexes::PRODUCT_SKU => Error::conflict("sku_taken", "a SKU of the product is taken"),
            Ok(None) if index == "_id_" => Error::conflict("product_exists", "a product with this id exists"),
            Ok(None) => MongoError::from(error).into(),
            Err(e) => e,
        }
    }

    /// `slug_taken` or `sku_taken` when another product holds the slug or one of the SKUs.
    async fn taken_by_another(&self, product: &Product) -> Result<Option<Error>> {
        let me = convert::id(product.id);
        let slug_holder = self
            .raw_products()
            .find_one(doc! { "slug": product.slug.as_str(), "_id": { "$ne": &me } })
            .projection(doc! { "_id": 1 })
            .await
            .or_storage()?;
        if slug_holder.is_some() {
            return Ok(Some(slug_taken(&product.slug)));
        }
        let skus: Vec<&str> = product.variants.iter().map(|v| v.sku.as_str()).collect();
        let holders: Vec<Document> = self
            .raw_products()
            .find(doc! { "variants.sku": { "$in": &skus }, "_id": { "$ne": &me } })
            .projection(doc! { "variants.sku": 1 })
            .await
            .or_storage()?
            .try_collect()
            .await
            .or_storage()?;
        let held: HashSet<&str> = holders
            .iter()
            .filter_map(|d| d.get_array("variants").ok())
            .flatten()
            .filter_map(|v| v.as_document()?.get_str("sku").ok())
            .collect();
        Ok(skus.iter().find(|s| held.contains(**s)).map(|s| sku_taken(s)))
    }

    async fn find_products(&self, filter: Document) -> Result<Vec<Arc<Product>>> {
        let docs: Vec<ProductDoc> = self
            .products
            .find(filter)
            .projection(without_search_fields())
            .await
            .or_storage()?
            .try_collect()
            .await
            .or_storage()?;
        docs.into_iter()
            .map(|d| d.into_product().map(Arc::new).or_storage())
            .collect()
    }

    /// The requested page, sorted and cut in the database.
    async fn search_page(&self, query: &ProductQuery, filter: &Document) -> Result<Vec<Arc<Product>>> {
        let ties = doc! { "createdAt": -1, "_id": -1 };
        let by = |mut key: Document| {
            key.extend(ties.clone());
            key
        };
        let skip = query.page.offset();
        let limit = i64::from(query.page.limit());
        if query.sort == ProductSort::Relevance && !query.terms.is_empty() {
            let mut pipeline = vec![
                doc! { "$match": filter.clone() },
                doc! { "$addFields": { "score": score_expression(&query.terms) } },
                doc! { "$sort": by(doc! { "score": -1 }) },
            ];
            if skip > 0 {
                pipeline.push(doc! { "$skip": convert::count(skip) });
            }
            pipeline.push(doc! { "$limit": limit });
            pipeline.push(doc! { "$project": { "searchTerms": 0, "searchWeights": 0, "score": 0 } });
            let docs: Vec<Document> = self
                .products
                .aggregate(pipeline)
                .await
                .or_storage()?
                .try_collect()
                .await
                .or_storage()?;
            return docs
                .into_iter()
                .map(|d| {
                    bson::from_document::<ProductDoc>(d)
                        .map_err(MongoError::from)?
                        .into_product()
                        .map(Arc::new)
                })
                .collect::<Result<Vec<_>, MongoError>>()
                .or_storage();
        }
        let sort = match query.sort {
            ProductSort::Relevance | ProductSort::Newest => ties.clone(),
            ProductSort::PriceAsc => by(doc! { "hasPrice": -1, "minPrice": 1 }),
            ProductSort::PriceDesc => by(doc! { "hasPrice": -1, "minPrice": -1 }),
            ProductSort::Rating => by(doc! { "ratingAverage": -1 }),
            ProductSort::BestSelling => by(doc! { "salesCount": -1 }),
        };
        let docs: Vec<ProductDoc> = self
            .products
            .find(filter.clone())
            .projection(without_search_fields())
            .sort(sort)
            .skip(skip)
            .limit(limit)
            .await
            .or_storage()?
            .try_collect()
            .await
            .or_storage()?;
        docs.into_iter()
            .map(|d| d.into_product().map(Arc::new).or_storage())
            .collect()
    }

    /// The number of matches and the brand and price-band facets, over the whole match.
    async fn search_facets(&self, filter: &Document) -> Result<(u64, Vec<(String, u64)>, Vec<PriceBand>)> {
        let mut summary = doc! { "_id": Bson::Null, "total": { "$sum": 1 } };
        for (i, (min, max)) in PRICE_BANDS.iter().enumerate() {
            let mut within = vec![
                Bson::from(doc! { "$eq": ["$hasPrice", true] }),
                Bson::from(doc! { "$gte": ["$minPrice", *min] }),
            ];
            if let Some(max) = max {
                within.push(Bson::from(doc! { "$lt": ["$minPrice", *max] }));
            }
            summary.insert(
                format!("band{i}"),
                doc! { "$sum": { "$cond": [{ "$and": within }, 1, 0] } },
            );
        }
        let pipeline = vec![
            doc! { "$match": filter.clone() },
            doc! { "$facet": {
                "summary": [{ "$group": summary }],
                "brands": [
                    { "$match": { "brand": { "$type": "string" } } },
                    { "$group": { "_id": "$brand", "count": { "$sum": 1 } } },
                ],
            } },
        ];
        let facets: Option<Document> = self
            .products
            .aggregate(pipeline)
            .await
            .or_storage()?
            .try_next()
            .await
            .or_storage()?;
        let facets = facets.unwrap_or_default();
        let summary = facets
            .get_array("summary")
            .ok()
            .and_then(|s| s.first())
            .and_then(Bson::as_document)
            .cloned()
            .unwrap_or_default();
        let total = convert::bson_count(summary.get("total"));
        let bands = PRICE_BANDS
            .iter()
            .enumerate()
            .map(|(i, &(min, max))| PriceBand {
                min,
                max,
                count: convert::bson_count(summary.get(format!("band{i}"))),
            })
            .collect();
        let mut brands: Vec<(String, u64)> = facets
            .get_array("brands")
            .map(|b| b.as_slice())
            .unwrap_or_default()
            .iter()
            .filter_map(Bson::as_document)
            .filter_map(|d| Some((d.get_str("_id").ok()?.to_owned(), convert::bson_count(d.get("count")))))
            .collect();
        brands.sort_by(|(na, ca), (nb, cb)| cb.cmp(ca).then_with(|| na.cmp(nb)));
        Ok((total, brands, bands))
    }
}

/// The query's filters as a MongoDB filter (the same rules as the in-memory adapter).
fn search_filter(q: &ProductQuery) -> Document {
    let mut f = Document::new();
    if !q.terms.is_empty() {
        f.insert("searchTerms", doc! { "$all": &q.terms });
    }
    if q.listed_only {
        f.insert("status", status_str(ProductStatus::Active));
        f.insert("visibility", doc! { "$ne": visibility_str(Visibility::Hidden) });
    }
    if !q.category_ids.is_empty() {
        f.insert("categoryIds", doc! { "$in": convert::ids(&q.category_ids) });
    }
    if let Some(brand) = &q.brand {
        f.insert("brandKey", brand.to_lowercase());
    }
    let mut price = Document::new();
    if let Some(min) = q.min_price {
        price.insert("$gte", min);
    }
    if let Some(max) = q.max_price {
        price.insert("$lte", max);
    }
    if !price.is_empty() {
        f.insert("minPrice", price);
    }
    let tags: Vec<String> = q.tags.iter().map(|t| t.to_lowercase()).collect();
    if !tags.is_empty() {
        f.insert("tagKeys", doc! { "$all": tags });
    }
    if let Some(min) = q.min_rating {
        f.insert("ratingAverage", doc! { "$gte": min });
    }
    if let Some(skus) = &q.in_stock_skus {
        let skus: Vec<&str> = skus.iter().map(Sku::as_str).collect();
        f.insert("variants.sku", doc! { "$in": skus });
    }
    f
}

/// [`commerce_core::search::score`] as an aggregation expression: for each query term (in
/// order, repeats counted), the weight of the matching `searchWeights` entry, summed. Uses
/// `$reduce`/`$filter`, not `$sum` over subdocuments, which some servers get wrong.
fn score_expression(terms: &[String]) -> Document {
    doc! { "$reduce": {
        "input": { "$literal": terms },
        "initialValue": 0_i64,
        "in": { "$add": ["$$value", { "$reduce": {
            "input": { "$filter": {
                "input": "$searchWeights",
                "as": "sw",
                "cond": { "$eq": ["$$sw.t", "$$this"] },
            } },
            "initialValue": 0_i64,
            "in": { "$add": ["$$value", "$$this.w"] },
        } }] },
    } }
}

#[async_trait]
impl ProductStore for MongoStore {
    async fn insert_product(&self, product: &Product) -> Result<()> {
        check_repeated_skus(product)?;
        match self.products.insert_one(ProductDoc::new(product)).await {
            Ok(_) => Ok(()),
            Err(e) => Err(self.product_write_error(e, product, true).await),
        }
    }

    /// Inserts in ordered batches: everything up to the first refused product goes in one
    /// round trip, the refused one is translated, and the rest continue in the next batch.
    async fn insert_products(&self, products: &[Product]) -> Result<Vec<Result<()>>> {
        let mut results: Vec<Option<Result<()>>> = products.iter().map(|_| None).collect();
        let mut pending = Vec::with_capacity(products.len());
        for (i, product) in products.iter().enumerate() {
            match check_repeated_skus(product) {
                Ok(()) => pending.push(i),
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        let docs: Vec<Option<ProductDoc>> = products
            .iter()
            .enumerate()
            .map(|(i, p)| results[i].is_none().then(|| ProductDoc::new(p)))
            .collect();
        let mut start = 0;
        while start < pending.len() {
            let batch = &pending[start..];
            let inserted = self
                .products
                .insert_many(batch.iter().filter_map(|&i| docs[i].as_ref()))
                .await;
            match inserted {
                Ok(_) => {
                    for &i in batch {
                        results[i] = Some(Ok(()));
                    }
                    break;
                }
                Err(e) => match failed_insert(&e) {
                    Some(k) if k < batch.len() => {
                        for &i in &batch[..k] {
                            results[i] = Some(Ok(()));
                        }
                        let i = batch[k];
                        results[i] = Some(Err(self.product_write_error(e, &products[i], true).await));
                        start += k + 1;
                    }
                    // Which documents went in is unknown: report the failure for each.
                    _ => {
                        for &i in batch {
                            results[i] = Some(Err(MongoError::from(e.clone()).into()));
                        }
                        break;
                    }
                },
            }
        }
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Error::unexpected_msg("product was not attempted"))))
            .collect())
    }

    async fn get_product(&self, id: ProductId) -> Result<Arc<Product>> {
        let found = self
            .products
            .find_one(doc! { "_id": convert::id(id) })
            .projection(without_search_fields())
            .await
            .or_storage()?;
        found.ok_or_else(not_found)?.into_product().map(Arc::new).or_storage()
    }

    async fn find_product_by_slug(&self, slug: &Slug) -> Result<Option<Arc<Product>>> {
        let found = self
            .products
            .find_one(doc! { "slug": slug.as_str() })
            .projection(without_search_fields())
            .await
            .or_storage()?;
        found.map(|d| d.into_product().map(Arc::new).or_storage()).transpose()
    }

    async fn find_products_by_skus(&self, skus: &[Sku]) -> Result<Vec<Arc<Product>>> {
        if skus.is_empty() {
            return Ok(Vec::new());
        }
        let skus: Vec<&str> = skus.iter().map(Sku::as_str).collect();
        self.find_products(doc! { "variants.sku": { "$in": skus } }).await
    }

    async fn update_product(&self, product: &Product) -> Result<()> {
        check_repeated_skus(product)?;
        let mut set = bson::to_document(&ProductDoc::new(product)).or_storage()?;
        for kept in KEPT_ON_UPDATE {
            set.remove(kept);
        }
        let updated = self
            .products
            .update_one(doc! { "_id": convert::id(product.id) }, doc! { "$set": set })
            .await;
        match updated {
            Ok(r) if r.matched_count == 0 => Err(not_found()),
            Ok(_) => Ok(()),
            Err(e) => Err(self.product_write_error(e, product, false).await),
        }
    }

    async fn delete_product(&self, id: ProductId) -> Result<()> {
        let deleted = self
            .products
            .delete_one(doc! { "_id": convert::id(id) })
            .await
            .or_storage()?;
        if deleted.deleted_count == 0 {
            Err(not_found())
        } else {
            Ok(())
        }
    }

    /// One query for the page (a `find` sorted and cut by the database, or with text terms
    /// and `Relevance`, an aggregation that scores, sorts and cuts), one `$facet` aggregation
    /// for the total and the facets; both run at once.
    async fn search_products(&self, query: &ProductQuery) -> Result<ProductSearchResult> {
        let filter = search_filter(query);
        let (items, (total, brands, price_bands)) =
            futures::try_join!(self.search_page(query, &filter), self.search_facets(&filter))?;
        Ok(ProductSearchResult {
            page: Page::new(items, total, query.page),
            brands,
            price_bands,
        })
    }

    async fn count_products_in_categories(&self, categories: &[CategoryId]) -> Result<u64> {
        if categories.is_empty() {
            return Ok(0);
        }
        self.products
            .count_documents(doc! { "categoryIds": { "$in": convert::ids(categories) } })
            .await
            .or_storage()
    }

    /// The product's reviews counted in one aggregation, then written in one update that only
    /// matches while the stored summary counts fewer (so a late, smaller count never overwrites
    /// a fuller one), with the average recomputed beside it.
    async fn recount_rating(&self, id: ProductId) -> Result<()> {
        let per_star = |stars: i32| doc! { "$sum": { "$cond": [{ "$eq": ["$rating", stars] }, 1_i64, 0_i64] } };
        let pipeline = vec![
            doc! { "$match": { "productId": convert::id(id) } },
            doc! { "$group": {
                "_id": Bson::Null,
                "count": { "$sum": 1_i64 },
                "sum": { "$sum": "$rating" },
                "s1": per_star(1), "s2": per_star(2), "s3": per_star(3), "s4": per_star(4), "s5": per_star(5),
            } },
        ];
        let counted = self
            .reviews
            .aggregate(pipeline)
            .await
            .or_storage()?
            .try_next()
            .await
            .or_storage()?;
        // The group's sums are integers (`$sum` of 32- or 64-bit ratings and of the constants);
        // a rating some other tool stored as a whole double sums to a whole double. Anything
        // else is a review the count cannot trust: an error, never a silent 0.
        let product = convert::id(id);
        let reader = convert::Reader {
            collection: "reviews",
            id: &product,
        };
        let number = |d: &Document, key: &str| -> Result<i64> {
            match d.get(key) {
                Some(Bson::Int64(n)) => Ok(*n),
                Some(Bson::Int32(n)) => Ok(i64::from(*n)),
                Some(Bson::Double(n)) if n.fract() == 0.0 && n.abs() < 9.0e15 => Ok(*n as i64),
                other => Err(reader
                    .corrupt(format!("the product's reviews sum {key} to {other:?}, not an integer"))
                    .into()),
            }
        };
        let updated = match counted {
            Some(c) if number(&c, "count")? > 0 => {
                let (count, sum) = (number(&c, "count")?, number(&c, "sum")?);
                let histogram = ["s1", "s2", "s3", "s4", "s5"]
                    .iter()
                    .map(|k| number(&c, k))
                    .collect::<Result<Vec<i64>>>()?;
                self.products
                    .update_one(
                        doc! { "_id": convert::id(id), "rating.count": { "$lt": count } },
                        doc! { "$set": {
                            "rating": { "count": count, "sum": sum, "histogram": histogram },
                            "ratingAverage": sum as f64 / count as f64,
                        } },
                    )
                    .await
                    .or_storage()?
                    .matched_count
            }
            _ => 0,
        };
        // Nothing to write (no reviews, or already counted): still tell an unknown product.
        if updated == 0
            && self
                .products
                .count_documents(doc! { "_id": convert::id(id) })
                .await
                .or_storage()?
                == 0
        {
            return Err(not_found());
        }
        Ok(())
    }

    async fn add_sales(&self, id: ProductId, units: u64) -> Result<()> {
        let updated = self
            .products
            .update_one(
                doc! { "_id": convert::id(id) },
                doc! { "$inc": { "salesCount": convert::count(units) } },
            )
            .await
            .or_storage()?;
        if updated.matched_count == 0 {
            Err(not_found())
        } else {
            Ok(())
        }
    }

    /// One pipeline update: the image is appended and, when `thumbnail` is null or missing,
    /// its URL set, in the same atomic document write (values wrapped in `$literal`, so a URL
    /// starting with `$` is not read as a field path).
    async fn add_product_image(&self, id: ProductId, image: &ProductImage) -> Result<Arc<Product>> {
        let image_doc = bson::to_bson(&ImageDoc::from(image)).or_storage()?;
        let pipeline = vec![doc! { "$set": {
            "images": { "$concatArrays": [
                { "$ifNull": ["$images", []] },
                { "$literal": [image_doc] },
            ] },
            "thumbnail": { "$ifNull": ["$thumbnail", { "$literal": &image.url }] },
        } }];
        let updated = self
            .products
            .find_one_and_update(doc! { "_id": convert::id(id) }, pipeline)
            .return_document(ReturnDocument::After)
            .projection(without_search_fields())
            .await
            .or_storage()?;
        updated.ok_or_else(not_found)?.into_product().map(Arc::new).or_storage()
    }

    async fn remove_product_image(&self, id: ProductId, image: ImageId) -> Result<Arc<Product>> {
        let (id, image) = (convert::id(id), convert::id(image));
        let updated = self
            .products
            .find_one_and_update(
                doc! { "_id": &id, "images.id": &image },
                doc! { "$pull": { "images": { "id": &image } } },
            )
            .return_document(ReturnDocument::After)
            .projection(without_search_fields())
            .await
            .or_storage()?;
        if let Some(product) = updated {
            return product.into_product().map(Arc::new).or_storage();
        }
        let exists = self.products.count_documents(doc! { "_id": &id }).await.or_storage()?;
        if exists == 0 {
            Err(not_found())
        } else {
            Err(Error::NotFound { entity: "image" })
        }
    }
}
