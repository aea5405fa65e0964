//! The checkout saga on the in-memory adapter: no overselling under contention, and a fault or
//! crash after any step leaves every cart either active with no live order, or converted with
//! exactly one order, with no stock leaked once recovery has run.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use commerce_core::domain::*;
use commerce_core::memory::MemoryStore;
use commerce_core::ports::*;
use commerce_core::services::*;
use commerce_core::{Commerce, CommerceConfig, Error, Result};

fn config() -> CommerceConfig {
    CommerceConfig {
        hash_cost: HashCost::insecure_for_tests(),
        ..CommerceConfig::default()
    }
}

async fn staff(commerce: &Commerce) -> Principal {
    let admin = commerce
        .accounts()
        .ensure_superadmin("owner@example.com", "owner-password")
        .await
        .unwrap();
    Principal {
        user_id: admin.id,
        role: Role::Superadmin,
    }
}

async fn product(commerce: &Commerce, admin: &Principal, sku: &str, price: i64, stock: i64) {
    let input = ProductInput {
        name: format!("Widget {sku}"),
        status: Some("active".into()),
        variants: vec![VariantInput {
            sku: sku.into(),
            price: MoneyInput {
                amount: price,
                currency: "USD".into(),
            },
            ..VariantInput::default()
        }],
        ..ProductInput::default()
    };
    commerce.catalog().create_product(admin, input).await.unwrap();
    let stock = StockInput {
        on_hand: Some(stock),
        ..StockInput::default()
    };
    commerce.inventory().set_stock(admin, sku, stock).await.unwrap();
}

async fn customer(commerce: &Commerce, n: usize) -> Principal {
    let session = commerce
        .accounts()
        .register(NewAccount {
            email: format!("c{n}@example.com"),
            password: "password-123".into(),
            first_name: "C".into(),
            last_name: "N".into(),
            phone: None,
        })
        .await
        .unwrap();
    let who = Principal {
        user_id: session.user.id,
        role: Role::Customer,
    };
    let fields = AddressFields {
        first_name: "C".into(),
        last_name: "N".into(),
        line1: "1 Main St".into(),
        city: "Springfield".into(),
        postal_code: "12345".into(),
        country: "US".into(),
        ..AddressFields::default()
    };
    commerce
        .accounts()
        .add_address(
            &who,
            AddressInput {
                fields,
                is_default: true,
            },
        )
        .await
        .unwrap();
    who
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_checkouts_for_fifty_units_never_oversell() {
    let commerce = Commerce::in_memory(config()).unwrap();
    let admin = staff(&commerce).await;
    product(&commerce, &admin, "HOT-1", 1_000, 50).await;
    let mut shoppers = Vec::new();
    for n in 0..200 {
        let who = customer(&commerce, n).await;
        commerce
            .carts()
            .add_item(&Shopper::User(who), "HOT-1", 1)
            .await
            .unwrap();
        shoppers.push(who);
    }
    let tasks = shoppers.into_iter().map(|who| {
        let commerce = commerce.clone();
        tokio::spawn(async move { commerce.orders().checkout(&who, CheckoutInput::default()).await })
    });
    let results: Vec<Result<Order>> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    let won = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(won, 50);
    for r in results.iter().filter_map(|r| r.as_ref().err()) {
        assert!(matches!(r, Error::OutOfStock { sku, .. } if sku == "HOT-1"), "{r:?}");
    }
    let level = commerce.inventory().levels(&admin, "HOT-1").await.unwrap().remove(0);
    assert_eq!((level.on_hand, level.reserved, level.available()), (50, 50, 0));
}

#[tokio::test]
async fn totals_coupons_and_state_machine() {
    let commerce = Commerce::in_memory(config()).unwrap();
    let admin = staff(&commerce).await;
    product(&commerce, &admin, "MUG-1", 1_250, 10).await;
    let who = customer(&commerce, 1).await;
    let coupon = CouponInput {
        code: "save10".into(),
        discount: Discount::Percentage(1_000),
        min_subtotal: None,
        expires_at: None,
        usage_limit: Some(1),
        per_customer_limit: Some(1),
    };
    commerce.orders().create_coupon(&admin, coupon).await.unwrap();
    commerce
        .carts()
        .add_item(&Shopper::User(who), "MUG-1", 2)
        .await
        .unwrap();
    let input = CheckoutInput {
        coupon_code: Some("SAVE10".into()),
        ..CheckoutInput::default()
    };
    let order = commerce.orders().checkout(&who, input).await.unwrap();
    let t = order.totals;
    // 2 x 12.50 = 25.00; 10% off = 2.50; shipping 5.99 under 50.00; no tax by default.
    assert_eq!(
        (
            t.subtotal.amount_minor,
            t.discount.amount_minor,
            t.shipping.amount_minor,
            t.tax.amount_minor
        ),
        (2_500, 250, 599, 0)
    );
    assert_eq!(t.total.amount_minor, 2_500 - 250 + 599);
    assert!(
        commerce.carts().cart(&Shopper::User(who)).await.unwrap().cart.is_none(),
        "the cart was converted"
    );

    // Every invalid move is refused naming both states.
    for to in ["shipped", "delivered", "refunded", "pending"] {
        let err = commerce
            .orders()
            .change_status(
                &admin,
                order.id,
                StatusChange {
                    status: to.into(),
                    ..Default::default()
                },
            )
            .await;
        assert!(
            matches!(err, Err(Error::InvalidTransition { ref from, to: ref t }) if from == "pending" && t == to),
            "{to}: {err:?}"
        );
    }
    let paid = commerce
        .orders()
        .change_status(
            &admin,
            order.id,
            StatusChange {
                status: "processing".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(paid.status, OrderStatus::Processing);
    let level = commerce.inventory().levels(&admin, "MUG-1").await.unwrap().remove(0);
    assert_eq!(
        (level.on_hand, level.reserved),
        (8, 0),
        "paying commits the reservation"
    );
    let err = commerce
        .orders()
        .change_status(
            &admin,
            order.id,
            StatusChange {
                status: "shipped".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Validation(f) if f.iter().any(|f| f.field == "carrier")),
        "{err:?}"
    );
    let shipped = StatusChange {
        status: "shipped".into(),
        carrier: Some("UPS".into()),
        tracking_number: Some("1Z999".into()),
        ..Default::default()
    };
    let order = commerce
        .orders()
        .change_status(&admin, order.id, shipped)
        .await
        .unwrap();
    assert_eq!(order.tracking.as_ref().map(|t| t.number.as_str()), Some("1Z999"));
    let refund = StatusChange {
        status: "refunded".into(),
        restock: true,
        ..Default::default()
    };
    commerce.orders().change_status(&admin, order.id, refund).await.unwrap();
    let level = commerce.inventory().levels(&admin, "MUG-1").await.unwrap().remove(0);
    assert_eq!(level.on_hand, 10, "a refund with restock puts the units back");
    let events = commerce.orders().events(&who, order.id).await.unwrap();
    let path: Vec<_> = events.iter().map(|e| e.to.as_str()).collect();
    assert_eq!(path, ["pending", "processing", "shipped", "refunded"]);

    // Another customer cannot see it; the coupon is used up.
    let other = customer(&commerce, 2).await;
    assert!(
        commerce
            .orders()
            .order(&other, order.id)
            .await
            .unwrap_err()
            .is_not_found()
    );
    commerce
        .carts()
        .add_item(&Shopper::User(other), "MUG-1", 1)
        .await
        .unwrap();
    let err = commerce
        .orders()
        .checkout(
            &other,
            CheckoutInput {
                coupon_code: Some("save10".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Conflict {
                code: "coupon_exhausted",
                ..
            }
        ),
        "{err:?}"
    );
}

/// How an injected fault behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// The call fails with a storage error.
    Error,
    /// The call never returns: the process "crashes" there (the future is dropped).
    Crash,
}

/// Wraps the memory store's cart and order ports and breaks the `k`-th call through them.
struct Faulty {
    inner: MemoryStore,
    calls: AtomicUsize,
    k: usize,
    fault: Fault,
}

impl Faulty {
    fn gate(&self) -> Pin<Box<dyn Future<Output = Result<()>> + Send + '_>> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        Box::pin(async move {
            if n == self.k {
                match self.fault {
                    Fault::Error => return Err(Error::unexpected_msg(format!("injected fault at call {n}"))),
                    Fault::Crash => std::future::pending::<()>().await,
                }
            }
            Ok(())
        })
    }
}

#[async_trait]
impl CartStore for Faulty {
    async fn find_active_cart(&self, owner: &CartOwner, now: DateTime<Utc>) -> Result<Option<Cart>> {
        self.gate().await?;
        self.inner.find_active_cart(owner, now).await
    }
    async fn get_cart(&self, id: CartId) -> Result<Cart> {
        self.gate().await?;
        self.inner.get_cart(id).await
    }
    async fn insert_cart(&self, cart: &Cart) -> Result<()> {
        self.gate().await?;
        self.inner.insert_cart(cart).await
    }
    async fn save_cart(&self, cart: &Cart) -> Result<()> {
        self.gate().await?;
        self.inner.save_cart(cart).await
    }
    async fn set_cart_status(&self, id: CartId, from: CartStatus, to: CartStatus, now: DateTime<Utc>) -> Result<Cart> {
        self.gate().await?;
        self.inner.set_cart_status(id, from, to, now).await
    }
    async fn delete_expired_carts(&self, now: DateTime<Utc>) -> Result<u64> {
        self.gate().await?;
        self.inner.delete_expired_carts(now).await
    }
    async fn find_cart_by_order(&self, order: OrderId) -> Result<Option<Cart>> {
        self.gate().await?;
        self.inner.find_cart_by_order(order).await
    }
}

#[async_trait]
impl OrderStore for Faulty {
    async fn place_order(&self, new: &NewOrder) -> Result<Order> {
        self.gate().await?;
        self.inner.place_order(new).await
    }
    async fn get_order(&self, id: OrderId) -> Result<Order> {
        self.gate().await?;
        self.inner.get_order(id).await
    }
    async fn list_user_orders(&self, user: UserId, page: PageRequest) -> Result<Page<Order>> {
        self.gate().await?;
        self.inner.list_user_orders(user, page).await
    }
    async fn list_orders(&self, status: Option<OrderStatus>, page: PageRequest) -> Result<Page<Order>> {
        self.gate().await?;
        self.inner.list_orders(status, page).await
    }
    async fn transition_order(&self, t: &OrderTransition) -> Result<Order> {
        self.gate().await?;
        self.inner.transition_order(t).await
    }
    async fn order_events(&self, id: OrderId) -> Result<Vec<OrderEvent>> {
        self.gate().await?;
        self.inner.order_events(id).await
    }
    async fn set_saga_step(&self, order: OrderId, step: SagaStep, now: DateTime<Utc>) -> Result<()> {
        self.gate().await?;
        self.inner.set_saga_step(order, step, now).await
    }
    async fn unfinished_sagas(&self) -> Result<Vec<SagaRecord>> {
        self.gate().await?;
        self.inner.unfinished_sagas().await
    }
    async fn overdue_orders(&self, now: DateTime<Utc>) -> Result<Vec<OrderId>> {
        self.gate().await?;
        self.inner.overdue_orders(now).await
    }
    async fn has_purchased(&self, user: UserId, product: ProductId) -> Result<bool> {
        self.gate().await?;
        self.inner.has_purchased(user, product).await
    }
    async fn count_orders_with_product(&self, product: ProductId) -> Result<u64> {
        self.gate().await?;
        self.inner.count_orders_with_product(product).await
    }
    async fn insert_coupon(&self, coupon: &Coupon) -> Result<()> {
        self.gate().await?;
        self.inner.insert_coupon(coupon).await
    }
    async fn find_coupon(&self, code: &str) -> Result<Option<Coupon>> {
        self.gate().await?;
        self.inner.find_coupon(code).await
    }
    async fn coupon_uses_by(&self, code: &str, user: UserId) -> Result<u64> {
        self.gate().await?;
        self.inner.coupon_uses_by(code, user).await
    }
}

/// An order service over `carts_and_orders` for both ports, the rest straight to `memory`.
fn order_service(memory: &MemoryStore, carts_and_orders: Arc<Faulty>, tokens: TokenIssuer) -> OrderService {
    let m = Arc::new(memory.clone());
    let carts = CartService::new(
        carts_and_orders.clone(),
        m.clone(),
        m.clone(),
        CartPolicy::default(),
        tokens,
    );
    OrderService::new(
        carts_and_orders.clone(),
        carts_and_orders,
        m.clone(),
        m,
        carts,
        CheckoutPolicy::default(),
    )
}

/// The invariant: the cart is active with no live order, or converted into exactly one live
/// order; and reserved stock equals what pending orders hold.
async fn assert_consistent(memory: &MemoryStore, who: &Principal, sku: &Sku, on_hand: i64, context: &str) {
    let orders = memory
        .list_user_orders(who.user_id, PageRequest::default())
        .await
        .unwrap()
        .items;
    let live: Vec<&Order> = orders.iter().filter(|o| o.status != OrderStatus::Cancelled).collect();
    let cart_id = orders.first().and_then(|o| o.cart_id);
    let active = memory
        .find_active_cart(&CartOwner::User(who.user_id), Utc::now())
        .await
        .unwrap();
    match (&active, live.as_slice()) {
        (Some(_), []) => {}
        (None, [order]) => {
            let cart = memory.get_cart(cart_id.unwrap()).await.unwrap();
            assert_eq!(
                cart.status,
                CartStatus::Converted(order.id),
                "{context}: converted into its order"
            );
        }
        other => panic!("{context}: inconsistent cart/orders: {other:?}"),
    }
    let held: i64 = live
        .iter()
        .filter(|o| o.status == OrderStatus::Pending)
        .flat_map(|o| &o.items)
        .map(|i| i64::from(i.quantity.get()))
        .sum();
    let level = memory.stock_levels(sku).await.unwrap().remove(0);
    assert_eq!(
        (level.on_hand, level.reserved),
        (on_hand, held),
        "{context}: stock leaked"
    );
}

#[tokio::test]
async fn a_fault_or_crash_after_any_step_is_repaired_by_recovery() {
    for fault in [Fault::Error, Fault::Crash] {
        for k in 1..=8 {
            let context = format!("{fault:?} at call {k}");
            let memory = MemoryStore::new();
            let commerce = Commerce::builder()
                .config(config())
                .accounts(Arc::new(memory.clone()))
                .catalog(Arc::new(memory.clone()))
                .checkout(Arc::new(memory.clone()))
                .build()
                .unwrap();
            let admin = staff(&commerce).await;
            product(&commerce, &admin, "SAGA-1", 500, 10).await;
            let who = customer(&commerce, 1).await;
            commerce
                .carts()
                .add_item(&Shopper::User(who), "SAGA-1", 3)
                .await
                .unwrap();
            let tokens = commerce.accounts().tokens().clone();

            let faulty = Arc::new(Faulty {
                inner: memory.clone(),
                calls: AtomicUsize::new(0),
                k,
                fault,
            });
            let service = order_service(&memory, faulty, tokens.clone());
            let attempt = tokio::time::timeout(
                std::time::Duration::from_millis(200),
                service.checkout(&who, CheckoutInput::default()),
            )
            .await;
            drop(service); // a crash loses every in-process state

            // A fresh process runs recovery over the same stores, without faults.
            let healthy = Arc::new(Faulty {
                inner: memory.clone(),
                calls: AtomicUsize::new(0),
                k: usize::MAX,
                fault,
            });
            let recovery = order_service(&memory, healthy, tokens);
            recovery.recover().await.unwrap();
            assert_consistent(&memory, &who, &Sku::parse("SAGA-1").unwrap(), 10, &context).await;
            if let Ok(Err(e)) = &attempt {
                // An error answer means no order: the customer was told it failed.
                let live = memory
                    .list_user_orders(who.user_id, PageRequest::default())
                    .await
                    .unwrap()
                    .items;
                assert!(
                    live.iter().all(|o| o.status == OrderStatus::Cancelled),
                    "{context}: failed ({e}) but left an order"
                );
            }

            // Whatever happened, the customer can finish: checkout again if the cart is active.
            if matches!(attempt, Ok(Err(_)) | Err(_))
                && memory
                    .find_active_cart(&CartOwner::User(who.user_id), Utc::now())
                    .await
                    .unwrap()
                    .is_some()
            {
                recovery.checkout(&who, CheckoutInput::default()).await.unwrap();
                assert_consistent(
                    &memory,
                    &who,
                    &Sku::parse("SAGA-1").unwrap(),
                    10,
                    &format!("{context}, retried"),
                )
                .await;
            }
        }
    }
}

#[tokio::test]
async fn unpaid_orders_expire_and_release_their_stock() {
    let memory = MemoryStore::new();
    let mut cfg = config();
    cfg.checkout.payment_window = std::time::Duration::from_millis(1);
    let commerce = Commerce::builder()
        .config(cfg)
        .checkout(Arc::new(memory.clone()))
        .catalog(Arc::new(memory.clone()))
        .accounts(Arc::new(memory.clone()))
        .build()
        .unwrap();
    let admin = staff(&commerce).await;
    product(&commerce, &admin, "EXP-1", 500, 5).await;
    let who = customer(&commerce, 1).await;
    commerce
        .carts()
        .add_item(&Shopper::User(who), "EXP-1", 2)
        .await
        .unwrap();
    let order = commerce
        .orders()
        .checkout(&who, CheckoutInput::default())
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let report = commerce.orders().recover().await.unwrap();
    assert_eq!(report.expired, 1);
    assert_eq!(
        commerce.orders().order(&who, order.id).await.unwrap().status,
        OrderStatus::Cancelled
    );
    let level = commerce.inventory().levels(&admin, "EXP-1").await.unwrap().remove(0);
    assert_eq!(level.reserved, 0);
    let cart = commerce.carts().cart(&Shopper::User(who)).await.unwrap();
    assert_eq!(cart.lines.len(), 1, "the cart is back for another try");
}
