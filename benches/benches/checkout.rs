//! Checkout benchmark: orders per second and latency through the host with PostgreSQL for
//! orders and stock (catalog and carts in memory), set beside `pgbench` (TPC-B-like and
//! select-only) against the same server in the same run.
//!
//! Run: `cargo bench -p commerce-benches --bench checkout`. Needs PostgreSQL
//! (`BENCH_DATABASE_URL`, default `postgres://postgres:postgres@127.0.0.1:5432/postgres`) and
//! `pgbench` on the PATH; creates and drops its own databases.

use std::sync::Arc;
use std::time::{Duration, Instant};

use commerce_benches::Samples;
use commerce_core::services::{
    AddressInput, HashCost, MoneyInput, NewAccount, Principal, ProductInput, StockInput, VariantInput,
};
use commerce_core::{Commerce, CommerceConfig};
use poem::{Endpoint, Request, http::Method};
use sqlx::{Connection, Executor};

const RUN: Duration = Duration::from_secs(10);

fn url_for(base: &str, db: &str) -> String {
    match base.rsplit_once('/') {
        Some((head, _)) => format!("{head}/{db}"),
        None => format!("{base}/{db}"),
    }
}

async fn recreate(base: &str, db: &str) {
    let mut admin = sqlx::PgConnection::connect(base)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {base}: {e}"));
    let _ = admin
        .execute(sqlx::AssertSqlSafe(format!(r#"DROP DATABASE IF EXISTS "{db}""#)))
        .await;
    admin
        .execute(sqlx::AssertSqlSafe(format!(r#"CREATE DATABASE "{db}""#)))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

fn pgbench(url: &str, args: &[&str]) -> Option<f64> {
    let out = std::process::Command::new("pgbench")
        .args(args)
        .arg(url)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|n| n.parse().ok())
}

fn post(path: &str, bearer: &str, body: serde_json::Value, key: Option<String>) -> Request {
    let mut b = Request::builder()
        .method(Method::POST)
        .uri_str(path)
        .content_type("application/json")
        .header("authorization", bearer);
    if let Some(k) = key {
        b = b.header("idempotency-key", k);
    }
    b.body(body.to_string())
}

#[tokio::main]
async fn main() {
    let base = std::env::var("BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/postgres".to_owned());
    let db = format!("commerce_bench_{}", std::process::id());
    recreate(&base, &db).await;
    let mut pg_config = commerce_pg::PgConfig::new(url_for(&base, &db));
    pg_config.max_connections = 32;
    let pg = Arc::new(
        commerce_pg::PgStore::open(&pg_config)
            .await
            .unwrap_or_else(|e| panic!("{e}")),
    );
    let config = CommerceConfig {
        hash_cost: HashCost::insecure_for_tests(),
        ..CommerceConfig::default()
    };
    let commerce = Commerce::builder()
        .config(config)
        .accounts(pg.clone())
        .checkout(pg)
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let owner = commerce
        .accounts()
        .ensure_superadmin("owner@bench.example", "owner-password")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let admin = Principal {
        user_id: owner.id,
        role: owner.role,
    };
    for n in 0..20 {
        let sku = format!("BENCH-{n}");
        let input = ProductInput {
            name: format!("Bench item {n}"),
            status: Some("active".into()),
            variants: vec![VariantInput {
                sku: sku.clone(),
                price: MoneyInput {
                    amount: 1_000 + n,
                    currency: "USD".into(),
                },
                ..Default::default()
            }],
            ..ProductInput::default()
        };
        commerce
            .catalog()
            .create_product(&admin, input)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        commerce
            .inventory()
            .set_stock(
                &admin,
                &sku,
                StockInput {
                    on_hand: Some(100_000_000),
                    ..Default::default()
                },
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let app = Arc::new(commerce_http::build_app(&commerce, &commerce_http::Config::in_memory()));
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    println!("machine: {cpus} CPUs; PostgreSQL for orders and stock, catalog and carts in memory");

    for clients in [1usize, 32] {
        let mut bearers = Vec::new();
        for c in 0..clients {
            let email = format!("buyer{clients}-{c}@bench.example");
            let s = commerce
                .accounts()
                .register(NewAccount {
                    email,
                    password: "password-123".into(),
                    first_name: "B".into(),
                    last_name: "U".into(),
                    phone: None,
                })
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let who = Principal {
                user_id: s.user.id,
                role: s.user.role,
            };
            let fields = commerce_core::domain::AddressFields {
                first_name: "B".into(),
                last_name: "U".into(),
                line1: "1 Bench Rd".into(),
                city: "Loadtown".into(),
                postal_code: "1".into(),
                country: "US".into(),
                ..Default::default()
            };
            commerce
                .accounts()
                .add_address(
                    &who,
                    AddressInput {
                        fields,
                        is_default: true,
                    },
                )
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            bearers.push(format!("Bearer {}", s.access.token));
        }
        let start = Instant::now();
        let deadline = start + RUN;
        let workers = bearers.into_iter().enumerate().map(|(w, bearer)| {
            let app = app.clone();
            tokio::spawn(async move {
                let mut samples = Samples::default();
                let mut n = 0u64;
                while Instant::now() < deadline {
                    let sku = format!("BENCH-{}", (w + n as usize) % 20);
                    let added = app
                        .call(post(
                            "/api/v1/cart/items",
                            &bearer,
                            serde_json::json!({"sku": sku, "quantity": 1}),
                            None,
                        ))
                        .await;
                    let t = Instant::now();
                    let placed = app
                        .call(post(
                            "/api/v1/orders",
                            &bearer,
                            serde_json::json!({}),
                            Some(format!("w{w}-{n}")),
                        ))
                        .await;
                    let ok = added.is_ok_and(|r| r.status().is_success())
                        && placed.is_ok_and(|r| r.status().as_u16() == 201);
                    samples.record(t.elapsed(), ok);
                    n += 1;
                }
                samples
            })
        });
        let mut all = Samples::default();
        for w in futures::future::join_all(workers).await {
            all.merge(w.unwrap_or_default());
        }
        println!(
            "checkout (POST /orders), {clients:>2} clients: {}",
            all.summary(start.elapsed())
        );
    }

    let pgbench_db = format!("{db}_pgbench");
    recreate(&base, &pgbench_db).await;
    let pgbench_url = url_for(&base, &pgbench_db);
    let init = std::process::Command::new("pgbench")
        .args(["-i", "-q", "-s", "10"])
        .arg(&pgbench_url)
        .output();
    if init.is_ok_and(|o| o.status.success()) {
        for (name, extra) in [("TPC-B-like", vec![]), ("select-only", vec!["-S"])] {
            for clients in ["1", "32"] {
                let mut args = vec!["-c", clients, "-j", "2", "-T", "10", "-n"];
                args.extend(extra.iter().copied());
                match pgbench(&pgbench_url, &args) {
                    Some(tps) => println!("pgbench {name}, {clients:>2} clients: {tps:>10.1} tps"),
                    None => println!("pgbench {name}, {clients:>2} clients: failed"),
                }
            }
        }
    } else {
        println!("pgbench: not available (install postgresql-contrib or put pgbench on the PATH)");
    }
    let mut admin = sqlx::PgConnection::connect(&base)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    drop(commerce);
    tokio::time::sleep(Duration::from_millis(200)).await;
    for d in [&db, &pgbench_db] {
        let _ = admin
            .execute(sqlx::AssertSqlSafe(format!(
                r#"DROP DATABASE IF EXISTS "{d}" WITH (FORCE)"#
            )))
            .await;
    }
}
