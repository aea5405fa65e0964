//! Inventory: stock per SKU per warehouse, reservations and the movements log.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Actor, MovementId, OrderId, Quantity, ReservationId, Sku};

/// The warehouse used when none is named.
pub const DEFAULT_WAREHOUSE: &str = "main";

/// Stock of one SKU in one warehouse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StockLevel {
    /// The SKU.
    pub sku: Sku,
    /// The warehouse code.
    pub warehouse: String,
    /// Physically present.
    pub on_hand: i64,
    /// Promised to pending orders.
    pub reserved: i64,
    /// Warn when `available` falls to this.
    pub low_stock_threshold: i64,
    /// Reorder when `available` falls to this.
    pub reorder_point: i64,
    /// Sell beyond `available`.
    pub backorder_allowed: bool,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

impl StockLevel {
    /// `on_hand - reserved`: what can still be sold.
    pub fn available(&self) -> i64 {
        self.on_hand - self.reserved
    }

    /// Whether `available` is at or below the low-stock threshold.
    pub fn is_low(&self) -> bool {
        self.available() <= self.low_stock_threshold
    }
}

/// Why stock moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MovementKind {
    /// Goods received.
    Purchase,
    /// Goods sold (reservation committed).
    Sale,
    /// Goods returned.
    Return,
    /// Count corrected or set by an admin.
    Adjustment,
    /// Goods damaged.
    Damage,
    /// Moved between warehouses.
    Transfer,
    /// Promised to an order.
    Reservation,
    /// Promise withdrawn.
    Release,
}

/// One entry of the movements log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StockMovement {
    /// Id.
    pub id: MovementId,
    /// SKU.
    pub sku: Sku,
    /// Warehouse.
    pub warehouse: String,
    /// Why.
    pub kind: MovementKind,
    /// On hand before.
    pub on_hand_before: i64,
    /// On hand after.
    pub on_hand_after: i64,
    /// Reserved before.
    pub reserved_before: i64,
    /// Reserved after.
    pub reserved_after: i64,
    /// Free text.
    pub reason: Option<String>,
    /// Order concerned.
    pub order_id: Option<OrderId>,
    /// Who.
    pub actor: Actor,
    /// When.
    pub at: DateTime<Utc>,
}

/// State of a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReservationStatus {
    /// Stock is held.
    Active,
    /// Turned into a sale.
    Committed,
    /// Given back.
    Released,
}

/// Stock held for an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reservation {
    /// Id.
    pub id: ReservationId,
    /// Order.
    pub order_id: OrderId,
    /// SKU.
    pub sku: Sku,
    /// Warehouse.
    pub warehouse: String,
    /// Units.
    pub quantity: Quantity,
    /// State.
    pub status: ReservationStatus,
    /// Created.
    pub created_at: DateTime<Utc>,
}

/// A change an admin makes to one stock level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StockChange {
    /// Set on hand to this absolute value (a count).
    SetOnHand(i64),
    /// Add (or with a negative number remove) this many on hand.
    Adjust {
        /// Units, may be negative.
        delta: i64,
        /// Why (purchase, return, damage, adjustment).
        kind: MovementKind,
    },
}

/// Stock settings that are not quantities.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StockSettings {
    /// New low-stock threshold.
    pub low_stock_threshold: Option<i64>,
    /// New reorder point.
    pub reorder_point: Option<i64>,
    /// Allow backorders.
    pub backorder_allowed: Option<bool>,
}
