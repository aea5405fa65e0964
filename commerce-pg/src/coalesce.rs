//! Statements asked for together run as one.
//!
//! On PostgreSQL nearly all the cost of a one-row read is the statement's, not the row's
//! (protocol, snapshot, executor start-up, the round trip, on both sides). Every add to cart
//! reads the available stock of its cart's SKUs: at 32 clients on the 2-core dev VM each add cost
//! the database about what pgbench's select-only spends on a one-row read, and the host as much
//! again in the driver. So for such a read at most [`Batch::MOST_RUNNING`] statements run at
//! once; a caller asking while they all run waits for the next one, which does the work of
//! everyone who asked in the meantime (`sku = ANY(..)` over all their SKUs).
//!
//! No caller waits on a timer (one finding a turn free runs its own statement at once, in its
//! own task), and none is answered by a statement that began before it asked: a read sees at
//! least what a statement of its own would. Statements for queued callers run in a task of their
//! own, so a caller that gives up (its request cancelled) cannot strand the others.
//!
//! Measured on the 2-core dev VM at 32 clients: adds to cart on PostgreSQL stock 12,477–12,843
//! → 17,015–19,095 a second, the database's CPU per add down by a third; at one client nothing
//! changes. Checkouts placed at once share statements too (`orders.rs`, `Checkouts`): their
//! statement writes eight tables, and most of what it costs the database is the statement's.
//! Tried and dropped: the same for two small writes of every checkout (its saga step, its
//! idempotency key's stored answer). At ~1,000 checkouts a second two statements of each rarely
//! ran at once, so they hardly ever shared one (checkouts within the noise), and with one
//! running statement the stored answers' commits, each waiting for the WAL flush, queued behind
//! one another (about 360 checkouts a second).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use futures::future::BoxFuture;
use tokio::sync::oneshot;

use crate::PgStore;
use crate::error::StorageResult;

/// A kind of statement whose callers can share one run.
pub(crate) trait Batch: Sized + 'static {
    /// One caller's part of the statement.
    type Ask: Send + Sync + 'static;
    /// What that caller is told.
    type Answer: Send + 'static;
    /// Statements of this kind running at once.
    const MOST_RUNNING: usize;
    /// Callers one statement serves at most; the rest wait for the next.
    const MOST_ASKS: usize = usize::MAX;

    /// The store's queue of this kind.
    fn queue(store: &PgStore) -> &Queue<Self>;

    /// Runs one statement for `asks`: an answer per ask, in the order asked.
    fn run<'a>(store: &'a PgStore, asks: &'a [Self::Ask]) -> BoxFuture<'a, Result<Vec<Self::Answer>, sqlx::Error>>;
}

type Reply<B> = oneshot::Sender<Result<<B as Batch>::Answer, Arc<sqlx::Error>>>;

/// The callers waiting for the next statement of one kind, and how many such statements run.
pub(crate) struct Queue<B: Batch> {
    state: Mutex<State<B>>,
    /// Statements run so far, for the tests to see callers share them.
    #[cfg(test)]
    pub(crate) statements: std::sync::atomic::AtomicUsize,
}

pub(crate) struct State<B: Batch> {
    pub(crate) running: usize,
    pub(crate) waiting: Vec<(B::Ask, Reply<B>)>,
}

impl<B: Batch> Default for Queue<B> {
    fn default() -> Self {
        Self {
            state: Mutex::new(State {
                running: 0,
                waiting: Vec::new(),
            }),
            #[cfg(test)]
            statements: std::sync::atomic::AtomicUsize::new(0),
        }
    }
}

impl<B: Batch> std::fmt::Debug for Queue<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state();
        f.debug_struct("Queue")
            .field("running", &state.running)
            .field("waiting", &state.waiting.len())
            .finish()
    }
}

impl<B: Batch> Queue<B> {
    pub(crate) fn state(&self) -> MutexGuard<'_, State<B>> {
        // The state is consistent between any two statements on it: a panic elsewhere cannot
        // leave it half-changed.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Runs `ask` in a statement of its own if a turn is free, else in the next statement, shared
/// with whoever else asks meanwhile.
pub(crate) async fn coalesced<B: Batch>(store: &PgStore, ask: B::Ask) -> commerce_core::Result<B::Answer> {
    let queued = {
        let mut state = B::queue(store).state();
        if state.running < B::MOST_RUNNING {
            state.running += 1;
            Ok(ask)
        } else {
            let (reply, answer) = oneshot::channel();
            state.waiting.push((ask, reply));
            Err(answer)
        }
    };
    let ask = match queued {
        Ok(ask) => ask,
        Err(answer) => {
            return match answer.await {
                Ok(Ok(answer)) => Ok(answer),
                Ok(Err(shared)) => Err(commerce_core::Error::storage(SharedError(shared))),
                Err(_) => Err(commerce_core::Error::unexpected_msg(
                    "a coalesced statement dropped a caller unanswered",
                )),
            };
        }
    };
    // A free turn: the statement runs in this task, then the turn passes to whoever queued.
    let turn = Turn::<B>::taken(store);
    let own = turn.run(std::slice::from_ref(&ask)).await;
    drop(turn);
    own.storage()?
        .pop()
        .ok_or_else(|| commerce_core::Error::unexpected_msg("a coalesced statement answered nobody"))
}

/// One of a kind's turns to run a statement. Dropped (its statement done, or its task cancelled
/// or dead), it serves the callers that queued meanwhile in a task of its own, or is given back
/// when none did.
struct Turn<B: Batch> {
    store: PgStore,
    held: bool,
    kind: std::marker::PhantomData<fn() -> B>,
}

impl<B: Batch> Turn<B> {
    /// A turn the caller has just counted as running.
    fn taken(store: &PgStore) -> Self {
        Self {
            store: store.clone(),
            held: true,
            kind: std::marker::PhantomData,
        }
    }

    async fn run(&self, asks: &[B::Ask]) -> Result<Vec<B::Answer>, sqlx::Error> {
        #[cfg(test)]
        B::queue(&self.store)
            .statements
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        B::run(&self.store, asks).await
    }

    /// The callers queued longest, up to [`Batch::MOST_ASKS`], or none, the turn then given
    /// back (under the same lock, so a caller arriving after it finds the turn free).
    fn next_callers(&mut self) -> Option<Vec<(B::Ask, Reply<B>)>> {
        let mut state = B::queue(&self.store).state();
        if state.waiting.is_empty() {
            state.running -= 1;
            self.held = false;
            None
        } else {
            let n = state.waiting.len().min(B::MOST_ASKS);
            Some(state.waiting.drain(..n).collect())
        }
    }

    /// Runs statements for queued callers until none is left.
    async fn serve(mut self, mut callers: Vec<(B::Ask, Reply<B>)>) {
        loop {
            let (asks, replies): (Vec<_>, Vec<_>) = callers.into_iter().unzip();
            match self.run(&asks).await {
                Ok(answers) => {
                    // A caller that gave up has dropped its receiver: nothing to tell it. One
                    // left without an answer learns it from its dropped sender.
                    for (reply, answer) in replies.into_iter().zip(answers) {
                        let _ = reply.send(Ok(answer));
                    }
                }
                Err(e) => {
                    let e = Arc::new(e);
                    for reply in replies {
                        let _ = reply.send(Err(Arc::clone(&e)));
                    }
                }
            }
            match self.next_callers() {
                Some(next) => callers = next,
                None => return,
            }
        }
    }
}

impl<B: Batch> Drop for Turn<B> {
    fn drop(&mut self) {
        if !self.held {
            return;
        }
        let Some(callers) = self.next_callers() else {
            return;
        };
        let mut next = Turn::<B>::taken(&self.store);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(next.serve(callers));
            }
            // Outside any runtime (a store used after its runtime ended) nothing can run the
            // statement: the callers learn it from their dropped senders, the turn is freed.
            Err(_) => {
                drop(callers);
                next.held = false;
                B::queue(&self.store).state().running -= 1;
            }
        }
    }
}

/// The queues of the store's coalesced statements.
#[derive(Debug, Default)]
pub(crate) struct Queues {
    pub(crate) stock_reads: Queue<crate::inventory::StockReads>,
    pub(crate) stock_announcements: Queue<crate::stock_cache::Announcements>,
    pub(crate) checkouts: Queue<crate::orders::Checkouts>,
}

/// A shared statement's failure, reported to each caller it served.
#[derive(Debug)]
struct SharedError(Arc<sqlx::Error>);

impl std::fmt::Display for SharedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SharedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use chrono::Utc;
    use commerce_core::domain::{Actor, StockChange};
    use commerce_core::ports::InventoryStore;
    use sqlx::Postgres;
    use sqlx::pool::PoolConnection;

    use commerce_core::Error;
    use commerce_core::domain::Sku;

    use super::*;
    use crate::inventory::StockReads;
    use crate::testing::fresh_store;

    async fn set_stock(store: &PgStore, sku: &Sku, warehouse: &str, on_hand: i64) {
        let change = StockChange::SetOnHand(on_hand);
        store
            .change_stock(sku, warehouse, &change, &Actor::System, None, Utc::now())
            .await
            .unwrap();
    }

    /// A fresh store with `on_hand` units of one SKU.
    async fn stocked(sku: &str, on_hand: i64) -> (PgStore, Sku) {
        let (store, sku) = (fresh_store().await, Sku::parse(sku).unwrap());
        set_stock(&store, &sku, "main", on_hand).await;
        (store, sku)
    }

    /// A store of its own over `store`'s pool (so no connection `store` kept serves it), and
    /// every connection of that pool, held: its first statements wait for one, and the callers
    /// after them queue.
    pub(crate) async fn starved(store: PgStore) -> (PgStore, Vec<PoolConnection<Postgres>>) {
        let pool = store.pool().clone();
        // Dropped, `store` gives the connections it kept back to the pool, so all of them can be
        // held here.
        drop(store);
        let mut held = Vec::new();
        for _ in 0..pool.options().get_max_connections() {
            held.push(pool.acquire().await.unwrap());
        }
        (PgStore::new(pool), held)
    }

    /// Every turn given back, nobody left waiting.
    fn assert_idle(store: &PgStore) {
        let queue = store.queues.stock_reads.state();
        assert_eq!((queue.running, queue.waiting.len()), (0, 0), "turns given back");
    }

    /// Waits until `n` callers queue behind the running statements of `queue`.
    pub(crate) async fn until_waiting<B: Batch>(queue: &Queue<B>, n: usize) {
        for _ in 0..500 {
            if queue.state().waiting.len() == n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{n} callers never queued: {queue:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn readers_asking_while_statements_run_share_the_next_one() {
        let store = fresh_store().await;
        let shared = Sku::parse("SHARED-1").unwrap();
        set_stock(&store, &shared, "east", 7).await;
        set_stock(&store, &shared, "west", 5).await;
        let skus: Vec<Sku> = (0..40).map(|i| Sku::parse(&format!("SKU-{i}")).unwrap()).collect();
        for (i, sku) in skus.iter().enumerate() {
            set_stock(&store, sku, "east", i as i64).await;
        }
        let (store, held) = starved(store).await;
        let readers: Vec<_> = skus
            .iter()
            .map(|sku| {
                let (store, asked) = (
                    store.clone(),
                    vec![sku.clone(), shared.clone(), Sku::parse("NEVER-1").unwrap()],
                );
                tokio::spawn(async move { store.available(&asked).await })
            })
            .collect();
        until_waiting(&store.queues.stock_reads, skus.len() - StockReads::MOST_RUNNING).await;
        drop(held);

        for (i, (reader, sku)) in readers.into_iter().zip(&skus).enumerate() {
            let got = tokio::time::timeout(Duration::from_secs(10), reader).await;
            let got = got.expect("a queued reader was never answered").unwrap().unwrap();
            assert_eq!(got, vec![(sku.clone(), i as i64), (shared.clone(), 12)], "reader {i}");
        }
        let statements = store.queues.stock_reads.statements.load(Ordering::Relaxed);
        // The running ones, then one for everyone who queued (two if both freed turns take some).
        assert!(
            (StockReads::MOST_RUNNING + 1..=StockReads::MOST_RUNNING + 2).contains(&statements),
            "40 readers took {statements} statements"
        );
        assert_idle(&store);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn readers_queued_behind_cancelled_reads_are_still_answered() {
        let (store, sku) = stocked("QUEUED-1", 4).await;
        let (store, held) = starved(store).await;
        let read = |store: &PgStore| {
            let (store, sku) = (store.clone(), sku.clone());
            tokio::spawn(async move { store.available(&[sku]).await })
        };
        // These take every turn and wait for a connection; the next ones queue behind them.
        let first: Vec<_> = (0..StockReads::MOST_RUNNING).map(|_| read(&store)).collect();
        for _ in 0..500 {
            if store.queues.stock_reads.state().running == StockReads::MOST_RUNNING {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let queued: Vec<_> = (0..5).map(|_| read(&store)).collect();
        until_waiting(&store.queues.stock_reads, 5).await;
        for task in &first {
            task.abort();
        }
        for task in first {
            assert!(task.await.unwrap_err().is_cancelled());
        }
        drop(held);
        for task in queued {
            let answered = tokio::time::timeout(Duration::from_secs(10), task).await;
            let answered = answered.expect("a queued reader was stranded by the cancelled ones");
            assert_eq!(answered.unwrap().unwrap(), vec![(sku.clone(), 4)]);
        }
        assert_idle(&store);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_after_a_change_sees_it_and_failures_reach_every_reader() {
        let (store, sku) = stocked("FRESH-1", 3).await;
        assert_eq!(
            store.available(std::slice::from_ref(&sku)).await.unwrap(),
            vec![(sku.clone(), 3)]
        );
        set_stock(&store, &sku, "main", 9).await;
        assert_eq!(
            store.available(std::slice::from_ref(&sku)).await.unwrap(),
            vec![(sku.clone(), 9)]
        );

        sqlx::query("ALTER TABLE commerce.stock_levels RENAME TO stock_levels_gone")
            .execute(store.pool())
            .await
            .unwrap();
        // A SKU never read, so that no reader is answered from the stock cache (which may hold
        // FRESH-1 by now: it keeps units once the store listens for changes).
        let unread = Sku::parse("UNREAD-1").unwrap();
        let readers: Vec<_> = (0..8)
            .map(|_| {
                let (store, sku) = (store.clone(), unread.clone());
                tokio::spawn(async move { store.available(&[sku]).await })
            })
            .collect();
        for reader in readers {
            let answered = tokio::time::timeout(Duration::from_secs(10), reader).await;
            let err = answered.expect("a reader was never answered").unwrap().unwrap_err();
            assert!(matches!(err, Error::Storage(_)), "{err:?}");
        }
        assert_idle(&store);
    }
}
