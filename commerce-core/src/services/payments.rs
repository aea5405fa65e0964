//! Payments: intents through a gateway, gateway events (webhooks) applied exactly once and
//! never backwards, refunds, and the offline `manual` gateway of the embedded default.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::Utc;

use super::orders::OrderService;
use super::tokens::Principal;
use crate::domain::{
    GatewayRefund, Money, Order, OrderId, OrderStatus, Payment, PaymentId, PaymentIntent, PaymentSeen, PaymentStatus,
    PaymentTransaction, PaymentTransactionId, SagaStep, TransactionKind,
};
use crate::ports::{KEY_REUSED, OrderStore, PaymentGateway, PaymentStore, StockEffect};
use crate::{Error, Result};

/// What a gateway says happened (a verified webhook, or the manual gateway's admin action).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayEvent {
    /// The gateway's event id (dedupe key).
    pub id: String,
    /// The gateway's event type, e.g. `payment_intent.succeeded` (recorded as is).
    pub kind: String,
    /// What it means.
    pub outcome: GatewayOutcome,
    /// The intent concerned.
    pub intent_id: String,
    /// Card brand, when the gateway tells.
    pub card_brand: Option<String>,
    /// Last four digits, when the gateway tells.
    pub card_last4: Option<String>,
}

/// The meaning of a gateway event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayOutcome {
    /// Money captured: this amount.
    Succeeded(Money),
    /// The payment attempt failed.
    Failed,
    /// The intent was cancelled.
    Canceled,
    /// In all, this much of the charge has been refunded.
    Refunded(Money),
}

/// What applying an event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventOutcome {
    /// Applied.
    Applied,
    /// Seen before (same event id): nothing done.
    Duplicate,
    /// Nothing to do (already in that state or further; events never move an order back).
    Ignored,
    /// No payment has this intent.
    UnknownIntent,
    /// Amount or currency disagree with the payment: recorded and flagged, not applied.
    Flagged,
}

/// Payment use cases.
#[derive(Clone)]
pub struct PaymentService {
    payments: Arc<dyn PaymentStore>,
    orders: Arc<dyn OrderStore>,
    order_service: OrderService,
    gateway: Arc<dyn PaymentGateway>,
    manual: Option<Arc<ManualGateway>>,
}

fn tx(payment: PaymentId, kind: TransactionKind, amount: Money, reference: Option<String>) -> PaymentTransaction {
    PaymentTransaction {
        id: PaymentTransactionId::new(),
        payment_id: payment,
        kind,
        amount,
        gateway_reference: reference,
        created_at: Utc::now(),
    }
}

/// How often a refund is recorded again after another change of the payment got in first.
const RECORD_ATTEMPTS: usize = 8;

/// Whether money was captured and some of it is still held.
fn refundable(payment: &Payment) -> bool {
    matches!(
        payment.status,
        PaymentStatus::Succeeded | PaymentStatus::PartiallyRefunded
    )
}

/// `Conflict` for an order that cannot take a payment.
fn not_payable(order: &Order) -> Error {
    Error::conflict(
        "order_not_payable",
        format!("the order is {}, not pending", order.status),
    )
}

impl PaymentService {
    /// Wires the service.
    pub fn new(
        payments: Arc<dyn PaymentStore>,
        orders: Arc<dyn OrderStore>,
        order_service: OrderService,
        gateway: Arc<dyn PaymentGateway>,
    ) -> Self {
        Self {
            payments,
            orders,
            order_service,
            gateway,
            manual: None,
        }
    }

    /// Over the offline manual gateway, whose intents staff settle with
    /// [`Self::settle_manual`].
    pub fn with_manual_gateway(
        payments: Arc<dyn PaymentStore>,
        orders: Arc<dyn OrderStore>,
        order_service: OrderService,
        gateway: Arc<ManualGateway>,
    ) -> Self {
        Self {
            payments,
            orders,
            order_service,
            gateway: gateway.clone(),
            manual: Some(gateway),
        }
    }

    /// Settles a manual-gateway intent (staff only): the offline stand-in for the customer
    /// paying and the gateway's webhook. Goes through the same event path as a webhook.
    ///
    /// # Errors
    /// `Forbidden`; `Conflict { code: "not_manual" }` when another gateway is in use;
    /// `NotFound { entity: "payment intent" }`; `Payment` when already settled.
    pub async fn settle_manual(&self, who: &Principal, intent_id: &str, succeed: bool) -> Result<EventOutcome> {
        who.require_staff()?;
        let manual = self
            .manual
            .as_ref()
            .ok_or_else(|| Error::conflict("not_manual", "the manual gateway is not in use"))?;
        let event = manual.settle(intent_id, succeed).await?;
        self.handle_event(&event).await
    }

    /// The gateway in use.
    pub fn gateway(&self) -> &Arc<dyn PaymentGateway> {
        &self.gateway
    }

    /// Creates (or returns the existing) payment intent for the caller's own pending order.
    /// Asking twice returns the same intent: the gateway's idempotency key is derived from the
    /// order.
    ///
    /// # Errors
    /// `NotFound { entity: "order" }` (also someone else's); `Conflict { code:
    /// "order_not_payable" }` when it is not pending; `Payment` when the gateway refuses.
    pub async fn create_intent(&self, who: &Principal, order_id: OrderId) -> Result<Payment> {
        let order = self.order_service.order(who, order_id).await?;
        if order.user_id != who.user_id {
            return Err(Error::NotFound { entity: "order" });
        }
        if let Some(existing) = self.payments.find_payment_by_order(order.id).await? {
            return Ok(existing);
        }
        if order.status != OrderStatus::Pending {
            return Err(not_payable(&order));
        }
        let intent = self
            .gateway
            .create_intent(order.id, order.totals.total, &format!("order-{}", order.id))
            .await?;
        let now = Utc::now();
        let payment = Payment {
            id: PaymentId::new(),
            order_id: order.id,
            gateway: self.gateway.name().to_owned(),
            intent_id: intent.id.clone(),
            client_secret: intent.client_secret.clone(),
            amount: order.totals.total,
            amount_refunded: Money::zero(order.totals.total.currency),
            status: PaymentStatus::RequiresPayment,
            card_brand: None,
            card_last4: None,
            created_at: now,
            updated_at: now,
        };
        match self.payments.insert_payment(&payment).await {
            Ok(()) => {}
            // A concurrent request won: theirs is the payment (same gateway intent by key).
            Err(Error::Conflict { .. }) => {
                return self
                    .payments
                    .find_payment_by_order(order.id)
                    .await?
                    .ok_or(Error::NotFound { entity: "payment" });
            }
            Err(e) => return Err(e),
        }
        if let Err(e) = self
            .orders
            .set_saga_step(order.id, SagaStep::AwaitingPayment, now)
            .await
        {
            tracing::warn!(order = %order.id, error = %e, "saga step not recorded");
        }
        Ok(payment)
    }

    /// The payment of the caller's order (staff: any order).
    ///
    /// # Errors
    /// `NotFound { entity: "order" | "payment" }`.
    pub async fn payment_for(&self, who: &Principal, order_id: OrderId) -> Result<(Payment, Vec<PaymentTransaction>)> {
        self.order_service.order(who, order_id).await?;
        let payment = self
            .payments
            .find_payment_by_order(order_id)
            .await?
            .ok_or(Error::NotFound { entity: "payment" })?;
        let transactions = self.payments.payment_transactions(&payment).await?;
        Ok((payment, transactions))
    }

    /// Asks the gateway about the caller's payment and applies what it says (the client's
    /// "I have paid" call). Safe to race with the webhook: whichever arrives second finds the
    /// work done.
    ///
    /// # Errors
    /// `NotFound`; `Payment`.
    pub async fn confirm(&self, who: &Principal, order_id: OrderId) -> Result<Payment> {
        let (payment, _) = self.payment_for(who, order_id).await?;
        let intent = self.gateway.retrieve_intent(&payment.intent_id).await?;
        let outcome = match intent.status {
            PaymentStatus::Succeeded => Some(GatewayOutcome::Succeeded(intent.amount)),
            PaymentStatus::Failed => Some(GatewayOutcome::Failed),
            PaymentStatus::Canceled => Some(GatewayOutcome::Canceled),
            _ => None,
        };
        if let Some(outcome) = outcome {
            self.apply(&payment, outcome, None, None).await?;
        }
        self.payments
            .find_payment_by_order(order_id)
            .await?
            .ok_or(Error::NotFound { entity: "payment" })
    }

    /// Applies a verified gateway event exactly once (deduplicated by event id), tolerating
    /// duplicates and out-of-order delivery, and refusing amounts that disagree with the
    /// payment.
    ///
    /// # Errors
    /// Storage and gateway failures (the gateway will redeliver).
    pub async fn handle_event(&self, event: &GatewayEvent) -> Result<EventOutcome> {
        let Some(payment) = self.payments.find_payment_by_intent(&event.intent_id).await? else {
            self.payments
                .record_gateway_event(&event.id, &format!("{}:unknown_intent", event.kind), Utc::now())
                .await?;
            return Ok(EventOutcome::UnknownIntent);
        };
        let mismatch = match event.outcome {
            GatewayOutcome::Succeeded(m) => m != payment.amount,
            GatewayOutcome::Refunded(m) => {
                m.currency != payment.amount.currency || m.amount_minor > payment.amount.amount_minor
            }
            GatewayOutcome::Failed | GatewayOutcome::Canceled => false,
        };
        let kind = if mismatch {
            format!("{}:amount_mismatch", event.kind)
        } else {
            event.kind.clone()
        };
        if !self.payments.record_gateway_event(&event.id, &kind, Utc::now()).await? {
            return Ok(EventOutcome::Duplicate);
        }
        if mismatch {
            tracing::error!(event = %event.id, intent = %event.intent_id, order = %payment.order_id, "gateway amount disagrees with the order: flagged, not applied");
            return Ok(EventOutcome::Flagged);
        }
        self.apply(
            &payment,
            event.outcome,
            event.card_brand.clone(),
            event.card_last4.clone(),
        )
        .await
    }

    /// Moves payment and order for an outcome, with compare-and-set on both so concurrent
    /// callers (webhook, client confirmation, expiry) act at most once.
    async fn apply(
        &self,
        payment: &Payment,
        outcome: GatewayOutcome,
        brand: Option<String>,
        last4: Option<String>,
    ) -> Result<EventOutcome> {
        match outcome {
            GatewayOutcome::Succeeded(amount) => {
                if payment.status != PaymentStatus::RequiresPayment {
                    return Ok(EventOutcome::Ignored);
                }
                let next = Payment {
                    status: PaymentStatus::Succeeded,
                    card_brand: brand.or_else(|| payment.card_brand.clone()),
                    card_last4: last4.filter(|l| l.len() == 4 && l.bytes().all(|b| b.is_ascii_digit())),
                    updated_at: Utc::now(),
                    ..payment.clone()
                };
                let charge = tx(
                    payment.id,
                    TransactionKind::Charge,
                    amount,
                    Some(payment.intent_id.clone()),
                );
                match self
                    .payments
                    .update_payment(&next, PaymentSeen::of(payment), Some(charge))
                    .await
                {
                    Ok(_) => {}
                    Err(Error::InvalidTransition { .. }) => return Ok(EventOutcome::Ignored),
                    Err(e) => return Err(e),
                }
                let paid = self
                    .order_service
                    .gateway_transition(
                        payment.order_id,
                        OrderStatus::Pending,
                        OrderStatus::Processing,
                        StockEffect::Commit,
                        Some(SagaStep::Completed),
                        "payment succeeded",
                    )
                    .await;
                match paid {
                    Ok(_) => Ok(EventOutcome::Applied),
                    // Paid after the order expired or was cancelled: give the money back.
                    Err(Error::InvalidTransition { .. }) => {
                        let order = self.orders.get_order(payment.order_id).await?;
                        if matches!(order.status, OrderStatus::Cancelled) {
                            tracing::warn!(order = %order.id, "payment arrived for a cancelled order: refunding");
                            self.refund_amount(&next, amount, "late payment for a cancelled order")
                                .await?;
                        }
                        Ok(EventOutcome::Applied)
                    }
                    Err(e) => Err(e),
                }
            }
            GatewayOutcome::Failed | GatewayOutcome::Canceled => {
                if payment.status != PaymentStatus::RequiresPayment {
                    return Ok(EventOutcome::Ignored);
                }
                let status = if outcome == GatewayOutcome::Failed {
                    PaymentStatus::Failed
                } else {
                    PaymentStatus::Canceled
                };
                let next = Payment {
                    status,
                    updated_at: Utc::now(),
                    ..payment.clone()
                };
                match self
                    .payments
                    .update_payment(&next, PaymentSeen::of(payment), None)
                    .await
                {
                    Ok(_) => {}
                    Err(Error::InvalidTransition { .. }) => return Ok(EventOutcome::Ignored),
                    Err(e) => return Err(e),
                }
                let order = self.orders.get_order(payment.order_id).await?;
                self.order_service
                    .cancel_unpaid(
                        &order,
                        if status == PaymentStatus::Failed {
                            "payment failed"
                        } else {
                            "payment cancelled"
                        },
                    )
                    .await?;
                Ok(EventOutcome::Applied)
            }
            GatewayOutcome::Refunded(total_refunded) => {
                if !refundable(payment) || total_refunded.amount_minor <= payment.amount_refunded.amount_minor {
                    return Ok(EventOutcome::Ignored);
                }
                self.record_refunded(payment, total_refunded, None).await?;
                Ok(EventOutcome::Applied)
            }
        }
    }

    /// Records that the gateway has refunded `total` of the payment in all, with a transaction
    /// for what that adds, and refunds the order once the whole amount is back. Returns the
    /// payment as stored.
    ///
    /// The highest total the gateway confirmed wins: a staff refund and the webhook reporting it
    /// (or two staff requests that met at the gateway as one refund) may record in either
    /// order, and the second finds its total already there. The update compares and sets the
    /// refunded amount too, so a refund recorded meanwhile is read again, never overwritten.
    async fn record_refunded(&self, payment: &Payment, total: Money, reference: Option<String>) -> Result<Payment> {
        let mut current = payment.clone();
        for _ in 0..RECORD_ATTEMPTS {
            if total.amount_minor <= current.amount_refunded.amount_minor || !refundable(&current) {
                return self.refund_order_if_whole(current).await;
            }
            let added = total.checked_sub(current.amount_refunded).map_err(Error::unexpected)?;
            let full = total.amount_minor >= current.amount.amount_minor;
            let kind = if full && current.amount_refunded.amount_minor == 0 {
                TransactionKind::Refund
            } else {
                TransactionKind::PartialRefund
            };
            let next = Payment {
                amount_refunded: total,
                status: if full {
                    PaymentStatus::Refunded
                } else {
                    PaymentStatus::PartiallyRefunded
                },
                updated_at: Utc::now(),
                ..current.clone()
            };
            let recorded = tx(current.id, kind, added, reference.clone());
            match self
                .payments
                .update_payment(&next, PaymentSeen::of(&current), Some(recorded))
                .await
            {
                Ok(stored) => return self.refund_order_if_whole(stored).await,
                Err(
                    Error::InvalidTransition { .. }
                    | Error::Conflict {
                        code: "payment_changed",
                        ..
                    },
                ) => {
                    current = self
                        .payments
                        .find_payment_by_order(current.order_id)
                        .await?
                        .ok_or(Error::NotFound { entity: "payment" })?;
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::conflict(
            "payment_busy",
            "the payment kept changing while the refund was recorded; try again",
        ))
    }

    /// Moves the order to refunded when the payment is wholly refunded (compare-and-set: once).
    async fn refund_order_if_whole(&self, payment: Payment) -> Result<Payment> {
        if payment.status != PaymentStatus::Refunded {
            return Ok(payment);
        }
        let order = self.orders.get_order(payment.order_id).await?;
        if order.status.can_become(OrderStatus::Refunded) {
            match self
                .order_service
                .gateway_transition(
                    order.id,
                    order.status,
                    OrderStatus::Refunded,
                    StockEffect::None,
                    None,
                    "payment refunded",
                )
                .await
            {
                // Moved meanwhile, e.g. by the other recorder of the same refund.
                Ok(_) | Err(Error::InvalidTransition { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(payment)
    }

    /// Refunds `amount` through the gateway and records it.
    ///
    /// The gateway's idempotency key names the payment and what was refunded when it was read,
    /// not the amount: two requests made from the same reading meet at the gateway as one refund
    /// (the same amount) or the second is refused (another amount), so concurrent refunds can
    /// never return more than was captured; a retry after a failure to record finds the refund
    /// already made.
    async fn refund_amount(&self, payment: &Payment, amount: Money, why: &str) -> Result<Payment> {
        let key = format!("refund-{}-{}", payment.id, payment.amount_refunded.amount_minor);
        let refund: GatewayRefund = match self.gateway.refund(&payment.intent_id, amount, &key).await {
            Err(Error::Conflict { code: KEY_REUSED, .. }) => {
                return Err(Error::conflict(
                    "refund_conflict",
                    "another refund of this payment was made meanwhile; read the payment again",
                ));
            }
            answer => answer?,
        };
        tracing::info!(payment = %payment.id, refund = %refund.id, why, "refunded");
        let total = payment
            .amount_refunded
            .checked_add(refund.amount)
            .map_err(Error::unexpected)?;
        self.record_refunded(payment, total, Some(refund.id)).await
    }

    /// Refunds all (no amount) or part of an order's captured payment through the gateway
    /// (staff only). The order becomes refunded once the whole amount is back.
    ///
    /// # Errors
    /// `Forbidden`; `NotFound { entity: "order" | "payment" }`; `Conflict { code:
    /// "not_refundable" }` when nothing was captured, `Conflict { code: "refund_conflict" }`
    /// when another refund of the payment was made since it was read (the gateway refused the
    /// reading's key for another amount); `Validation { field: "amount" }` (422) for more than
    /// remains; `Payment` when the gateway refuses.
    pub async fn refund(&self, who: &Principal, order_id: OrderId, amount: Option<i64>) -> Result<Payment> {
        who.require_staff()?;
        let payment = self
            .payments
            .find_payment_by_order(order_id)
            .await?
            .ok_or(Error::NotFound { entity: "payment" })?;
        if !refundable(&payment) {
            return Err(Error::conflict("not_refundable", "nothing was captured for this order"));
        }
        let remaining = payment
            .amount
            .checked_sub(payment.amount_refunded)
            .map_err(Error::unexpected)?;
        let amount = Money::new(amount.unwrap_or(remaining.amount_minor), remaining.currency);
        if amount.amount_minor <= 0 || amount.amount_minor > remaining.amount_minor {
            return Err(Error::invalid(
                "amount",
                format!("must be from 1 to {} (what remains captured)", remaining.amount_minor),
            ));
        }
        self.refund_amount(&payment, amount, "staff refund").await
    }
}

/// The offline gateway of the embedded default: staff settle its intents (succeed or fail)
/// through the admin API, which feeds the same event path as a webhook.
///
/// Intents live in memory; over a payments store ([`Self::over`], what [`crate::Commerce`]
/// builds) an intent made before a restart is restored from its payment the first time it is
/// asked for, so orders placed before a restart can still be paid and refunded.
#[derive(Default)]
pub struct ManualGateway {
    intents: Mutex<HashMap<String, PaymentIntent>>,
    by_key: Mutex<HashMap<String, String>>,
    refunds: Mutex<ManualRefunds>,
    /// Where intents this process did not make are found again.
    payments: Option<Arc<dyn PaymentStore>>,
}

impl std::fmt::Debug for ManualGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManualGateway")
            .field("restores_from_store", &self.payments.is_some())
            .finish_non_exhaustive()
    }
}

/// The manual gateway's refunds.
#[derive(Debug, Default)]
struct ManualRefunds {
    /// By idempotency key, with their intent.
    by_key: HashMap<String, (String, GatewayRefund)>,
    /// Refunded so far per intent, in minor units.
    refunded: HashMap<String, i64>,
}

fn locked<T>(m: &Mutex<T>) -> Result<std::sync::MutexGuard<'_, T>> {
    m.lock()
        .map_err(|_| Error::unexpected_msg("manual gateway lock poisoned"))
}

fn unknown_intent() -> Error {
    Error::NotFound {
        entity: "payment intent",
    }
}

impl ManualGateway {
    /// A gateway whose intents live only as long as the process.
    pub fn new() -> Self {
        Self::default()
    }

    /// A gateway that restores intents made before a restart from their payments in `payments`.
    pub fn over(payments: Arc<dyn PaymentStore>) -> Self {
        Self {
            payments: Some(payments),
            ..Self::default()
        }
    }

    /// Makes sure the intent is in memory: restored from its payment when this process did not
    /// make it. A payment of another gateway is not this gateway's intent.
    async fn restore(&self, intent_id: &str) -> Result<()> {
        if locked(&self.intents)?.contains_key(intent_id) {
            return Ok(());
        }
        let Some(store) = &self.payments else {
            return Err(unknown_intent());
        };
        let payment = store
            .find_payment_by_intent(intent_id)
            .await?
            .filter(|p| p.gateway == self.name())
            .ok_or_else(unknown_intent)?;
        let status = match payment.status {
            PaymentStatus::Succeeded | PaymentStatus::PartiallyRefunded | PaymentStatus::Refunded => {
                PaymentStatus::Succeeded
            }
            other => other,
        };
        // A concurrent caller may have restored it (or settled it) meanwhile: theirs stands.
        locked(&self.intents)?
            .entry(intent_id.to_owned())
            .or_insert(PaymentIntent {
                id: intent_id.to_owned(),
                client_secret: payment.client_secret,
                amount: payment.amount,
                status,
            });
        locked(&self.refunds)?
            .refunded
            .entry(intent_id.to_owned())
            .or_insert(payment.amount_refunded.amount_minor);
        Ok(())
    }

    /// Marks an intent succeeded or failed and returns the event to apply.
    ///
    /// # Errors
    /// `NotFound { entity: "payment intent" }`; `Payment` when it is no longer payable.
    pub async fn settle(&self, intent_id: &str, succeed: bool) -> Result<GatewayEvent> {
        self.restore(intent_id).await?;
        let mut intents = locked(&self.intents)?;
        let intent = intents.get_mut(intent_id).ok_or_else(unknown_intent)?;
        if intent.status != PaymentStatus::RequiresPayment {
            return Err(Error::Payment(format!("the intent is already {:?}", intent.status)));
        }
        intent.status = if succeed {
            PaymentStatus::Succeeded
        } else {
            PaymentStatus::Failed
        };
        Ok(GatewayEvent {
            id: format!("evt_manual_{}", uuid::Uuid::now_v7().simple()),
            kind: if succeed {
                "payment_intent.succeeded"
            } else {
                "payment_intent.payment_failed"
            }
            .to_owned(),
            outcome: if succeed {
                GatewayOutcome::Succeeded(intent.amount)
            } else {
                GatewayOutcome::Failed
            },
            intent_id: intent_id.to_owned(),
            card_brand: succeed.then(|| "manual".to_owned()),
            card_last4: None,
        })
    }
}

#[async_trait]
impl PaymentGateway for ManualGateway {
    fn name(&self) -> &'static str {
        "manual"
    }

    async fn create_intent(&self, _order: OrderId, amount: Money, idempotency_key: &str) -> Result<PaymentIntent> {
        let mut by_key = locked(&self.by_key)?;
        let mut intents = locked(&self.intents)?;
        if let Some(existing) = by_key.get(idempotency_key).and_then(|id| intents.get(id)) {
            return Ok(existing.clone());
        }
        let id = format!("pi_manual_{}", uuid::Uuid::now_v7().simple());
        let intent = PaymentIntent {
            client_secret: format!("{id}_secret_{}", uuid::Uuid::now_v7().simple()),
            id: id.clone(),
            amount,
            status: PaymentStatus::RequiresPayment,
        };
        by_key.insert(idempotency_key.to_owned(), id.clone());
        intents.insert(id, intent.clone());
        Ok(intent)
    }

    async fn retrieve_intent(&self, intent_id: &str) -> Result<PaymentIntent> {
        self.restore(intent_id).await?;
        locked(&self.intents)?
            .get(intent_id)
            .cloned()
            .ok_or_else(unknown_intent)
    }

    async fn cancel_intent(&self, intent_id: &str) -> Result<PaymentIntent> {
        self.restore(intent_id).await?;
        let mut intents = locked(&self.intents)?;
        let intent = intents.get_mut(intent_id).ok_or_else(unknown_intent)?;
        if intent.status != PaymentStatus::RequiresPayment {
            return Err(Error::Payment("the intent can no longer be cancelled".into()));
        }
        intent.status = PaymentStatus::Canceled;
        Ok(intent.clone())
    }

    async fn refund(&self, intent_id: &str, amount: Money, idempotency_key: &str) -> Result<GatewayRefund> {
        self.restore(intent_id).await?;
        let mut refunds = locked(&self.refunds)?;
        // As a real gateway: a key answers its first request again, and only that request.
        if let Some((intent, done)) = refunds.by_key.get(idempotency_key) {
            return if intent == intent_id && done.amount == amount {
                Ok(done.clone())
            } else {
                Err(Error::conflict(
                    KEY_REUSED,
                    "this refund's idempotency key was used for another refund",
                ))
            };
        }
        let intents = locked(&self.intents)?;
        let intent = intents.get(intent_id).ok_or_else(unknown_intent)?;
        let refunded = refunds.refunded.get(intent_id).copied().unwrap_or(0);
        if intent.status != PaymentStatus::Succeeded
            || amount.currency != intent.amount.currency
            || amount.amount_minor <= 0
            || amount.amount_minor > intent.amount.amount_minor - refunded
        {
            return Err(Error::Payment("nothing to refund, or more than was captured".into()));
        }
        let refund = GatewayRefund {
            id: format!("re_manual_{}", uuid::Uuid::now_v7().simple()),
            amount,
        };
        *refunds.refunded.entry(intent_id.to_owned()).or_insert(0) += amount.amount_minor;
        refunds
            .by_key
            .insert(idempotency_key.to_owned(), (intent_id.to_owned(), refund.clone()));
        Ok(refund)
    }
}
