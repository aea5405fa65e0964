#![doc = include_str!("../README.md")]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use commerce_core::ports::HealthCheck;
use sqlx::Connection;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

mod accounts;
mod coalesce;
mod codec;
mod error;
mod idempotency;
mod inventory;
mod lease;
mod orders;
mod payments;
mod retry;
mod stock_cache;
#[cfg(feature = "testing")]
pub mod testing;

use coalesce::Queues;
pub use error::PgError;
use error::StorageResult;
use lease::Connections;
use stock_cache::StockCache;

/// The library's migrations (from `migrations/`), applied into the `commerce` schema with the
/// migrations table `commerce._sqlx_migrations` (see `commerce-pg/sqlx.toml`).
pub static MIGRATOR: Migrator = sqlx::migrate!();

/// Pool settings.
#[derive(Debug, Clone)]
pub struct PgConfig {
    /// `postgres://user:pass@host:port/db`.
    pub url: String,
    /// Most connections open at once.
    pub max_connections: u32,
    /// How long to wait for a free connection before failing the request.
    pub acquire_timeout: Duration,
}

impl PgConfig {
    /// Defaults for `url`: 16 connections, 5 s acquire timeout.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

/// A pooled connection idle longer than this is pinged before it is handed out; one used more
/// recently is known to be live, and the ping (a round trip) would only slow the request.
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

/// The connect options of `url` with the session settings the store's statements are written
/// for (see [`with_session_settings`]).
///
/// # Errors
/// [`PgError`] when the URL is malformed.
pub fn connect_options(url: &str) -> Result<PgConnectOptions, PgError> {
    let options: PgConnectOptions = url.parse()?;
    Ok(with_session_settings(options))
}

/// Adds the store's session settings to `options` (sent with the connection's start-up, so no
/// round trip): prepared statements use their generic plan (`plan_cache_mode`), and stock
/// changes are announced by the store after its transactions rather than by the triggers as
/// they commit (`commerce.announce`, see `migrations/0005_stock_notify.sql`).
///
/// The store's statements read and write rows by key, and their plans do not depend on the
/// values; but PostgreSQL plans afresh every run of a statement taking an array (`sku =
/// ANY($1)`, `UNNEST`), because a plan for the array's known length looks cheaper than the
/// generic one, and a checkout's statements take arrays: replanning them cost ~0.2-0.4 ms of
/// database CPU per order. A pool opened without these settings works the same, only slower.
pub fn with_session_settings(options: PgConnectOptions) -> PgConnectOptions {
    options.options([("plan_cache_mode", "force_generic_plan"), ("commerce.announce", "off")])
}

/// Opens a pool (with [`connect_options`]).
///
/// # Errors
/// [`PgError`] when the URL is malformed or the server does not answer.
pub async fn connect(config: &PgConfig) -> Result<PgPool, PgError> {
    let options = connect_options(&config.url)?;
    let pool = PgPoolOptions::new()
        .max_connections(config.max_connections)
        .acquire_timeout(config.acquire_timeout)
        // Instead of sqlx's ping on every acquire: a connection found dead is closed, and the
        // pool hands out another.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move { Ok(meta.idle_for < PING_IF_IDLE_FOR || conn.ping().await.is_ok()) })
        })
        .connect_with(options)
        .await?;
    Ok(pool)
}

/// Applies every pending migration.
///
/// # Errors
/// [`PgError`] when a migration fails or an applied one was edited.
pub async fn migrate(pool: &PgPool) -> Result<(), PgError> {
    MIGRATOR.run(pool).await?;
    Ok(())
}

/// The PostgreSQL adapter: implements the accounts and checkout ports over one pool.
///
/// All but one of the pool's connections at most stay leased to the store between statements
/// (see `lease.rs`): a statement that ran to its end hands its connection straight to the next
/// one, without the round trip sqlx's pool spends testing every connection handed back to it.
/// Some statements asked for together run as one (see `coalesce.rs`).
#[derive(Debug, Clone)]
pub struct PgStore {
    conns: Arc<Connections>,
    queues: Arc<Queues>,
    stock: Arc<StockCache>,
}

impl PgStore {
    /// Wraps a pool whose database has been migrated. Open it with [`connect`], or with
    /// [`connect_options`] for the store's session settings.
    pub fn new(pool: PgPool) -> Self {
        Self {
            conns: Arc::new(Connections::new(pool)),
            queues: Arc::default(),
            stock: Arc::default(),
        }
    }

    /// The cache of available units, its listener started on first use (in a task, so from
    /// within a Tokio runtime).
    fn stock_cache(&self) -> &StockCache {
        if self.stock.start_listening() {
            let options = (*self.pool().connect_options()).clone();
            tokio::spawn(stock_cache::listen(&self.stock, options));
        }
        &self.stock
    }

    /// Where the store's statements run: a leased connection per statement.
    fn db(&self) -> &Connections {
        &self.conns
    }

    /// Connects and migrates.
    ///
    /// # Errors
    /// [`PgError`] as for [`connect`] and [`migrate`].
    pub async fn open(config: &PgConfig) -> Result<Self, PgError> {
        let pool = connect(config).await?;
        migrate(&pool).await?;
        Ok(Self::new(pool))
    }

    /// The pool, for embedders sharing it. Closing it waits for the connections the store
    /// keeps: drop every clone of the store first.
    pub fn pool(&self) -> &PgPool {
        self.conns.pool()
    }
}

#[async_trait]
impl HealthCheck for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn ping(&self) -> commerce_core::Result<()> {
        sqlx::query("SELECT 1").execute(self.db()).await.storage()?;
        Ok(())
    }
}
