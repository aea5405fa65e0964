//! Payments and their transactions. No card data beyond brand and last four digits.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Money, OrderId, PaymentId, PaymentTransactionId};

/// State of a payment, mirroring the gateway's intent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    /// Waiting for the customer.
    RequiresPayment,
    /// Captured.
    Succeeded,
    /// Declined.
    Failed,
    /// Cancelled before capture.
    Canceled,
    /// Part of the captured amount returned.
    PartiallyRefunded,
    /// All of it returned.
    Refunded,
}

/// A payment for an order through a gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Payment {
    /// Id.
    pub id: PaymentId,
    /// The order paid.
    pub order_id: OrderId,
    /// Gateway name, e.g. `stripe`, `manual`.
    pub gateway: String,
    /// The gateway's intent id.
    pub intent_id: String,
    /// Secret the client uses to confirm.
    pub client_secret: String,
    /// Amount asked.
    pub amount: Money,
    /// Amount returned so far.
    pub amount_refunded: Money,
    /// State.
    pub status: PaymentStatus,
    /// e.g. `visa`.
    pub card_brand: Option<String>,
    /// Last four digits.
    pub card_last4: Option<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

/// What an update of a payment expects to find stored: the status and the amount refunded so
/// far. Updates compare and set on both, so two refunds recorded at once cannot overwrite one
/// another (the status alone stays `partially_refunded` through several partial refunds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PaymentSeen {
    /// The status read.
    pub status: PaymentStatus,
    /// The amount refunded read, in minor units of the payment's currency.
    pub amount_refunded_minor: i64,
}

impl PaymentSeen {
    /// The payment as read.
    pub fn of(payment: &Payment) -> Self {
        Self {
            status: payment.status,
            amount_refunded_minor: payment.amount_refunded.amount_minor,
        }
    }

    /// The error of an update that found the status it expected but another refunded amount.
    pub fn changed() -> crate::Error {
        crate::Error::conflict(
            "payment_changed",
            "another refund of this payment was recorded meanwhile; read it again",
        )
    }
}

/// What a transaction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransactionKind {
    /// Money captured.
    Charge,
    /// All money returned.
    Refund,
    /// Some money returned.
    PartialRefund,
}

/// A money movement of a payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentTransaction {
    /// Id.
    pub id: PaymentTransactionId,
    /// Payment.
    pub payment_id: PaymentId,
    /// Kind.
    pub kind: TransactionKind,
    /// Amount moved.
    pub amount: Money,
    /// The gateway's id for it (charge or refund id).
    pub gateway_reference: Option<String>,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// A payment intent as the gateway reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentIntent {
    /// Gateway id.
    pub id: String,
    /// Secret for the client.
    pub client_secret: String,
    /// Amount.
    pub amount: Money,
    /// Gateway status.
    pub status: PaymentStatus,
}

/// A refund as the gateway reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayRefund {
    /// Gateway id of the refund.
    pub id: String,
    /// Amount returned.
    pub amount: Money,
}
