//! Tests of what is specific to the MongoDB adapter: indexes, stored document shapes,
//! duplicate-key translation, search parity with the in-memory adapter, atomic counters and
//! cart concurrency. The behavioural contract is the conformance suite's (`conformance.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};

use bson::{Bson, Document, doc};
use chrono::{DateTime, Duration, SubsecRound, Utc};
use commerce_core::CatalogBackend;
use commerce_core::Error;
use commerce_core::domain::{
    Attributes, Cart, CartId, CartItem, CartItemId, CartOwner, CartStatus, CategoryId, Currency, Money, OrderId,
    PageRequest, Product, ProductId, ProductQuery, ProductSort, ProductStatus, Quantity, Rating, RatingSummary, Review,
    ReviewId, Seo, Sku, Slug, UserId, Variant, Visibility,
};
use commerce_core::memory::MemoryStore;
use commerce_core::ports::{CartStore, HealthCheck, ProductStore, ReviewStore};
use commerce_core::search::terms;
use commerce_mongo::{CARTS, MongoError, MongoStore, PRODUCTS, REVIEWS, indexes};

fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(3)
}

fn unique() -> String {
    uuid::Uuid::now_v7().simple().to_string()[20..].to_owned()
}

fn sku() -> Sku {
    Sku::parse(&format!("SKU-{}", unique())).unwrap()
}

fn variant(price: i64) -> Variant {
    Variant {
        sku: sku(),
        name: None,
        options: Attributes::new(),
        price: Money::new(price, Currency::USD),
        compare_at_price: None,
        weight_grams: None,
        dimensions: None,
    }
}

fn product(name: &str, price: i64, at: DateTime<Utc>) -> Product {
    Product {
        id: ProductId::new(),
        name: name.to_owned(),
        slug: Slug::parse(&format!("p-{}", unique())).unwrap(),
        description: String::new(),
        short_description: None,
        brand: None,
        tags: Vec::new(),
        category_id: None,
        subcategory_ids: Vec::new(),
        specifications: Attributes::new(),
        status: ProductStatus::Active,
        visibility: Visibility::Public,
        images: Vec::new(),
        thumbnail: None,
        seo: Seo::default(),
        variants: vec![variant(price)],
        rating: RatingSummary::default(),
        sales_count: 0,
        created_at: at,
        updated_at: at,
    }
}

fn cart(owner: CartOwner, at: DateTime<Utc>) -> Cart {
    Cart {
        id: CartId::new(),
        owner,
        items: vec![CartItem {
            id: CartItemId::new(),
            sku: sku(),
            quantity: Quantity::new(2).unwrap(),
            added_at: at,
        }],
        status: CartStatus::Active,
        version: 1,
        created_at: at,
        updated_at: at,
        expires_at: at + Duration::days(7),
    }
}

#[track_caller]
fn assert_conflict<T: std::fmt::Debug>(result: commerce_core::Result<T>, code: &str) {
    match result {
        Err(Error::Conflict { code: got, .. }) if got == code => {}
        other => panic!("expected Conflict {{ code: {code:?} }}, got {other:?}"),
    }
}

async fn raw(store: &MongoStore, collection: &str, id: impl std::fmt::Display) -> Document {
    store
        .database()
        .collection::<Document>(collection)
        .find_one(doc! { "_id": id.to_string() })
        .await
        .unwrap()
        .expect("stored document")
}

/// `(name, spec)` of every index of a collection, as the server lists them.
async fn index_specs(store: &MongoStore, collection: &str) -> BTreeMap<String, Document> {
    let listed = store
        .database()
        .run_command(doc! { "listIndexes": collection })
        .await
        .unwrap();
    listed
        .get_document("cursor")
        .unwrap()
        .get_array("firstBatch")
        .unwrap()
        .iter()
        .map(|spec| {
            let spec = spec.as_document().unwrap().clone();
            (spec.get_str("name").unwrap().to_owned(), spec)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn indexes_exist_with_their_names_and_options() {
    let store = support::fresh_store().await;
    for collection in [PRODUCTS, commerce_mongo::CATEGORIES, REVIEWS, CARTS] {
        let names = store
            .database()
            .collection::<Document>(collection)
            .list_index_names()
            .await
            .unwrap();
        for (_, name) in indexes::ALL.iter().filter(|(c, _)| *c == collection) {
            assert!(
                names.iter().any(|n| n == name),
                "{collection} lacks index {name}: {names:?}"
            );
        }
    }
    let products = index_specs(&store, PRODUCTS).await;
    let carts = index_specs(&store, CARTS).await;
    let opt = |specs: &BTreeMap<String, Document>, name: &str, key: &str| specs[name].get(key).cloned();
    assert_eq!(
        opt(&products, indexes::PRODUCT_SLUG, "unique"),
        Some(Bson::Boolean(true))
    );
    assert_eq!(
        opt(&products, indexes::PRODUCT_SKU, "unique"),
        Some(Bson::Boolean(true))
    );
    assert_eq!(
        products[indexes::PRODUCT_SKU].get_document("key").unwrap(),
        &doc! { "variants.sku": 1 },
    );
    assert_eq!(
        opt(&carts, indexes::CART_ACTIVE_OWNER, "unique"),
        Some(Bson::Boolean(true))
    );
    assert_eq!(
        opt(&carts, indexes::CART_ACTIVE_OWNER, "sparse"),
        Some(Bson::Boolean(true))
    );
    let ttl = opt(&carts, indexes::CART_EXPIRES_AT, "expireAfterSeconds");
    assert!(
        matches!(ttl, Some(Bson::Int32(86_400)) | Some(Bson::Int64(86_400))),
        "TTL one day after expiresAt, got {ttl:?}"
    );
    support::drop(&store).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ensure_indexes_is_idempotent() {
    let store = support::fresh_store().await;
    let before = index_specs(&store, PRODUCTS).await.into_keys().collect::<Vec<_>>();
    store.ensure_indexes().await.unwrap();
    let (a, b) = tokio::join!(store.ensure_indexes(), store.ensure_indexes());
    a.unwrap();
    b.unwrap();
    let after = index_specs(&store, PRODUCTS).await.into_keys().collect::<Vec<_>>();
    assert_eq!(before, after, "no index added or changed");
    support::drop(&store).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn open_connects_creates_indexes_and_pings() {
    let name = support::fresh_name();
    let store = MongoStore::open(&support::uri(), &name).await.unwrap();
    assert_eq!(store.backend(), "mongodb");
    store.ping().await.unwrap();
    assert_eq!(store.database().name(), name);
    let names = store
        .database()
        .collection::<Document>(CARTS)
        .list_index_names()
        .await
        .unwrap();
    assert!(names.iter().any(|n| n == indexes::CART_ACTIVE_OWNER), "{names:?}");
    // Opening again on the same database is fine (idempotent indexes).
    MongoStore::open(&support::uri(), &name).await.unwrap();
    support::drop(&store).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_server_is_a_storage_error() {
    let uri = "mongodb://127.0.0.1:1/?directConnection=true&serverSelectionTimeoutMS=300&connectTimeoutMS=300";
    let opened = MongoStore::open(uri, "nowhere").await;
    let error = opened.expect_err("no server listens on port 1");
    assert!(matches!(error, MongoError::Driver(_)), "{error:?}");
    assert!(matches!(Error::from(error), Error::Storage(_)));
}

#[tokio::test(flavor = "multi_thread")]
async fn documents_have_the_documented_shape() {
    let store = support::fresh_store().await;
    let at = now();
    let mut p = product("Crème Brûlée Dishes", 1_999, at);
    p.brand = Some("Maison".to_owned());
    p.tags = vec!["Kitchen".to_owned()];
    p.category_id = Some(CategoryId::new());
    p.subcategory_ids = vec![CategoryId::new()];
    p.specifications = Attributes::from_iter([
        ("a.b".to_owned(), "dotted".to_owned()),
        ("$x".to_owned(), "dollar".to_owned()),
    ]);
    p.variants.push(variant(999));
    store.insert_product(&p).await.unwrap();
    assert_eq!(
        store.get_product(p.id).await.unwrap(),
        std::sync::Arc::new(p.clone()),
        "keys with '.' and '$' round-trip"
    );

    let d = raw(&store, PRODUCTS, p.id).await;
    assert_eq!(d.get_str("_id").unwrap(), p.id.to_string());
    let price = d.get_array("variants").unwrap()[0]
        .as_document()
        .unwrap()
        .get_document("price")
        .unwrap();
    assert_eq!(price, &doc! { "amountMinor": 1_999_i64, "currency": "USD" });
    assert_eq!(d.get_i64("minPrice").unwrap(), 999);
    assert_eq!(d.get_str("brandKey").unwrap(), "maison");
    let categories: Vec<&str> = d
        .get_array("categoryIds")
        .unwrap()
        .iter()
        .filter_map(Bson::as_str)
        .collect();
    assert_eq!(
        categories,
        vec![p.category_id.unwrap().to_string(), p.subcategory_ids[0].to_string()]
    );
    let search_terms: BTreeSet<&str> = d
        .get_array("searchTerms")
        .unwrap()
        .iter()
        .filter_map(Bson::as_str)
        .collect();
    assert_eq!(
        search_terms,
        BTreeSet::from(["creme", "brulee", "dish", "maison", "kitchen"])
    );
    let weights: BTreeMap<String, i64> = d
        .get_array("searchWeights")
        .unwrap()
        .iter()
        .map(|w| {
            let w = w.as_document().unwrap();
            (w.get_str("t").unwrap().to_owned(), w.get_i64("w").unwrap())
        })
        .collect();
    assert_eq!(weights["dish"], 8);
    assert_eq!(weights["maison"], 4);
    assert!(matches!(d.get("createdAt"), Some(Bson::DateTime(_))));

    let c = cart(CartOwner::User(UserId::new()), at);
    store.insert_cart(&c).await.unwrap();
    let d = raw(&store, CARTS, c.id).await;
    assert_eq!(d.get_str("activeOwner").unwrap(), d.get_str("ownerKey").unwrap());
    assert_eq!(d.get_str("status").unwrap(), "active");
    let order = OrderId::new();
    store
        .set_cart_status(c.id, CartStatus::Active, CartStatus::Converted(order), at)
        .await
        .unwrap();
    let d = raw(&store, CARTS, c.id).await;
    assert!(d.get("activeOwner").is_none(), "no active claim once converted: {d:?}");
    assert_eq!(d.get_str("orderId").unwrap(), order.to_string());
    support::drop(&store).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicate_slugs_and_skus_map_to_conflict_codes() {
    let store = support::fresh_store().await;
    let at = now();
    let first = product("First", 100, at);
    store.insert_product(&first).await.unwrap();

    // The same SKU in another product (not the first variant).
    let mut other = product("Other", 100, at);
    other.variants.push(first.variants[0].clone());
    assert_conflict(store.insert_product(&other).await, "sku_taken");
    // Slug and SKU both taken: the slug is reported, as by the other adapters.
    let mut both = product("Both", 100, at);
    both.slug = first.slug.clone();
    both.variants = first.variants.clone();
    assert_conflict(store.insert_product(&both).await, "slug_taken");
    // A SKU repeated inside one product: a multikey unique index would let it in.
    let mut twice = product("Twice", 100, at);
    twice.variants.push(twice.variants[0].clone());
    assert_conflict(store.insert_product(&twice).await, "sku_taken");
    assert!(store.get_product(twice.id).await.unwrap_err().is_not_found());
    // Same id.
    let mut same_id = product("Same id", 100, at);
    same_id.id = first.id;
    assert_conflict(store.insert_product(&same_id).await, "product_exists");

    // Updates: taking another product's SKU, or repeating one, is refused.
    let second = product("Second", 100, at);
    store.insert_product(&second).await.unwrap();
    let mut steal = second.clone();
    steal.variants.push(first.variants[0].clone());
    assert_conflict(store.update_product(&steal).await, "sku_taken");
    let mut repeat = second.clone();
    repeat.variants.push(second.variants[0].clone());
    assert_conflict(store.update_product(&repeat).await, "sku_taken");
    assert_eq!(
        store.get_product(second.id).await.unwrap(),
        std::sync::Arc::new(second),
        "refused updates change nothing"
    );

    // In a batch: a repeated SKU inside one product does not stop the others.
    let ok1 = product("Ok 1", 100, at);
    let ok2 = product("Ok 2", 100, at);
    let results = store
        .insert_products(&[twice.clone(), ok1.clone(), ok2.clone()])
        .await
        .unwrap();
    assert_conflict(results[0].clone_result(), "sku_taken");
    assert!(results[1].is_ok() && results[2].is_ok(), "{results:?}");
    assert!(store.insert_products(&[]).await.unwrap().is_empty());
    support::drop(&store).await;
}

/// `Result<(), Error>` is not `Clone`; rebuild the conflict for [`assert_conflict`].
trait CloneResult {
    fn clone_result(&self) -> commerce_core::Result<()>;
}

impl CloneResult for commerce_core::Result<()> {
    fn clone_result(&self) -> commerce_core::Result<()> {
        match self {
            Ok(()) => Ok(()),
            Err(Error::Conflict { code, message }) => Err(Error::conflict(code, message.clone())),
            Err(e) => Err(Error::unexpected_msg(e.to_string())),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn search_folds_accents_and_plurals_and_ranks() {
    let store = support::fresh_store().await;
    let scope = CategoryId::new();
    let at = now() - Duration::minutes(1);
    let mut brulee = product("Crème Brûlée Dish", 2_999, at);
    brulee.description = "Porcelain ramekins for berries.".to_owned();
    let mut boxes = product("Gift Boxes", 1_500, at + Duration::seconds(1));
    boxes.description = "Boxes for a crème brûlée set.".to_owned();
    for p in [&mut brulee, &mut boxes] {
        p.category_id = Some(scope);
        store.insert_product(p).await.unwrap();
    }
    let search = |text: &str| {
        let store = store.clone();
        let q = ProductQuery {
            terms: terms(text),
            category_ids: vec![scope],
            page: PageRequest::new(1, 10).unwrap(),
            ..ProductQuery::default()
        };
        async move {
            let r = store.search_products(&q).await.unwrap();
            r.page.items.iter().map(|p| p.name.clone()).collect::<Vec<_>>()
        }
    };
    // Name match (8) ranks above description match (1), although older.
    assert_eq!(search("CREME brulees").await, vec!["Crème Brûlée Dish", "Gift Boxes"]);
    assert_eq!(search("dishes").await, vec!["Crème Brûlée Dish"]);
    assert_eq!(search("box").await, vec!["Gift Boxes"]);
    assert_eq!(search("berry").await, vec!["Crème Brûlée Dish"]);
    assert_eq!(
        search("ramekin boxes").await,
        Vec::<String>::new(),
        "every term must match"
    );
    support::drop(&store).await;
}

/// A deterministic pseudo-random sequence (no extra dependency).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.next(items.len() as u64) as usize]
    }
}

/// Same products, same queries: the page (order included), total and facets equal the
/// in-memory adapter's, for every sort, with and without text, filters and pages.
#[tokio::test(flavor = "multi_thread")]
async fn search_equals_the_memory_adapter() {
    let mongo = support::fresh_store().await;
    let memory = MemoryStore::new();
    let mut rng = Lcg(7);
    let scope = [CategoryId::new(), CategoryId::new(), CategoryId::new()];
    let words = ["lantern", "shoe", "boxes", "berry", "camp", "trail", "crème", "glow"];
    let brands = ["Acme", "acme", "Bolt", "Core", "Zephyr"];
    let tags = ["red", "Sale", "outdoor", "new"];
    let t0 = now() - Duration::hours(1);
    let mut products = Vec::new();
    for i in 0..60 {
        // Few distinct times, so ties on the sort key and on created_at are common.
        let at = t0 + Duration::seconds(rng.next(6) as i64);
        let name = format!("{} {}", rng.pick(&words), rng.pick(&words));
        let mut p = product(
            &name,
            [900, 2_500, 4_999, 5_000, 24_999, 25_000, 80_000][rng.next(7) as usize],
            at,
        );
        if rng.next(3) > 0 {
            p.variants.push(variant(rng.next(30_000) as i64));
        }
        p.description = format!("{} and {}", rng.pick(&words), rng.pick(&words));
        p.brand = (rng.next(5) > 0).then(|| rng.pick(&brands).to_string());
        p.tags = (0..rng.next(3)).map(|_| rng.pick(&tags).to_string()).collect();
        p.category_id = Some(*rng.pick(&scope));
        p.status = *rng.pick(&[ProductStatus::Active, ProductStatus::Active, ProductStatus::Draft]);
        p.visibility = *rng.pick(&[Visibility::Public, Visibility::Featured, Visibility::Hidden]);
        p.name = format!("{} {i}", p.name);
        products.push(p);
    }
    for p in &products {
        mongo.insert_product(p).await.unwrap();
        memory.insert_product(p).await.unwrap();
    }
    for p in &products {
        for _ in 0..rng.next(4) {
            let r = review(p.id, rng.next(5) as i64 + 1);
            for store in [&mongo as &dyn CatalogBackend, &memory] {
                store.insert_review(&r).await.unwrap();
                store.recount_rating(p.id).await.unwrap();
            }
        }
        let sales = rng.next(4) * 5;
        mongo.add_sales(p.id, sales).await.unwrap();
        memory.add_sales(p.id, sales).await.unwrap();
    }
    let sorts = [
        ProductSort::Relevance,
        ProductSort::PriceAsc,
        ProductSort::PriceDesc,
        ProductSort::Newest,
        ProductSort::Rating,
        ProductSort::BestSelling,
    ];
    let texts = ["", "lantern", "shoes", "creme", "glow camp", "berries trail"];
    let mut compared = 0;
    for sort in sorts {
        for text in texts {
            for variant in 0..6 {
                let mut q = ProductQuery {
                    terms: terms(text),
                    category_ids: scope.to_vec(),
                    sort,
                    page: PageRequest::new(1, 100).unwrap(),
                    ..ProductQuery::default()
                };
                match variant {
                    1 => q.listed_only = true,
                    2 => q.brand = Some("ACME".to_owned()),
                    3 => {
                        q.min_price = Some(2_500);
                        q.max_price = Some(25_000);
                        q.tags = vec!["sale".to_owned()];
                    }
                    4 => q.min_rating = Some(3.5),
                    5 => {
                        q.category_ids = vec![scope[0]];
                        q.page = PageRequest::new(2, 4).unwrap();
                    }
                    _ => {}
                }
                let want = memory.search_products(&q).await.unwrap();
                let got = mongo.search_products(&q).await.unwrap();
                let ids = |r: &commerce_core::domain::ProductSearchResult| {
                    r.page.items.iter().map(|p| p.name.clone()).collect::<Vec<_>>()
                };
                assert_eq!(ids(&got), ids(&want), "page of {q:?}");
                assert_eq!(got.page.items, want.page.items, "products of {q:?}");
                assert_eq!(got.page.total, want.page.total, "total of {q:?}");
                assert_eq!(got.brands, want.brands, "brands of {q:?}");
                assert_eq!(got.price_bands, want.price_bands, "price bands of {q:?}");
                compared += 1;
            }
        }
    }
    assert_eq!(compared, 6 * 6 * 6);
    support::drop(&mongo).await;
}

/// A review of `product` by a new customer.
fn review(product: ProductId, stars: i64) -> Review {
    Review {
        id: ReviewId::new(),
        product_id: product,
        user_id: UserId::new(),
        author_name: "Ada L.".to_owned(),
        rating: Rating::new(stars).unwrap(),
        title: format!("{stars} stars"),
        body: "Does what it says.".to_owned(),
        verified_purchase: false,
        created_at: now(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_reviews_count_exactly_and_keep_the_average() {
    let store = support::fresh_store().await;
    let p = product("Rated", 1_000, now());
    store.insert_product(&p).await.unwrap();
    let rate = |stars: i64| {
        let store = store.clone();
        tokio::spawn(async move {
            store.insert_review(&review(p.id, stars)).await?;
            store.recount_rating(p.id).await
        })
    };
    let tasks: Vec<_> = (0..20).map(|i| rate(i % 5 + 1)).collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    // 20 more, all 5 stars, to make the average not a round number: (60 + 100) / 40 = 4.0;
    // add 3 more 4s: (160 + 12) / 43.
    let tasks: Vec<_> = (0..23).map(|i| rate(if i < 20 { 5 } else { 4 })).collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let stored = store.get_product(p.id).await.unwrap();
    let expected = RatingSummary {
        count: 43,
        sum: 172,
        histogram: [4, 4, 4, 7, 24],
    };
    assert_eq!(stored.rating, expected);
    let d = raw(&store, PRODUCTS, p.id).await;
    assert_eq!(
        d.get_f64("ratingAverage").unwrap(),
        expected.average(),
        "the stored average is exact"
    );
    let q = |min: f64| ProductQuery {
        min_rating: Some(min),
        category_ids: Vec::new(),
        page: PageRequest::new(1, 10).unwrap(),
        ..ProductQuery::default()
    };
    assert_eq!(
        store.search_products(&q(172.0 / 43.0)).await.unwrap().page.total,
        1,
        "inclusive at the average"
    );
    assert_eq!(store.search_products(&q(4.0001)).await.unwrap().page.total, 0);
    support::drop(&store).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn racing_cart_saves_have_one_winner() {
    let store = support::fresh_store().await;
    let at = now();
    let c = cart(CartOwner::Guest("ab".repeat(32)), at);
    store.insert_cart(&c).await.unwrap();
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let store = store.clone();
            let mut next = c.clone();
            next.version = 2;
            next.items[0].quantity = Quantity::new(i + 1).unwrap();
            tokio::spawn(async move { (i, store.save_cart(&next).await) })
        })
        .collect();
    let mut winners = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            (i, Ok(())) => winners.push(i),
            (
                _,
                Err(Error::Conflict {
                    code: "cart_changed", ..
                }),
            ) => {}
            (_, other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one save of version 2 wins");
    let stored = store.get_cart(c.id).await.unwrap();
    assert_eq!(stored.version, 2);
    assert_eq!(
        i64::from(stored.items[0].quantity.get()),
        winners[0] + 1,
        "the winner's cart is stored"
    );
    // Version 0 has no predecessor: a conflict for a stored cart, NotFound for an unknown one.
    let mut zero = c.clone();
    zero.version = 0;
    assert_conflict(store.save_cart(&zero).await, "cart_changed");
    zero.id = CartId::new();
    assert!(store.save_cart(&zero).await.unwrap_err().is_not_found());
    support::drop(&store).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_cart_gives_up_the_owners_active_slot() {
    let store = support::fresh_store().await;
    let at = now();
    let owner = CartOwner::User(UserId::new());
    let mut old = cart(owner.clone(), at - Duration::days(8));
    old.expires_at = at - Duration::seconds(1);
    store.insert_cart(&old).await.unwrap();
    // Not swept yet (the TTL monitor runs once a minute on MongoDB), but expired: absent.
    let fresh = cart(owner.clone(), at);
    store.insert_cart(&fresh).await.unwrap();
    assert_eq!(store.find_active_cart(&owner, at).await.unwrap(), Some(fresh.clone()));
    assert_conflict(store.insert_cart(&cart(owner.clone(), at)).await, "cart_exists");
    assert_conflict(store.insert_cart(&fresh).await, "cart_exists");
    support::drop(&store).await;
}

/// Saga compensation may reactivate a converted cart after the owner started a new one; both
/// are then active (as in the other adapters) and the most recently changed one is found.
#[tokio::test(flavor = "multi_thread")]
async fn a_reactivated_cart_coexists_with_a_newer_one() {
    let store = support::fresh_store().await;
    let at = now();
    let owner = CartOwner::Guest("cd".repeat(32));
    let first = cart(owner.clone(), at);
    store.insert_cart(&first).await.unwrap();
    let order = OrderId::new();
    store
        .set_cart_status(first.id, CartStatus::Active, CartStatus::Converted(order), at)
        .await
        .unwrap();
    let second = cart(owner.clone(), at + Duration::seconds(1));
    store.insert_cart(&second).await.unwrap();
    let later = at + Duration::seconds(2);
    let back = store
        .set_cart_status(first.id, CartStatus::Converted(order), CartStatus::Active, later)
        .await
        .unwrap();
    assert_eq!(
        (back.status, back.version, back.updated_at),
        (CartStatus::Active, 3, later)
    );
    assert_eq!(
        store.find_active_cart(&owner, later).await.unwrap().map(|c| c.id),
        Some(first.id)
    );
    // Saving the reactivated cart works although the newer cart holds the owner's slot.
    let mut edited = back.clone();
    edited.version = 4;
    edited.updated_at = later + Duration::seconds(1);
    store.save_cart(&edited).await.unwrap();
    assert_eq!(store.get_cart(first.id).await.unwrap(), edited);
    assert_conflict(store.insert_cart(&cart(owner.clone(), later)).await, "cart_exists");
    support::drop(&store).await;
}

#[tokio::test]
async fn the_rating_count_takes_whole_doubles_and_refuses_other_numbers() {
    let store = support::fresh_store().await;
    let p = product("Odd ratings", 1_000, now());
    store.insert_product(&p).await.unwrap();
    let set_rating = |id: String, rating: Bson| {
        let store = store.clone();
        async move {
            store
                .database()
                .collection::<Document>(REVIEWS)
                .update_one(doc! { "_id": id }, doc! { "$set": { "rating": rating } })
                .await
                .unwrap();
        }
    };
    // Written by another tool: a rating stored as a whole double counts as its integer.
    let (four, three) = (review(p.id, 4), review(p.id, 3));
    store.insert_review(&four).await.unwrap();
    store.insert_review(&three).await.unwrap();
    set_rating(three.id.to_string(), Bson::Double(3.0)).await;
    store.recount_rating(p.id).await.unwrap();
    let counted = RatingSummary {
        count: 2,
        sum: 7,
        histogram: [0, 0, 1, 1, 0],
    };
    assert_eq!(store.get_product(p.id).await.unwrap().rating, counted);
    // A fractional one sums to a fraction: the count is refused, not written as 0.
    let odd = review(p.id, 5);
    store.insert_review(&odd).await.unwrap();
    set_rating(odd.id.to_string(), Bson::Double(4.5)).await;
    let err = store.recount_rating(p.id).await.unwrap_err();
    assert!(matches!(err, Error::Storage(_)), "{err:?}");
    assert_eq!(store.get_product(p.id).await.unwrap().rating, counted, "left as it was");
    support::drop(&store).await;
}
