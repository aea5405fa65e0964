//! Idempotency keys: one key, one effect; replays get the stored response.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The response stored for a completed request, replayed verbatim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredResponse {
    /// HTTP status.
    pub status: u16,
    /// Body bytes as sent (JSON text).
    pub body: String,
}

/// What happened when a request claimed a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyClaim {
    /// First use: the caller owns the key and must `complete` or `release` it.
    Started,
    /// A request with the same key is still running.
    InFlight,
    /// Same key and same request fingerprint, already done: replay this.
    Completed(StoredResponse),
    /// Same key, different request body.
    Mismatch,
}

/// A key, scoped to who sent it so two users' keys never collide.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IdempotencyKey {
    /// e.g. the user id and the operation.
    pub scope: String,
    /// The client's `Idempotency-Key` header (1-255 printable ASCII characters).
    pub key: String,
}

/// A claimed key and the answer to store for it in the same write as the effect it answers
/// for (see `NewOrder::answer`), so that a crash or an abandoned request cannot leave the
/// effect made and its key unanswered, for a retry to make it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyAnswer {
    /// The claimed key.
    pub key: IdempotencyKey,
    /// Its answer.
    pub response: StoredResponse,
}

impl KeyAnswer {
    /// The write refused: its key is not claimed and unanswered any more (released, expired
    /// or answered meanwhile), so its answer cannot be stored with it.
    pub fn not_claimed() -> crate::Error {
        crate::Error::conflict(
            "idempotency_key_not_claimed",
            "the request's Idempotency-Key is no longer claimed; retry the request",
        )
    }
}

/// A claimed key's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    /// The key.
    pub key: IdempotencyKey,
    /// SHA-256 of the request (method, path, body), hex.
    pub fingerprint: String,
    /// The response once done.
    pub response: Option<StoredResponse>,
    /// Claimed.
    pub created_at: DateTime<Utc>,
    /// Forgotten after this (at least 24 hours after creation).
    pub expires_at: DateTime<Utc>,
}
