//! The in-memory adapter: every storage port, thread-safe, with the databases' semantics.
//!
//! [`MemoryStore`] is the embedded default: the host runs on it with zero setup and service
//! tests use it because it is fast. It keeps the same unique constraints, orderings and atomic
//! guarantees as the PostgreSQL and MongoDB adapters, so the same conformance suite passes on all
//! three.
//!
//! # Locking
//!
//! State is split by area, each behind its own [`RwLock`], so reads of one area never wait on
//! writes to another: accounts (users, addresses), tokens, catalog (products, categories),
//! reviews, carts, checkout (orders, events, saga rows, coupons, stock levels, reservations,
//! movements), payments, and idempotency keys. Every port method takes at most one lock, once,
//! checks everything it needs, then writes everything, and never awaits while holding it; that
//! is what makes `place_order` and `transition_order` all-or-nothing together with the stock.
//! The one exception: `place_order` with an answer to store takes the idempotency keys' lock,
//! then the checkout's (no method takes them in the other order).

mod accounts;
mod carts;
mod catalog;
mod checkout;
mod images;
mod payments;

pub use images::MemoryImageStore;

use std::fmt;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use async_trait::async_trait;

use crate::ports::HealthCheck;
use crate::{Error, Result};

/// Every storage port in process memory. Cheap to clone: clones share the same state.
///
/// ```
/// use commerce_core::memory::MemoryStore;
/// use commerce_core::ports::HealthCheck;
///
/// let store = MemoryStore::new();
/// assert_eq!(store.backend(), "memory");
/// ```
#[derive(Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

/// The areas, each under its own lock.
#[derive(Default)]
struct Inner {
    accounts: RwLock<accounts::Accounts>,
    tokens: RwLock<accounts::Tokens>,
    catalog: RwLock<catalog::Catalog>,
    reviews: RwLock<catalog::Reviews>,
    carts: RwLock<carts::Carts>,
    checkout: RwLock<checkout::Checkout>,
    payments: RwLock<payments::Payments>,
    idempotency: RwLock<payments::Idempotency>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore").finish_non_exhaustive()
    }
}

/// Shared read access to one area. A poisoned lock (a panic while writing) is reported, not
/// propagated as a panic.
fn read<T>(lock: &RwLock<T>) -> Result<RwLockReadGuard<'_, T>> {
    lock.read()
        .map_err(|_| Error::unexpected_msg("memory store: lock poisoned"))
}

/// Exclusive access to one area; see [`read`].
fn write<T>(lock: &RwLock<T>) -> Result<RwLockWriteGuard<'_, T>> {
    lock.write()
        .map_err(|_| Error::unexpected_msg("memory store: lock poisoned"))
}

#[async_trait]
impl HealthCheck for MemoryStore {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn ping(&self) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
