//! Carts, with optimistic concurrency on `Cart::version`.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{MemoryStore, read, write};
use crate::domain::{Cart, CartId, CartOwner, CartStatus, OrderId};
use crate::ports::CartStore;
use crate::{Error, Result};

/// Every cart, whatever its status, indexed so no lookup scans them all: an owner's active
/// carts (usually one), and the cart each order was converted from.
#[derive(Default)]
pub(super) struct Carts {
    carts: HashMap<CartId, Cart>,
    active_by_owner: HashMap<CartOwner, Vec<CartId>>,
    by_order: HashMap<OrderId, CartId>,
}

impl Carts {
    /// The owner's active cart that has not expired at `now`; the most recently changed one if
    /// several (a reactivated cart next to a new one).
    fn active(&self, owner: &CartOwner, now: DateTime<Utc>) -> Option<&Cart> {
        self.active_by_owner
            .get(owner)
            .into_iter()
            .flatten()
            .filter_map(|id| self.carts.get(id))
            .filter(|c| c.status == CartStatus::Active && c.expires_at > now)
            .max_by(|a, b| a.updated_at.cmp(&b.updated_at).then_with(|| a.id.cmp(&b.id)))
    }

    /// Stores a cart (new or replacing its previous version) and keeps the indexes in step.
    fn put(&mut self, cart: Cart) {
        self.remove(cart.id);
        if cart.status == CartStatus::Active {
            self.active_by_owner
                .entry(cart.owner.clone())
                .or_default()
                .push(cart.id);
        }
        if let CartStatus::Converted(order) = cart.status {
            self.by_order.insert(order, cart.id);
        }
        self.carts.insert(cart.id, cart);
    }

    /// Removes a cart and its index entries.
    fn remove(&mut self, id: CartId) -> Option<Cart> {
        let cart = self.carts.remove(&id)?;
        if let Some(ids) = self.active_by_owner.get_mut(&cart.owner) {
            ids.retain(|c| *c != id);
            if ids.is_empty() {
                self.active_by_owner.remove(&cart.owner);
            }
        }
        if let CartStatus::Converted(order) = cart.status
            && self.by_order.get(&order) == Some(&id)
        {
            self.by_order.remove(&order);
        }
        Some(cart)
    }
}

#[async_trait]
impl CartStore for MemoryStore {
    async fn find_active_cart(&self, owner: &CartOwner, now: DateTime<Utc>) -> Result<Option<Cart>> {
        Ok(read(&self.inner.carts)?.active(owner, now).cloned())
    }

    async fn get_cart(&self, id: CartId) -> Result<Cart> {
        read(&self.inner.carts)?
            .carts
            .get(&id)
            .cloned()
            .ok_or(Error::NotFound { entity: "cart" })
    }

    async fn insert_cart(&self, cart: &Cart) -> Result<()> {
        let mut carts = write(&self.inner.carts)?;
        // An expired cart is absent, as for `find_active_cart`; the new cart's creation time
        // is the clock.
        if cart.status == CartStatus::Active && carts.active(&cart.owner, cart.created_at).is_some() {
            return Err(Error::conflict("cart_exists", "the owner already has an active cart"));
        }
        if carts.carts.contains_key(&cart.id) {
            return Err(Error::conflict("cart_exists", "a cart with this id exists"));
        }
        carts.put(cart.clone());
        Ok(())
    }

    async fn save_cart(&self, cart: &Cart) -> Result<()> {
        let mut carts = write(&self.inner.carts)?;
        let stored = carts.carts.get(&cart.id).ok_or(Error::NotFound { entity: "cart" })?;
        if cart.version.checked_sub(1) != Some(stored.version) {
            return Err(Error::conflict(
                "cart_changed",
                "the cart was changed by another request",
            ));
        }
        carts.put(cart.clone());
        Ok(())
    }

    async fn set_cart_status(&self, id: CartId, from: CartStatus, to: CartStatus, now: DateTime<Utc>) -> Result<Cart> {
        let mut carts = write(&self.inner.carts)?;
        let cart = carts.carts.get(&id).ok_or(Error::NotFound { entity: "cart" })?;
        if cart.status == to {
            return Ok(cart.clone());
        }
        if cart.status != from {
            return Err(Error::conflict(
                "cart_changed",
                "the cart is no longer in the expected state",
            ));
        }
        let moved = Cart {
            status: to,
            version: cart.version + 1,
            updated_at: now,
            ..cart.clone()
        };
        carts.put(moved.clone());
        Ok(moved)
    }

    async fn delete_expired_carts(&self, now: DateTime<Utc>) -> Result<u64> {
        let mut carts = write(&self.inner.carts)?;
        let expired: Vec<CartId> = carts
            .carts
            .values()
            .filter(|c| c.expires_at <= now)
            .map(|c| c.id)
            .collect();
        for id in &expired {
            carts.remove(*id);
        }
        Ok(expired.len() as u64)
    }

    async fn find_cart_by_order(&self, order: OrderId) -> Result<Option<Cart>> {
        let carts = read(&self.inner.carts)?;
        Ok(carts.by_order.get(&order).and_then(|id| carts.carts.get(id)).cloned())
    }
}
