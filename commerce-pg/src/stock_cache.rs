//! Each SKU's available units, kept between reads while nothing changes them.
//!
//! Every add to cart reads its whole cart's stock, and PostgreSQL pays per SKU (~8 µs of its
//! CPU each, one descent of the primary key per SKU asked): on two cores that was a third of an
//! add's CPU. What changes stock is announced: migration `0005_stock_notify.sql` notifies the
//! channel [`CHANNEL`] of the SKUs every statement on `stock_levels` changed, whoever runs it.
//!
//! Rules, so that a read never answers from before a change it could have seen:
//! - The store drops a SKU itself, right after its own write of it returns (the write's
//!   announcement may arrive later), so a host reads its own writes. It then announces the SKUs
//!   in a statement of its own (its sessions turn the triggers off: see the migration for why).
//! - Other writers' changes are dropped as their announcements arrive, milliseconds after their
//!   commit: what a read of PostgreSQL made at that moment would have missed too.
//! - Nothing is kept unless a listener is connected and listening; while it is not, and once
//!   it has lost its connection (announcements may have been lost), everything is dropped and
//!   reads go to PostgreSQL.
//! - Each drop moves a generation on; a read keeps what it fetched only if none happened since
//!   it looked (its statement may have begun before the change it raced).
//! - An entry older than [`MAX_AGE`] is read again, a fence should a connection die silently.
//!
//! The store's announcements carry its origin (`<origin>:<SKUs>`), so that its listener skips
//! them: it dropped those SKUs before announcing, and a second drop would only refuse the fills
//! in flight. The triggers' announcements carry none (SKUs hold no `:`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use commerce_core::domain::Sku;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use tokio::sync::watch;

use futures::future::BoxFuture;

use crate::PgStore;
use crate::coalesce::{self, Batch, Queue};

/// The channel stock changes are announced on.
pub(crate) const CHANNEL: &str = "commerce_stock";
/// Longest list of SKUs announced; more are announced as `*` (PostgreSQL's limit is 8,000 bytes).
const MAX_PAYLOAD: usize = 7_000;
/// How long an entry is trusted without an announcement.
const MAX_AGE: Duration = Duration::from_secs(2);
/// Entries past which a fill first drops the expired ones (memory stays bounded by the SKUs
/// read within [`MAX_AGE`]).
const PRUNE_ABOVE: usize = 16_384;
/// Wait before connecting the listener again after a failure.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

/// What [`StockCache::lookup`] found.
pub(crate) struct Lookup {
    /// Available units of the SKUs found (`None`: never stocked).
    pub(crate) known: HashMap<String, Option<i64>>,
    /// SKUs to read from PostgreSQL, each once.
    pub(crate) missing: Vec<String>,
    /// The generation to fill with; `None` when nothing may be kept.
    pub(crate) generation: Option<u64>,
}

#[derive(Default)]
struct State {
    /// A listener is connected and listening.
    live: bool,
    generation: u64,
    totals: HashMap<String, (Option<i64>, Instant)>,
}

impl State {
    fn drop_all(&mut self) {
        self.generation += 1;
        self.totals.clear();
    }
}

/// The store's cache of available units per SKU. See the module documentation.
pub(crate) struct StockCache {
    state: Mutex<State>,
    listening: AtomicBool,
    /// Tags this store's announcements: a UUIDv7 (its random bits keep it unique among the
    /// hosts listening).
    origin: String,
    /// Dropped with the cache: its listener then hangs up at once rather than with the next
    /// announcement (an embedder opening and dropping stores would keep a connection each).
    alive: watch::Sender<()>,
}

impl Default for StockCache {
    fn default() -> Self {
        Self {
            state: Mutex::default(),
            listening: AtomicBool::new(false),
            origin: uuid::Uuid::now_v7().simple().to_string(),
            alive: watch::Sender::new(()),
        }
    }
}

impl std::fmt::Debug for StockCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state();
        f.debug_struct("StockCache")
            .field("live", &state.live)
            .field("generation", &state.generation)
            .field("entries", &state.totals.len())
            .finish()
    }
}

impl StockCache {
    fn state(&self) -> MutexGuard<'_, State> {
        // The state is consistent after every statement; a panic elsewhere cannot break it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the listener has been started (the caller starts it when not).
    pub(crate) fn start_listening(&self) -> bool {
        !self.listening.swap(true, Ordering::AcqRel)
    }

    /// Splits `skus` into those known and those to read, each once.
    pub(crate) fn lookup(&self, skus: &[Sku]) -> Lookup {
        let state = self.state();
        let mut known = HashMap::with_capacity(skus.len());
        let mut missing: Vec<String> = Vec::new();
        for sku in skus {
            let sku = sku.as_str();
            if known.contains_key(sku) || missing.iter().any(|m| m == sku) {
                continue;
            }
            match state.totals.get(sku) {
                Some((units, at)) if state.live && at.elapsed() < MAX_AGE => {
                    known.insert(sku.to_owned(), *units);
                }
                _ => missing.push(sku.to_owned()),
            }
        }
        Lookup {
            known,
            missing,
            generation: state.live.then_some(state.generation),
        }
    }

    /// Keeps what a read fetched, unless anything was dropped since its lookup.
    pub(crate) fn fill(&self, generation: u64, fetched: impl IntoIterator<Item = (String, Option<i64>)>) {
        let mut state = self.state();
        if !state.live || state.generation != generation {
            return;
        }
        let now = Instant::now();
        if state.totals.len() > PRUNE_ABOVE {
            state.totals.retain(|_, (_, at)| now.duration_since(*at) < MAX_AGE);
        }
        for (sku, units) in fetched {
            state.totals.insert(sku, (units, now));
        }
    }

    /// Drops these SKUs.
    pub(crate) fn forget<'a>(&self, skus: impl IntoIterator<Item = &'a str>) {
        let mut state = self.state();
        state.generation += 1;
        for sku in skus {
            state.totals.remove(sku);
        }
    }

    /// Drops everything.
    pub(crate) fn forget_all(&self) {
        self.state().drop_all();
    }

    /// An announcement's payload: SKUs, comma-separated, or `*` for all, after the announcing
    /// store's origin and `:` (the triggers announce no origin).
    fn announced(&self, payload: &str) {
        let payload = match payload.split_once(':') {
            Some((origin, _)) if origin == self.origin => return,
            Some((_, skus)) => skus,
            None => payload,
        };
        if payload == "*" {
            self.forget_all();
        } else {
            self.forget(payload.split(','));
        }
    }

    fn set_live(&self, live: bool) {
        let mut state = self.state();
        state.drop_all();
        state.live = live;
    }

    /// Whether a listener is connected (for the tests).
    #[cfg(test)]
    pub(crate) fn is_live(&self) -> bool {
        self.state().live
    }
}

/// Whether a write that answered `outcome` may have changed stock: it did, or its outcome is
/// unknown (a commit whose answer was lost). A refusal (out of stock, a transition not allowed,
/// bad input) wrote nothing, and announcing it would drop other hosts' entries for nothing.
pub(crate) fn may_have_written<T>(outcome: &commerce_core::Result<T>) -> bool {
    matches!(
        outcome,
        Ok(_) | Err(commerce_core::Error::Storage(_) | commerce_core::Error::Unexpected(_))
    )
}

impl PgStore {
    /// After a write of stock that [`may_have_written`]: drops the SKUs here at once, then
    /// announces them to the other hosts.
    pub(crate) async fn stock_changed<'a>(&self, skus: impl IntoIterator<Item = &'a str>) {
        let mut skus: Vec<&str> = skus.into_iter().collect();
        skus.sort_unstable();
        skus.dedup();
        if skus.is_empty() {
            return;
        }
        self.stock.forget(skus.iter().copied());
        // The batch announces `*` for more than a payload holds.
        self.announce(&skus.join(",")).await;
    }

    /// As [`Self::stock_changed`], for changes whose SKUs are not known.
    pub(crate) async fn all_stock_changed(&self) {
        self.stock.forget_all();
        self.announce("*").await;
    }

    async fn announce(&self, payload: &str) {
        if let Err(e) = coalesce::coalesced::<Announcements>(self, payload.to_owned()).await {
            tracing::warn!(error = %e, "a stock change was not announced: other hosts read it again within 2 s");
        }
    }
}

/// Announcements of stock changes, coalesced: one `pg_notify` for everyone who announced while
/// the last one ran (a checkout announces its SKUs after its transaction, and at 32 clients
/// that statement was a tenth of a checkout's database CPU).
pub(crate) struct Announcements;

impl Batch for Announcements {
    /// A payload: SKUs, comma-separated, or `*`.
    type Ask = String;
    type Answer = ();
    const MOST_RUNNING: usize = 1;

    fn queue(store: &PgStore) -> &Queue<Self> {
        &store.queues.stock_announcements
    }

    fn run<'a>(store: &'a PgStore, asks: &'a [String]) -> BoxFuture<'a, Result<Vec<()>, sqlx::Error>> {
        Box::pin(async move {
            let mut skus: Vec<&str> = asks.iter().flat_map(|a| a.split(',')).collect();
            skus.sort_unstable();
            skus.dedup();
            let listed = skus.join(",");
            let all = skus.contains(&"*") || listed.len() > MAX_PAYLOAD;
            let payload = format!("{}:{}", store.stock.origin, if all { "*" } else { &listed });
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANNEL)
                .bind(payload)
                .execute(store.db())
                .await?;
            Ok(vec![(); asks.len()])
        })
    }
}

/// Listens for stock announcements on a connection of its own (not the store's pool, whose
/// connections the store leases), until the cache is dropped.
pub(crate) fn listen(cache: &Arc<StockCache>, options: PgConnectOptions) -> impl Future<Output = ()> + use<> {
    let mut alive = cache.alive.subscribe();
    let cache = Arc::downgrade(cache);
    async move {
        // Resolves once the cache is dropped (its sender with it).
        let dropped = async move { while alive.changed().await.is_ok() {} };
        tokio::select! {
            () = listen_until_dropped(cache, options) => {}
            () = dropped => {}
        }
    }
}

async fn listen_until_dropped(cache: Weak<StockCache>, options: PgConnectOptions) {
    loop {
        let connected = async {
            let pool = PgPoolOptions::new()
                .max_connections(1)
                .max_lifetime(None)
                .idle_timeout(None)
                .connect_with(options.clone())
                .await?;
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        }
        .await;
        let Some(live) = cache.upgrade() else { return };
        let mut listener = match connected {
            Ok(listener) => listener,
            Err(e) => {
                live.set_live(false);
                drop(live);
                tracing::warn!(error = %e, "stock announcements unavailable: stock is read from PostgreSQL");
                tokio::time::sleep(RECONNECT_AFTER).await;
                continue;
            }
        };
        live.set_live(true);
        drop(live);
        loop {
            let received = listener.try_recv().await;
            let Some(live) = cache.upgrade() else { return };
            match received {
                Ok(Some(notification)) => live.announced(notification.payload()),
                // Connected again: whatever was announced meanwhile is lost.
                Ok(None) => live.forget_all(),
                Err(e) => {
                    live.set_live(false);
                    tracing::warn!(error = %e, "stock announcements lost: stock is read from PostgreSQL");
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::Utc;
    use commerce_core::domain::{Actor, Sku, StockChange};
    use commerce_core::ports::InventoryStore;

    use sqlx::{Connection, PgConnection};

    use super::*;
    use crate::testing::fresh_store;

    impl StockCache {
        /// What is kept for `sku`, however old.
        fn peek(&self, sku: &str) -> Option<Option<i64>> {
            self.state().totals.get(sku).map(|(units, _)| *units)
        }

        fn go_live(&self) {
            self.set_live(true);
        }
    }

    fn skus(names: &[&str]) -> Vec<Sku> {
        names.iter().map(|n| Sku::parse(n).unwrap()).collect()
    }

    #[test]
    fn a_read_that_raced_a_change_keeps_nothing() {
        let cache = StockCache::default();
        let asked = skus(&["A-1", "B-1"]);
        assert_eq!(
            cache.lookup(&asked).generation,
            None,
            "nothing is kept before a listener is live"
        );
        cache.go_live();
        let raced = cache.lookup(&asked);
        assert_eq!(raced.missing, vec!["A-1".to_owned(), "B-1".to_owned()]);
        // A change to any SKU lands between the read's lookup and its fill.
        cache.forget(["Z-9"]);
        cache.fill(
            raced.generation.unwrap(),
            [("A-1".to_owned(), Some(3)), ("B-1".to_owned(), None)],
        );
        assert_eq!(cache.peek("A-1"), None, "a fill after a change keeps nothing");

        let read = cache.lookup(&asked);
        cache.fill(
            read.generation.unwrap(),
            [("A-1".to_owned(), Some(3)), ("B-1".to_owned(), None)],
        );
        let again = cache.lookup(&skus(&["A-1", "B-1", "A-1"]));
        assert_eq!(
            (again.known.get("A-1"), again.known.get("B-1"), again.missing.len()),
            (Some(&Some(3)), Some(&None), 0),
            "kept, never-stocked SKUs included"
        );
        cache.announced("B-1,C-1");
        assert_eq!((cache.peek("A-1"), cache.peek("B-1")), (Some(Some(3)), None));
        cache.announced("*");
        assert_eq!(cache.peek("A-1"), None, "* drops everything");
        cache.fill(again.generation.unwrap(), [("A-1".to_owned(), Some(3))]);
        cache.set_live(false);
        assert_eq!(cache.peek("A-1"), None, "a listener lost drops everything");
        assert!(
            cache.lookup(&asked).generation.is_none(),
            "and nothing is kept until it is back"
        );
    }

    #[test]
    fn the_stores_own_announcements_are_skipped_and_others_heeded() {
        let cache = StockCache::default();
        cache.go_live();
        let read = cache.lookup(&skus(&["A-1", "B-1", "C-1"]));
        let units = |sku: &str| (sku.to_owned(), Some(1));
        cache.fill(read.generation.unwrap(), [units("A-1"), units("B-1"), units("C-1")]);
        cache.announced(&format!("{}:A-1", cache.origin));
        cache.announced(&format!("{}:*", cache.origin));
        assert_eq!(
            cache.peek("A-1"),
            Some(Some(1)),
            "its own news: dropped before it announced"
        );
        cache.announced(&format!("{}:A-1", StockCache::default().origin));
        assert_eq!(cache.peek("A-1"), None, "another store's news");
        cache.announced("B-1");
        assert_eq!(cache.peek("B-1"), None, "a trigger's news, without an origin");
        cache.announced(&format!("{}:*", StockCache::default().origin));
        assert_eq!(cache.peek("C-1"), None, "another store's `*`");
    }

    #[test]
    fn only_writes_that_may_have_changed_stock_are_announced() {
        use commerce_core::Error;
        assert!(may_have_written(&Ok(())));
        assert!(may_have_written::<()>(&Err(Error::storage(std::io::Error::other(
            "lost"
        )))));
        assert!(!may_have_written::<()>(&Err(Error::invalid(
            "onHand",
            "below reserved"
        ))));
        assert!(!may_have_written::<()>(&Err(Error::OutOfStock {
            sku: "A-1".into(),
            requested: 2,
            available: 1
        })));
    }

    async fn set_stock(store: &PgStore, sku: &Sku, on_hand: i64) {
        let change = StockChange::SetOnHand(on_hand);
        store
            .change_stock(sku, "main", &change, &Actor::System, None, Utc::now())
            .await
            .unwrap();
    }

    async fn available(store: &PgStore, sku: &Sku) -> Option<i64> {
        let answer = store.available(std::slice::from_ref(sku)).await.unwrap();
        answer.first().map(|(_, units)| *units)
    }

    /// Polls `done` every 10 ms for up to 10 s.
    async fn until(what: &str, mut done: impl FnMut() -> bool) {
        for _ in 0..1_000 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{what}: not after 10 s");
    }

    /// Waits until the announcement of a change to `sku` dropped it, then reads it again.
    async fn read_once_dropped(store: &PgStore, sku: &Sku) -> Option<i64> {
        until("the announced SKU is dropped", || {
            store.stock.peek(sku.as_str()).is_none()
        })
        .await;
        available(store, sku).await
    }

    /// A connection to the store's database that is not the store's.
    async fn session_beside(store: &PgStore) -> PgConnection {
        PgConnection::connect_with(&store.pool().connect_options())
            .await
            .unwrap()
    }

    /// A store whose listener is live, with `on_hand` units of `sku` read once (so kept).
    async fn listening(sku: &Sku, on_hand: i64) -> PgStore {
        let store = fresh_store().await;
        set_stock(&store, sku, on_hand).await;
        assert_eq!(available(&store, sku).await, Some(on_hand));
        until("the listener is live", || store.stock.is_live()).await;
        assert_eq!(available(&store, sku).await, Some(on_hand));
        assert_eq!(store.stock.peek(sku.as_str()), Some(Some(on_hand)), "kept once live");
        store
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_hosts_own_writes_are_read_at_once() {
        let sku = Sku::parse("OWN-1").unwrap();
        let store = listening(&sku, 10).await;
        set_stock(&store, &sku, 3).await;
        assert_eq!(available(&store, &sku).await, Some(3), "no wait for the announcement");
        let never = Sku::parse("NEVER-1").unwrap();
        assert_eq!(available(&store, &never).await, None);
        set_stock(&store, &never, 4).await;
        assert_eq!(
            available(&store, &never).await,
            Some(4),
            "a SKU stocked after a read of none"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn another_hosts_change_is_dropped_when_announced() {
        let sku = Sku::parse("OTHER-1").unwrap();
        let store = listening(&sku, 10).await;
        let other_host = PgStore::new(
            PgPoolOptions::new()
                .max_connections(2)
                .connect_with((*store.pool().connect_options()).clone())
                .await
                .unwrap(),
        );
        set_stock(&other_host, &sku, 42).await;
        assert_eq!(read_once_dropped(&store, &sku).await, Some(42));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_scripts_change_is_announced_by_the_triggers() {
        let sku = Sku::parse("SCRIPT-1").unwrap();
        let store = listening(&sku, 10).await;
        // A session that is not the store's: the triggers announce for it.
        let mut script = session_beside(&store).await;
        sqlx::query("SET commerce.announce = on")
            .execute(&mut script)
            .await
            .unwrap();
        sqlx::query("UPDATE commerce.stock_levels SET on_hand = 43 WHERE sku = $1")
            .bind(sku.as_str())
            .execute(&mut script)
            .await
            .unwrap();
        assert_eq!(read_once_dropped(&store, &sku).await, Some(43));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lost_listener_drops_everything_and_listens_again() {
        let sku = Sku::parse("LOST-1").unwrap();
        let store = listening(&sku, 10).await;
        let ended: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
              WHERE datname = current_database() AND query LIKE 'LISTEN%'",
        )
        .fetch_all(store.pool())
        .await
        .unwrap();
        assert_eq!(ended, vec![true], "one listener");
        until("everything is dropped", || store.stock.peek(sku.as_str()).is_none()).await;
        until("the listener is back", || store.stock.is_live()).await;
        sqlx::query("UPDATE commerce.stock_levels SET on_hand = 7 WHERE sku = $1")
            .bind(sku.as_str())
            .execute(store.pool())
            .await
            .unwrap();
        assert_eq!(available(&store, &sku).await, Some(7));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dropped_store_hangs_up_its_listener() {
        let sku = Sku::parse("GONE-1").unwrap();
        let store = listening(&sku, 10).await;
        let mut watcher = session_beside(&store).await;
        let listeners = "SELECT count(*) FROM pg_stat_activity
                          WHERE datname = current_database() AND query LIKE 'LISTEN%'";
        let count: i64 = sqlx::query_scalar(listeners).fetch_one(&mut watcher).await.unwrap();
        assert_eq!(count, 1, "one listener while the store lives");
        drop(store);
        for _ in 0..500 {
            let count: i64 = sqlx::query_scalar(listeners).fetch_one(&mut watcher).await.unwrap();
            if count == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the listener's connection is still open 5 s after its store was dropped");
    }
}
