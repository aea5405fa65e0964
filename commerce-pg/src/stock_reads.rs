//! Reads of available stock that arrive together share one statement.
//!
//! Every add to cart reads the available stock of its cart's SKUs. On PostgreSQL nearly all the
//! cost of such a read is the statement's, not the rows' (protocol, snapshot, executor start-up,
//! the round trip, on both sides): on the 2-core dev VM each add cost the database about what
//! pgbench's select-only spends on a one-row read, and the host as much again in the driver. So
//! at most [`MOST_RUNNING`] statements read stock at once; a read asked for while they all run
//! waits for the next one, which reads every SKU asked for in the meantime with one
//! `sku = ANY(..)`. At 32 clients that took adds to cart from 12,477–12,843 to 17,015–19,095 a
//! second and the database's CPU per add by a third; at one client nothing changes.
//!
//! No read waits on a timer (a read finding a turn free runs its own statement at once, in its
//! own task), and none is answered by a statement that began before it was asked: every
//! statement starts after each of its readers arrived, so what a reader sees is at least as
//! fresh as a statement of its own would show. Statements for queued readers run in a task of
//! their own, so a reader that gives up (its request cancelled) cannot strand the others.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use commerce_core::domain::Sku;
use commerce_core::{Error, Result};
use tokio::sync::oneshot;

use crate::PgStore;
use crate::error::StorageResult;

/// Statements reading stock at once. On the 2-core dev VM at 32 clients (adds to cart per
/// second, two runs each, against 12,477–12,843 with a statement per read): one 16,088–21,338,
/// two 17,015–19,095, four 15,709–16,376. Two, so one slow statement does not hold up every
/// reader.
const MOST_RUNNING: usize = 2;

/// Available units per SKU (SKUs without a level absent), as one statement read them.
type Totals = Arc<HashMap<String, i64>>;
/// What a statement answers every reader it served; the error shared as each reader's source.
type Answer = std::result::Result<Totals, Arc<sqlx::Error>>;

/// The readers waiting for the next statement, and how many statements run.
#[derive(Debug, Default)]
pub(crate) struct StockReads {
    queue: Mutex<Queue>,
    /// Statements run so far, for the tests to see readers share them.
    #[cfg(test)]
    statements: std::sync::atomic::AtomicUsize,
}

#[derive(Debug, Default)]
struct Queue {
    running: usize,
    waiting: Vec<Reader>,
}

#[derive(Debug)]
struct Reader {
    skus: Vec<String>,
    reply: oneshot::Sender<Answer>,
}

impl StockReads {
    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        // The queue is consistent between any two statements on it: a panic elsewhere cannot
        // leave it half-changed.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl PgStore {
    /// Available units per SKU, read by a statement of its own when a turn is free, else by the
    /// next statement, shared with whoever else asks meanwhile.
    pub(crate) async fn read_available(&self, skus: &[Sku]) -> Result<Totals> {
        let answer = {
            let mut queue = self.stock_reads.queue();
            if queue.running < MOST_RUNNING {
                queue.running += 1;
                None
            } else {
                let (reply, answer) = oneshot::channel();
                let skus = skus.iter().map(|s| s.as_str().to_owned()).collect();
                queue.waiting.push(Reader { skus, reply });
                Some(answer)
            }
        };
        let Some(answer) = answer else {
            // A free turn: read in this task (no hand-over to another), then pass the turn to
            // whoever queued meanwhile.
            let turn = Turn::taken(self);
            let own = self.select_available(skus.iter().map(Sku::as_str)).await;
            drop(turn);
            return own.map(Arc::new).storage();
        };
        match answer.await {
            Ok(Ok(totals)) => Ok(totals),
            Ok(Err(shared)) => Err(Error::storage(SharedError(shared))),
            Err(_) => Err(Error::unexpected_msg("the stock read was dropped unanswered")),
        }
    }

    async fn select_available<'a>(
        &self,
        skus: impl Iterator<Item = &'a str>,
    ) -> std::result::Result<HashMap<String, i64>, sqlx::Error> {
        let mut skus: Vec<&str> = skus.collect();
        skus.sort_unstable();
        skus.dedup();
        #[cfg(test)]
        self.stock_reads
            .statements
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT sku, SUM(on_hand - reserved)::bigint FROM commerce.stock_levels WHERE sku = ANY($1) GROUP BY sku",
        )
        .bind(skus)
        .fetch_all(self.db())
        .await?;
        Ok(rows.into_iter().collect())
    }
}

/// One of the [`MOST_RUNNING`] turns to read stock. Dropped (its statement done, or its task
/// cancelled or dead), it serves the readers that queued meanwhile in a task of its own, or is
/// given back when none did.
struct Turn {
    store: PgStore,
    held: bool,
}

impl Turn {
    /// A turn the caller has just counted as running.
    fn taken(store: &PgStore) -> Self {
        Self {
            store: store.clone(),
            held: true,
        }
    }

    /// The readers queued since the last statement, or none, the turn then given back (under
    /// the same lock, so a reader arriving after it finds the turn free).
    fn next_readers(&mut self) -> Option<Vec<Reader>> {
        let mut queue = self.store.stock_reads.queue();
        if queue.waiting.is_empty() {
            queue.running -= 1;
            self.held = false;
            None
        } else {
            Some(std::mem::take(&mut queue.waiting))
        }
    }

    /// Runs statements for queued readers until none is left.
    async fn serve(mut self, mut readers: Vec<Reader>) {
        loop {
            let skus = readers.iter().flat_map(|r| r.skus.iter().map(String::as_str));
            let answer = self.store.select_available(skus).await.map(Arc::new).map_err(Arc::new);
            for reader in readers {
                // A reader that gave up has dropped its receiver: nothing to tell it.
                let _ = reader.reply.send(answer.clone());
            }
            match self.next_readers() {
                Some(next) => readers = next,
                None => return,
            }
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        if !self.held {
            return;
        }
        let Some(readers) = self.next_readers() else {
            return;
        };
        let next = Turn {
            store: self.store.clone(),
            held: true,
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(next.serve(readers));
            }
            // Outside any runtime (a store used after its runtime ended) nothing can run the
            // statement: the readers learn it from their dropped senders, the turn is freed.
            Err(_) => {
                drop(readers);
                let mut next = next;
                next.held = false;
                next.store.stock_reads.queue().running -= 1;
            }
        }
    }
}

/// A statement's failure, reported to each reader it served.
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
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use chrono::Utc;
    use commerce_core::domain::{Actor, StockChange};
    use commerce_core::ports::InventoryStore;

    use super::*;
    use crate::testing::fresh_store;

    async fn set_stock(store: &PgStore, sku: &Sku, warehouse: &str, on_hand: i64) {
        let change = StockChange::SetOnHand(on_hand);
        store
            .change_stock(sku, warehouse, &change, &Actor::System, None, Utc::now())
            .await
            .unwrap();
    }

    /// Waits until `n` readers queue behind the running statements.
    async fn until_waiting(store: &PgStore, n: usize) {
        for _ in 0..500 {
            if store.stock_reads.queue().waiting.len() == n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{n} readers never queued: {:?}", store.stock_reads.queue());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn readers_asking_while_statements_run_share_the_next_one() {
        let store = fresh_store().await;
        let pool = store.pool().clone();
        let shared = Sku::parse("SHARED-1").unwrap();
        set_stock(&store, &shared, "east", 7).await;
        set_stock(&store, &shared, "west", 5).await;
        let skus: Vec<Sku> = (0..40).map(|i| Sku::parse(&format!("SKU-{i}")).unwrap()).collect();
        for (i, sku) in skus.iter().enumerate() {
            set_stock(&store, sku, "east", i as i64).await;
        }
        // A store of its own over the same pool, so no connection kept from the writes above
        // serves its statements; every connection of the pool held here: the first statements
        // wait for one while the other readers queue.
        drop(store);
        let store = PgStore::new(pool.clone());
        let mut held = Vec::new();
        while let Ok(conn) = tokio::time::timeout(Duration::from_millis(300), pool.acquire()).await {
            held.push(conn.unwrap());
        }
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
        until_waiting(&store, skus.len() - MOST_RUNNING).await;
        drop(held);

        for (i, (reader, sku)) in readers.into_iter().zip(&skus).enumerate() {
            let got = tokio::time::timeout(Duration::from_secs(10), reader).await;
            let got = got.expect("a queued reader was never answered").unwrap().unwrap();
            assert_eq!(got, vec![(sku.clone(), i as i64), (shared.clone(), 12)], "reader {i}");
        }
        let statements = store.stock_reads.statements.load(Ordering::Relaxed);
        // The running ones, then one for everyone who queued (two if both freed turns take some).
        assert!(
            (MOST_RUNNING + 1..=MOST_RUNNING + 2).contains(&statements),
            "40 readers took {statements} statements"
        );
        let queue = store.stock_reads.queue();
        assert_eq!((queue.running, queue.waiting.len()), (0, 0), "turns given back");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn readers_queued_behind_cancelled_reads_are_still_answered() {
        let store = fresh_store().await;
        let pool = store.pool().clone();
        let sku = Sku::parse("QUEUED-1").unwrap();
        set_stock(&store, &sku, "main", 4).await;
        drop(store);
        let store = PgStore::new(pool.clone());
        let mut held = Vec::new();
        while let Ok(conn) = tokio::time::timeout(Duration::from_millis(300), pool.acquire()).await {
            held.push(conn.unwrap());
        }
        let read = |store: &PgStore| {
            let (store, sku) = (store.clone(), sku.clone());
            tokio::spawn(async move { store.available(&[sku]).await })
        };
        // These take every turn and wait for a connection; the next ones queue behind them.
        let first: Vec<_> = (0..MOST_RUNNING).map(|_| read(&store)).collect();
        for _ in 0..500 {
            if store.stock_reads.queue().running == MOST_RUNNING {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let queued: Vec<_> = (0..5).map(|_| read(&store)).collect();
        until_waiting(&store, 5).await;
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
        let queue = store.stock_reads.queue();
        assert_eq!((queue.running, queue.waiting.len()), (0, 0), "turns given back");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_after_a_change_sees_it_and_failures_reach_every_reader() {
        let store = fresh_store().await;
        let sku = Sku::parse("FRESH-1").unwrap();
        set_stock(&store, &sku, "main", 3).await;
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
        let readers: Vec<_> = (0..8)
            .map(|_| {
                let (store, sku) = (store.clone(), sku.clone());
                tokio::spawn(async move { store.available(&[sku]).await })
            })
            .collect();
        for reader in readers {
            let answered = tokio::time::timeout(Duration::from_secs(10), reader).await;
            let err = answered.expect("a reader was never answered").unwrap().unwrap_err();
            assert!(matches!(err, Error::Storage(_)), "{err:?}");
        }
        let queue = store.stock_reads.queue();
        assert_eq!(
            (queue.running, queue.waiting.len()),
            (0, 0),
            "turns given back after failures"
        );
    }
}
