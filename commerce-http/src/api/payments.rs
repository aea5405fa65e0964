//! `/api/v1/payments`: payment intents for the caller's orders, the gateway webhook, and for
//! staff: refunds and settling the offline manual gateway.

use chrono::{DateTime, Utc};
use commerce_core::Commerce;
use commerce_core::domain::{OrderId, Payment, PaymentStatus, PaymentTransaction, TransactionKind};
use commerce_core::services::{EventOutcome, GatewayEvent, GatewayOutcome};
use poem_openapi::param::{Header, Path};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde::Deserialize;

use super::ApiTags;
use super::catalog_types::MoneyView;
use super::types::parse_id;
use crate::JsonBody;
use crate::auth::{BearerAuth, StaffAuth};
use crate::body::RawBody;
use crate::payments::webhook::{self, EventKind, StripeEvent};
use crate::problem::{ApiError, Problem};

fn status_name(s: PaymentStatus) -> &'static str {
    match s {
        PaymentStatus::RequiresPayment => "requires_payment",
        PaymentStatus::Succeeded => "succeeded",
        PaymentStatus::Failed => "failed",
        PaymentStatus::Canceled => "canceled",
        PaymentStatus::PartiallyRefunded => "partially_refunded",
        PaymentStatus::Refunded => "refunded",
    }
}

/// A payment of an order.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct PaymentView {
    /// Id.
    pub id: String,
    /// The order.
    pub order_id: String,
    /// `stripe` or `manual`.
    pub gateway: String,
    /// The gateway's payment intent id.
    pub intent_id: String,
    /// Secret the client uses to confirm the payment (Stripe.js `confirmPayment`).
    pub client_secret: String,
    /// Amount asked.
    pub amount: MoneyView,
    /// Amount refunded so far.
    pub amount_refunded: MoneyView,
    /// `requires_payment`, `succeeded`, `failed`, `canceled`, `partially_refunded`, `refunded`.
    pub status: String,
    /// Card brand (the only card data kept, with the last four digits).
    pub card_brand: Option<String>,
    /// Last four digits of the card.
    pub card_last4: Option<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
}

impl From<Payment> for PaymentView {
    fn from(p: Payment) -> Self {
        Self {
            id: p.id.to_string(),
            order_id: p.order_id.to_string(),
            gateway: p.gateway,
            intent_id: p.intent_id,
            client_secret: p.client_secret,
            amount: p.amount.into(),
            amount_refunded: p.amount_refunded.into(),
            status: status_name(p.status).to_owned(),
            card_brand: p.card_brand,
            card_last4: p.card_last4,
            created_at: p.created_at,
        }
    }
}

/// A money movement of a payment.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct TransactionView {
    /// Id.
    pub id: String,
    /// `charge`, `refund` or `partial_refund`.
    pub kind: String,
    /// Amount moved.
    pub amount: MoneyView,
    /// The gateway's id for it.
    pub gateway_reference: Option<String>,
    /// When.
    pub created_at: DateTime<Utc>,
}

impl From<PaymentTransaction> for TransactionView {
    fn from(t: PaymentTransaction) -> Self {
        let kind = match t.kind {
            TransactionKind::Charge => "charge",
            TransactionKind::Refund => "refund",
            TransactionKind::PartialRefund => "partial_refund",
        };
        Self {
            id: t.id.to_string(),
            kind: kind.to_owned(),
            amount: t.amount.into(),
            gateway_reference: t.gateway_reference,
            created_at: t.created_at,
        }
    }
}

/// A payment with its transactions.
#[derive(Debug, Object)]
pub struct PaymentDetail {
    /// The payment.
    pub payment: PaymentView,
    /// Charges and refunds, oldest first.
    pub transactions: Vec<TransactionView>,
}

/// Which order to pay.
#[derive(Debug, Object, Deserialize)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct OrderRef {
    /// The caller's pending order.
    pub order_id: String,
}

/// A refund.
#[derive(Debug, Object, Deserialize, Default)]
pub struct RefundRequest {
    /// Minor units; the whole remaining amount when absent.
    pub amount: Option<i64>,
}

/// How a manual-gateway intent is settled.
#[derive(Debug, Object, Deserialize)]
pub struct SettleRequest {
    /// `succeeded` or `failed`.
    pub outcome: String,
}

/// What the webhook did with an event.
#[derive(Debug, Object)]
pub struct WebhookAck {
    /// Always true: the event was received and need not be sent again.
    pub received: bool,
    /// `applied`, `duplicate`, `ignored`, `unknown_intent`, `flagged` or `unhandled`.
    pub outcome: String,
}

/// A new intent.
#[derive(Debug, ApiResponse)]
pub enum IntentCreated {
    /// The order's payment intent (the same one when asked again).
    #[oai(status = 201)]
    Created(Json<PaymentView>),
}

/// Webhook answers.
#[derive(Debug, ApiResponse)]
pub enum WebhookResponse {
    /// Accepted (also for duplicates and events of no interest, so Stripe stops retrying).
    #[oai(status = 200)]
    Ok(Json<WebhookAck>),
    /// Unsigned, stale, tampered or wrong-secret payload: nothing was changed.
    #[oai(status = 400)]
    Rejected(crate::problem::ProblemJson),
}

fn outcome_name(o: EventOutcome) -> &'static str {
    match o {
        EventOutcome::Applied => "applied",
        EventOutcome::Duplicate => "duplicate",
        EventOutcome::Ignored => "ignored",
        EventOutcome::UnknownIntent => "unknown_intent",
        EventOutcome::Flagged => "flagged",
    }
}

/// Turns a verified Stripe event into the engine's terms; `None` for types it does not act on.
fn gateway_event(event: &StripeEvent) -> Option<GatewayEvent> {
    let kind = event.known_kind()?;
    let (outcome, intent_id, card) = match kind {
        EventKind::PaymentIntentSucceeded => {
            let i = event.intent.as_ref()?;
            (GatewayOutcome::Succeeded(i.amount), i.id.clone(), i.card.clone())
        }
        EventKind::PaymentIntentPaymentFailed => {
            let i = event.intent.as_ref()?;
            (GatewayOutcome::Failed, i.id.clone(), None)
        }
        EventKind::PaymentIntentCanceled => {
            let i = event.intent.as_ref()?;
            (GatewayOutcome::Canceled, i.id.clone(), None)
        }
        EventKind::ChargeRefunded => {
            let r = event.refund.as_ref()?;
            (
                GatewayOutcome::Refunded(r.amount_refunded),
                r.intent_id.clone()?,
                r.card.clone(),
            )
        }
    };
    Some(GatewayEvent {
        id: event.id.clone(),
        kind: kind.as_str().to_owned(),
        outcome,
        intent_id,
        card_brand: card.as_ref().map(|c| c.brand.clone()),
        card_last4: card.map(|c| c.last4),
    })
}

/// Payments.
pub struct PaymentsApi {
    commerce: Commerce,
    webhook_secret: Option<String>,
}

impl PaymentsApi {
    /// Over this engine; `webhook_secret` is `STRIPE_WEBHOOK_SECRET` (the webhook refuses
    /// everything without it).
    pub fn new(commerce: Commerce, webhook_secret: Option<String>) -> Self {
        Self {
            commerce,
            webhook_secret,
        }
    }

    fn order_id(raw: &str) -> Result<OrderId, ApiError> {
        raw.parse()
            .map_err(|_| commerce_core::Error::invalid("orderId", "is not a valid id").into())
    }
}

fn rejected(detail: &str) -> WebhookResponse {
    let problem = Problem::new(poem::http::StatusCode::BAD_REQUEST, "invalid_signature", detail);
    WebhookResponse::Rejected(crate::problem::ProblemJson(Box::new(problem)))
}

#[OpenApi(prefix_path = "/api/v1/payments", tag = "ApiTags::Payments")]
impl PaymentsApi {
    /// Create the payment intent of the caller's pending order; asking again returns the same
    /// intent. Requires an `Idempotency-Key` header (same semantics as `POST /orders`).
    #[oai(path = "/create-intent", method = "post", operation_id = "createPaymentIntent")]
    async fn create_intent(
        &self,
        auth: BearerAuth,
        /// A unique value per attempt (1-255 printable ASCII characters).
        #[oai(name = "Idempotency-Key")]
        _key: Header<String>,
        body: JsonBody<OrderRef>,
    ) -> Result<IntentCreated, ApiError> {
        let order = Self::order_id(&body.0.order_id)?;
        let payment = self.commerce.payments().create_intent(&auth.0, order).await?;
        Ok(IntentCreated::Created(Json(payment.into())))
    }

    /// Ask the gateway whether the caller's order is paid and apply the answer (call after the
    /// client-side confirmation). Racing the webhook is safe: only one of them acts.
    #[oai(path = "/confirm", method = "post", operation_id = "confirmPayment")]
    async fn confirm(&self, auth: BearerAuth, body: JsonBody<OrderRef>) -> Result<Json<PaymentView>, ApiError> {
        let order = Self::order_id(&body.0.order_id)?;
        Ok(Json(self.commerce.payments().confirm(&auth.0, order).await?.into()))
    }

    /// The payment of one of the caller's orders (staff: any), with its transactions.
    #[oai(path = "/orders/:orderId", method = "get", operation_id = "getOrderPayment")]
    async fn of_order(
        &self,
        auth: BearerAuth,
        #[oai(name = "orderId")] order: Path<String>,
    ) -> Result<Json<PaymentDetail>, ApiError> {
        let order: OrderId = parse_id(&order.0, "orderId")?;
        let (payment, txs) = self.commerce.payments().payment_for(&auth.0, order).await?;
        Ok(Json(PaymentDetail {
            payment: payment.into(),
            transactions: txs.into_iter().map(TransactionView::from).collect(),
        }))
    }

    /// Stripe webhook. Verifies `Stripe-Signature` over the raw body (HMAC-SHA256 with
    /// `STRIPE_WEBHOOK_SECRET`, 300 s tolerance) and applies `payment_intent.succeeded`,
    /// `payment_intent.payment_failed`, `payment_intent.canceled` and `charge.refunded`
    /// exactly once per event id; never moves an order backwards; an amount or currency that
    /// disagrees with the order is recorded and flagged, not applied.
    #[oai(path = "/webhook", method = "post", operation_id = "stripeWebhook")]
    async fn webhook(
        &self,
        #[oai(name = "Stripe-Signature")] signature: Header<Option<String>>,
        body: RawBody,
    ) -> Result<WebhookResponse, ApiError> {
        let Some(secret) = self.webhook_secret.as_deref() else {
            return Ok(rejected("webhooks are not configured (STRIPE_WEBHOOK_SECRET)"));
        };
        let header = signature.0.unwrap_or_default();
        if let Err(e) = webhook::verify(
            &header,
            &body.0,
            secret,
            Utc::now().timestamp(),
            webhook::DEFAULT_TOLERANCE_SECS,
        ) {
            tracing::warn!(error = %e, "webhook signature refused");
            return Ok(rejected(&e.to_string()));
        }
        let event = match StripeEvent::parse(&body.0) {
            Ok(e) => e,
            Err(e) => return Ok(rejected(&format!("not a Stripe event: {e}"))),
        };
        let Some(gateway_event) = gateway_event(&event) else {
            return Ok(WebhookResponse::Ok(Json(WebhookAck {
                received: true,
                outcome: "unhandled".to_owned(),
            })));
        };
        let outcome = self.commerce.payments().handle_event(&gateway_event).await?;
        Ok(WebhookResponse::Ok(Json(WebhookAck {
            received: true,
            outcome: outcome_name(outcome).to_owned(),
        })))
    }
}

/// Payment administration.
pub struct AdminPaymentsApi {
    commerce: Commerce,
}

impl AdminPaymentsApi {
    /// Over this engine.
    pub fn new(commerce: Commerce) -> Self {
        Self { commerce }
    }
}

#[OpenApi(prefix_path = "/api/v1/admin", tag = "ApiTags::Admin")]
impl AdminPaymentsApi {
    /// Refund all (no amount) or part of an order's captured payment through the gateway. The
    /// order becomes refunded when the whole amount is back; more than remains is 422. A 409
    /// `refund_conflict` means another refund of the payment was made since it was read: read
    /// the payment again before refunding what remains.
    #[oai(path = "/orders/:id/refund", method = "post", operation_id = "adminRefundOrder")]
    async fn refund(
        &self,
        auth: StaffAuth,
        id: Path<String>,
        body: JsonBody<RefundRequest>,
    ) -> Result<Json<PaymentView>, ApiError> {
        let order: OrderId = parse_id(&id.0, "id")?;
        Ok(Json(
            self.commerce
                .payments()
                .refund(&auth.0, order, body.0.amount)
                .await?
                .into(),
        ))
    }

    /// Settle an intent of the offline `manual` gateway as `succeeded` or `failed`: the
    /// stand-in for the customer paying and the gateway's webhook, so the whole flow runs
    /// without the internet.
    #[oai(
        path = "/payments/:intentId/settle",
        method = "post",
        operation_id = "adminSettleManualPayment"
    )]
    async fn settle(
        &self,
        auth: StaffAuth,
        #[oai(name = "intentId")] intent: Path<String>,
        body: JsonBody<SettleRequest>,
    ) -> Result<Json<WebhookAck>, ApiError> {
        let succeed = match body.0.outcome.as_str() {
            "succeeded" => true,
            "failed" => false,
            _ => return Err(commerce_core::Error::invalid("outcome", "must be succeeded or failed").into()),
        };
        let outcome = self
            .commerce
            .payments()
            .settle_manual(&auth.0, &intent.0, succeed)
            .await?;
        Ok(Json(WebhookAck {
            received: true,
            outcome: outcome_name(outcome).to_owned(),
        }))
    }
}
