//! The checkout saga under faults, on the in-memory adapter and on PostgreSQL + MongoDB: an
//! error or a crash injected at each store call of a checkout in turn (a port wrapper failing on
//! the k-th call; a crash is a call that never returns, whose future is dropped with all its
//! in-process state). Afterwards, once a fresh process has run recovery, every cart is either
//! active with no live order or converted into exactly one order, an error answer means no
//! order, no stock is leaked, and a live order's idempotency key replays its answer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use commerce_core::domain::*;
use commerce_core::ports::*;
use commerce_core::services::*;
use commerce_core::{Commerce, Error, Result};

/// How an injected fault behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// The call fails with an error.
    Error,
    /// The call never returns: the process "crashes" there.
    Crash,
}

/// Wraps a backend's cart and order ports and breaks the `k`-th call through them.
struct Faulty {
    carts: Arc<dyn CartStore>,
    orders: Arc<dyn OrderStore>,
    calls: AtomicUsize,
    k: usize,
    fault: Fault,
}

impl Faulty {
    fn new(commerce: &Commerce, k: usize, fault: Fault) -> Arc<Self> {
        let stores = commerce.stores();
        Arc::new(Self {
            carts: stores.catalog.clone(),
            orders: stores.checkout.clone(),
            calls: AtomicUsize::new(0),
            k,
            fault,
        })
    }

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
        self.carts.find_active_cart(owner, now).await
    }
    async fn get_cart(&self, id: CartId) -> Result<Cart> {
        self.gate().await?;
        self.carts.get_cart(id).await
    }
    async fn insert_cart(&self, cart: &Cart) -> Result<()> {
        self.gate().await?;
        self.carts.insert_cart(cart).await
    }
    async fn save_cart(&self, cart: &Cart) -> Result<()> {
        self.gate().await?;
        self.carts.save_cart(cart).await
    }
    async fn set_cart_status(&self, id: CartId, from: CartStatus, to: CartStatus, now: DateTime<Utc>) -> Result<Cart> {
        self.gate().await?;
        self.carts.set_cart_status(id, from, to, now).await
    }
    async fn delete_expired_carts(&self, now: DateTime<Utc>) -> Result<u64> {
        self.gate().await?;
        self.carts.delete_expired_carts(now).await
    }
    async fn find_cart_by_order(&self, order: OrderId) -> Result<Option<Cart>> {
        self.gate().await?;
        self.carts.find_cart_by_order(order).await
    }
}

#[async_trait]
impl OrderStore for Faulty {
    async fn place_order(&self, new: &NewOrder) -> Result<Order> {
        self.gate().await?;
        self.orders.place_order(new).await
    }
    async fn get_order(&self, id: OrderId) -> Result<Order> {
        self.gate().await?;
        self.orders.get_order(id).await
    }
    async fn list_user_orders(&self, user: UserId, page: PageRequest) -> Result<Page<Order>> {
        self.gate().await?;
        self.orders.list_user_orders(user, page).await
    }
    async fn list_orders(&self, status: Option<OrderStatus>, page: PageRequest) -> Result<Page<Order>> {
        self.gate().await?;
        self.orders.list_orders(status, page).await
    }
    async fn transition_order(&self, t: &OrderTransition) -> Result<Order> {
        self.gate().await?;
        self.orders.transition_order(t).await
    }
    async fn order_events(&self, id: OrderId) -> Result<Vec<OrderEvent>> {
        self.gate().await?;
        self.orders.order_events(id).await
    }
    async fn set_saga_step(&self, order: OrderId, step: SagaStep, now: DateTime<Utc>) -> Result<()> {
        self.gate().await?;
        self.orders.set_saga_step(order, step, now).await
    }
    async fn unfinished_sagas(&self) -> Result<Vec<SagaRecord>> {
        self.gate().await?;
        self.orders.unfinished_sagas().await
    }
    async fn overdue_orders(&self, now: DateTime<Utc>) -> Result<Vec<OrderId>> {
        self.gate().await?;
        self.orders.overdue_orders(now).await
    }
    async fn has_purchased(&self, user: UserId, product: ProductId) -> Result<bool> {
        self.gate().await?;
        self.orders.has_purchased(user, product).await
    }
    async fn count_orders_with_product(&self, product: ProductId) -> Result<u64> {
        self.gate().await?;
        self.orders.count_orders_with_product(product).await
    }
    async fn insert_coupon(&self, coupon: &Coupon) -> Result<()> {
        self.gate().await?;
        self.orders.insert_coupon(coupon).await
    }
    async fn find_coupon(&self, code: &str) -> Result<Option<Coupon>> {
        self.gate().await?;
        self.orders.find_coupon(code).await
    }
    async fn coupon_uses_by(&self, code: &str, user: UserId) -> Result<u64> {
        self.gate().await?;
        self.orders.coupon_uses_by(code, user).await
    }
}

/// An order service whose cart and order calls go through `faulty`, the rest straight to the
/// backends.
fn order_service(commerce: &Commerce, faulty: Arc<Faulty>) -> OrderService {
    let stores = commerce.stores();
    let carts = CartService::new(
        faulty.clone(),
        stores.catalog.clone(),
        stores.checkout.clone(),
        CartPolicy::default(),
        commerce.accounts().tokens().clone(),
    );
    OrderService::new(
        faulty.clone(),
        faulty,
        stores.accounts.clone(),
        stores.catalog.clone(),
        carts,
        CheckoutPolicy::default(),
    )
}

/// The invariant, read straight from the stores.
async fn assert_consistent(commerce: &Commerce, who: &Principal, sku: &Sku, on_hand: i64, context: &str) {
    let stores = commerce.stores();
    let orders = stores
        .checkout
        .list_user_orders(who.user_id, PageRequest::default())
        .await
        .unwrap()
        .items;
    let live: Vec<&Order> = orders.iter().filter(|o| o.status != OrderStatus::Cancelled).collect();
    let active = stores
        .catalog
        .find_active_cart(&CartOwner::User(who.user_id), Utc::now())
        .await
        .unwrap();
    match (&active, live.as_slice()) {
        (Some(_), []) => {}
        (None, [order]) => {
            let cart = stores.catalog.get_cart(order.cart_id.unwrap()).await.unwrap();
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
    let level = stores.checkout.stock_levels(sku).await.unwrap().remove(0);
    assert_eq!(
        (level.on_hand, level.reserved),
        (on_hand, held),
        "{context}: stock leaked"
    );
}

async fn scenario(commerce: Commerce, fault: Fault, k: usize) {
    let context = format!("{:?}: {fault:?} at call {k}", commerce.backends());
    let owner = commerce
        .accounts()
        .ensure_superadmin("owner@example.com", "owner-password")
        .await
        .unwrap();
    let admin = Principal {
        user_id: owner.id,
        role: owner.role,
    };
    let product = ProductInput {
        name: "Saga widget".into(),
        status: Some("active".into()),
        variants: vec![VariantInput {
            sku: "SAGA-1".into(),
            price: MoneyInput {
                amount: 500,
                currency: "USD".into(),
            },
            ..Default::default()
        }],
        ..ProductInput::default()
    };
    commerce.catalog().create_product(&admin, product).await.unwrap();
    commerce
        .inventory()
        .set_stock(
            &admin,
            "SAGA-1",
            StockInput {
                on_hand: Some(10),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let s = commerce
        .accounts()
        .register(NewAccount {
            email: "saga@example.com".into(),
            password: "password-123".into(),
            first_name: "S".into(),
            last_name: "G".into(),
            phone: None,
        })
        .await
        .unwrap();
    let who = Principal {
        user_id: s.user.id,
        role: s.user.role,
    };
    let fields = AddressFields {
        first_name: "S".into(),
        last_name: "G".into(),
        line1: "1 Main".into(),
        city: "X".into(),
        postal_code: "1".into(),
        country: "US".into(),
        ..Default::default()
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
    commerce
        .carts()
        .add_item(&Shopper::User(who), "SAGA-1", 3)
        .await
        .unwrap();
    let sku = Sku::parse("SAGA-1").unwrap();

    // The request holds a claimed Idempotency-Key, whose answer the order's write stores.
    let scope = format!("{}:POST /api/v1/orders", who.user_id);
    let idempotency = commerce.idempotency();
    let Ok(IdempotentStart::Proceed(key)) = idempotency.begin(&scope, "saga-key", "fp").await else {
        panic!("{context}: a new key must be claimed");
    };
    let answer = CheckoutAnswer {
        key,
        render: Box::new(|order: &Order| {
            Ok(StoredResponse {
                status: 201,
                body: order.id.to_string(),
            })
        }),
    };
    let service = order_service(&commerce, Faulty::new(&commerce, k, fault));
    let attempt = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        service.checkout_answering(&who, CheckoutInput::default(), Some(answer)),
    )
    .await;
    drop(service); // a crash loses every in-process state

    // A fresh process runs recovery over the same stores, without faults.
    let recovery = order_service(&commerce, Faulty::new(&commerce, usize::MAX, fault));
    recovery.recover().await.unwrap();
    assert_consistent(&commerce, &who, &sku, 10, &context).await;
    // An order that lives on was stored with its answer: the client's retry replays it, even
    // after a crash, and cannot place a second order.
    let orders = commerce
        .stores()
        .checkout
        .list_user_orders(who.user_id, PageRequest::default())
        .await
        .unwrap()
        .items;
    if let Some(live) = orders.iter().find(|o| o.status != OrderStatus::Cancelled) {
        assert_eq!(
            idempotency.begin(&scope, "saga-key", "fp").await.unwrap(),
            IdempotentStart::Replay(StoredResponse {
                status: 201,
                body: live.id.to_string(),
            }),
            "{context}: the retry replays the order's answer"
        );
    }
    if let Ok(Err(e)) = &attempt {
        assert!(
            orders.iter().all(|o| o.status == OrderStatus::Cancelled),
            "{context}: failed ({e}) but left an order"
        );
    }
    // Whatever happened, the customer can finish.
    if commerce
        .stores()
        .catalog
        .find_active_cart(&CartOwner::User(who.user_id), Utc::now())
        .await
        .unwrap()
        .is_some()
    {
        recovery.checkout(&who, CheckoutInput::default()).await.unwrap();
        assert_consistent(&commerce, &who, &sku, 10, &format!("{context}, retried")).await;
    }
}

/// Store calls a checkout makes: find cart, (coupon), place order, convert cart, saga step,
/// plus the compensation's; 8 covers them all with margin.
const CALLS: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_survives_a_fault_at_every_step() {
    for fault in [Fault::Error, Fault::Crash] {
        for k in 1..=CALLS {
            scenario(support::memory_client().1, fault, k).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_and_mongodb_survive_a_fault_at_every_step() {
    for fault in [Fault::Error, Fault::Crash] {
        for k in 1..=CALLS {
            scenario(support::full_stack_client().await.1, fault, k).await;
        }
    }
}
