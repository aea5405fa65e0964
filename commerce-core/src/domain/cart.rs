//! Carts: a user's or a guest's basket of variant SKUs.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{CartId, CartItemId, OrderId, Quantity, Sku, UserId};

/// Who a cart belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind", content = "id")]
pub enum CartOwner {
    /// A signed-in user.
    User(UserId),
    /// A guest, known by the SHA-256 (hex) of their opaque cart token.
    Guest(String),
}

/// Where a cart is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "state", content = "orderId")]
pub enum CartStatus {
    /// Being filled.
    Active,
    /// Turned into this order at checkout.
    Converted(OrderId),
    /// Folded into a user's cart at login.
    Merged,
}

/// One line of a cart. Prices are never stored here: they are recomputed from the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CartItem {
    /// Id.
    pub id: CartItemId,
    /// The variant.
    pub sku: Sku,
    /// How many.
    pub quantity: Quantity,
    /// Added.
    pub added_at: DateTime<Utc>,
}

/// A cart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cart {
    /// Id.
    pub id: CartId,
    /// Owner.
    pub owner: CartOwner,
    /// Lines, one per SKU.
    pub items: Vec<CartItem>,
    /// State.
    pub status: CartStatus,
    /// Bumped on every write (optimistic concurrency).
    pub version: u64,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
    /// When an untouched cart is dropped.
    pub expires_at: DateTime<Utc>,
}
