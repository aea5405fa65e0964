//! Orders: item snapshots, totals, the status state machine and the audit trail.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{
    AddressFields, Attributes, CartId, Money, OrderEventId, OrderId, OrderItemId, ProductId, Quantity, Sku, UserId,
};

/// Where an order is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrderStatus {
    /// Placed, stock reserved, awaiting payment.
    Pending,
    /// Paid; being prepared.
    Processing,
    /// Handed to the carrier.
    Shipped,
    /// Received.
    Delivered,
    /// Called off before shipping; reservations released.
    Cancelled,
    /// Money returned.
    Refunded,
}

impl OrderStatus {
    /// Every status.
    pub const ALL: [Self; 6] = [
        Self::Pending,
        Self::Processing,
        Self::Shipped,
        Self::Delivered,
        Self::Cancelled,
        Self::Refunded,
    ];

    /// Whether the state machine allows `self -> to`.
    pub fn can_become(self, to: Self) -> bool {
        use OrderStatus::*;
        matches!(
            (self, to),
            (Pending, Processing)
                | (Processing, Shipped)
                | (Shipped, Delivered)
                | (Pending | Processing, Cancelled)
                | (Processing | Shipped | Delivered, Refunded)
        )
    }

    /// Whether no further move is possible.
    pub fn is_final(self) -> bool {
        Self::ALL.iter().all(|&to| !self.can_become(to))
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Processing => "processing",
            Self::Shipped => "shipped",
            Self::Delivered => "delivered",
            Self::Cancelled => "cancelled",
            Self::Refunded => "refunded",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A line of an order: a snapshot of what was bought at what price.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderItem {
    /// Id.
    pub id: OrderItemId,
    /// Product at the time.
    pub product_id: ProductId,
    /// Variant.
    pub sku: Sku,
    /// Product name at the time.
    pub name: String,
    /// Variant options at the time.
    pub options: Attributes,
    /// Price per unit at the time.
    pub unit_price: Money,
    /// How many.
    pub quantity: Quantity,
    /// `unit_price * quantity`.
    pub line_total: Money,
}

/// The money of an order, computed by the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderTotals {
    /// Sum of line totals.
    pub subtotal: Money,
    /// Shipping charge.
    pub shipping: Money,
    /// Tax.
    pub tax: Money,
    /// Discount (positive number, subtracted).
    pub discount: Money,
    /// `subtotal + shipping + tax - discount`.
    pub total: Money,
}

/// Carrier details recorded when an order ships.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tracking {
    /// Carrier name.
    pub carrier: String,
    /// Tracking number.
    pub number: String,
}

/// An order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    /// Id.
    pub id: OrderId,
    /// Customer.
    pub user_id: UserId,
    /// The cart it came from.
    pub cart_id: Option<CartId>,
    /// State.
    pub status: OrderStatus,
    /// Lines.
    pub items: Vec<OrderItem>,
    /// Money.
    pub totals: OrderTotals,
    /// Coupon applied.
    pub coupon_code: Option<String>,
    /// Where it goes (snapshot).
    pub shipping_address: AddressFields,
    /// Set when shipped.
    pub tracking: Option<Tracking>,
    /// Pending orders expire unpaid at this time.
    pub payment_due_by: DateTime<Utc>,
    /// Placed.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

/// Who caused an order event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind", content = "id")]
pub enum Actor {
    /// A user (customer or staff).
    User(UserId),
    /// The payment gateway (webhook).
    Gateway,
    /// The engine itself (expiry, recovery).
    System,
}

/// One entry of an order's append-only history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderEvent {
    /// Id.
    pub id: OrderEventId,
    /// The order.
    pub order_id: OrderId,
    /// Previous status, `None` on creation.
    pub from: Option<OrderStatus>,
    /// New status.
    pub to: OrderStatus,
    /// Who.
    pub actor: Actor,
    /// Why.
    pub note: Option<String>,
    /// When.
    pub at: DateTime<Utc>,
}

/// Where a checkout saga stands; one row per order, so recovery can finish or undo it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SagaStep {
    /// Order and reservations written; the cart converted or not yet (a checkout does not
    /// record its conversion: the cart does, and recovery reads it).
    OrderPlaced,
    /// Cart converted, as recovery found it; payment intent not yet created.
    CartConverted,
    /// Payment intent created; waiting for the gateway.
    AwaitingPayment,
    /// Paid and reservations committed.
    Completed,
    /// Undone: reservations released, cart reactivated, order cancelled.
    Compensated,
}

/// A checkout saga's log row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SagaRecord {
    /// The order.
    pub order_id: OrderId,
    /// The cart.
    pub cart_id: CartId,
    /// Current step.
    pub step: SagaStep,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// A coupon's discount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type", content = "value")]
pub enum Discount {
    /// Basis points off the subtotal (1000 = 10%).
    Percentage(u32),
    /// A fixed amount off.
    Fixed(Money),
}

/// A coupon code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Coupon {
    /// Upper-case code.
    pub code: String,
    /// What it takes off.
    pub discount: Discount,
    /// Minimum subtotal to qualify.
    pub min_subtotal: Option<Money>,
    /// Last moment it is accepted.
    pub expires_at: Option<DateTime<Utc>>,
    /// Uses in all.
    pub usage_limit: Option<u32>,
    /// Uses per customer.
    pub per_customer_limit: Option<u32>,
    /// Uses so far.
    pub times_used: u32,
    /// Whether it can be used at all.
    pub active: bool,
}

#[cfg(test)]
mod tests {
    use super::OrderStatus::{self, *};

    #[test]
    fn state_machine_allows_exactly_the_designed_moves() {
        let allowed = [
            (Pending, Processing),
            (Processing, Shipped),
            (Shipped, Delivered),
            (Pending, Cancelled),
            (Processing, Cancelled),
            (Processing, Refunded),
            (Shipped, Refunded),
            (Delivered, Refunded),
        ];
        for from in OrderStatus::ALL {
            for to in OrderStatus::ALL {
                assert_eq!(from.can_become(to), allowed.contains(&(from, to)), "{from} -> {to}");
            }
        }
        assert!(Cancelled.is_final() && Refunded.is_final() && !Delivered.is_final());
    }
}
