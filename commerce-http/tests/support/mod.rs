//! Builds the real host over an engine for tests.
#![allow(dead_code, unused_macros, clippy::unwrap_used, clippy::expect_used)]

/// Runs each named test body once per backend, as `tokio` tests in one module per backend:
///
/// ```ignore
/// on_backends!({memory => crate::support::memory_client(), mongo => crate::support::mongo_client().await}
///     first_test, second_test);
/// ```
///
/// makes `memory::first_test`, `mongo::first_test`, ... Each backend expression (evaluated in
/// the test's async body) yields `(client, env)`; the body is called as
/// `super::name(&client, &env)`. Use it after `#[macro_use] mod support;`.
macro_rules! on_backends {
    ({} $($name:ident),* $(,)?) => {};
    ({$backend:ident => $make:expr $(, $more:ident => $more_make:expr)* $(,)?} $($name:ident),* $(,)?) => {
        mod $backend {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (cli, env) = $make;
                super::$name(&cli, &env).await;
            })*
        }
        on_backends!({$($more => $more_make),*} $($name),*);
    };
}

use commerce_core::services::{HashCost, TokenConfig};
use commerce_core::{Commerce, CommerceConfig};
use commerce_http::Config;
use poem::test::{TestClient, TestResponse};
use poem::{Endpoint, EndpointExt, Response};
use serde_json::Value;

pub type Client = TestClient<poem::endpoint::BoxEndpoint<'static, Response>>;

pub const SECRET: &[u8] = b"test-secret-test-secret-test-secret!";

pub fn test_config() -> CommerceConfig {
    CommerceConfig {
        tokens: TokenConfig::new(SECRET.to_vec()).unwrap(),
        hash_cost: HashCost::insecure_for_tests(),
        ..CommerceConfig::default()
    }
}

pub fn host_config() -> Config {
    let mut c = Config::in_memory();
    c.max_body_bytes = 64 * 1024;
    c.cookie_secure = false;
    c.stripe_webhook_secret = Some(WEBHOOK_SECRET.to_owned());
    // Tests sign in many times from one client; the limiter has its own test.
    c.auth_rate_limit_per_minute = 0;
    c
}

/// The webhook secret the test host verifies with.
pub const WEBHOOK_SECRET: &str = "whsec_test_secret";

pub fn client_for(commerce: &Commerce) -> Client {
    let app = commerce_http::build_app(commerce, &host_config());
    TestClient::new(app.map_to_response().boxed())
}

pub fn memory_client() -> (Client, Commerce) {
    let commerce = Commerce::in_memory(test_config()).unwrap();
    (client_for(&commerce), commerce)
}

/// Asserts an RFC 9457 problem with this status and code; returns the body.
/// The fields a validation problem names, in order.
pub fn problem_fields(problem: &Value) -> Vec<&str> {
    problem["errors"]
        .as_array()
        .map(|errors| errors.iter().filter_map(|e| e["field"].as_str()).collect())
        .unwrap_or_default()
}

pub async fn assert_problem(resp: TestResponse, status: u16, code: &str) -> Value {
    assert_eq!(resp.0.status().as_u16(), status, "status");
    let ct = resp
        .0
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(ct.starts_with("application/problem+json"), "content-type {ct}");
    let request_id = resp
        .0
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body: Value = resp.json().await.value().deserialize();
    assert_eq!(body["status"], status, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert!(body["type"].as_str().is_some_and(|t| !t.is_empty()), "{body}");
    assert!(body["title"].as_str().is_some_and(|t| !t.is_empty()), "{body}");
    assert!(body["detail"].as_str().is_some(), "{body}");
    assert_eq!(body["requestId"].as_str().map(str::to_owned), request_id, "{body}");
    body
}

pub async fn json(resp: TestResponse) -> Value {
    resp.json().await.value().deserialize()
}

pub fn is_endpoint<E: Endpoint>(_: &E) {}

/// The host with accounts on a fresh PostgreSQL database (the rest in memory).
pub async fn postgres_client() -> (Client, Commerce) {
    let pg = commerce_pg::testing::fresh_store().await;
    let commerce = Commerce::builder()
        .config(test_config())
        .accounts(std::sync::Arc::new(pg))
        .build()
        .unwrap();
    assert_eq!(commerce.backends()[0].1, "postgres");
    (client_for(&commerce), commerce)
}

/// The host over the in-memory engine, storing images in `images` (so tests can look at them).
pub fn memory_client_with_images(images: commerce_core::memory::MemoryImageStore) -> (Client, Commerce) {
    let commerce = Commerce::builder()
        .config(test_config())
        .images(std::sync::Arc::new(images))
        .build()
        .unwrap();
    (client_for(&commerce), commerce)
}

/// The host with the catalog on a fresh MongoDB database (the rest in memory).
pub async fn mongo_client() -> (Client, Commerce) {
    mongo_client_with_images(commerce_core::memory::MemoryImageStore::new()).await
}

/// [`mongo_client`], storing images in `images`.
pub async fn mongo_client_with_images(images: commerce_core::memory::MemoryImageStore) -> (Client, Commerce) {
    let store = commerce_mongo::testing::fresh_store().await;
    let commerce = Commerce::builder()
        .config(test_config())
        .catalog(std::sync::Arc::new(store))
        .images(std::sync::Arc::new(images))
        .build()
        .unwrap();
    assert_eq!(commerce.backends()[1].1, "mongodb");
    (client_for(&commerce), commerce)
}

/// The production layout: accounts and checkout on a fresh PostgreSQL database, the catalog
/// and carts on a fresh MongoDB database; the checkout saga crosses the two.
pub async fn full_stack_client() -> (Client, Commerce) {
    let pg = std::sync::Arc::new(commerce_pg::testing::fresh_store().await);
    let mongo = commerce_mongo::testing::fresh_store().await;
    let commerce = Commerce::builder()
        .config(test_config())
        .accounts(pg.clone())
        .checkout(pg)
        .catalog(std::sync::Arc::new(mongo))
        .build()
        .unwrap();
    let backends: Vec<&str> = commerce.backends().iter().map(|(_, b)| *b).collect();
    assert_eq!(backends, ["postgres", "mongodb", "postgres"]);
    (client_for(&commerce), commerce)
}
