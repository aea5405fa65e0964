//! Carts, with optimistic concurrency on `Cart::version`.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{MemoryStore, read, write};
use crate::domain::{Cart, CartId, CartOwner, CartStatus, OrderId};
use crate::ports::CartStore;
use crate::{Error, Result};

/// Every cart, whatever its status.
#[derive(Default)]
pub(super) struct Carts {
    carts: HashMap<CartId, Cart>,
}

impl Carts {
    /// The owner's active cart that has not expired at `now`; the most recently changed one if
    /// several (a reactivated cart next to a new one).
    fn active(&self, owner: &CartOwner, now: DateTime<Utc>) -> Option<&Cart> {
        self.carts
            .values()
            .filter(|c| &c.owner == owner && c.status == CartStatus::Active && c.expires_at > now)
            .max_by(|a, b| a.updated_at.cmp(&b.updated_at).then_with(|| a.id.cmp(&b.id)))
    }

    fn cart_mut(&mut self, id: CartId) -> Result<&mut Cart> {
        self.carts.get_mut(&id).ok_or(Error::NotFound { entity: "cart" })
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
        carts.carts.insert(cart.id, cart.clone());
        Ok(())
    }

    async fn save_cart(&self, cart: &Cart) -> Result<()> {
        let mut carts = write(&self.inner.carts)?;
        let stored = carts.cart_mut(cart.id)?;
        if cart.version.checked_sub(1) != Some(stored.version) {
            return Err(Error::conflict(
                "cart_changed",
                "the cart was changed by another request",
            ));
        }
        *stored = cart.clone();
        Ok(())
    }

    async fn set_cart_status(&self, id: CartId, from: CartStatus, to: CartStatus, now: DateTime<Utc>) -> Result<Cart> {
        let mut carts = write(&self.inner.carts)?;
        let cart = carts.cart_mut(id)?;
        if cart.status == to {
            return Ok(cart.clone());
        }
        if cart.status != from {
            return Err(Error::conflict(
                "cart_changed",
                "the cart is no longer in the expected state",
            ));
        }
        cart.status = to;
        cart.version += 1;
        cart.updated_at = now;
        Ok(cart.clone())
    }

    async fn delete_expired_carts(&self, now: DateTime<Utc>) -> Result<u64> {
        let mut carts = write(&self.inner.carts)?;
        let before = carts.carts.len();
        carts.carts.retain(|_, c| c.expires_at > now);
        Ok((before - carts.carts.len()) as u64)
    }

    async fn find_cart_by_order(&self, order: OrderId) -> Result<Option<Cart>> {
        Ok(read(&self.inner.carts)?
            .carts
            .values()
            .find(|c| c.status == CartStatus::Converted(order))
            .cloned())
    }
}
