//! Authentication benchmark: login throughput and p99 at the configured argon2id cost beside the
//! raw argon2id hash rate, and the per-request cost of access-token verification.
//!
//! Run: `cargo bench -p commerce-benches --bench auth`. Requests go through the real host
//! (`commerce_http::build_app`) in process, so the figures are the host's own cost without the
//! network. Record results in benches/README.md.

use std::time::{Duration, Instant};

use chrono::Utc;
use commerce_benches::{drive, raw_hash_rate};
use commerce_core::domain::{Role, UserId};
use commerce_core::services::{HashCost, TokenConfig};
use commerce_core::{Commerce, CommerceConfig};
use poem::{Endpoint, Request, http::Method};

const RUN: Duration = Duration::from_secs(5);

fn post_json(path: &str, body: &serde_json::Value) -> Request {
    Request::builder()
        .method(Method::POST)
        .uri_str(path)
        .content_type("application/json")
        .body(body.to_string())
}

#[tokio::main]
async fn main() {
    let cost = HashCost::default();
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    let config = CommerceConfig {
        tokens: TokenConfig::ephemeral(),
        hash_cost: cost,
        ..CommerceConfig::default()
    };
    let commerce = Commerce::in_memory(config).unwrap_or_else(|e| panic!("engine: {e}"));
    // Every login of the run comes from one address: the per-address limit on credential
    // endpoints would refuse all but the first few.
    let host = commerce_http::Config {
        auth_rate_limit_per_minute: 0,
        ..commerce_http::Config::in_memory()
    };
    let app = std::sync::Arc::new(commerce_http::build_app(&commerce, &host));

    let users = 64;
    for i in 0..users {
        let body = serde_json::json!({"email": format!("bench{i}@example.com"), "password": "password-123", "firstName": "B", "lastName": "U"});
        let resp = app.call(post_json("/api/v1/auth/register", &body)).await;
        assert!(resp.is_ok_and(|r| r.status().is_success()), "register failed");
    }
    let session = commerce
        .accounts()
        .login("bench0@example.com", "password-123")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let bearer = format!("Bearer {}", session.access.token);

    println!(
        "machine: {cpus} CPUs; argon2id m={} KiB t={} p={}",
        cost.memory_kib, cost.iterations, cost.parallelism
    );
    let at_once = cost.hashes_at_once(cpus);
    let raw_one = raw_hash_rate(cost, 1, 4.0).unwrap_or_else(|e| panic!("{e}"));
    let raw = raw_hash_rate(cost, at_once, 4.0).unwrap_or_else(|e| panic!("{e}"));
    println!("raw argon2id hashes (1 at once):         {raw_one:>10.1}/s");
    println!("raw argon2id hashes ({at_once} at once):         {raw:>10.1}/s");

    for clients in [1, 32] {
        let app = app.clone();
        let s = drive(clients, RUN, move |worker| {
            let app = app.clone();
            async move {
                let body = serde_json::json!({"email": format!("bench{}@example.com", worker % 64), "password": "password-123"});
                app.call(post_json("/api/v1/auth/login", &body)).await.is_ok_and(|r| r.status().is_success())
            }
        })
        .await;
        // The limit at the same parallelism: one client's logins hash one at a time.
        let limit = if clients == 1 { raw_one } else { raw };
        let ratio = 100.0 * s.per_second / limit;
        println!(
            "login, {clients:>2} clients:                 {s}   = {ratio:.0}% of the raw hash rate at that parallelism"
        );
    }

    for clients in [1, 32] {
        let (app_h, app_p, bearer) = (app.clone(), app.clone(), bearer.clone());
        let health = drive(clients, RUN, move |_| {
            let app = app_h.clone();
            async move {
                app.call(Request::builder().uri_str("/healthz").finish())
                    .await
                    .is_ok_and(|r| r.status().is_success())
            }
        })
        .await;
        let profile = drive(clients, RUN, move |_| {
            let (app, bearer) = (app_p.clone(), bearer.clone());
            async move {
                let req = Request::builder()
                    .uri_str("/api/v1/users/profile")
                    .header("authorization", bearer)
                    .finish();
                app.call(req).await.is_ok_and(|r| r.status().is_success())
            }
        })
        .await;
        println!("GET /healthz, {clients:>2} clients:            {health}");
        println!("GET /users/profile (JWT), {clients:>2} clients: {profile}");
    }

    // A token's first use is decoded and its signature checked; later uses of the same token
    // are recognised from the issuer's memory of verified tokens (expiry still checked).
    let issuer = commerce.accounts().tokens();
    let fresh: Vec<String> = (0..20_000)
        .filter_map(|_| issuer.issue_access(UserId::new(), Role::Customer, Utc::now()).ok())
        .map(|t| t.token)
        .collect();
    let start = Instant::now();
    let ok = fresh.iter().filter(|t| issuer.verify_access(t).is_ok()).count();
    let first = start.elapsed() / u32::try_from(fresh.len().max(1)).unwrap_or(u32::MAX);
    println!(
        "verify_access, a token's first use: {:.2} µs ({ok} of {} valid)",
        first.as_secs_f64() * 1e6,
        fresh.len()
    );
    let n = 200_000;
    let start = Instant::now();
    let mut ok = 0u32;
    for _ in 0..n {
        ok += u32::from(issuer.verify_access(&session.access.token).is_ok());
    }
    let per = start.elapsed() / n;
    println!(
        "verify_access, a token used before: {:.2} µs ({ok} of {n} valid)",
        per.as_secs_f64() * 1e6
    );
}
