//! Catalog benchmark: product list, search and get-by-id through the host at 1 and 32
//! concurrent clients over a seeded catalog, on the in-memory adapter and (when
//! `BENCH_MONGO_URI` is set) on MongoDB for the catalog.
//!
//! Run: `cargo bench -p commerce-benches --bench catalog` (`BENCH_PRODUCTS`, default 10000).
//! Requests go through the real host (`commerce_http::build_app`) in process.

use std::sync::Arc;
use std::time::Duration;

use commerce_benches::drive;
use commerce_core::services::{HashCost, SearchInput};
use commerce_core::{Commerce, CommerceConfig};
use poem::{Endpoint, Request};

const RUN: Duration = Duration::from_secs(5);

/// The request path for worker `w`, given the product ids.
type PathFor = fn(usize, &[String]) -> String;

async fn scenario(label: &str, commerce: Commerce, products: usize) {
    let admin = commerce
        .accounts()
        .ensure_superadmin("owner@bench.example", "owner-password")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let started = std::time::Instant::now();
    let options = commerce_core::demo::DemoOptions {
        products,
        reviewers: 2,
        reviewed_products: 20,
        seed: 11,
    };
    commerce_core::demo::seed(&commerce, &commerce_core::demo::seeding_principal(admin.id), options)
        .await
        .unwrap_or_else(|e| panic!("seed: {e}"));
    println!(
        "\n== {label}: {products} products seeded in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let listed = commerce
        .catalog()
        .search(None, SearchInput::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let ids: Arc<Vec<String>> = Arc::new(listed.page.items.iter().map(|p| p.id.to_string()).collect());
    let app = Arc::new(commerce_http::build_app(&commerce, &commerce_http::Config::in_memory()));
    let cases: [(&str, PathFor); 4] = [
        ("GET /products/:id", |w, ids| {
            format!("/api/v1/products/{}", ids[w % ids.len()])
        }),
        ("GET /products?page", |w, _| {
            format!("/api/v1/products?page={}&limit=20", 1 + w % 10)
        }),
        ("GET /products?q=", |w, _| {
            format!(
                "/api/v1/products?q={}",
                ["lamp", "cotton%20tee", "creme", "skillet", "wool%20jacket"][w % 5]
            )
        }),
        ("GET /categories", |_, _| "/api/v1/categories".to_owned()),
    ];
    for (name, path) in cases {
        for clients in [1, 32] {
            let (app, ids) = (app.clone(), ids.clone());
            let s = drive(clients, RUN, move |w| {
                let (app, ids) = (app.clone(), ids.clone());
                async move {
                    app.call(Request::builder().uri_str(path(w, &ids)).finish())
                        .await
                        .is_ok_and(|r| r.status().is_success())
                }
            })
            .await;
            println!("{name:<22} {clients:>2} clients: {s}");
        }
    }
}

#[tokio::main]
async fn main() {
    let products = std::env::var("BENCH_PRODUCTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let config = || CommerceConfig {
        hash_cost: HashCost::insecure_for_tests(),
        ..CommerceConfig::default()
    };
    let memory = Commerce::in_memory(config()).unwrap_or_else(|e| panic!("{e}"));
    scenario("in-memory", memory, products).await;
    if let Ok(uri) = std::env::var("BENCH_MONGO_URI") {
        let db = format!("commerce_bench_{}", std::process::id());
        let store = commerce_mongo::MongoStore::open(&uri, &db)
            .await
            .unwrap_or_else(|e| panic!("mongo: {e}"));
        let commerce = Commerce::builder()
            .config(config())
            .catalog(Arc::new(store.clone()))
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        scenario("MongoDB catalog (on the test server)", commerce, products).await;
        let _ = store.database().drop().await;
    }
}
