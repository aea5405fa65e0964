//! Tests of what is specific to the in-memory adapter: shared state, locking, precomputed search
//! terms, and the choices it makes where the port contracts leave room. The behavioural contract
//! is the conformance suite's.

use std::sync::{Arc, RwLock};

use chrono::{DateTime, Duration, Utc};

use super::{MemoryStore, read, write};
use crate::Error;
use crate::domain::{
    Actor, AddressFields, Attributes, Cart, CartId, CartOwner, CartStatus, Currency, DEFAULT_WAREHOUSE, Email, Money,
    MovementKind, Order, OrderEvent, OrderEventId, OrderId, OrderItem, OrderItemId, OrderStatus, OrderTotals, Product,
    ProductId, ProductQuery, ProductStatus, RatingSummary, Role, SagaRecord, SagaStep, Seo, Sku, Slug, StockChange,
    StockSet, StockSettings, User, UserId, UserStatus, Variant, Visibility,
};
use crate::ports::{
    CartStore, HealthCheck, InventoryStore, NewOrder, OrderStore, OrderTransition, ProductStore, StockEffect, UserStore,
};
use crate::search::terms;

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000, 0).unwrap()
}

fn sku(s: &str) -> Sku {
    Sku::parse(s).unwrap()
}

fn usd(amount: i64) -> Money {
    Money::new(amount, Currency::USD)
}

fn product(name: &str, sku_code: &str, price: i64) -> Product {
    Product {
        id: ProductId::new(),
        name: name.into(),
        slug: Slug::from_name(name).unwrap(),
        description: String::new(),
        short_description: None,
        brand: None,
        tags: vec![],
        category_id: None,
        subcategory_ids: vec![],
        specifications: Attributes::new(),
        status: ProductStatus::Active,
        visibility: Visibility::Public,
        images: vec![],
        thumbnail: None,
        seo: Seo::default(),
        variants: vec![Variant {
            sku: sku(sku_code),
            name: None,
            options: Attributes::new(),
            price: usd(price),
            compare_at_price: None,
            weight_grams: None,
            dimensions: None,
        }],
        rating: RatingSummary::default(),
        sales_count: 0,
        created_at: t0(),
        updated_at: t0(),
    }
}

fn new_order(user: UserId, product: ProductId, sku_code: &str, qty: i64) -> NewOrder {
    let id = OrderId::new();
    let quantity = crate::domain::Quantity::new(qty).unwrap();
    let zero = usd(0);
    let order = Order {
        id,
        user_id: user,
        cart_id: None,
        status: OrderStatus::Pending,
        items: vec![OrderItem {
            id: OrderItemId::new(),
            product_id: product,
            sku: sku(sku_code),
            name: "thing".into(),
            options: Attributes::new(),
            unit_price: usd(100),
            quantity,
            line_total: usd(100 * qty),
        }],
        totals: OrderTotals {
            subtotal: usd(100 * qty),
            shipping: zero,
            tax: zero,
            discount: zero,
            total: usd(100 * qty),
        },
        coupon_code: None,
        shipping_address: AddressFields::default(),
        tracking: None,
        payment_due_by: t0() + Duration::hours(1),
        created_at: t0(),
        updated_at: t0(),
    };
    NewOrder {
        event: OrderEvent {
            id: OrderEventId::new(),
            order_id: id,
            from: None,
            to: OrderStatus::Pending,
            actor: Actor::User(user),
            note: None,
            at: t0(),
        },
        saga: SagaRecord {
            order_id: id,
            cart_id: CartId::new(),
            step: SagaStep::OrderPlaced,
            updated_at: t0(),
        },
        coupon: None,
        order,
        answer: None,
    }
}

async fn stock(store: &MemoryStore, sku_code: &str, warehouse: &str, on_hand: i64) {
    store
        .change_stock(
            &sku(sku_code),
            warehouse,
            &StockChange::SetOnHand(on_hand),
            &Actor::System,
            None,
            t0(),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn clones_share_state_and_ping_answers() {
    let store = MemoryStore::new();
    let clone = store.clone();
    let user = User {
        id: UserId::new(),
        email: Email::parse("ada@example.com").unwrap(),
        password_hash: "hash".into(),
        first_name: "Ada".into(),
        last_name: "Lovelace".into(),
        phone: None,
        role: Role::Customer,
        status: UserStatus::Active,
        created_at: t0(),
        updated_at: t0(),
    };
    store.insert_user(&user).await.unwrap();
    assert_eq!(clone.get_user(user.id).await.unwrap(), user);
    assert_eq!(clone.backend(), "memory");
    clone.ping().await.unwrap();
    assert!(format!("{store:?}").starts_with("MemoryStore"));
}

#[test]
fn poisoned_lock_is_an_error_not_a_panic() {
    let lock = Arc::new(RwLock::new(0u8));
    let poisoner = Arc::clone(&lock);
    let _ = std::thread::spawn(move || {
        let _guard = poisoner.write().unwrap();
        panic!("poison the lock");
    })
    .join();
    assert!(matches!(read(&lock), Err(Error::Unexpected(_))));
    assert!(matches!(write(&lock), Err(Error::Unexpected(_))));
}

#[tokio::test]
async fn search_terms_follow_updates() {
    let store = MemoryStore::new();
    let mut p = product("Red Running Shoes", "SHOE-1", 5_000);
    store.insert_product(&p).await.unwrap();
    let query = |q: &str| ProductQuery {
        terms: terms(q),
        ..ProductQuery::default()
    };
    assert_eq!(store.search_products(&query("shoe")).await.unwrap().page.total, 1);

    p.name = "Blue Trail Boots".into();
    store.update_product(&p).await.unwrap();
    assert_eq!(store.search_products(&query("shoe")).await.unwrap().page.total, 0);
    let found = store.search_products(&query("boots")).await.unwrap();
    assert_eq!(found.page.items.first().map(|p| p.id), Some(p.id));

    store.delete_product(p.id).await.unwrap();
    assert_eq!(store.search_products(&query("boot")).await.unwrap().page.total, 0);
    // The slug and SKU are free again.
    store
        .insert_product(&product("Blue Trail Boots", "SHOE-1", 1))
        .await
        .unwrap();
}

/// The view cache stays within its bounds, keeps the views in use, and answers the same
/// after evicting as before.
#[tokio::test]
async fn listing_views_are_bounded_and_evict_the_least_recently_used() {
    let store = MemoryStore::new();
    for i in 0..30 {
        let p = product(&format!("Lamp model{i}"), &format!("LAMP-{i}"), 1_000 + i);
        store.insert_product(&p).await.unwrap();
    }
    let by_price = |min: i64| ProductQuery {
        min_price: Some(min),
        ..ProductQuery::default()
    };
    let hot = ProductQuery {
        terms: terms("lamp"),
        ..ProductQuery::default()
    };
    let first = store.search_products(&hot).await.unwrap();
    assert_eq!(first.page.total, 30);
    // Many more distinct queries than views kept, the hot one asked in between.
    for min in 0..(super::catalog::MAX_VIEWS as i64 + 200) {
        let result = store.search_products(&by_price(min)).await.unwrap();
        let expected = (0..30).filter(|i| 1_000 + i >= min).count() as u64;
        assert_eq!(result.page.total, expected, "min price {min}");
        if min % 100 == 0 {
            assert_eq!(store.search_products(&hot).await.unwrap(), first);
        }
    }
    let catalog = read(&store.inner.catalog).unwrap();
    let views = catalog.cached_views();
    assert!(views <= super::catalog::MAX_VIEWS, "{views} views kept");
}

#[tokio::test]
async fn a_page_shows_the_products_of_its_slots_after_deletes_inserts_and_updates() {
    let store = MemoryStore::new();
    let mut made = Vec::new();
    for (i, at) in (0..4).zip(1..) {
        let mut p = product(&format!("Shelf {i}"), &format!("SHELF-{i}"), 500);
        p.created_at = t0() + Duration::minutes(at);
        store.insert_product(&p).await.unwrap();
        made.push(p);
    }
    let names = |result: crate::domain::ProductSearchResult| -> Vec<String> {
        result.page.items.iter().map(|p| p.name.clone()).collect()
    };
    let newest_first = ProductQuery::default();
    assert_eq!(
        names(store.search_products(&newest_first).await.unwrap()),
        ["Shelf 3", "Shelf 2", "Shelf 1", "Shelf 0"]
    );
    // A deleted product's slot goes to the next insert; the kept view must not show it there.
    store.delete_product(made[1].id).await.unwrap();
    let mut late = product("Shelf late", "SHELF-LATE", 500);
    late.created_at = t0();
    store.insert_product(&late).await.unwrap();
    assert_eq!(
        names(store.search_products(&newest_first).await.unwrap()),
        ["Shelf 3", "Shelf 2", "Shelf 0", "Shelf late"]
    );
    let slots = read(&store.inner.catalog).unwrap().slots_held();
    assert_eq!(slots, 4, "the freed slot was reused");
    // An update keeps the product where its order puts it, with what it holds now.
    let mut renamed = made[2].clone();
    renamed.name = "Shelf 2 renamed".into();
    store.update_product(&renamed).await.unwrap();
    assert_eq!(
        names(store.search_products(&newest_first).await.unwrap()),
        ["Shelf 3", "Shelf 2 renamed", "Shelf 0", "Shelf late"]
    );
    assert_eq!(store.get_product(made[2].id).await.unwrap().name, "Shelf 2 renamed");
    assert_eq!(store.get_product(late.id).await.unwrap().name, "Shelf late");
    assert!(matches!(
        store.get_product(made[1].id).await,
        Err(Error::NotFound { entity: "product" })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn concurrent_checkouts_from_many_threads_never_oversell() {
    let store = MemoryStore::new();
    let p = product("Last Ones", "LAST-1", 100);
    store.insert_product(&p).await.unwrap();
    stock(&store, "LAST-1", "a", 3).await;
    stock(&store, "LAST-1", "b", 4).await;

    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let store = store.clone();
            let order = new_order(UserId::new(), p.id, "LAST-1", 2);
            tokio::spawn(async move { store.place_order(&order).await })
        })
        .collect();
    let mut placed = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => placed += 1,
            Err(Error::OutOfStock { available, .. }) => assert!(available < 2),
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    // 7 units, 2 per order: 3 orders, one unit left.
    assert_eq!(placed, 3);
    let levels = store.stock_levels(&sku("LAST-1")).await.unwrap();
    let reserved: i64 = levels.iter().map(|l| l.reserved).sum();
    assert_eq!(reserved, 6);
    assert!(levels.iter().all(|l| l.reserved <= l.on_hand));
    assert_eq!(
        store.available(&[sku("LAST-1")]).await.unwrap(),
        vec![(sku("LAST-1"), 1)]
    );
}

#[tokio::test]
async fn a_line_spills_over_warehouses_and_then_onto_a_backorder() {
    let store = MemoryStore::new();
    let p = product("Spill", "SPILL-1", 100);
    stock(&store, "SPILL-1", "b", 2).await;
    stock(&store, "SPILL-1", "a", 1).await;
    let backorders = StockSet::settings_only(
        sku("SPILL-1"),
        "b",
        StockSettings {
            backorder_allowed: Some(true),
            ..StockSettings::default()
        },
    );
    store
        .set_stock_levels(&[backorders], &Actor::System, t0())
        .await
        .unwrap();
    let new = new_order(UserId::new(), p.id, "SPILL-1", 5);
    store.place_order(&new).await.unwrap();
    let levels = store.stock_levels(&sku("SPILL-1")).await.unwrap();
    let reserved: Vec<(&str, i64)> = levels.iter().map(|l| (l.warehouse.as_str(), l.reserved)).collect();
    // "a" is drained first (name order), then "b" takes the rest, 2 of them backordered.
    assert_eq!(reserved, vec![("a", 1), ("b", 4)]);

    // Paid: on hand drops below zero where backordered.
    let t = OrderTransition {
        order_id: new.order.id,
        from: OrderStatus::Pending,
        to: OrderStatus::Processing,
        event: OrderEvent {
            id: OrderEventId::new(),
            order_id: new.order.id,
            from: Some(OrderStatus::Pending),
            to: OrderStatus::Processing,
            actor: Actor::Gateway,
            note: None,
            at: t0() + Duration::minutes(1),
        },
        stock: StockEffect::Commit,
        tracking: None,
        saga_step: Some(SagaStep::Completed),
    };
    let order = store.transition_order(&t).await.unwrap();
    assert_eq!(order.updated_at, t0() + Duration::minutes(1));
    let b = store.stock_levels(&sku("SPILL-1")).await.unwrap().pop().unwrap();
    assert_eq!((b.on_hand, b.reserved), (-2, 0));

    // Receiving goods into the backordered level is allowed although on hand stays negative...
    let b = store
        .change_stock(
            &sku("SPILL-1"),
            "b",
            &StockChange::Adjust {
                delta: 1,
                kind: MovementKind::Purchase,
            },
            &Actor::System,
            None,
            t0(),
        )
        .await
        .unwrap();
    assert_eq!(b.on_hand, -1);
    // ...but taking more away is not.
    let err = store
        .change_stock(
            &sku("SPILL-1"),
            "b",
            &StockChange::Adjust {
                delta: -1,
                kind: MovementKind::Damage,
            },
            &Actor::System,
            None,
            t0(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Validation(_)));
    assert!(store.unfinished_sagas().await.unwrap().is_empty());
}

#[tokio::test]
async fn failed_checkout_writes_nothing() {
    let store = MemoryStore::new();
    let p = product("Two Lines", "TWO-1", 100);
    stock(&store, "TWO-1", DEFAULT_WAREHOUSE, 5).await;
    let mut new = new_order(UserId::new(), p.id, "TWO-1", 3);
    // A second line that cannot be served: the first line's reservation must not stay.
    let mut second = new.order.items[0].clone();
    second.sku = sku("TWO-2");
    new.order.items.push(second);
    let err = store.place_order(&new).await.unwrap_err();
    assert!(matches!(err, Error::OutOfStock { ref sku, requested: 3, available: 0 } if sku == "TWO-2"));
    let level = store.stock_levels(&sku("TWO-1")).await.unwrap().pop().unwrap();
    assert_eq!(level.reserved, 0);
    assert_eq!(
        store.movements(&sku("TWO-1"), Default::default()).await.unwrap().total,
        1
    );
    assert!(store.get_order(new.order.id).await.unwrap_err().is_not_found());
    assert!(store.unfinished_sagas().await.unwrap().is_empty());
}

fn cart(owner: CartOwner, created_at: DateTime<Utc>) -> Cart {
    Cart {
        id: CartId::new(),
        owner,
        items: vec![],
        status: CartStatus::Active,
        version: 1,
        created_at,
        updated_at: created_at,
        expires_at: created_at + Duration::days(7),
    }
}

#[tokio::test]
async fn an_expired_cart_does_not_block_a_new_one() {
    let store = MemoryStore::new();
    let owner = CartOwner::User(UserId::new());
    let old = cart(owner.clone(), t0());
    store.insert_cart(&old).await.unwrap();
    let err = store
        .insert_cart(&cart(owner.clone(), t0() + Duration::days(1)))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        Error::Conflict {
            code: "cart_exists",
            ..
        }
    ));

    let later = t0() + Duration::days(8);
    let new = cart(owner.clone(), later);
    store.insert_cart(&new).await.unwrap();
    assert_eq!(
        store.find_active_cart(&owner, later).await.unwrap().map(|c| c.id),
        Some(new.id)
    );
    assert_eq!(store.delete_expired_carts(later).await.unwrap(), 1);
}

#[tokio::test]
async fn a_status_change_invalidates_a_stale_save() {
    let store = MemoryStore::new();
    let owner = CartOwner::Guest("abc".into());
    let c = cart(owner, t0());
    store.insert_cart(&c).await.unwrap();
    let order = OrderId::new();
    let converted = store
        .set_cart_status(c.id, CartStatus::Active, CartStatus::Converted(order), t0())
        .await
        .unwrap();
    assert_eq!(converted.version, c.version + 1);
    // A save prepared from the cart as read before the conversion must not reactivate it.
    let stale = Cart {
        version: c.version + 1,
        ..c.clone()
    };
    let err = store.save_cart(&stale).await.unwrap_err();
    assert!(matches!(
        err,
        Error::Conflict {
            code: "cart_changed",
            ..
        }
    ));
    assert_eq!(store.find_cart_by_order(order).await.unwrap().map(|c| c.id), Some(c.id));
}
