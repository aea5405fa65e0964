//! Test support (feature `testing`): a fresh, migrated PostgreSQL database per test, for this
//! crate's tests and for any crate testing on top of PostgreSQL (the HTTP host's).
//!
//! Every call of [`fresh_store`] gets a database of its own on the server named by
//! `TEST_DATABASE_URL`, named `commerce_test_<uuid v7>`, so tests run in parallel without
//! sharing state. A test cannot drop its database when it ends (the conformance macros have no
//! teardown), and `DROP DATABASE` forces a checkpoint, which is slow on a busy server. So
//! databases are recycled instead: a later test claims an idle one left by an earlier test or
//! run, wipes it and migrates it again (see `claim_idle_database`). The number of test
//! databases therefore stays near the most tests ever running at once (within
//! `IDLE_AFTER`), instead of growing with every run.

use std::str::FromStr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::PgStore;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, PgConnection};
use uuid::Uuid;

/// The server used when `TEST_DATABASE_URL` is not set (what `./scripts/test` exports).
const DEFAULT_URL: &str = "postgres://postgres:postgres@127.0.0.1:5432/postgres";

/// Prefix of every test database; the rest of the name is a UUIDv7, whose time says when it
/// was created or last claimed.
const PREFIX: &str = "commerce_test_";

/// A test database is only claimed when it was created or claimed longer ago than this and
/// nobody is connected to it. A test's pool keeps a connection open for the whole test, so the
/// margin only has to cover the moment between naming a database and connecting to it (at most
/// [`ACQUIRE_TIMEOUT`], when the server is out of connections).
const IDLE_AFTER: Duration = Duration::from_secs(2 * 60);

/// Connections per test database. Many tests run at once against a server with
/// `max_connections = 100`, so keep it small; the pool waits (and retries "too many clients")
/// up to [`ACQUIRE_TIMEOUT`] rather than failing.
const POOL_SIZE: u32 = 5;
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(60);

/// A store on a migrated database of its own, holding no data.
///
/// # Panics
/// Loudly, saying how to start PostgreSQL, when the server does not answer; when the database
/// cannot be created or migrated. Tests never skip for want of a database.
pub async fn fresh_store() -> PgStore {
    let url = std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned());
    let server = PgConnectOptions::from_str(&url)
        .unwrap_or_else(|e| panic!("TEST_DATABASE_URL={url:?} is not a PostgreSQL URL: {e}"));
    let mut admin = admin_connection(&server, &url).await;
    let name = format!("{PREFIX}{}", Uuid::now_v7().simple());
    let recycled = claim_idle_database(&mut admin, &name).await;
    if !recycled {
        // The name is ours (a fixed prefix and hex digits), so formatting it into SQL is safe.
        sqlx::query(AssertSqlSafe(format!(r#"CREATE DATABASE "{name}""#)))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("cannot create test database {name} on {url}: {e}"));
    }
    let _ = admin.close().await;

    // One connection stays open while the store lives (no idle timeout, no maximum lifetime):
    // that is what keeps other tests from claiming this database meanwhile.
    let pool = PgPoolOptions::new()
        .max_connections(POOL_SIZE)
        .min_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(crate::with_session_settings(server.database(&name)))
        .await
        .unwrap_or_else(|e| panic!("cannot connect to test database {name}: {e}"));
    if recycled {
        wipe(&pool).await;
    }
    crate::migrate(&pool)
        .await
        .unwrap_or_else(|e| panic!("cannot migrate test database {name}: {e}"));
    PgStore::new(pool)
}

/// A connection to the server's maintenance database, waiting out "too many clients" (many
/// tests start at once) but failing at once, and loudly, when no server answers.
async fn admin_connection(server: &PgConnectOptions, url: &str) -> PgConnection {
    let deadline = Instant::now() + ACQUIRE_TIMEOUT;
    loop {
        match server.connect().await {
            Ok(conn) => return conn,
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("53300") && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!(
                "\n\n*** PostgreSQL is not reachable at {url} ({e}).\n\
                 *** The commerce-pg tests need a real server; they never skip.\n\
                 *** Start it with `./scripts/test` (starts or installs it, then runs the tests), or:\n\
                 ***     pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start\n\
                 *** or point TEST_DATABASE_URL at a server you may create databases on.\n\n"
            ),
        }
    }
}

/// Claims an idle test database by renaming it to `name`; whether one was claimed.
///
/// The rename is the lock: PostgreSQL refuses to rename a database anyone is connected to, and
/// of two sessions renaming the same database only one succeeds. Databases named (created or
/// claimed) within [`IDLE_AFTER`] are skipped, as their test may not have connected yet.
async fn claim_idle_database(admin: &mut PgConnection, name: &str) -> bool {
    // Random order, so tests starting together do not all race for the same database.
    let candidates: Vec<String> = sqlx::query_scalar(
        "SELECT datname FROM pg_database
          WHERE starts_with(datname, $1) AND datallowconn AND datconnlimit <> -2
          ORDER BY random()",
    )
    .bind(PREFIX)
    .fetch_all(&mut *admin)
    .await
    .unwrap_or_default();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    for old in candidates {
        let named_at = old
            .strip_prefix(PREFIX)
            .and_then(|id| Uuid::try_parse(id).ok())
            .and_then(|id| id.get_timestamp())
            .map(|ts| Duration::from_secs(ts.to_unix().0));
        let Some(named_at) = named_at else { continue };
        if now.saturating_sub(named_at) <= IDLE_AFTER {
            continue;
        }
        // `old` is the prefix and a parsed UUID, `name` ours: both safe to format into SQL.
        let rename = format!(r#"ALTER DATABASE "{old}" RENAME TO "{name}""#);
        if sqlx::query(AssertSqlSafe(rename)).execute(&mut *admin).await.is_ok() {
            return true;
        }
    }
    false
}

/// Removes everything an earlier test left in a recycled database.
async fn wipe(pool: &PgPool) {
    sqlx::raw_sql("DROP SCHEMA IF EXISTS commerce CASCADE; DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
        .execute(pool)
        .await
        .unwrap_or_else(|e| panic!("cannot wipe a recycled test database: {e}"));
}
