//! Payments through the real host with the offline manual gateway: the whole shopping flow end
//! to end, signed Stripe webhooks (replayed, stale, wrong-secret, tampered, duplicate,
//! out-of-order, amount-mismatch), the confirm/webhook race, and refunds.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod support;

use commerce_core::Commerce;
use commerce_core::domain::{Currency, Money};
use commerce_http::payments::webhook;
use poem::http::StatusCode;
use serde_json::{Value, json};
use support::{Client, WEBHOOK_SECRET, assert_problem, json};

on_backends!(
    {memory => crate::support::memory_client(), full_stack => crate::support::full_stack_client().await}
    whole_shopping_flow_with_the_manual_gateway,
    webhooks_are_verified_and_applied_once,
    confirm_racing_the_webhook_acts_once,
    a_refund_racing_another_is_a_conflict,
);

struct Shop {
    admin: String,
    customer: String,
}

async fn login(cli: &Client, email: &str, password: &str) -> String {
    let s = json(
        cli.post("/api/v1/auth/login")
            .body_json(&json!({"email": email, "password": password}))
            .send()
            .await,
    )
    .await;
    format!("Bearer {}", s["accessToken"].as_str().unwrap())
}

/// A store with one product through the API, and a customer with an address.
async fn shop(cli: &Client, commerce: &Commerce, email: &str) -> Shop {
    commerce
        .accounts()
        .ensure_superadmin("root@example.com", "root-password")
        .await
        .unwrap();
    let admin = login(cli, "root@example.com", "root-password").await;
    let product = json!({
        "name": "Espresso Cup", "description": "Small and sturdy.", "status": "active",
        "variants": [{"sku": "CUP-1", "price": {"amount": 1800, "currency": "USD"}}]
    });
    let resp = cli
        .post("/api/v1/products")
        .header("authorization", &admin)
        .body_json(&product)
        .send()
        .await;
    assert!(resp.0.status() == StatusCode::CREATED || resp.0.status() == StatusCode::CONFLICT);
    cli.put("/api/v1/admin/inventory/CUP-1")
        .header("authorization", &admin)
        .body_json(&json!({"onHand": 20}))
        .send()
        .await
        .assert_status_is_ok();
    let reg = json!({"email": email, "password": "password-123", "firstName": "Pat", "lastName": "Doe"});
    cli.post("/api/v1/auth/register")
        .body_json(&reg)
        .send()
        .await
        .assert_status(StatusCode::CREATED);
    let customer = login(cli, email, "password-123").await;
    let address = json!({"firstName": "Pat", "lastName": "Doe", "line1": "2 Side St", "city": "Shelbyville", "postalCode": "54321", "country": "US"});
    cli.post("/api/v1/users/addresses")
        .header("authorization", &customer)
        .body_json(&address)
        .send()
        .await
        .assert_status(StatusCode::CREATED);
    Shop { admin, customer }
}

/// Puts 2 cups in the cart and checks out; returns the order.
async fn order(cli: &Client, s: &Shop, key: &str) -> Value {
    cli.post("/api/v1/cart/items")
        .header("authorization", &s.customer)
        .body_json(&json!({"sku": "CUP-1", "quantity": 2}))
        .send()
        .await
        .assert_status_is_ok();
    let resp = cli
        .post("/api/v1/orders")
        .header("authorization", &s.customer)
        .header("idempotency-key", key)
        .body_json(&json!({}))
        .send()
        .await;
    resp.assert_status(StatusCode::CREATED);
    json(resp).await
}

async fn intent(cli: &Client, s: &Shop, order_id: &str, key: &str) -> Value {
    let resp = cli
        .post("/api/v1/payments/create-intent")
        .header("authorization", &s.customer)
        .header("idempotency-key", key)
        .body_json(&json!({"orderId": order_id}))
        .send()
        .await;
    resp.assert_status(StatusCode::CREATED);
    json(resp).await
}

async fn stock(cli: &Client, s: &Shop) -> (i64, i64) {
    let inv = json(
        cli.get("/api/v1/admin/inventory/CUP-1")
            .header("authorization", &s.admin)
            .send()
            .await,
    )
    .await;
    (inv["onHand"].as_i64().unwrap(), inv["reserved"].as_i64().unwrap())
}

async fn status(cli: &Client, s: &Shop, order_id: &str) -> String {
    json(
        cli.get(format!("/api/v1/orders/{order_id}"))
            .header("authorization", &s.customer)
            .send()
            .await,
    )
    .await["status"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// `GET /api/v1/payments/orders/:id` as the shop's customer: the payment and its transactions.
async fn payment_of(cli: &Client, s: &Shop, order_id: &str) -> Value {
    json(
        cli.get(format!("/api/v1/payments/orders/{order_id}"))
            .header("authorization", &s.customer)
            .send()
            .await,
    )
    .await
}

/// `POST /api/v1/admin/orders/:id/refund` as `who` (an `authorization` value) with `body`.
async fn refund(cli: &Client, who: &str, order_id: &str, body: Value) -> poem::test::TestResponse {
    cli.post(format!("/api/v1/admin/orders/{order_id}/refund"))
        .header("authorization", who)
        .body_json(&body)
        .send()
        .await
}

/// Two refunds made from the same reading of a payment meet at the gateway under one key: the
/// one with another amount is refused as a 409 `refund_conflict` (to be read again), never as a
/// failed payment, and nothing is recorded for it.
async fn a_refund_racing_another_is_a_conflict(cli: &Client, commerce: &Commerce) {
    let s = shop(cli, commerce, "refund-race@example.com").await;
    let o = order(cli, &s, "refund-race-order").await;
    let id = o["id"].as_str().unwrap();
    let p = intent(cli, &s, id, "refund-race-intent").await;
    let intent_id = p["intentId"].as_str().unwrap();
    cli.post(format!("/api/v1/admin/payments/{intent_id}/settle"))
        .header("authorization", &s.admin)
        .body_json(&json!({"outcome": "succeeded"}))
        .send()
        .await
        .assert_status_is_ok();
    // The other refund, from the same reading (nothing refunded yet), reached the gateway first.
    let payment_id = p["id"].as_str().unwrap();
    let other = commerce
        .payments()
        .gateway()
        .refund(
            intent_id,
            Money::new(100, Currency::USD),
            &format!("refund-{payment_id}-0"),
        )
        .await
        .unwrap();
    assert_eq!(other.amount.amount_minor, 100);

    let resp = refund(cli, &s.admin, id, json!({"amount": 600})).await;
    let body = assert_problem(resp, 409, "refund_conflict").await;
    assert!(
        body["detail"].as_str().unwrap().contains("read the payment again"),
        "{body}"
    );
    let detail = payment_of(cli, &s, id).await;
    assert_eq!(
        (
            detail["payment"]["status"].clone(),
            detail["payment"]["amountRefunded"]["amount"].clone()
        ),
        (json!("succeeded"), json!(0)),
        "the refused refund recorded nothing"
    );
}

async fn whole_shopping_flow_with_the_manual_gateway(cli: &Client, commerce: &Commerce) {
    let s = shop(cli, commerce, "flow@example.com").await;
    let o = order(cli, &s, "flow-order").await;
    let id = o["id"].as_str().unwrap();
    // 2 x 18.00 plus 5.99 shipping (free only from 50.00).
    assert_eq!(o["total"], json!({"amount": 4199, "currency": "USD"}));
    assert_eq!(stock(cli, &s).await, (20, 2));

    let p = intent(cli, &s, id, "flow-intent").await;
    assert_eq!(
        (p["gateway"].clone(), p["status"].clone(), p["amount"].clone()),
        (json!("manual"), json!("requires_payment"), o["total"].clone())
    );
    assert!(p["clientSecret"].as_str().unwrap().contains("_secret_"));
    let again = intent(cli, &s, id, "flow-intent-2").await;
    assert_eq!(again["intentId"], p["intentId"], "asking twice returns the same intent");

    // Staff settle the manual intent: the order is paid and its stock committed.
    let settle = cli
        .post(format!(
            "/api/v1/admin/payments/{}/settle",
            p["intentId"].as_str().unwrap()
        ))
        .header("authorization", &s.admin)
        .body_json(&json!({"outcome": "succeeded"}))
        .send()
        .await;
    assert_eq!(json(settle).await["outcome"], "applied");
    assert_eq!(status(cli, &s, id).await, "processing");
    assert_eq!(stock(cli, &s).await, (18, 0));
    let detail = payment_of(cli, &s, id).await;
    assert_eq!(detail["payment"]["status"], "succeeded");
    assert_eq!(detail["transactions"][0]["kind"], "charge");

    // Customers cannot settle or refund; refunds are bounded by what was captured.
    assert_problem(refund(cli, &s.customer, id, json!({})).await, 403, "forbidden").await;
    let resp = refund(cli, &s.admin, id, json!({"amount": 4200})).await;
    let body = assert_problem(resp, 422, "validation_failed").await;
    assert_eq!(body["errors"][0]["field"], "amount");
    let part = json(refund(cli, &s.admin, id, json!({"amount": 600})).await).await;
    assert_eq!(
        (part["status"].clone(), part["amountRefunded"]["amount"].clone()),
        (json!("partially_refunded"), json!(600))
    );
    let full = json(refund(cli, &s.admin, id, json!({})).await).await;
    assert_eq!(full["status"], "refunded");
    assert_eq!(status(cli, &s, id).await, "refunded");

    // A second order whose payment fails: cancelled, stock released, cart back.
    let o2 = order(cli, &s, "flow-order-2").await;
    let id2 = o2["id"].as_str().unwrap();
    let p2 = intent(cli, &s, id2, "flow-intent-3").await;
    cli.post(format!(
        "/api/v1/admin/payments/{}/settle",
        p2["intentId"].as_str().unwrap()
    ))
    .header("authorization", &s.admin)
    .body_json(&json!({"outcome": "failed"}))
    .send()
    .await
    .assert_status_is_ok();
    assert_eq!(status(cli, &s, id2).await, "cancelled");
    assert_eq!(stock(cli, &s).await, (18, 0));
    let cart = json(
        cli.get("/api/v1/cart")
            .header("authorization", &s.customer)
            .send()
            .await,
    )
    .await;
    assert_eq!(cart["itemCount"], 2);
    // Someone else's order cannot get an intent.
    let resp = cli
        .post("/api/v1/payments/create-intent")
        .header("authorization", &s.admin)
        .header("idempotency-key", "x")
        .body_json(&json!({"orderId": id2}))
        .send()
        .await;
    assert_problem(resp, 404, "not_found").await;
}

fn event(id: &str, kind: &str, intent: &str, amount: i64, currency: &str) -> Vec<u8> {
    let object = if kind == "charge.refunded" {
        json!({"id": "ch_1", "object": "charge", "payment_intent": intent, "amount": amount, "amount_refunded": amount, "currency": currency, "refunded": true})
    } else {
        json!({"id": intent, "object": "payment_intent", "amount": amount, "currency": currency, "status": "succeeded", "metadata": {}})
    };
    json!({"id": id, "object": "event", "type": kind, "created": 1_700_000_000, "livemode": false, "data": {"object": object}}).to_string().into_bytes()
}

async fn post_webhook(cli: &Client, body: &[u8], signature: Option<String>) -> poem::test::TestResponse {
    let mut req = cli
        .post("/api/v1/payments/webhook")
        .content_type("application/json")
        .body(body.to_vec());
    if let Some(sig) = signature {
        req = req.header("stripe-signature", sig);
    }
    req.send().await
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

async fn webhooks_are_verified_and_applied_once(cli: &Client, commerce: &Commerce) {
    let s = shop(cli, commerce, "hook@example.com").await;
    let o = order(cli, &s, "hook-order").await;
    let id = o["id"].as_str().unwrap();
    let p = intent(cli, &s, id, "hook-intent").await;
    let pi = p["intentId"].as_str().unwrap();
    let total = o["total"]["amount"].as_i64().unwrap();
    let paid = event("evt_paid", "payment_intent.succeeded", pi, total, "usd");

    // Unsigned, wrong secret, stale, future, tampered: 400 and nothing changes.
    let cases = [
        ("unsigned", None),
        ("wrong secret", Some(webhook::sign(&paid, "whsec_other", now()))),
        ("stale", Some(webhook::sign(&paid, WEBHOOK_SECRET, now() - 301))),
        // Past the 300 s tolerance by a margin: the host reads its clock after the test did.
        ("future", Some(webhook::sign(&paid, WEBHOOK_SECRET, now() + 360))),
        ("garbled", Some("t=abc,v1=zz".to_owned())),
    ];
    for (name, sig) in cases {
        let resp = post_webhook(cli, &paid, sig).await;
        assert_eq!(resp.0.status().as_u16(), 400, "{name}");
        assert_problem(resp, 400, "invalid_signature").await;
    }
    let tampered = event("evt_paid", "payment_intent.succeeded", pi, 1, "usd");
    let resp = post_webhook(cli, &tampered, Some(webhook::sign(&paid, WEBHOOK_SECRET, now()))).await;
    assert_problem(resp, 400, "invalid_signature").await;
    assert_eq!(status(cli, &s, id).await, "pending");

    // An amount that disagrees with the order, correctly signed: recorded and flagged.
    let short = event("evt_short", "payment_intent.succeeded", pi, total - 1, "usd");
    let resp = post_webhook(cli, &short, Some(webhook::sign(&short, WEBHOOK_SECRET, now()))).await;
    assert_eq!(json(resp).await["outcome"], "flagged");
    assert_eq!(status(cli, &s, id).await, "pending");

    // Several v1 signatures, one of them right: applied once; the replay is a duplicate.
    let good = webhook::sign(&paid, WEBHOOK_SECRET, now());
    let multi = format!("{good},v1={}", "0".repeat(64));
    assert_eq!(
        json(post_webhook(cli, &paid, Some(multi)).await).await["outcome"],
        "applied"
    );
    assert_eq!(
        json(post_webhook(cli, &paid, Some(good)).await).await["outcome"],
        "duplicate"
    );
    assert_eq!(status(cli, &s, id).await, "processing");
    assert_eq!(stock(cli, &s).await, (18, 0));

    // A late "failed" (out of order) never moves the order back.
    let failed = event("evt_failed", "payment_intent.payment_failed", pi, total, "usd");
    assert_eq!(
        json(post_webhook(cli, &failed, Some(webhook::sign(&failed, WEBHOOK_SECRET, now()))).await).await["outcome"],
        "ignored"
    );
    assert_eq!(status(cli, &s, id).await, "processing");

    // charge.refunded for the whole amount refunds the order.
    let refunded = event("evt_refund", "charge.refunded", pi, total, "usd");
    assert_eq!(
        json(post_webhook(cli, &refunded, Some(webhook::sign(&refunded, WEBHOOK_SECRET, now()))).await).await["outcome"],
        "applied"
    );
    assert_eq!(status(cli, &s, id).await, "refunded");

    // Events of no interest are acknowledged.
    let other =
        json!({"id": "evt_other", "type": "customer.created", "created": 1, "livemode": false, "data": {"object": {"id": "cus_1", "object": "customer"}}})
            .to_string()
            .into_bytes();
    assert_eq!(
        json(post_webhook(cli, &other, Some(webhook::sign(&other, WEBHOOK_SECRET, now()))).await).await["outcome"],
        "unhandled"
    );
}

async fn confirm_racing_the_webhook_acts_once(cli: &Client, commerce: &Commerce) {
    let s = shop(cli, commerce, "race@example.com").await;
    for round in 0..5 {
        let o = order(cli, &s, &format!("race-order-{round}")).await;
        let id = o["id"].as_str().unwrap().to_owned();
        let p = intent(cli, &s, &id, &format!("race-intent-{round}")).await;
        let pi = p["intentId"].as_str().unwrap().to_owned();
        // The gateway settles; the webhook and the client's confirmations all arrive together.
        commerce.payments().gateway();
        let settle = cli
            .post(format!("/api/v1/admin/payments/{pi}/settle"))
            .header("authorization", &s.admin)
            .body_json(&json!({"outcome": "succeeded"}))
            .send();
        let body = event(
            &format!("evt_race_{round}"),
            "payment_intent.succeeded",
            &pi,
            o["total"]["amount"].as_i64().unwrap(),
            "usd",
        );
        let hook = post_webhook(cli, &body, Some(webhook::sign(&body, WEBHOOK_SECRET, now())));
        let confirms = (0..3).map(|_| {
            cli.post("/api/v1/payments/confirm")
                .header("authorization", &s.customer)
                .body_json(&json!({"orderId": id}))
                .send()
        });
        let (settled, hooked, confirmed) = tokio::join!(settle, hook, futures::future::join_all(confirms));
        settled.assert_status_is_ok();
        hooked.assert_status_is_ok();
        for c in confirmed {
            c.assert_status_is_ok();
        }
        let events = json(
            cli.get(format!("/api/v1/orders/{id}/events"))
                .header("authorization", &s.customer)
                .send()
                .await,
        )
        .await;
        let paid = events["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["to"] == "processing")
            .count();
        assert_eq!(paid, 1, "round {round}: exactly one payment transition");
        let detail = payment_of(cli, &s, &id).await;
        assert_eq!(
            detail["transactions"].as_array().unwrap().len(),
            1,
            "round {round}: one charge"
        );
    }
    assert_eq!(stock(cli, &s).await, (10, 0), "five paid orders of two");
}

/// The production layout restarted: a manual intent made by one process is settled and
/// refunded through the next one, over the same PostgreSQL and MongoDB databases.
#[tokio::test]
async fn a_manual_intent_outlives_a_restart_of_the_host() {
    let pg = std::sync::Arc::new(commerce_pg::testing::fresh_store().await);
    let mongo = std::sync::Arc::new(commerce_mongo::testing::fresh_store().await);
    let start = || {
        let commerce = Commerce::builder()
            .config(support::test_config())
            .accounts(pg.clone())
            .checkout(pg.clone())
            .catalog(mongo.clone())
            .build()
            .unwrap();
        (support::client_for(&commerce), commerce)
    };
    let (cli, commerce) = start();
    let s = shop(&cli, &commerce, "restart@example.com").await;
    let o = order(&cli, &s, "restart-order").await;
    let id = o["id"].as_str().unwrap();
    let p = intent(&cli, &s, id, "restart-intent").await;
    let intent_id = p["intentId"].as_str().unwrap();
    drop((cli, commerce));

    let (cli, _commerce) = start();
    let settle = cli
        .post(format!("/api/v1/admin/payments/{intent_id}/settle"))
        .header("authorization", &s.admin)
        .body_json(&json!({"outcome": "succeeded"}))
        .send()
        .await;
    assert_eq!(json(settle).await["outcome"], "applied");
    assert_eq!(status(&cli, &s, id).await, "processing");
    let refunded = refund(&cli, &s.admin, id, json!({})).await;
    refunded.assert_status_is_ok();
    assert_eq!(json(refunded).await["status"], "refunded");
    assert_eq!(status(&cli, &s, id).await, "refunded");
}
