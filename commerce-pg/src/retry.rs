//! Transactions of the checkout: pinned to READ COMMITTED and retried when PostgreSQL aborts
//! them for a deadlock or a serialization failure.
//!
//! The adapter's own transactions cannot deadlock with each other (every writer locks stock
//! levels in `(sku, warehouse)` order, see `orders.rs`), but an embedder's transactions on the
//! same tables might; a transaction aborted that way wrote nothing, so running it again is safe.

use std::time::Duration;

use commerce_core::{Error, Result};
use sqlx::postgres::PgConnection;
use sqlx::{Connection, Postgres, Transaction};

use crate::error::{PgError, StorageResult};

/// Runs of one transaction before its failure is reported.
const ATTEMPTS: u32 = 5;

/// Starts a READ COMMITTED transaction whatever the server's `default_transaction_isolation`:
/// the checkout relies on each statement seeing what committed before it (a row lock waited for
/// returns the row as committed; a claim's conflict is read back by the next statement).
///
/// On a connection leased from the store: [`crate::lease::Lease::finish`] it once committed.
pub(crate) async fn begin(conn: &mut PgConnection) -> Result<Transaction<'_, Postgres>> {
    conn.begin_with("BEGIN ISOLATION LEVEL READ COMMITTED").await.storage()
}

/// Whether `err` is PostgreSQL aborting the transaction for a deadlock (40P01) or a
/// serialization failure (40001): nothing was written and the same work may succeed.
pub(crate) fn is_retryable(err: &Error) -> bool {
    let Error::Storage(source) = err else {
        return false;
    };
    match source.downcast_ref::<PgError>() {
        Some(PgError::Sqlx(sqlx::Error::Database(db))) => {
            matches!(db.code().as_deref(), Some("40001" | "40P01"))
        }
        _ => false,
    }
}

/// Runs `attempt` (one whole transaction: begin, work, commit) until it succeeds, fails for
/// another reason, or has been aborted [`ATTEMPTS`] times.
pub(crate) async fn retrying<T, F, Fut>(mut attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut run = 1;
    loop {
        match attempt().await {
            Err(err) if run < ATTEMPTS && is_retryable(&err) => {
                tracing::debug!(attempt = run, error = %err, "transaction aborted by the database; retrying");
                // Back off a little, differently per caller, so the same pair does not collide again.
                let jitter = u64::from(uuid::Uuid::now_v7().as_bytes()[15] % 8);
                tokio::time::sleep(Duration::from_millis(u64::from(run) * 5 + jitter)).await;
                run += 1;
            }
            result => return result,
        }
    }
}
