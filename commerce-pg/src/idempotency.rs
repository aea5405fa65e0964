//! The idempotency-key port on PostgreSQL (`commerce.idempotency_keys`, from
//! `migrations/0002_checkout.sql`).
//!
//! A claim is one upsert: it inserts the key, or replaces an expired record (which counts as
//! absent), and otherwise leaves the live record alone but locked; the same transaction then
//! reads that record to tell the caller what it is. Concurrent claims of one key queue on the
//! key's unique index, so exactly one of them starts. A new key, the usual case, is claimed by
//! the upsert alone in its own implicit transaction (one round trip); a key found live is claimed
//! again in a transaction that also reads it.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use commerce_core::domain::{IdempotencyClaim, IdempotencyKey, StoredResponse};
use commerce_core::ports::IdempotencyStore;
use commerce_core::{Error, Result};
use sqlx::PgExecutor;

use crate::codec::bad_value;
use crate::error::StorageResult;
use crate::{PgStore, retry};

/// The live record a claim ran into.
#[derive(sqlx::FromRow)]
struct ClaimedRow {
    fingerprint: String,
    response_status: Option<i32>,
    response_body: Option<String>,
}

impl ClaimedRow {
    /// What a claim with `fingerprint` makes of this record.
    fn claim(self, key: &IdempotencyKey, fingerprint: &str) -> Result<IdempotencyClaim> {
        if self.fingerprint != fingerprint {
            return Ok(IdempotencyClaim::Mismatch);
        }
        let row = || format!("{}/{}", key.scope, key.key);
        match (self.response_status, self.response_body) {
            (None, None) => Ok(IdempotencyClaim::InFlight),
            (Some(status), Some(body)) => {
                let status =
                    u16::try_from(status).map_err(|_| bad_value("idempotency_keys", row(), "status", status))?;
                Ok(IdempotencyClaim::Completed(StoredResponse { status, body }))
            }
            (status, body) => Err(bad_value(
                "idempotency_keys",
                row(),
                "response",
                (status, body.is_some()),
            )),
        }
    }
}

/// The claim's upsert: inserts the key, or replaces an expired record; a live record is left
/// alone but locked until the end of the transaction. One row affected: the caller claimed it.
///
/// Its commit does not wait for the WAL flush (`synchronous_commit` off for its transaction).
/// Nothing relies on a claim surviving a crash by itself: every write the claimed request makes
/// afterwards (the order with its answer, a stored answer, a release) commits synchronously, and WAL is
/// flushed in order, so the claim is durable before any of them is. A crash before that loses
/// a claim of a request that left nothing durable behind, and the client's retry starts afresh.
const CLAIM: &str = "WITH lazy AS (SELECT set_config('synchronous_commit', 'off', true))
     INSERT INTO commerce.idempotency_keys AS k (scope, key, fingerprint, created_at, expires_at)
     SELECT $1, $2, $3, $4, $5 FROM lazy
     ON CONFLICT (scope, key) DO UPDATE
        SET fingerprint = EXCLUDED.fingerprint, response_status = NULL, response_body = NULL,
            created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at
      WHERE k.expires_at <= EXCLUDED.created_at";

async fn upsert_claim(
    conn: impl PgExecutor<'_>,
    key: &IdempotencyKey,
    fingerprint: &str,
    now: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> Result<bool> {
    let claimed = sqlx::query(CLAIM)
        .bind(&key.scope)
        .bind(&key.key)
        .bind(fingerprint)
        .bind(now)
        .bind(expires_at)
        .execute(conn)
        .await
        .storage()?;
    Ok(claimed.rows_affected() == 1)
}

impl PgStore {
    /// One run of `claim_key`'s transaction, for a key that has a live record (or had one a
    /// moment ago).
    async fn claim_live_key_once(
        &self,
        key: &IdempotencyKey,
        fingerprint: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<IdempotencyClaim> {
        let mut conn = self.db().lease().await.storage()?;
        let mut tx = retry::begin(&mut conn).await?;
        let claim = if upsert_claim(&mut *tx, key, fingerprint, now, expires_at).await? {
            IdempotencyClaim::Started
        } else {
            // The upsert left a live record locked: it cannot change before this read, which (a
            // new statement at READ COMMITTED) sees it even if it committed after the upsert began.
            sqlx::query_as::<_, ClaimedRow>(
                "SELECT fingerprint, response_status, response_body FROM commerce.idempotency_keys
                  WHERE scope = $1 AND key = $2",
            )
            .bind(&key.scope)
            .bind(&key.key)
            .fetch_optional(&mut *tx)
            .await
            .storage()?
            .ok_or_else(|| Error::unexpected_msg("claim_key: the conflicting idempotency record vanished"))?
            .claim(key, fingerprint)?
        };
        tx.commit().await.storage()?;
        conn.finish();
        Ok(claim)
    }

    /// Deletes `key`'s record; with `unanswered_only`, only while it holds no answer.
    async fn delete_key(&self, key: &IdempotencyKey, unanswered_only: bool) -> Result<()> {
        sqlx::query(
            "DELETE FROM commerce.idempotency_keys
              WHERE scope = $1 AND key = $2 AND (NOT $3 OR response_status IS NULL)",
        )
        .bind(&key.scope)
        .bind(&key.key)
        .bind(unanswered_only)
        .execute(self.db())
        .await
        .storage()?;
        Ok(())
    }
}

#[async_trait]
impl IdempotencyStore for PgStore {
    async fn claim_key(
        &self,
        key: &IdempotencyKey,
        fingerprint: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<IdempotencyClaim> {
        // A new key (the usual case) is claimed by the upsert alone, committed on its own. Only a
        // key with a live record needs the transaction that reads the record under its lock (as
        // does an upsert the database aborted, e.g. on a server defaulting to SERIALIZABLE).
        match upsert_claim(self.db(), key, fingerprint, now, expires_at).await {
            Ok(true) => return Ok(IdempotencyClaim::Started),
            Ok(false) => {}
            Err(e) if retry::is_retryable(&e) => {}
            Err(e) => return Err(e),
        }
        retry::retrying(|| self.claim_live_key_once(key, fingerprint, now, expires_at)).await
    }

    async fn complete_key(&self, key: &IdempotencyKey, response: &StoredResponse) -> Result<()> {
        let done = sqlx::query(
            "UPDATE commerce.idempotency_keys SET response_status = $3, response_body = $4
              WHERE scope = $1 AND key = $2",
        )
        .bind(&key.scope)
        .bind(&key.key)
        .bind(i32::from(response.status))
        .bind(&response.body)
        .execute(self.db())
        .await
        .storage()?;
        if done.rows_affected() == 0 {
            Err(Error::NotFound {
                entity: "idempotency key",
            })
        } else {
            Ok(())
        }
    }

    async fn release_key(&self, key: &IdempotencyKey) -> Result<()> {
        self.delete_key(key, true).await
    }

    async fn forget_key(&self, key: &IdempotencyKey) -> Result<()> {
        self.delete_key(key, false).await
    }
}
