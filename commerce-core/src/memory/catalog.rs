//! Catalog: products (with their search terms), categories, reviews.
//!
//! Listing and search answer from materialized views: the ordered products (by their slots,
//! see [`Slots`]) and the facet counts of one query (filters and sort, not the page), kept until
//! a write could change them. A page is then a slice of slots and the products read as they are
//! now. Missing views are built from a
//! term index and a category index, so a search touches only the products holding its rarest
//! term and a category listing only that category's products.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rustc_hash::{FxHashMap, FxHashSet};

use super::{MemoryStore, read, write};
use crate::domain::{
    Category, CategoryId, CompactString, ImageId, PRICE_BANDS, Page, PageRequest, PriceBand, Product, ProductId,
    ProductImage, ProductQuery, ProductSearchResult, ProductSort, RatingSummary, Review, ReviewId, Sku, Slug, UserId,
};
use crate::ports::{CategoryStore, ProductStore, ReviewStore};
use crate::search::{TermIndex, index_terms, score};
use crate::{Error, Result};

/// A product with what search needs precomputed.
struct StoredProduct {
    /// Where it sits in [`Slots`] (views hold these instead of ids).
    slot: u32,
    /// Shared with readers; writes replace it (`Arc::make_mut`), so a reader's copy never changes.
    product: Arc<Product>,
    /// Normalized terms and their weights, from [`index_terms`].
    terms: TermIndex,
    /// Lower-case brand.
    brand: Option<CompactString>,
    /// Lower-case tags.
    tags: Vec<CompactString>,
    /// Lowest variant price, minor units.
    price: Option<i64>,
}

impl StoredProduct {
    fn new(product: Product) -> Self {
        Self {
            slot: 0,
            terms: index_terms(&product),
            brand: product.brand.as_deref().map(|b| b.to_lowercase().into()),
            tags: product.tags.iter().map(|t| t.to_lowercase().into()).collect(),
            price: product.min_price().map(|m| m.amount_minor),
            product: Arc::new(product),
        }
    }
}

/// The products, each in a slot that stays its own until it is deleted. A view holds the
/// slots of its products, so a page reads them straight from here: through a map from ids, each
/// product of a page cost two cache misses (its control bytes, its bucket) before its own, and a
/// view held 16 bytes a product instead of 4. A slot is reused only after a delete, and every
/// insert and delete makes all views stale (`Versions::content`), so a current view's slots
/// are its products'.
#[derive(Default)]
struct Slots {
    slots: Vec<Option<StoredProduct>>,
    by_id: FxHashMap<ProductId, u32>,
    free: Vec<u32>,
}

impl Slots {
    fn get(&self, id: &ProductId) -> Option<&StoredProduct> {
        self.by_id.get(id).and_then(|slot| self.at(*slot))
    }

    fn get_mut(&mut self, id: &ProductId) -> Option<&mut StoredProduct> {
        let slot = *self.by_id.get(id)?;
        self.slots.get_mut(slot as usize)?.as_mut()
    }

    fn at(&self, slot: u32) -> Option<&StoredProduct> {
        self.slots.get(slot as usize)?.as_ref()
    }

    fn contains(&self, id: &ProductId) -> bool {
        self.by_id.contains_key(id)
    }

    /// Stores a product whose id is not stored yet, in a freed slot if there is one.
    fn insert(&mut self, mut sp: StoredProduct) -> Result<()> {
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => u32::try_from(self.slots.len())
                .map_err(|_| Error::unexpected_msg("memory store: more than 4 billion products"))?,
        };
        sp.slot = slot;
        self.by_id.insert(sp.product.id, slot);
        match self.slots.get_mut(slot as usize) {
            Some(place) => *place = Some(sp),
            None => self.slots.push(Some(sp)),
        }
        Ok(())
    }

    fn remove(&mut self, id: &ProductId) -> Option<StoredProduct> {
        let slot = self.by_id.remove(id)?;
        let sp = self.slots.get_mut(slot as usize)?.take();
        self.free.push(slot);
        sp
    }

    fn len(&self) -> usize {
        self.by_id.len()
    }

    fn values(&self) -> impl Iterator<Item = &StoredProduct> {
        self.slots.iter().flatten()
    }
}

/// Most views kept, and most slots all views hold together (4 bytes each): a few times the
/// catalog, so the cache stays a small part of the data set whatever clients ask. The least
/// recently used views go first.
pub(super) const MAX_VIEWS: usize = 1_024;
const VIEW_SLOTS_PER_PRODUCT: usize = 16;
const MIN_VIEW_SLOTS: usize = 65_536;

/// What a listing answer depends on besides the page: the normalized filters and the sort.
#[derive(Clone, PartialEq, Eq, Hash)]
struct ViewKey {
    terms: Vec<String>,
    category_ids: Vec<CategoryId>,
    brand: Option<String>,
    min_price: Option<i64>,
    max_price: Option<i64>,
    tags: Vec<String>,
    min_rating: Option<u64>,
    listed_only: bool,
    sort: ProductSort,
}

impl ViewKey {
    /// `None` for a query that depends on stock (not a catalog write), which is never cached.
    fn of(q: &ProductQuery, brand: Option<&str>, tags: &[String]) -> Option<Self> {
        if q.in_stock_skus.is_some() {
            return None;
        }
        let mut category_ids = q.category_ids.clone();
        category_ids.sort_unstable();
        category_ids.dedup();
        let mut tags = tags.to_vec();
        tags.sort_unstable();
        tags.dedup();
        let sort = effective_sort(q);
        Some(Self {
            terms: q.terms.clone(),
            category_ids,
            brand: brand.map(str::to_owned),
            min_price: q.min_price,
            max_price: q.max_price,
            tags,
            min_rating: q.min_rating.map(f64::to_bits),
            listed_only: q.listed_only,
            sort,
        })
    }

    fn uses_ratings(&self) -> bool {
        self.min_rating.is_some() || self.sort == ProductSort::Rating
    }

    fn uses_sales(&self) -> bool {
        self.sort == ProductSort::BestSelling
    }
}

/// The whole answer to one query but the page.
struct View {
    /// The versions of the catalog it was built from (see [`Versions::stamp`]).
    stamp: (u64, u64, u64),
    /// When it was last served, on [`Catalog::clock`].
    last_used: AtomicU64,
    /// The matching products' slots, in order.
    slots: Vec<u32>,
    brands: Vec<(String, u64)>,
    price_bands: Vec<PriceBand>,
}

/// Write counters: a view is current while the counters it depends on are unchanged.
#[derive(Default, Clone, Copy)]
struct Versions {
    /// Inserts, updates and deletes (anything a filter, a facet or an order can read).
    content: u64,
    /// Ratings (the rating filter and order).
    ratings: u64,
    /// Sales counts (the best-selling order).
    sales: u64,
}

impl Versions {
    fn stamp(self, key: &ViewKey) -> (u64, u64, u64) {
        (
            self.content,
            if key.uses_ratings() { self.ratings } else { 0 },
            if key.uses_sales() { self.sales } else { 0 },
        )
    }
}

/// Products (unique slug, SKUs unique across products) and categories (unique slug).
#[derive(Default)]
pub(super) struct Catalog {
    products: Slots,
    // Fx: slugs and SKUs are written by staff, not chosen by clients (lookups only).
    product_slugs: FxHashMap<Slug, ProductId>,
    skus: FxHashMap<Sku, ProductId>,
    /// Term -> the products whose index holds it.
    postings: FxHashMap<CompactString, FxHashSet<ProductId>>,
    /// Category -> the products in it.
    by_category: FxHashMap<CategoryId, FxHashSet<ProductId>>,
    categories: HashMap<CategoryId, Category>,
    category_slugs: HashMap<Slug, CategoryId>,
    versions: Versions,
    /// Keyed by client-chosen filters, so SipHash (not Fx) guards it against collisions.
    views: Mutex<HashMap<ViewKey, Arc<View>>>,
    /// Counts view lookups, to find the least recently used.
    clock: AtomicU64,
}

impl Catalog {
    /// Refuses a slug or SKU held by a product other than `own`.
    fn check_unique(&self, product: &Product, own: Option<ProductId>) -> Result<()> {
        let other = |holder: &ProductId| Some(*holder) != own;
        if self.product_slugs.get(&product.slug).is_some_and(other) {
            return Err(Error::conflict(
                "slug_taken",
                format!("the slug {} is taken", product.slug),
            ));
        }
        if let Some(v) = product
            .variants
            .iter()
            .find(|v| self.skus.get(&v.sku).is_some_and(other))
        {
            return Err(Error::conflict("sku_taken", format!("the SKU {} is taken", v.sku)));
        }
        Ok(())
    }

    fn insert(&mut self, product: &Product) -> Result<()> {
        if self.products.contains(&product.id) {
            return Err(Error::conflict("product_exists", "a product with this id exists"));
        }
        self.check_unique(product, None)?;
        self.add(StoredProduct::new(product.clone()))
    }

    /// Stores a product and indexes it (uniqueness already checked).
    fn add(&mut self, sp: StoredProduct) -> Result<()> {
        let id = sp.product.id;
        self.product_slugs.insert(sp.product.slug.clone(), id);
        for v in &sp.product.variants {
            self.skus.insert(v.sku.clone(), id);
        }
        for term in sp.terms.keys() {
            self.postings.entry(term.clone()).or_default().insert(id);
        }
        for c in sp.product.category_ids() {
            self.by_category.entry(c).or_default().insert(id);
        }
        self.products.insert(sp)?;
        self.versions.content += 1;
        Ok(())
    }

    /// Removes a product and its index entries.
    fn take(&mut self, id: ProductId) -> Result<StoredProduct> {
        let sp = self.products.remove(&id).ok_or(Error::NotFound { entity: "product" })?;
        self.product_slugs.remove(&sp.product.slug);
        for v in &sp.product.variants {
            self.skus.remove(&v.sku);
        }
        for term in sp.terms.keys() {
            if let Some(ids) = self.postings.get_mut(term) {
                ids.remove(&id);
                if ids.is_empty() {
                    self.postings.remove(term);
                }
            }
        }
        for c in sp.product.category_ids() {
            if let Some(ids) = self.by_category.get_mut(&c) {
                ids.remove(&id);
                if ids.is_empty() {
                    self.by_category.remove(&c);
                }
            }
        }
        self.versions.content += 1;
        Ok(sp)
    }

    fn product_mut(&mut self, id: ProductId) -> Result<&mut StoredProduct> {
        self.products.get_mut(&id).ok_or(Error::NotFound { entity: "product" })
    }

    fn category(&self, id: CategoryId) -> Result<&Category> {
        self.categories.get(&id).ok_or(Error::NotFound { entity: "category" })
    }

    fn check_category_slug(&self, category: &Category) -> Result<()> {
        if self
            .category_slugs
            .get(&category.slug)
            .is_some_and(|holder| *holder != category.id)
        {
            return Err(Error::conflict(
                "slug_taken",
                format!("the slug {} is taken", category.slug),
            ));
        }
        Ok(())
    }

    /// The products that can match: those holding the query's rarest term, or those in its
    /// categories, or all of them. Each product at most once.
    fn candidates<'a>(&'a self, q: &ProductQuery) -> Vec<&'a StoredProduct> {
        let lookup = |ids: &'a FxHashSet<ProductId>| ids.iter().filter_map(|id| self.products.get(id));
        if !q.terms.is_empty() {
            let mut rarest: Option<&FxHashSet<ProductId>> = None;
            for term in &q.terms {
                match self.postings.get(term.as_str()) {
                    // Every term must match: one unknown term means no hit.
                    None => return Vec::new(),
                    Some(ids) if rarest.is_none_or(|r| ids.len() < r.len()) => rarest = Some(ids),
                    Some(_) => {}
                }
            }
            return rarest.map(|ids| lookup(ids).collect()).unwrap_or_default();
        }
        match q.category_ids.as_slice() {
            [] => self.products.values().collect(),
            [one] => self
                .by_category
                .get(one)
                .map(|ids| lookup(ids).collect())
                .unwrap_or_default(),
            many => {
                let mut seen = FxHashSet::default();
                many.iter()
                    .filter_map(|c| self.by_category.get(c))
                    .flatten()
                    .filter(|id| seen.insert(**id))
                    .filter_map(|id| self.products.get(id))
                    .collect()
            }
        }
    }

    /// Builds the answer to a query (all pages).
    fn build_view(&self, q: &ProductQuery, brand: Option<&str>, tags: &[String]) -> View {
        let sort = effective_sort(q);
        let mut hits: Vec<Hit<'_>> = self
            .candidates(q)
            .into_iter()
            .filter_map(|sp| {
                matches(sp, q, brand, tags).map(|score| Hit {
                    score,
                    rating: sp.product.rating.average(),
                    sp,
                })
            })
            .collect();
        hits.sort_unstable_by(|a, b| cmp_hits(sort, a, b));
        let (brands, price_bands) = facets(&hits);
        View {
            stamp: (0, 0, 0),
            last_used: AtomicU64::new(0),
            slots: hits.iter().map(|h| h.sp.slot).collect(),
            brands,
            price_bands,
        }
    }

    /// The current view for a query, built and kept if missing or stale.
    fn view(&self, q: &ProductQuery, brand: Option<&str>, tags: &[String]) -> Result<Arc<View>> {
        let Some(key) = ViewKey::of(q, brand, tags) else {
            return Ok(Arc::new(self.build_view(q, brand, tags)));
        };
        let stamp = self.versions.stamp(&key);
        let now = self.clock.fetch_add(1, AtomicOrdering::Relaxed);
        let lock = || {
            self.views
                .lock()
                .map_err(|_| Error::unexpected_msg("memory store: view cache poisoned"))
        };
        if let Some(view) = lock()?.get(&key).filter(|v| v.stamp == stamp) {
            view.last_used.store(now, AtomicOrdering::Relaxed);
            return Ok(Arc::clone(view));
        }
        // Built outside the cache lock: other queries are served meanwhile.
        let mut view = self.build_view(q, brand, tags);
        view.stamp = stamp;
        view.last_used = AtomicU64::new(now);
        let view = Arc::new(view);
        let budget = (self.products.len() * VIEW_SLOTS_PER_PRODUCT).max(MIN_VIEW_SLOTS);
        if view.slots.len() <= budget {
            let mut views = lock()?;
            views.insert(key, Arc::clone(&view));
            self.evict(&mut views, budget);
        }
        Ok(view)
    }

    /// How many product slots exist, used or free (for tests).
    #[cfg(test)]
    pub(super) fn slots_held(&self) -> usize {
        self.products.slots.len()
    }

    /// How many views are kept (for tests).
    #[cfg(test)]
    pub(super) fn cached_views(&self) -> usize {
        self.views.lock().map(|v| v.len()).unwrap_or(usize::MAX)
    }

    /// Drops stale views, then the least recently used ones, until the cache fits its bounds.
    fn evict(&self, views: &mut HashMap<ViewKey, Arc<View>>, budget: usize) {
        let held = |views: &HashMap<ViewKey, Arc<View>>| views.values().map(|v| v.slots.len()).sum::<usize>();
        if views.len() <= MAX_VIEWS && held(views) <= budget {
            return;
        }
        let versions = self.versions;
        views.retain(|k, v| v.stamp == versions.stamp(k));
        let mut held = held(views);
        if views.len() <= MAX_VIEWS && held <= budget {
            return;
        }
        let mut by_age: Vec<(u64, ViewKey)> = views
            .iter()
            .map(|(k, v)| (v.last_used.load(AtomicOrdering::Relaxed), k.clone()))
            .collect();
        by_age.sort_unstable_by_key(|(used, _)| *used);
        for (_, key) in by_age {
            if views.len() <= MAX_VIEWS && held <= budget {
                break;
            }
            if let Some(gone) = views.remove(&key) {
                held -= gone.slots.len();
            }
        }
    }
}

/// The order a query asks for: without terms, relevance is the newest-first order.
fn effective_sort(q: &ProductQuery) -> ProductSort {
    match q.sort {
        ProductSort::Relevance if q.terms.is_empty() => ProductSort::Newest,
        other => other,
    }
}

/// A product that matched, with its sort keys.
struct Hit<'a> {
    score: u32,
    rating: f64,
    sp: &'a StoredProduct,
}

/// Whether a stored product passes every filter of the query; its relevance if so.
fn matches(sp: &StoredProduct, q: &ProductQuery, brand: Option<&str>, tags: &[String]) -> Option<u32> {
    let p = &sp.product;
    let price = sp.price;
    let ok = (!q.listed_only || p.is_listed())
        && (q.category_ids.is_empty() || p.category_ids().any(|c| q.category_ids.contains(&c)))
        && brand.is_none_or(|b| sp.brand.as_deref() == Some(b))
        && q.min_price.is_none_or(|min| price.is_some_and(|p| p >= min))
        && q.max_price.is_none_or(|max| price.is_some_and(|p| p <= max))
        && tags.iter().all(|t| sp.tags.iter().any(|held| held == t))
        && q.min_rating.is_none_or(|min| p.rating.average() >= min)
        && q.in_stock_skus
            .as_ref()
            .is_none_or(|skus| p.variants.iter().any(|v| skus.contains(&v.sku)));
    if ok { score(&q.terms, &sp.terms) } else { None }
}

/// `Some` before `None`, then ascending (or descending).
fn cmp_price(a: Option<i64>, b: Option<i64>, descending: bool) -> Ordering {
    match (a, b) {
        (Some(a), Some(b)) if descending => b.cmp(&a),
        (Some(a), Some(b)) => a.cmp(&b),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

/// The order of a search result: the sort key, then newest first, then id (descending).
/// `Relevance` here means "with terms" ([`effective_sort`] turns it into `Newest` without).
fn cmp_hits(sort: ProductSort, a: &Hit<'_>, b: &Hit<'_>) -> Ordering {
    let (pa, pb) = (&a.sp.product, &b.sp.product);
    let primary = match sort {
        ProductSort::Relevance => b.score.cmp(&a.score),
        ProductSort::Newest => Ordering::Equal,
        ProductSort::PriceAsc => cmp_price(a.sp.price, b.sp.price, false),
        ProductSort::PriceDesc => cmp_price(a.sp.price, b.sp.price, true),
        ProductSort::Rating => b.rating.total_cmp(&a.rating),
        ProductSort::BestSelling => pb.sales_count.cmp(&pa.sales_count),
    };
    primary
        .then_with(|| pb.created_at.cmp(&pa.created_at))
        .then_with(|| pb.id.cmp(&pa.id))
}

/// Brand and price-band counts over every hit.
fn facets(hits: &[Hit<'_>]) -> (Vec<(String, u64)>, Vec<PriceBand>) {
    let mut brands: FxHashMap<&str, u64> = FxHashMap::default();
    let mut bands: Vec<PriceBand> = PRICE_BANDS
        .iter()
        .map(|&(min, max)| PriceBand { min, max, count: 0 })
        .collect();
    for hit in hits {
        if let Some(brand) = &hit.sp.product.brand {
            *brands.entry(brand.as_str()).or_insert(0) += 1;
        }
        if let Some(price) = hit.sp.price {
            for band in bands
                .iter_mut()
                .filter(|b| price >= b.min && b.max.is_none_or(|max| price < max))
            {
                band.count += 1;
            }
        }
    }
    let mut brands: Vec<(String, u64)> = brands.into_iter().map(|(b, n)| (b.to_owned(), n)).collect();
    brands.sort_by(|(na, ca), (nb, cb)| cb.cmp(ca).then_with(|| na.cmp(nb)));
    (brands, bands)
}

#[async_trait]
impl ProductStore for MemoryStore {
    async fn insert_product(&self, product: &Product) -> Result<()> {
        write(&self.inner.catalog)?.insert(product)
    }

    async fn insert_products(&self, products: &[Product]) -> Result<Vec<Result<()>>> {
        let mut catalog = write(&self.inner.catalog)?;
        Ok(products.iter().map(|p| catalog.insert(p)).collect())
    }

    async fn get_product(&self, id: ProductId) -> Result<Arc<Product>> {
        read(&self.inner.catalog)?
            .products
            .get(&id)
            .map(|sp| Arc::clone(&sp.product))
            .ok_or(Error::NotFound { entity: "product" })
    }

    async fn find_product_by_slug(&self, slug: &Slug) -> Result<Option<Arc<Product>>> {
        let catalog = read(&self.inner.catalog)?;
        Ok(catalog
            .product_slugs
            .get(slug)
            .and_then(|id| catalog.products.get(id))
            .map(|sp| Arc::clone(&sp.product)))
    }

    async fn find_products_by_skus(&self, skus: &[Sku]) -> Result<Vec<Arc<Product>>> {
        let catalog = read(&self.inner.catalog)?;
        let mut found: Vec<Arc<Product>> = Vec::with_capacity(skus.len());
        for id in skus.iter().filter_map(|sku| catalog.skus.get(sku)) {
            // A cart's few lines: a scan beats hashing to tell a product already found.
            if !found.iter().any(|p| p.id == *id)
                && let Some(sp) = catalog.products.get(id)
            {
                found.push(Arc::clone(&sp.product));
            }
        }
        Ok(found)
    }

    async fn update_product(&self, product: &Product) -> Result<()> {
        let mut catalog = write(&self.inner.catalog)?;
        let old = match catalog.products.get(&product.id) {
            Some(sp) => &sp.product,
            None => return Err(Error::NotFound { entity: "product" }),
        };
        let stored = Product {
            rating: old.rating,
            sales_count: old.sales_count,
            created_at: old.created_at,
            ..Product::clone(product)
        };
        catalog.check_unique(&stored, Some(stored.id))?;
        catalog.take(stored.id)?;
        catalog.add(StoredProduct::new(stored))
    }

    async fn delete_product(&self, id: ProductId) -> Result<()> {
        write(&self.inner.catalog)?.take(id).map(drop)
    }

    async fn search_products(&self, query: &ProductQuery) -> Result<ProductSearchResult> {
        let brand = query.brand.as_deref().map(str::to_lowercase);
        let tags: Vec<String> = query.tags.iter().map(|t| t.to_lowercase()).collect();
        let catalog = read(&self.inner.catalog)?;
        let view = catalog.view(query, brand.as_deref(), &tags)?;
        let items = view
            .slots
            .iter()
            .skip(usize::try_from(query.page.offset()).unwrap_or(usize::MAX))
            .take(query.page.limit() as usize)
            .filter_map(|slot| catalog.products.at(*slot))
            .map(|sp| Arc::clone(&sp.product))
            .collect();
        Ok(ProductSearchResult {
            page: Page::new(items, view.slots.len() as u64, query.page),
            brands: view.brands.clone(),
            price_bands: view.price_bands.clone(),
        })
    }

    async fn count_products_in_categories(&self, categories: &[CategoryId]) -> Result<u64> {
        let catalog = read(&self.inner.catalog)?;
        let mut seen = FxHashSet::default();
        let n = categories
            .iter()
            .filter_map(|c| catalog.by_category.get(c))
            .flatten()
            .filter(|id| seen.insert(**id))
            .count();
        Ok(n as u64)
    }

    async fn recount_rating(&self, id: ProductId) -> Result<()> {
        // The catalog, then the reviews: the one place holding both takes them in this order.
        let mut catalog = write(&self.inner.catalog)?;
        let counted = read(&self.inner.reviews)?.summary_of(id);
        let stored = &mut catalog.product_mut(id)?.product;
        if counted.count > stored.rating.count {
            Arc::make_mut(stored).rating = counted;
            catalog.versions.ratings += 1;
        }
        Ok(())
    }

    async fn add_sales(&self, id: ProductId, units: u64) -> Result<()> {
        let mut catalog = write(&self.inner.catalog)?;
        let product = Arc::make_mut(&mut catalog.product_mut(id)?.product);
        product.sales_count = product.sales_count.saturating_add(units);
        catalog.versions.sales += 1;
        Ok(())
    }

    // Images change what a page shows, never which products match or their order, and pages
    // read products as they are now: no view goes stale.
    async fn add_product_image(&self, id: ProductId, image: &ProductImage) -> Result<Arc<Product>> {
        let mut catalog = write(&self.inner.catalog)?;
        let stored = &mut catalog.product_mut(id)?.product;
        let product = Arc::make_mut(stored);
        product.images.push(image.clone());
        if product.thumbnail.is_none() {
            product.thumbnail = Some(image.url.clone());
        }
        Ok(Arc::clone(stored))
    }

    async fn remove_product_image(&self, id: ProductId, image: ImageId) -> Result<Arc<Product>> {
        let mut catalog = write(&self.inner.catalog)?;
        let stored = &mut catalog.product_mut(id)?.product;
        let at = stored
            .images
            .iter()
            .position(|i| i.id == image)
            .ok_or(Error::NotFound { entity: "image" })?;
        Arc::make_mut(stored).images.remove(at);
        Ok(Arc::clone(stored))
    }
}

#[async_trait]
impl CategoryStore for MemoryStore {
    async fn insert_category(&self, category: &Category) -> Result<()> {
        let mut catalog = write(&self.inner.catalog)?;
        if catalog.categories.contains_key(&category.id) {
            return Err(Error::conflict("category_exists", "a category with this id exists"));
        }
        catalog.check_category_slug(category)?;
        catalog.category_slugs.insert(category.slug.clone(), category.id);
        catalog.categories.insert(category.id, category.clone());
        Ok(())
    }

    async fn get_category(&self, id: CategoryId) -> Result<Category> {
        read(&self.inner.catalog)?.category(id).cloned()
    }

    async fn find_category_by_slug(&self, slug: &Slug) -> Result<Option<Category>> {
        let catalog = read(&self.inner.catalog)?;
        Ok(catalog
            .category_slugs
            .get(slug)
            .and_then(|id| catalog.categories.get(id))
            .cloned())
    }

    async fn list_categories(&self) -> Result<Vec<Category>> {
        let mut list: Vec<Category> = read(&self.inner.catalog)?.categories.values().cloned().collect();
        list.sort_by(|a, b| {
            a.sort_order
                .cmp(&b.sort_order)
                .then_with(|| a.name.cmp(&b.name))
                .then_with(|| a.id.cmp(&b.id))
        });
        Ok(list)
    }

    async fn descendant_ids(&self, id: CategoryId) -> Result<Vec<CategoryId>> {
        let catalog = read(&self.inner.catalog)?;
        let mut below: Vec<&Category> = catalog
            .categories
            .values()
            .filter(|c| c.ancestors.contains(&id))
            .collect();
        // Shallow first, then as listed, so the answer is stable.
        below.sort_by(|a, b| {
            a.ancestors
                .len()
                .cmp(&b.ancestors.len())
                .then_with(|| a.sort_order.cmp(&b.sort_order))
                .then_with(|| a.name.cmp(&b.name))
                .then_with(|| a.id.cmp(&b.id))
        });
        Ok(below.into_iter().map(|c| c.id).collect())
    }

    async fn update_category(&self, category: &Category) -> Result<()> {
        let mut catalog = write(&self.inner.catalog)?;
        let old = catalog.category(category.id)?.clone();
        catalog.check_category_slug(category)?;
        if old.ancestors != category.ancestors {
            for c in catalog.categories.values_mut() {
                if let Some(at) = c.ancestors.iter().position(|a| *a == category.id) {
                    let mut path = category.ancestors.clone();
                    path.extend_from_slice(&c.ancestors[at..]);
                    c.ancestors = path;
                }
            }
        }
        catalog.category_slugs.remove(&old.slug);
        catalog.category_slugs.insert(category.slug.clone(), category.id);
        catalog.categories.insert(category.id, category.clone());
        Ok(())
    }

    async fn delete_category(&self, id: CategoryId) -> Result<()> {
        let mut catalog = write(&self.inner.catalog)?;
        let slug = catalog.category(id)?.slug.clone();
        if catalog
            .categories
            .values()
            .any(|c| c.parent_id == Some(id) || c.ancestors.contains(&id))
        {
            return Err(Error::conflict(
                "category_has_children",
                "the category has subcategories",
            ));
        }
        catalog.categories.remove(&id);
        catalog.category_slugs.remove(&slug);
        Ok(())
    }
}

/// Reviews, one per user per product.
#[derive(Default)]
pub(super) struct Reviews {
    reviews: HashMap<ReviewId, Review>,
    /// Ordered by product first, so a product's reviews are one range (not a scan of all).
    by_author: BTreeMap<(ProductId, UserId), ReviewId>,
}

impl Reviews {
    /// The product's reviews, in author order.
    fn of_product(&self, product: ProductId) -> impl Iterator<Item = &Review> {
        let authors = (product, UserId(uuid::Uuid::nil()))..=(product, UserId(uuid::Uuid::max()));
        self.by_author.range(authors).filter_map(|(_, id)| self.reviews.get(id))
    }

    /// The rating summary of the product's reviews.
    fn summary_of(&self, product: ProductId) -> RatingSummary {
        let mut summary = RatingSummary::default();
        for review in self.of_product(product) {
            let stars = review.rating.get();
            summary.count += 1;
            summary.sum += u64::from(stars);
            if let Some(bucket) = summary.histogram.get_mut(usize::from(stars.saturating_sub(1))) {
                *bucket += 1;
            }
        }
        summary
    }
}

#[async_trait]
impl ReviewStore for MemoryStore {
    async fn insert_review(&self, review: &Review) -> Result<()> {
        let mut reviews = write(&self.inner.reviews)?;
        if reviews.by_author.contains_key(&(review.product_id, review.user_id)) {
            return Err(Error::conflict(
                "already_reviewed",
                "you have already reviewed this product",
            ));
        }
        if reviews.reviews.contains_key(&review.id) {
            return Err(Error::conflict("review_exists", "a review with this id exists"));
        }
        reviews.by_author.insert((review.product_id, review.user_id), review.id);
        reviews.reviews.insert(review.id, review.clone());
        Ok(())
    }

    async fn list_reviews(&self, product: ProductId, page: PageRequest) -> Result<Page<Review>> {
        let reviews = read(&self.inner.reviews)?;
        let mut list: Vec<&Review> = reviews.of_product(product).collect();
        list.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| b.id.cmp(&a.id)));
        Ok(Page::slice(list, page).map(Review::clone))
    }

    async fn find_review(&self, product: ProductId, user: UserId) -> Result<Option<Review>> {
        let reviews = read(&self.inner.reviews)?;
        Ok(reviews
            .by_author
            .get(&(product, user))
            .and_then(|id| reviews.reviews.get(id))
            .cloned())
    }
}
