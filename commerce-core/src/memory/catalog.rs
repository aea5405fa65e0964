//! Catalog: products (with their search terms), categories, reviews.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, HashSet};

use async_trait::async_trait;

use super::{MemoryStore, read, write};
use crate::domain::{
    Category, CategoryId, ImageId, PRICE_BANDS, Page, PageRequest, PriceBand, Product, ProductId, ProductImage,
    ProductQuery, ProductSearchResult, ProductSort, Rating, Review, ReviewId, Sku, Slug, UserId,
};
use crate::ports::{CategoryStore, ProductStore, ReviewStore};
use crate::search::{index_terms, score};
use crate::{Error, Result};

/// A product with what search needs precomputed.
struct StoredProduct {
    product: Product,
    /// Normalized terms and their weights, from [`index_terms`].
    terms: BTreeMap<String, u32>,
    /// Lower-case brand.
    brand: Option<String>,
    /// Lower-case tags.
    tags: Vec<String>,
}

impl StoredProduct {
    fn new(product: Product) -> Self {
        Self {
            terms: index_terms(&product),
            brand: product.brand.as_deref().map(str::to_lowercase),
            tags: product.tags.iter().map(|t| t.to_lowercase()).collect(),
            product,
        }
    }
}

/// Products (unique slug, SKUs unique across products) and categories (unique slug).
#[derive(Default)]
pub(super) struct Catalog {
    products: HashMap<ProductId, StoredProduct>,
    product_slugs: HashMap<Slug, ProductId>,
    skus: HashMap<Sku, ProductId>,
    categories: HashMap<CategoryId, Category>,
    category_slugs: HashMap<Slug, CategoryId>,
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
        if self.products.contains_key(&product.id) {
            return Err(Error::conflict("product_exists", "a product with this id exists"));
        }
        self.check_unique(product, None)?;
        self.index(product);
        self.products.insert(product.id, StoredProduct::new(product.clone()));
        Ok(())
    }

    fn index(&mut self, product: &Product) {
        self.product_slugs.insert(product.slug.clone(), product.id);
        for v in &product.variants {
            self.skus.insert(v.sku.clone(), product.id);
        }
    }

    fn unindex(&mut self, product: &Product) {
        self.product_slugs.remove(&product.slug);
        for v in &product.variants {
            self.skus.remove(&v.sku);
        }
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
}

/// Whether a stored product passes every filter of the query; its relevance if so.
fn matches(sp: &StoredProduct, q: &ProductQuery, brand: Option<&str>, tags: &[String]) -> Option<u32> {
    let p = &sp.product;
    let price = p.min_price().map(|m| m.amount_minor);
    let ok = (!q.listed_only || p.is_listed())
        && (q.category_ids.is_empty() || p.category_ids().any(|c| q.category_ids.contains(&c)))
        && brand.is_none_or(|b| sp.brand.as_deref() == Some(b))
        && q.min_price.is_none_or(|min| price.is_some_and(|p| p >= min))
        && q.max_price.is_none_or(|max| price.is_some_and(|p| p <= max))
        && tags.iter().all(|t| sp.tags.contains(t))
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
fn cmp_hits(sort: ProductSort, with_terms: bool, a: &(u32, &Product), b: &(u32, &Product)) -> Ordering {
    let ((sa, pa), (sb, pb)) = (a, b);
    let price = |p: &Product| p.min_price().map(|m| m.amount_minor);
    let primary = match sort {
        ProductSort::Relevance if with_terms => sb.cmp(sa),
        ProductSort::Relevance | ProductSort::Newest => Ordering::Equal,
        ProductSort::PriceAsc => cmp_price(price(pa), price(pb), false),
        ProductSort::PriceDesc => cmp_price(price(pa), price(pb), true),
        ProductSort::Rating => pb.rating.average().total_cmp(&pa.rating.average()),
        ProductSort::BestSelling => pb.sales_count.cmp(&pa.sales_count),
    };
    primary
        .then_with(|| pb.created_at.cmp(&pa.created_at))
        .then_with(|| pb.id.cmp(&pa.id))
}

/// Brand and price-band counts over every hit.
fn facets(hits: &[(u32, &Product)]) -> (Vec<(String, u64)>, Vec<PriceBand>) {
    let mut brands: HashMap<&str, u64> = HashMap::new();
    let mut bands: Vec<PriceBand> = PRICE_BANDS
        .iter()
        .map(|&(min, max)| PriceBand { min, max, count: 0 })
        .collect();
    for (_, p) in hits {
        if let Some(brand) = &p.brand {
            *brands.entry(brand.as_str()).or_insert(0) += 1;
        }
        if let Some(price) = p.min_price().map(|m| m.amount_minor) {
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

    async fn get_product(&self, id: ProductId) -> Result<Product> {
        read(&self.inner.catalog)?
            .products
            .get(&id)
            .map(|sp| sp.product.clone())
            .ok_or(Error::NotFound { entity: "product" })
    }

    async fn find_product_by_slug(&self, slug: &Slug) -> Result<Option<Product>> {
        let catalog = read(&self.inner.catalog)?;
        Ok(catalog
            .product_slugs
            .get(slug)
            .and_then(|id| catalog.products.get(id))
            .map(|sp| sp.product.clone()))
    }

    async fn find_products_by_skus(&self, skus: &[Sku]) -> Result<Vec<Product>> {
        let catalog = read(&self.inner.catalog)?;
        let mut seen = HashSet::new();
        Ok(skus
            .iter()
            .filter_map(|sku| catalog.skus.get(sku))
            .filter(|id| seen.insert(**id))
            .filter_map(|id| catalog.products.get(id))
            .map(|sp| sp.product.clone())
            .collect())
    }

    async fn update_product(&self, product: &Product) -> Result<()> {
        let mut catalog = write(&self.inner.catalog)?;
        let old = match catalog.products.get(&product.id) {
            Some(sp) => sp.product.clone(),
            None => return Err(Error::NotFound { entity: "product" }),
        };
        catalog.check_unique(product, Some(product.id))?;
        let stored = Product {
            rating: old.rating,
            sales_count: old.sales_count,
            created_at: old.created_at,
            ..product.clone()
        };
        catalog.unindex(&old);
        catalog.index(&stored);
        catalog.products.insert(stored.id, StoredProduct::new(stored));
        Ok(())
    }

    async fn delete_product(&self, id: ProductId) -> Result<()> {
        let mut catalog = write(&self.inner.catalog)?;
        let sp = catalog
            .products
            .remove(&id)
            .ok_or(Error::NotFound { entity: "product" })?;
        catalog.unindex(&sp.product);
        Ok(())
    }

    async fn search_products(&self, query: &ProductQuery) -> Result<ProductSearchResult> {
        let brand = query.brand.as_deref().map(str::to_lowercase);
        let tags: Vec<String> = query.tags.iter().map(|t| t.to_lowercase()).collect();
        let catalog = read(&self.inner.catalog)?;
        let mut hits: Vec<(u32, &Product)> = catalog
            .products
            .values()
            .filter_map(|sp| matches(sp, query, brand.as_deref(), &tags).map(|s| (s, &sp.product)))
            .collect();
        let with_terms = !query.terms.is_empty();
        hits.sort_by(|a, b| cmp_hits(query.sort, with_terms, a, b));
        let (brands, price_bands) = facets(&hits);
        let page = Page::slice(hits, query.page).map(|(_, p)| p.clone());
        Ok(ProductSearchResult {
            page,
            brands,
            price_bands,
        })
    }

    async fn count_products_in_categories(&self, categories: &[CategoryId]) -> Result<u64> {
        let catalog = read(&self.inner.catalog)?;
        let n = catalog
            .products
            .values()
            .filter(|sp| sp.product.category_ids().any(|c| categories.contains(&c)))
            .count();
        Ok(n as u64)
    }

    async fn add_rating(&self, id: ProductId, rating: Rating) -> Result<()> {
        let mut catalog = write(&self.inner.catalog)?;
        let summary = &mut catalog.product_mut(id)?.product.rating;
        let stars = rating.get();
        summary.count += 1;
        summary.sum += u64::from(stars);
        if let Some(bucket) = summary.histogram.get_mut(usize::from(stars.saturating_sub(1))) {
            *bucket += 1;
        }
        Ok(())
    }

    async fn add_sales(&self, id: ProductId, units: u64) -> Result<()> {
        let mut catalog = write(&self.inner.catalog)?;
        let product = &mut catalog.product_mut(id)?.product;
        product.sales_count = product.sales_count.saturating_add(units);
        Ok(())
    }

    async fn add_product_image(&self, id: ProductId, image: &ProductImage) -> Result<Product> {
        let mut catalog = write(&self.inner.catalog)?;
        let product = &mut catalog.product_mut(id)?.product;
        product.images.push(image.clone());
        if product.thumbnail.is_none() {
            product.thumbnail = Some(image.url.clone());
        }
        Ok(product.clone())
    }

    async fn remove_product_image(&self, id: ProductId, image: ImageId) -> Result<Product> {
        let mut catalog = write(&self.inner.catalog)?;
        let product = &mut catalog.product_mut(id)?.product;
        let at = product
            .images
            .iter()
            .position(|i| i.id == image)
            .ok_or(Error::NotFound { entity: "image" })?;
        product.images.remove(at);
        Ok(product.clone())
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
    by_author: HashMap<(ProductId, UserId), ReviewId>,
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
        let mut list: Vec<&Review> = reviews.reviews.values().filter(|r| r.product_id == product).collect();
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
