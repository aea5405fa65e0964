//! Connections the store keeps checked out of its pool between statements.
//!
//! sqlx's pool tests every connection handed back to it with a round trip (`Sync`, then
//! `ReadyForQuery`, in a task of its own) before another caller may have it, so that a caller
//! dropped half-way through a statement or a transaction cannot leave the next one a connection
//! with a reply still unread or a transaction still open. For a statement that ran to its end
//! that round trip finds nothing to do, yet it costs both processes wake-ups and system calls,
//! and the pool hands out its idle connections in turn, so every statement lands on a backend
//! whose caches have gone cold. On the 2-core dev VM, leasing instead (the last connection kept
//! serves the next statement, untested) gave 1,510 → 2,410–2,650 adds to cart per second at one
//! client on PostgreSQL stock and 136–248 → 205–265 checkouts; at 32 clients, where PostgreSQL's
//! own work is the limit, adds to cart gained 0–13 % and checkouts stayed within the noise.
//!
//! So the store leases connections here. A lease that ran its work to the end is
//! [finished](Lease::finish) and its connection kept for the next lease, untested. A lease
//! dropped unfinished (its caller gave up or failed; an open transaction has just queued its
//! `ROLLBACK`) hands its connection back to sqlx's pool, whose test sends that `ROLLBACK` and
//! reads what is left before the connection serves again. Leases are granted in the order they
//! were asked for (a newcomer finding a kept connection must not overtake a caller already
//! waiting for the pool: that starved some checkouts for a second at 32 clients), and all but
//! one of the pool's connections at most are kept, so whoever shares the pool (migrations,
//! embedders, tests) can still get one.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnection, PgPool, PgQueryResult, PgRow, PgStatement, PgTypeInfo};
use sqlx::{Connection, Either, Execute, Executor, Postgres, SqlStr};
use tokio::sync::{Semaphore, SemaphorePermit};

/// A connection taken from the pool longer ago than this goes back to it when next finished, so
/// the pool's own upkeep (maximum lifetime, idle timeout) reaches kept connections too.
const HAND_BACK_AFTER: Duration = Duration::from_secs(60);

/// The store's kept connections.
pub(crate) struct Connections {
    pool: PgPool,
    /// One permit per connection of the pool, handed out first come, first served.
    turns: Semaphore,
    kept: Mutex<Vec<Kept>>,
    most_kept: usize,
}

struct Kept {
    conn: PoolConnection<Postgres>,
    /// When the store took it from the pool.
    taken: Instant,
    /// When it was last finished.
    since: Instant,
}

impl fmt::Debug for Connections {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connections")
            .field("kept", &self.kept().len())
            .field("most_kept", &self.most_kept)
            .finish_non_exhaustive()
    }
}

impl Connections {
    pub(crate) fn new(pool: PgPool) -> Self {
        let size = pool.options().get_max_connections() as usize;
        // A pool of one keeps nothing: its one connection stays the pool's to share.
        let most_kept = size.saturating_sub(1);
        Self {
            pool,
            turns: Semaphore::new(size),
            kept: Mutex::new(Vec::with_capacity(most_kept)),
            most_kept,
        }
    }

    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The kept list; nothing panics while holding it, but a poisoned lock is no reason to fail.
    fn kept(&self) -> std::sync::MutexGuard<'_, Vec<Kept>> {
        self.kept.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A connection: the one kept last (its buffers and the server's caches are warm), or one
    /// from the pool.
    ///
    /// # Errors
    /// `PoolTimedOut` after the pool's acquire timeout; the pool's errors.
    pub(crate) async fn lease(&self) -> Result<Lease<'_>, sqlx::Error> {
        // One acquire timeout for the turn and the pool together, as `PgConfig` promises.
        let deadline = tokio::time::Instant::now() + self.pool.options().get_acquire_timeout();
        let waited = tokio::time::timeout_at(deadline, self.turns.acquire()).await;
        let mut turn = match waited {
            Ok(Ok(turn)) => turn,
            Ok(Err(_closed)) => return Err(sqlx::Error::PoolClosed),
            Err(_elapsed) => return Err(sqlx::Error::PoolTimedOut),
        };
        loop {
            let Some(Kept { conn, taken, since }) = self.kept().pop() else {
                break;
            };
            let mut lease = Lease {
                home: self,
                conn: Some(conn),
                taken,
                _turn: turn,
            };
            // Tested as the pool tests what it hands out (`crate::connect`).
            if since.elapsed() < crate::PING_IF_IDLE_FOR || lease.ping().await.is_ok() {
                return Ok(lease);
            }
            // Dropped unfinished: the pool's own test fails again and closes it.
            turn = lease.into_turn();
        }
        let conn = tokio::time::timeout_at(deadline, self.pool.acquire())
            .await
            .map_err(|_elapsed| sqlx::Error::PoolTimedOut)??;
        Ok(Lease {
            home: self,
            conn: Some(conn),
            taken: Instant::now(),
            _turn: turn,
        })
    }

    /// Runs `work` on a leased connection and finishes the lease if `work` succeeds: a statement
    /// that fails gives its connection back to the pool to be tested, as one dropped half-way does.
    async fn run<T>(
        &self,
        work: impl AsyncFnOnce(&mut PgConnection) -> Result<T, sqlx::Error>,
    ) -> Result<T, sqlx::Error> {
        let mut lease = self.lease().await?;
        let out = work(&mut lease).await?;
        lease.finish();
        Ok(out)
    }

    fn keep(&self, conn: PoolConnection<Postgres>, taken: Instant) {
        if taken.elapsed() >= HAND_BACK_AFTER {
            return; // Dropped: back to the pool, which tests it or retires it.
        }
        let mut kept = self.kept();
        if kept.len() < self.most_kept {
            kept.push(Kept {
                conn,
                taken,
                since: Instant::now(),
            });
        }
        // Otherwise dropped here, after the lock: back to the pool, tested on the way.
    }
}

/// A connection leased from [`Connections`]; see the module's documentation.
pub(crate) struct Lease<'a> {
    home: &'a Connections,
    conn: Option<PoolConnection<Postgres>>,
    taken: Instant,
    /// Released after `conn` is kept or handed back (fields drop in order).
    _turn: SemaphorePermit<'a>,
}

impl<'a> Lease<'a> {
    /// Drops the connection (back to the pool, tested) but not the caller's turn.
    fn into_turn(mut self) -> SemaphorePermit<'a> {
        drop(self.conn.take());
        self._turn
    }

    /// The work ran to its end (committed, or every reply read): keep the connection untested.
    pub(crate) fn finish(mut self) {
        if let Some(conn) = self.conn.take() {
            self.home.keep(conn, self.taken);
        }
    }
}

impl Deref for Lease<'_> {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        // `conn` is `None` only inside `finish`, which consumes the lease.
        self.conn
            .as_deref()
            .unwrap_or_else(|| unreachable!("a lease holds its connection"))
    }
}

impl DerefMut for Lease<'_> {
    fn deref_mut(&mut self) -> &mut PgConnection {
        self.conn
            .as_deref_mut()
            .unwrap_or_else(|| unreachable!("a lease holds its connection"))
    }
}

/// One statement on a leased connection ([`Connections::run`]).
impl<'c> Executor<'c> for &'c Connections {
    type Database = Postgres;

    /// Collects every result before yielding the first: the store's statements return at most
    /// a page of rows, and a lease must not outlive the stream's consumer.
    fn fetch_many<'e, 'q: 'e, E>(self, query: E) -> BoxStream<'e, Result<Either<PgQueryResult, PgRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        futures::stream::once(self.run(async move |conn| {
            let all: Vec<_> = conn.fetch_many(query).try_collect().await?;
            Ok(futures::stream::iter(all.into_iter().map(Ok)))
        }))
        .try_flatten()
        .boxed()
    }

    fn fetch_optional<'e, 'q: 'e, E>(self, query: E) -> BoxFuture<'e, Result<Option<PgRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        Box::pin(self.run(async move |conn| conn.fetch_optional(query).await))
    }

    fn fetch_all<'e, 'q: 'e, E>(self, query: E) -> BoxFuture<'e, Result<Vec<PgRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        Box::pin(self.run(async move |conn| conn.fetch_all(query).await))
    }

    fn execute<'e, 'q: 'e, E>(self, query: E) -> BoxFuture<'e, Result<PgQueryResult, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        Box::pin(self.run(async move |conn| conn.execute(query).await))
    }

    fn prepare_with<'e>(
        self,
        sql: SqlStr,
        parameters: &'e [PgTypeInfo],
    ) -> BoxFuture<'e, Result<PgStatement, sqlx::Error>>
    where
        'c: 'e,
    {
        Box::pin(self.run(async move |conn| conn.prepare_with(sql, parameters).await))
    }

    fn describe<'e>(self, sql: SqlStr) -> BoxFuture<'e, Result<sqlx::Describe<Postgres>, sqlx::Error>>
    where
        'c: 'e,
    {
        Box::pin(self.run(async move |conn| conn.describe(sql).await))
    }
}

#[cfg(all(test, feature = "testing"))]
mod tests {
    use std::time::Duration;

    use sqlx::{Connection, Executor as _};

    use crate::testing::fresh_store;

    async fn backend_pid(conns: &super::Connections) -> i32 {
        sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(conns)
            .await
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_finished_statement_hands_its_connection_to_the_next_one() {
        let store = fresh_store().await;
        let first = backend_pid(store.db()).await;
        assert_eq!(
            store.db().kept().len(),
            1,
            "the connection is kept, not returned to the pool"
        );
        for _ in 0..5 {
            assert_eq!(backend_pid(store.db()).await, first, "the kept connection serves again");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn all_but_one_connection_at_most_is_kept_and_that_one_stays_with_the_pool() {
        let store = fresh_store().await;
        let size = store.pool().options().get_max_connections() as usize;
        let leases: Vec<_> = futures::future::try_join_all((0..size).map(|_| store.db().lease()))
            .await
            .unwrap();
        for lease in leases {
            lease.finish();
        }
        assert_eq!(store.db().kept().len(), size - 1);
        // Whoever shares the pool still gets a connection (the test pool waits 30 s otherwise).
        tokio::time::timeout(Duration::from_secs(5), store.pool().acquire())
            .await
            .expect("the pool has a connection the store does not keep")
            .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn leases_are_granted_in_the_order_asked_for() {
        let store = fresh_store().await;
        let size = store.pool().options().get_max_connections() as usize;
        let mut held: Vec<_> = futures::future::try_join_all((0..size).map(|_| store.db().lease()))
            .await
            .unwrap();
        let last = held.pop().unwrap();
        // A caller waits for a connection, then a newcomer; one connection is finished (kept,
        // where the newcomer could grab it at once): the waiter has it, the newcomer waits on.
        let order = std::sync::Mutex::new(Vec::new());
        let waiter = async {
            let lease = store.db().lease().await.unwrap();
            order.lock().unwrap().push("waiter");
            tokio::time::sleep(Duration::from_millis(50)).await;
            lease.finish();
        };
        let newcomer = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let lease = store.db().lease().await.unwrap();
            order.lock().unwrap().push("newcomer");
            lease.finish();
        };
        let release = async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            last.finish();
        };
        tokio::join!(waiter, newcomer, release);
        drop(held);
        assert_eq!(*order.lock().unwrap(), ["waiter", "newcomer"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_transaction_given_up_half_way_releases_its_locks() {
        let store = fresh_store().await;
        store
            .pool()
            .execute("CREATE TABLE commerce.lease_probe (id integer PRIMARY KEY); INSERT INTO commerce.lease_probe VALUES (1)")
            .await
            .unwrap();
        // The caller gives up (a client disconnected, a timeout) while its transaction holds a
        // row lock: the lease is dropped unfinished.
        let abandoned = async {
            let mut lease = store.db().lease().await.unwrap();
            let mut tx = lease.begin().await.unwrap();
            sqlx::query("SELECT id FROM commerce.lease_probe WHERE id = 1 FOR UPDATE")
                .execute(&mut *tx)
                .await
                .unwrap();
            std::future::pending::<()>().await;
        };
        assert!(
            tokio::time::timeout(Duration::from_millis(300), abandoned)
                .await
                .is_err()
        );
        assert!(
            store.db().kept().is_empty(),
            "an unfinished lease's connection is not kept"
        );
        // sqlx's pool tests the connection on its way back, which sends the queued ROLLBACK.
        let mut other = store.pool().acquire().await.unwrap();
        let mut locked = Err(sqlx::Error::RowNotFound);
        for _ in 0..50 {
            let mut tx = other.begin().await.unwrap();
            locked = sqlx::query("SELECT id FROM commerce.lease_probe WHERE id = 1 FOR UPDATE NOWAIT")
                .execute(&mut *tx)
                .await;
            tx.rollback().await.unwrap();
            if locked.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            locked.is_ok(),
            "the abandoned transaction still holds its lock: {locked:?}"
        );
    }
}
