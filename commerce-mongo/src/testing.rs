//! Test support (feature `testing`): a fresh database per test on a real MongoDB-wire server.
//!
//! The server is the one `./scripts/test` starts (`TEST_MONGO_URI`, by default the
//! SecantusDB test server on 127.0.0.1:27517). Tests never skip: an unreachable server fails
//! them, saying how to start it.

use std::sync::Once;
use std::time::{Duration, SystemTime};

use crate::MongoStore;
use mongodb::Client;
use mongodb::options::ClientOptions;
use uuid::Uuid;

/// Used when `TEST_MONGO_URI` is not set: the server `scripts/services.sh` starts.
pub const DEFAULT_URI: &str = "mongodb://127.0.0.1:27517/?directConnection=true&retryWrites=false";

/// Prefix of every test database; the rest is a UUIDv7, so its age can be read off the name.
pub const DB_PREFIX: &str = "commerce_test_";

/// Test databases older than this are dropped by the next test run (left by killed runs).
const STALE_AFTER: Duration = Duration::from_secs(30 * 60);

/// The server under test.
pub fn uri() -> String {
    std::env::var("TEST_MONGO_URI").unwrap_or_else(|_| DEFAULT_URI.to_owned())
}

fn unreachable(uri: &str, error: &dyn std::fmt::Display) -> ! {
    panic!(
        "\n\nThe MongoDB-wire test server at {uri} is not reachable: {error}\n\
         Start it with `source scripts/services.sh && ensure_mongo` from the workspace root \
         (or run `./scripts/test`, which starts it), or point TEST_MONGO_URI at a MongoDB \
         server. Tests never skip.\n"
    )
}

/// A client with a short server selection timeout, so a missing server fails fast.
pub async fn client() -> Client {
    let uri = uri();
    let mut options = ClientOptions::parse(&uri)
        .await
        .unwrap_or_else(|e| unreachable(&uri, &e));
    options.server_selection_timeout = Some(Duration::from_secs(3));
    options.connect_timeout = Some(Duration::from_secs(3));
    Client::with_options(options).unwrap_or_else(|e| unreachable(&uri, &e))
}

/// A fresh, uniquely named database name.
pub fn fresh_name() -> String {
    format!("{DB_PREFIX}{}", Uuid::now_v7().simple())
}

/// A store on a database of its own, with its indexes created.
pub async fn fresh_store() -> MongoStore {
    let client = client().await;
    let store = MongoStore::new(client.database(&fresh_name()));
    if let Err(e) = store.ensure_indexes().await {
        unreachable(&uri(), &e);
    }
    sweep_stale(&client).await;
    store
}

/// Drops the store's database (tests that can, call it at the end).
pub async fn drop(store: &MongoStore) {
    if let Err(e) = store.database().drop().await {
        panic!("cannot drop test database: {e}");
    }
}

/// Once per test process, drops test databases created more than [`STALE_AFTER`] ago, so
/// runs that could not clean up (the conformance macro owns the store) do not pile up.
async fn sweep_stale(client: &Client) {
    static ONCE: Once = Once::new();
    let mut first = false;
    ONCE.call_once(|| first = true);
    if !first {
        return;
    }
    let Ok(names) = client.list_database_names().await else {
        return;
    };
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    for name in names {
        let Some(id) = name.strip_prefix(DB_PREFIX).and_then(|s| Uuid::parse_str(s).ok()) else {
            continue;
        };
        let Some((secs, nanos)) = id.get_timestamp().map(|t| t.to_unix()) else {
            continue;
        };
        let created = Duration::new(secs, nanos);
        if now.saturating_sub(created) > STALE_AFTER {
            let _ = client.database(&name).drop().await;
        }
    }
}
