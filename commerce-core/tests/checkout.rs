//! The checkout saga on the in-memory adapter: no overselling under contention, totals,
//! coupons, the state machine and expiry. Faults injected at every saga step are tested on
//! every backend in commerce-http/tests/saga_faults.rs.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;

use commerce_core::domain::*;
use commerce_core::memory::MemoryStore;
use commerce_core::ports::{CartStore, OrderStore, OrderTransition, StockEffect};
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

/// A commerce on one in-memory store, with `sku` (5 units) and a customer who has just
/// checked out 2 of them.
struct Placed {
    memory: MemoryStore,
    commerce: Commerce,
    admin: Principal,
    who: Principal,
    order: Order,
}

/// A commerce whose every store is one in-memory store, returned beside it.
fn on_one_memory_store(cfg: CommerceConfig) -> (MemoryStore, Commerce) {
    let memory = MemoryStore::new();
    let commerce = Commerce::builder()
        .config(cfg)
        .checkout(Arc::new(memory.clone()))
        .catalog(Arc::new(memory.clone()))
        .accounts(Arc::new(memory.clone()))
        .build()
        .unwrap();
    (memory, commerce)
}

async fn placed_order(cfg: CommerceConfig, sku: &str) -> Placed {
    let (memory, commerce) = on_one_memory_store(cfg);
    let admin = staff(&commerce).await;
    product(&commerce, &admin, sku, 500, 5).await;
    let who = customer(&commerce, 1).await;
    commerce.carts().add_item(&Shopper::User(who), sku, 2).await.unwrap();
    let order = commerce
        .orders()
        .checkout(&who, CheckoutInput::default())
        .await
        .unwrap();
    Placed {
        memory,
        commerce,
        admin,
        who,
        order,
    }
}

#[tokio::test]
async fn unpaid_orders_expire_and_release_their_stock() {
    let mut cfg = config();
    cfg.checkout.payment_window = std::time::Duration::from_millis(1);
    let Placed {
        commerce,
        admin,
        who,
        order,
        ..
    } = placed_order(cfg, "EXP-1").await;
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

#[tokio::test]
async fn recovery_records_a_finished_checkout_and_leaves_its_order_alone() {
    let placed = placed_order(config(), "REC-1").await;
    let (memory, commerce, admin, who, order) =
        (placed.memory, placed.commerce, placed.admin, placed.who, placed.order);
    // The checkout leaves its conversion to the cart: the saga row is still at its first step.
    let steps = |sagas: Vec<SagaRecord>| sagas.into_iter().map(|s| (s.order_id, s.step)).collect::<Vec<_>>();
    let sagas = OrderStore::unfinished_sagas(&memory).await.unwrap();
    assert_eq!(steps(sagas), vec![(order.id, SagaStep::OrderPlaced)]);

    let report = commerce.orders().recover().await.unwrap();
    assert_eq!(
        report,
        RecoveryReport {
            confirmed: 1,
            ..RecoveryReport::default()
        },
        "recorded, not repaired"
    );
    let sagas = OrderStore::unfinished_sagas(&memory).await.unwrap();
    assert_eq!(steps(sagas), vec![(order.id, SagaStep::CartConverted)]);
    assert_eq!(
        commerce.orders().order(&who, order.id).await.unwrap().status,
        OrderStatus::Pending
    );
    let level = commerce.inventory().levels(&admin, "REC-1").await.unwrap().remove(0);
    assert_eq!(level.reserved, 2, "the order keeps its stock");
    let cart = commerce.carts().cart(&Shopper::User(who)).await.unwrap();
    assert!(cart.lines.is_empty(), "the converted cart stays converted");

    let again = commerce.orders().recover().await.unwrap();
    assert_eq!(again, RecoveryReport::default(), "nothing left to record");
}

/// A cart store over `memory` that, the first time a cart is read, lets a compensation of
/// `order` run first (order cancelled, stock released, cart handed back), as another host's
/// recovery or a failed payment could between recovery reading the order and reading the cart.
struct CompensatedMeanwhile {
    memory: MemoryStore,
    order: OrderId,
    done: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl CartStore for CompensatedMeanwhile {
    async fn find_active_cart(&self, owner: &CartOwner, now: chrono::DateTime<chrono::Utc>) -> Result<Option<Cart>> {
        self.memory.find_active_cart(owner, now).await
    }
    async fn get_cart(&self, id: CartId) -> Result<Cart> {
        if !self.done.swap(true, std::sync::atomic::Ordering::SeqCst) {
            let at = chrono::Utc::now();
            let cancel = OrderTransition {
                order_id: self.order,
                from: OrderStatus::Pending,
                to: OrderStatus::Cancelled,
                event: OrderEvent {
                    id: OrderEventId::new(),
                    order_id: self.order,
                    from: Some(OrderStatus::Pending),
                    to: OrderStatus::Cancelled,
                    actor: Actor::System,
                    note: Some("payment failed".into()),
                    at,
                },
                stock: StockEffect::Release,
                tracking: None,
                saga_step: Some(SagaStep::Compensated),
            };
            self.memory.transition_order(&cancel).await?;
            let (from, to) = (CartStatus::Converted(self.order), CartStatus::Active);
            self.memory.set_cart_status(id, from, to, at).await?;
        }
        self.memory.get_cart(id).await
    }
    async fn insert_cart(&self, cart: &Cart) -> Result<()> {
        self.memory.insert_cart(cart).await
    }
    async fn save_cart(&self, cart: &Cart) -> Result<()> {
        self.memory.save_cart(cart).await
    }
    async fn set_cart_status(
        &self,
        id: CartId,
        from: CartStatus,
        to: CartStatus,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Cart> {
        self.memory.set_cart_status(id, from, to, now).await
    }
    async fn delete_expired_carts(&self, now: chrono::DateTime<chrono::Utc>) -> Result<u64> {
        self.memory.delete_expired_carts(now).await
    }
    async fn find_cart_by_order(&self, order: OrderId) -> Result<Option<Cart>> {
        self.memory.find_cart_by_order(order).await
    }
}

#[tokio::test]
async fn recovery_gives_back_a_cart_it_took_for_an_order_cancelled_meanwhile() {
    let placed = placed_order(config(), "RACE-1").await;
    let (memory, commerce, admin, who, order) =
        (placed.memory, placed.commerce, placed.admin, placed.who, placed.order);
    // Recovery reads the order (pending), then the cart: by then the order was cancelled and
    // its cart handed back, so recovery takes it for a checkout that stopped before converting.
    let carts = Arc::new(CompensatedMeanwhile {
        memory: memory.clone(),
        order: order.id,
        done: std::sync::atomic::AtomicBool::new(false),
    });
    let recovery = OrderService::new(
        Arc::new(memory.clone()),
        carts,
        Arc::new(memory.clone()),
        Arc::new(memory.clone()),
        commerce.carts().clone(),
        CheckoutPolicy::default(),
    );
    let report = recovery.recover().await.unwrap();
    assert_eq!(report.resumed, 0, "{report:?}");
    assert_eq!(
        commerce.orders().order(&who, order.id).await.unwrap().status,
        OrderStatus::Cancelled
    );
    let cart = commerce.carts().cart(&Shopper::User(who)).await.unwrap();
    assert_eq!(
        cart.lines.len(),
        1,
        "the cart is the customer's again, not the cancelled order's"
    );
    let level = commerce.inventory().levels(&admin, "RACE-1").await.unwrap().remove(0);
    assert_eq!(level.reserved, 0);
}

#[tokio::test]
async fn the_purge_keeps_a_cart_expired_less_than_the_grace() {
    let mut cfg = config();
    cfg.cart.ttl = std::time::Duration::from_millis(1);
    let (memory, commerce) = on_one_memory_store(cfg);
    let admin = staff(&commerce).await;
    product(&commerce, &admin, "OLD-1", 500, 5).await;
    let who = customer(&commerce, 1).await;
    let priced = commerce
        .carts()
        .add_item(&Shopper::User(who), "OLD-1", 1)
        .await
        .unwrap();
    let cart = priced.cart.expect("the cart the add created").id;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    // Expired, but within the grace: recovery may still need to read it.
    assert_eq!(commerce.carts().purge_expired().await.unwrap(), 0);
    assert_eq!(memory.get_cart(cart).await.unwrap().id, cart);
    // Expired all the same: without the grace it would have gone.
    assert_eq!(memory.delete_expired_carts(chrono::Utc::now()).await.unwrap(), 1);
    assert!(matches!(memory.get_cart(cart).await, Err(Error::NotFound { .. })));
}
