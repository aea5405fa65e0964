//! Payments with the offline manual gateway on the in-memory adapter: intents, events applied
//! once and never backwards, amount checks, the confirm/webhook race, refunds.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use commerce_core::domain::*;
use commerce_core::memory::MemoryStore;
use commerce_core::ports::PaymentGateway;
use commerce_core::services::*;
use commerce_core::{Commerce, CommerceBuilder, CommerceConfig, Error, Result};

async fn setup() -> (Commerce, Principal, Principal, Order) {
    setup_with(None).await
}

/// As [`setup`], over `gateway` instead of the built-in manual gateway.
async fn setup_with(gateway: Option<Arc<dyn PaymentGateway>>) -> (Commerce, Principal, Principal, Order) {
    let mut builder = Commerce::builder();
    if let Some(gateway) = gateway {
        builder = builder.payment_gateway(gateway);
    }
    setup_on(builder).await
}

fn config() -> CommerceConfig {
    CommerceConfig {
        hash_cost: HashCost::insecure_for_tests(),
        ..CommerceConfig::default()
    }
}

/// As [`setup`], on what `builder` has.
async fn setup_on(builder: CommerceBuilder) -> (Commerce, Principal, Principal, Order) {
    let commerce = builder.config(config()).build().unwrap();
    let owner = commerce
        .accounts()
        .ensure_superadmin("owner@example.com", "owner-password")
        .await
        .unwrap();
    let admin = Principal {
        user_id: owner.id,
        role: Role::Superadmin,
    };
    let input = ProductInput {
        name: "Kettle".into(),
        status: Some("active".into()),
        variants: vec![VariantInput {
            sku: "KET-1".into(),
            price: MoneyInput {
                amount: 4_000,
                currency: "USD".into(),
            },
            ..Default::default()
        }],
        ..ProductInput::default()
    };
    commerce.catalog().create_product(&admin, input).await.unwrap();
    commerce
        .inventory()
        .set_stock(
            &admin,
            "KET-1",
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
            email: "buyer@example.com".into(),
            password: "password-123".into(),
            first_name: "B".into(),
            last_name: "Y".into(),
            phone: None,
        })
        .await
        .unwrap();
    let buyer = Principal {
        user_id: s.user.id,
        role: Role::Customer,
    };
    let fields = AddressFields {
        first_name: "B".into(),
        last_name: "Y".into(),
        line1: "1 Road".into(),
        city: "Town".into(),
        postal_code: "1".into(),
        country: "US".into(),
        ..Default::default()
    };
    commerce
        .accounts()
        .add_address(
            &buyer,
            AddressInput {
                fields,
                is_default: true,
            },
        )
        .await
        .unwrap();
    commerce
        .carts()
        .add_item(&Shopper::User(buyer), "KET-1", 2)
        .await
        .unwrap();
    let order = commerce
        .orders()
        .checkout(&buyer, CheckoutInput::default())
        .await
        .unwrap();
    (commerce, admin, buyer, order)
}

fn event(id: &str, intent: &str, outcome: GatewayOutcome) -> GatewayEvent {
    GatewayEvent {
        id: id.into(),
        kind: "payment_intent.succeeded".into(),
        outcome,
        intent_id: intent.into(),
        card_brand: Some("visa".into()),
        card_last4: Some("4242".into()),
    }
}

async fn reserved(commerce: &Commerce, admin: &Principal) -> (i64, i64) {
    let l = commerce.inventory().levels(admin, "KET-1").await.unwrap().remove(0);
    (l.on_hand, l.reserved)
}

#[tokio::test]
async fn intent_is_created_once_and_success_applies_once() {
    let (commerce, admin, buyer, order) = setup().await;
    let p1 = commerce.payments().create_intent(&buyer, order.id).await.unwrap();
    let p2 = commerce.payments().create_intent(&buyer, order.id).await.unwrap();
    assert_eq!(p1.intent_id, p2.intent_id, "asking twice returns the same intent");
    assert_eq!(p1.amount, order.totals.total);

    let stranger = Principal {
        user_id: UserId::new(),
        role: Role::Customer,
    };
    assert!(
        commerce
            .payments()
            .create_intent(&stranger, order.id)
            .await
            .unwrap_err()
            .is_not_found()
    );

    let paid = event("evt_1", &p1.intent_id, GatewayOutcome::Succeeded(p1.amount));
    assert_eq!(
        commerce.payments().handle_event(&paid).await.unwrap(),
        EventOutcome::Applied
    );
    assert_eq!(
        commerce.payments().handle_event(&paid).await.unwrap(),
        EventOutcome::Duplicate
    );
    // A late "failed" for the same intent never moves the order back.
    let failed = GatewayEvent {
        id: "evt_2".into(),
        kind: "payment_intent.payment_failed".into(),
        outcome: GatewayOutcome::Failed,
        ..paid.clone()
    };
    assert_eq!(
        commerce.payments().handle_event(&failed).await.unwrap(),
        EventOutcome::Ignored
    );
    let order = commerce.orders().order(&buyer, order.id).await.unwrap();
    assert_eq!(order.status, OrderStatus::Processing);
    assert_eq!(reserved(&commerce, &admin).await, (8, 0), "reservation committed");
    let (payment, txs) = commerce.payments().payment_for(&buyer, order.id).await.unwrap();
    assert_eq!(
        (payment.status, payment.card_last4.as_deref()),
        (PaymentStatus::Succeeded, Some("4242"))
    );
    assert_eq!(txs.len(), 1);
}

#[tokio::test]
async fn an_amount_mismatch_is_flagged_and_not_applied() {
    let (commerce, _, buyer, order) = setup().await;
    let p = commerce.payments().create_intent(&buyer, order.id).await.unwrap();
    let short = Money::new(p.amount.amount_minor - 1, p.amount.currency);
    assert_eq!(
        commerce
            .payments()
            .handle_event(&event("evt_x", &p.intent_id, GatewayOutcome::Succeeded(short)))
            .await
            .unwrap(),
        EventOutcome::Flagged
    );
    let euros = Money::new(p.amount.amount_minor, Currency::EUR);
    assert_eq!(
        commerce
            .payments()
            .handle_event(&event("evt_y", &p.intent_id, GatewayOutcome::Succeeded(euros)))
            .await
            .unwrap(),
        EventOutcome::Flagged
    );
    assert_eq!(
        commerce.orders().order(&buyer, order.id).await.unwrap().status,
        OrderStatus::Pending
    );
    assert_eq!(
        commerce
            .payments()
            .handle_event(&event("evt_z", "pi_unknown", GatewayOutcome::Failed))
            .await
            .unwrap(),
        EventOutcome::UnknownIntent
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn confirm_and_webhook_racing_act_once() {
    for round in 0..20 {
        let (commerce, admin, buyer, order) = setup().await;
        let p = commerce.payments().create_intent(&buyer, order.id).await.unwrap();
        // The customer pays at the gateway...
        let settled = commerce.payments().settle_manual(&admin, &p.intent_id, true);
        // ...while the client confirms several times at once.
        let confirms = (0..4).map(|_| commerce.payments().confirm(&buyer, order.id));
        let (settled, confirms) = tokio::join!(settled, futures::future::join_all(confirms));
        // Whichever of the webhook and the confirmations came first acted; the others found it done.
        assert!(matches!(
            settled.unwrap(),
            EventOutcome::Applied | EventOutcome::Ignored
        ));
        for c in confirms {
            c.unwrap();
        }
        let events = commerce.orders().events(&buyer, order.id).await.unwrap();
        let paid = events.iter().filter(|e| e.to == OrderStatus::Processing).count();
        assert_eq!(paid, 1, "round {round}: exactly one transition to processing");
        assert_eq!(reserved(&commerce, &admin).await, (8, 0), "round {round}");
        let (_, txs) = commerce.payments().payment_for(&buyer, order.id).await.unwrap();
        assert_eq!(txs.len(), 1, "round {round}: one charge recorded");
    }
}

#[tokio::test]
async fn failure_releases_stock_and_refunds_are_bounded() {
    let (commerce, admin, buyer, order) = setup().await;
    let p = commerce.payments().create_intent(&buyer, order.id).await.unwrap();
    commerce
        .payments()
        .settle_manual(&admin, &p.intent_id, false)
        .await
        .unwrap();
    assert_eq!(
        commerce.orders().order(&buyer, order.id).await.unwrap().status,
        OrderStatus::Cancelled
    );
    assert_eq!(
        reserved(&commerce, &admin).await,
        (10, 0),
        "failure released the reservation"
    );
    assert_eq!(
        commerce.carts().cart(&Shopper::User(buyer)).await.unwrap().lines.len(),
        1,
        "cart is back"
    );

    // Pay a fresh order, then refund in two parts; more than captured is refused.
    let order = commerce
        .orders()
        .checkout(&buyer, CheckoutInput::default())
        .await
        .unwrap();
    let p = commerce.payments().create_intent(&buyer, order.id).await.unwrap();
    commerce
        .payments()
        .settle_manual(&admin, &p.intent_id, true)
        .await
        .unwrap();
    let total = p.amount.amount_minor;
    let err = commerce
        .payments()
        .refund(&admin, order.id, Some(total + 1))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Validation(f) if f[0].field == "amount"),
        "{err:?}"
    );
    assert!(matches!(
        commerce.payments().refund(&buyer, order.id, None).await,
        Err(Error::Forbidden(_))
    ));
    let part = commerce.payments().refund(&admin, order.id, Some(1_000)).await.unwrap();
    assert_eq!(
        (part.status, part.amount_refunded.amount_minor),
        (PaymentStatus::PartiallyRefunded, 1_000)
    );
    assert_eq!(
        commerce.orders().order(&buyer, order.id).await.unwrap().status,
        OrderStatus::Processing
    );
    let rest = commerce.payments().refund(&admin, order.id, None).await.unwrap();
    assert_eq!(
        (rest.status, rest.amount_refunded.amount_minor),
        (PaymentStatus::Refunded, total)
    );
    assert_eq!(
        commerce.orders().order(&buyer, order.id).await.unwrap().status,
        OrderStatus::Refunded
    );
    let err = commerce.payments().refund(&admin, order.id, Some(1)).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Conflict {
                code: "not_refundable",
                ..
            }
        ),
        "{err:?}"
    );
}

/// The manual gateway, pausing once after each refund it makes, before its caller records it:
/// the gap in which a second staff request or the webhook reporting the refund can get in.
#[derive(Default)]
struct PausingGateway {
    inner: ManualGateway,
    /// Ids of the refunds made (a key answered again adds none).
    refunds_made: Mutex<BTreeSet<String>>,
}

impl PausingGateway {
    fn refunds_made(&self) -> usize {
        self.refunds_made.lock().unwrap().len()
    }
}

#[async_trait]
impl PaymentGateway for PausingGateway {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    async fn create_intent(&self, order: OrderId, amount: Money, key: &str) -> Result<PaymentIntent> {
        self.inner.create_intent(order, amount, key).await
    }

    async fn retrieve_intent(&self, intent_id: &str) -> Result<PaymentIntent> {
        self.inner.retrieve_intent(intent_id).await
    }

    async fn cancel_intent(&self, intent_id: &str) -> Result<PaymentIntent> {
        self.inner.cancel_intent(intent_id).await
    }

    async fn refund(&self, intent_id: &str, amount: Money, key: &str) -> Result<GatewayRefund> {
        let refund = self.inner.refund(intent_id, amount, key).await;
        if let Ok(r) = &refund {
            self.refunds_made.lock().unwrap().insert(r.id.clone());
        }
        tokio::task::yield_now().await;
        refund
    }
}

/// The refund transactions of the order's payment: (kind, amount).
async fn refunds(commerce: &Commerce, admin: &Principal, order: OrderId) -> Vec<(TransactionKind, i64)> {
    let (_, txs) = commerce.payments().payment_for(admin, order).await.unwrap();
    txs.iter()
        .filter(|t| t.kind != TransactionKind::Charge)
        .map(|t| (t.kind, t.amount.amount_minor))
        .collect()
}

#[tokio::test]
async fn refunds_recorded_at_once_are_neither_lost_nor_counted_twice() {
    let gateway = Arc::new(PausingGateway::default());
    let (commerce, admin, buyer, order) = setup_with(Some(gateway.clone())).await;
    let p = commerce.payments().create_intent(&buyer, order.id).await.unwrap();
    let paid = gateway.inner.settle(&p.intent_id, true).await.unwrap();
    commerce.payments().handle_event(&paid).await.unwrap();
    let pay = commerce.payments();
    let part = pay.refund(&admin, order.id, Some(500)).await.unwrap();
    assert_eq!(part.status, PaymentStatus::PartiallyRefunded);

    // Two staff requests for the same refund, both read before either recorded: the gateway
    // makes one refund, and it is recorded once.
    let (a, b) = tokio::join!(
        pay.refund(&admin, order.id, Some(1_000)),
        pay.refund(&admin, order.id, Some(1_000))
    );
    assert_eq!(
        (
            a.unwrap().amount_refunded.amount_minor,
            b.unwrap().amount_refunded.amount_minor
        ),
        (1_500, 1_500),
        "both answer with the one refund recorded"
    );
    assert_eq!(gateway.refunds_made(), 2, "one refund of 1,000 at the gateway");
    assert_eq!(
        refunds(&commerce, &admin, order.id).await,
        vec![
            (TransactionKind::PartialRefund, 500),
            (TransactionKind::PartialRefund, 1_000)
        ]
    );

    // Two refunds of different amounts from the same reading: the gateway refuses the second
    // (its key is the first's) and the request is a conflict, to be read again, not a failed
    // payment; what is recorded is what left the gateway.
    let (a, b) = tokio::join!(
        pay.refund(&admin, order.id, Some(1_000)),
        pay.refund(&admin, order.id, Some(2_000))
    );
    assert_eq!(a.unwrap().amount_refunded.amount_minor, 2_500);
    assert!(
        matches!(
            b,
            Err(Error::Conflict {
                code: "refund_conflict",
                ..
            })
        ),
        "{b:?}"
    );
    assert_eq!(gateway.refunds_made(), 3);

    // The webhook reports a staff refund before the staff request records it: recorded once.
    let webhook = async {
        while gateway.refunds_made() < 4 {
            tokio::task::yield_now().await;
        }
        let reported = GatewayEvent {
            kind: "charge.refunded".into(),
            ..event("evt_refund_2800", &p.intent_id, GatewayOutcome::Refunded(usd(2_800)))
        };
        pay.handle_event(&reported).await
    };
    let (staff, hook) = tokio::join!(pay.refund(&admin, order.id, Some(300)), webhook);
    assert_eq!(hook.unwrap(), EventOutcome::Applied);
    assert_eq!(staff.unwrap().amount_refunded.amount_minor, 2_800);
    assert_eq!(
        refunds(&commerce, &admin, order.id).await,
        vec![
            (TransactionKind::PartialRefund, 500),
            (TransactionKind::PartialRefund, 1_000),
            (TransactionKind::PartialRefund, 1_000),
            (TransactionKind::PartialRefund, 300),
        ]
    );

    // The rest, then nothing more: the order is refunded once.
    let rest = pay.refund(&admin, order.id, None).await.unwrap();
    assert_eq!((rest.status, rest.amount_refunded), (PaymentStatus::Refunded, p.amount));
    assert_eq!(
        commerce.orders().order(&buyer, order.id).await.unwrap().status,
        OrderStatus::Refunded
    );
}

fn usd(amount_minor: i64) -> Money {
    Money::new(amount_minor, Currency::USD)
}

#[tokio::test]
async fn a_manual_intent_made_before_a_restart_is_paid_and_refunded_after_it() {
    let store = Arc::new(MemoryStore::new());
    let on_store = || {
        Commerce::builder()
            .accounts(store.clone())
            .catalog(store.clone())
            .checkout(store.clone())
    };
    let (before, admin, buyer, order) = setup_on(on_store()).await;
    let p = before.payments().create_intent(&buyer, order.id).await.unwrap();
    drop(before);

    // A new process over the same stores: its manual gateway never made the intent.
    let after = on_store().config(config()).build().unwrap();
    let pay = after.payments();
    assert_eq!(
        pay.create_intent(&buyer, order.id).await.unwrap().intent_id,
        p.intent_id,
        "the order keeps its intent"
    );
    assert_eq!(
        pay.settle_manual(&admin, &p.intent_id, true).await.unwrap(),
        EventOutcome::Applied
    );
    assert_eq!(
        after.orders().order(&buyer, order.id).await.unwrap().status,
        OrderStatus::Processing
    );
    assert!(
        matches!(
            pay.settle_manual(&admin, &p.intent_id, false).await,
            Err(Error::Payment(_))
        ),
        "settled once"
    );
    let part = pay.refund(&admin, order.id, Some(1_000)).await.unwrap();
    assert_eq!(part.amount_refunded, usd(1_000));
    drop(after);

    // Restored again after a second restart, with what was refunded already: the gateway
    // itself refuses to give back more than remains.
    let gateway = ManualGateway::over(store.clone());
    assert_eq!(
        gateway.retrieve_intent(&p.intent_id).await.unwrap().status,
        PaymentStatus::Succeeded
    );
    let all = gateway.refund(&p.intent_id, p.amount, "refund-all").await;
    assert!(matches!(all, Err(Error::Payment(_))), "{all:?}");
    let rest = p.amount.checked_sub(usd(1_000)).unwrap();
    assert_eq!(
        gateway.refund(&p.intent_id, rest, "refund-rest").await.unwrap().amount,
        rest
    );
    assert!(matches!(
        ManualGateway::over(store.clone()).retrieve_intent("pi_unknown").await,
        Err(Error::NotFound { .. })
    ));
    assert!(
        matches!(
            ManualGateway::new().retrieve_intent(&p.intent_id).await,
            Err(Error::NotFound { .. })
        ),
        "without a store, an intent lives as long as its process"
    );
}
