//! Idempotency keys (IETF httpapi Idempotency-Key draft, Stripe's semantics): the first
//! request with a key runs; a retry with the same key and request replays the stored answer;
//! the same key with a different request is refused; a retry while the first still runs is
//! told to wait.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use crate::domain::{IdempotencyClaim, IdempotencyKey, StoredResponse};
use crate::ports::IdempotencyStore;
use crate::{Error, Result};

/// Name of the header, for error messages.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// What to do with a request that carries a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotentStart {
    /// First time: run it, then `complete` (or `release` on a transient failure).
    Proceed(IdempotencyKey),
    /// Seen before with the same request: send this again.
    Replay(StoredResponse),
}

/// Idempotency use cases.
#[derive(Clone)]
pub struct IdempotencyService {
    store: Arc<dyn IdempotencyStore>,
    retention: Duration,
}

impl IdempotencyService {
    /// Keys are kept `retention` (at least 24 hours).
    pub fn new(store: Arc<dyn IdempotencyStore>, retention: Duration) -> Self {
        Self {
            store,
            retention: retention.max(Duration::from_secs(24 * 3600)),
        }
    }

    /// Claims `key` for a request with this fingerprint, within `scope` (e.g. the user and
    /// operation, so two clients never collide).
    ///
    /// # Errors
    /// `Validation { field: "Idempotency-Key" }` for a malformed key or a key reused with a
    /// different request (422); `Conflict { code: "idempotency_in_flight" }` while the first
    /// request still runs (409).
    pub async fn begin(&self, scope: &str, key: &str, fingerprint: &str) -> Result<IdempotentStart> {
        let ok = (1..=255).contains(&key.len()) && key.bytes().all(|b| (0x21..=0x7E).contains(&b));
        if !ok {
            return Err(Error::invalid(
                IDEMPOTENCY_HEADER,
                "must be 1-255 printable ASCII characters without spaces",
            ));
        }
        let key = IdempotencyKey {
            scope: scope.to_owned(),
            key: key.to_owned(),
        };
        let now = Utc::now();
        let expires = now + chrono::Duration::from_std(self.retention).map_err(Error::unexpected)?;
        match self.store.claim_key(&key, fingerprint, now, expires).await? {
            IdempotencyClaim::Started => Ok(IdempotentStart::Proceed(key)),
            IdempotencyClaim::Completed(response) => Ok(IdempotentStart::Replay(response)),
            IdempotencyClaim::InFlight => Err(Error::conflict(
                "idempotency_in_flight",
                "a request with this Idempotency-Key is still being processed; retry shortly",
            )),
            IdempotencyClaim::Mismatch => Err(Error::invalid(
                IDEMPOTENCY_HEADER,
                "was already used with a different request",
            )),
        }
    }

    /// Stores the answer of a claimed key for replays.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn complete(&self, key: &IdempotencyKey, response: StoredResponse) -> Result<()> {
        self.store.complete_key(key, &response).await
    }

    /// Forgets a claimed key whose request failed transiently, so the client may retry.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn release(&self, key: &IdempotencyKey) -> Result<()> {
        self.store.release_key(key).await
    }

    /// Forgets a key whatever it holds, so the client may retry: its request failed after
    /// storing its answer with an effect that was then undone
    /// ([`super::OrderService::checkout_answering`]).
    ///
    /// # Errors
    /// Storage failures.
    pub async fn forget(&self, key: &IdempotencyKey) -> Result<()> {
        self.store.forget_key(key).await
    }
}
