//! Carts, checkout, orders and inventory through the real host.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod support;

use commerce_core::Commerce;
use commerce_core::services::{MoneyInput, Principal, ProductInput, VariantInput};
use poem::http::StatusCode;
use serde_json::{Value, json};
use support::{Client, assert_problem, json, problem_fields};

async fn staff(cli: &Client, commerce: &Commerce) -> (Principal, String) {
    let admin = commerce
        .accounts()
        .ensure_superadmin("root@example.com", "root-password")
        .await
        .unwrap();
    let session = json(
        cli.post("/api/v1/auth/login")
            .body_json(&json!({"email": "root@example.com", "password": "root-password"}))
            .send()
            .await,
    )
    .await;
    let bearer = format!("Bearer {}", session["accessToken"].as_str().unwrap());
    (
        Principal {
            user_id: admin.id,
            role: admin.role,
        },
        bearer,
    )
}

async fn product(cli: &Client, commerce: &Commerce, sku: &str, price: i64, stock: i64) {
    let (admin, bearer) = staff(cli, commerce).await;
    let input = ProductInput {
        name: format!("Item {sku}"),
        status: Some("active".into()),
        variants: vec![VariantInput {
            sku: sku.into(),
            price: MoneyInput {
                amount: price,
                currency: "USD".into(),
            },
            ..VariantInput::default()
        }],
        ..ProductInput::default()
    };
    commerce.catalog().create_product(&admin, input).await.unwrap();
    let resp = cli
        .put(format!("/api/v1/admin/inventory/{sku}"))
        .header("authorization", bearer)
        .body_json(&json!({"onHand": stock, "warehouse": "main"}))
        .send()
        .await;
    resp.assert_status_is_ok();
    let inv = json(resp).await;
    assert_eq!(
        (inv["onHand"].clone(), inv["available"].clone()),
        (json!(stock), json!(stock))
    );
}

/// A signed-in customer with a default address.
async fn customer(cli: &Client, email: &str, cart_token: Option<&str>) -> String {
    let mut req = cli
        .post("/api/v1/auth/register")
        .body_json(&json!({"email": email, "password": "password-123", "firstName": "C", "lastName": "U"}));
    if let Some(t) = cart_token {
        req = req.header("x-cart-token", t);
    }
    let session = json(req.send().await).await;
    let bearer = format!("Bearer {}", session["accessToken"].as_str().unwrap());
    let address = json!({"firstName": "C", "lastName": "U", "line1": "1 Main St", "city": "Springfield", "postalCode": "12345", "country": "US"});
    cli.post("/api/v1/users/addresses")
        .header("authorization", &bearer)
        .body_json(&address)
        .send()
        .await
        .assert_status(StatusCode::CREATED);
    bearer
}

async fn add(cli: &Client, bearer: &str, sku: &str, quantity: i64) -> poem::test::TestResponse {
    cli.post("/api/v1/cart/items")
        .header("authorization", bearer)
        .body_json(&json!({"sku": sku, "quantity": quantity}))
        .send()
        .await
}

async fn checkout(cli: &Client, bearer: &str, key: impl AsRef<str>, body: Value) -> poem::test::TestResponse {
    let key = key.as_ref();
    cli.post("/api/v1/orders")
        .header("authorization", bearer)
        .header("idempotency-key", key)
        .body_json(&body)
        .send()
        .await
}

on_backends!(
    {memory => crate::support::memory_client(), full_stack => crate::support::full_stack_client().await}
    guest_cart_is_merged_at_registration,
    cart_rules_and_bad_input,
    checkout_places_one_order_per_idempotency_key,
    twenty_concurrent_requests_with_one_key_make_one_order,
    two_hundred_checkouts_for_fifty_units,
    order_lifecycle_privacy_and_stock,
    bulk_stock_is_all_or_nothing,
);

async fn guest_cart_is_merged_at_registration(cli: &Client, commerce: &Commerce) {
    product(cli, commerce, "GUEST-1", 1_500, 20).await;
    let resp = cli
        .post("/api/v1/cart/items")
        .body_json(&json!({"sku": "guest-1", "quantity": 2}))
        .send()
        .await;
    resp.assert_status_is_ok();
    let token = resp
        .0
        .headers()
        .get("x-cart-token")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let cart = json(resp).await;
    assert_eq!(cart["cartToken"], token.as_str());
    assert_eq!(
        (cart["itemCount"].clone(), cart["subtotal"].clone()),
        (json!(2), json!({"amount": 3000, "currency": "USD"}))
    );
    let again = json(
        cli.post("/api/v1/cart/items")
            .header("x-cart-token", &token)
            .body_json(&json!({"sku": "GUEST-1", "quantity": 1}))
            .send()
            .await,
    )
    .await;
    assert_eq!(again["itemCount"], 3, "the same guest cart");
    let other_guest = json(
        cli.get("/api/v1/cart")
            .header("x-cart-token", "someone-else")
            .send()
            .await,
    )
    .await;
    assert_eq!(other_guest["items"], json!([]));

    let bearer = customer(cli, "merge@example.com", Some(&token)).await;
    let mine = json(cli.get("/api/v1/cart").header("authorization", &bearer).send().await).await;
    assert_eq!(mine["itemCount"], 3, "merged into the new account's cart");
    assert_eq!(mine["cartToken"], Value::Null);
    let guest = json(cli.get("/api/v1/cart").header("x-cart-token", &token).send().await).await;
    assert_eq!(guest["items"], json!([]), "the guest cart is gone");
}

async fn cart_rules_and_bad_input(cli: &Client, commerce: &Commerce) {
    product(cli, commerce, "RULE-1", 999, 5).await;
    let bearer = customer(cli, "rules@example.com", None).await;
    let body = assert_problem(add(cli, &bearer, "NOPE-1", 1).await, 422, "validation_failed").await;
    assert_eq!(body["errors"][0]["field"], "sku");
    let body = assert_problem(add(cli, &bearer, "RULE-1", 0).await, 422, "validation_failed").await;
    assert_eq!(body["errors"][0]["field"], "quantity");
    let body = assert_problem(add(cli, &bearer, "RULE-1", 100).await, 422, "validation_failed").await;
    assert_eq!(
        body["errors"],
        json!([{"field": "quantity", "message": "must be at most 99 per item"}]),
        "the rule alone, not a nested error's \"invalid input: quantity: ...\""
    );
    let body = assert_problem(add(cli, &bearer, "RULE-1", 6).await, 409, "out_of_stock").await;
    assert!(body["detail"].as_str().unwrap().contains("RULE-1"));
    let body = assert_problem(add(cli, &bearer, "bad sku!", 1).await, 422, "validation_failed").await;
    assert_eq!(body["errors"][0]["field"], "sku");

    let cart = json(add(cli, &bearer, "RULE-1", 2).await).await;
    let item = cart["items"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(cart["items"][0]["unitPrice"], json!({"amount": 999, "currency": "USD"}));
    let cart = json(
        cli.put(format!("/api/v1/cart/items/{item}"))
            .header("authorization", &bearer)
            .body_json(&json!({"quantity": 4}))
            .send()
            .await,
    )
    .await;
    assert_eq!(cart["items"][0]["lineTotal"]["amount"], 3996);
    assert_problem(
        cli.put("/api/v1/cart/items/not-an-id")
            .header("authorization", &bearer)
            .body_json(&json!({"quantity": 1}))
            .send()
            .await,
        400,
        "bad_request",
    )
    .await;
    let unknown = uuid::Uuid::now_v7();
    assert_problem(
        cli.delete(format!("/api/v1/cart/items/{unknown}"))
            .header("authorization", &bearer)
            .send()
            .await,
        404,
        "not_found",
    )
    .await;
    let cart = json(
        cli.delete(format!("/api/v1/cart/items/{item}"))
            .header("authorization", &bearer)
            .send()
            .await,
    )
    .await;
    assert_eq!(cart["items"], json!([]));
    let body = assert_problem(
        checkout(cli, &bearer, "empty-1", json!({})).await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "cart");
}

async fn checkout_places_one_order_per_idempotency_key(cli: &Client, commerce: &Commerce) {
    product(cli, commerce, "IDEM-1", 2_500, 10).await;
    let bearer = customer(cli, "idem@example.com", None).await;
    add(cli, &bearer, "IDEM-1", 2).await.assert_status_is_ok();

    let missing = cli
        .post("/api/v1/orders")
        .header("authorization", &bearer)
        .body_json(&json!({}))
        .send()
        .await;
    assert_problem(missing, 400, "bad_request").await;

    let first = checkout(cli, &bearer, "key-1", json!({})).await;
    first.assert_status(StatusCode::CREATED);
    first.assert_header("idempotent-replayed", "false");
    let first_body = first.0.into_body().into_string().await.unwrap();
    let order: serde_json::Value = serde_json::from_str(&first_body).unwrap();
    assert_eq!(order["status"], "pending");
    assert_eq!(
        order["total"],
        json!({"amount": 5000, "currency": "USD"}),
        "free shipping from 50.00"
    );

    let again = checkout(cli, &bearer, "key-1", json!({})).await;
    again.assert_status(StatusCode::CREATED);
    again.assert_header("idempotent-replayed", "true");
    assert_eq!(
        again.0.into_body().into_string().await.unwrap(),
        first_body,
        "replayed byte for byte, not re-run"
    );

    let body = assert_problem(
        checkout(cli, &bearer, "key-1", json!({"couponCode": "X"})).await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "Idempotency-Key");

    let orders = json(cli.get("/api/v1/orders").header("authorization", &bearer).send().await).await;
    assert_eq!(orders["total"], 1);
    // The cart was converted: a new key finds nothing to check out.
    assert_problem(
        checkout(cli, &bearer, "key-2", json!({})).await,
        422,
        "validation_failed",
    )
    .await;
}

async fn twenty_concurrent_requests_with_one_key_make_one_order(cli: &Client, commerce: &Commerce) {
    product(cli, commerce, "RACE-1", 1_000, 100).await;
    let bearer = customer(cli, "race@example.com", None).await;
    add(cli, &bearer, "RACE-1", 1).await.assert_status_is_ok();
    let attempts = (0..20).map(|_| checkout(cli, &bearer, "same-key", json!({})));
    let responses = futures::future::join_all(attempts).await;
    let mut ids = std::collections::BTreeSet::new();
    for r in responses {
        let status = r.0.status().as_u16();
        assert!(status == 201 || status == 409, "unexpected {status}");
        if status == 201 {
            ids.insert(json(r).await["id"].as_str().unwrap().to_owned());
        } else {
            assert_problem(r, 409, "idempotency_in_flight").await;
        }
    }
    assert_eq!(ids.len(), 1, "every success is the same order");
    let orders = json(cli.get("/api/v1/orders").header("authorization", &bearer).send().await).await;
    assert_eq!(orders["total"], 1);
}

async fn two_hundred_checkouts_for_fifty_units(cli: &Client, commerce: &Commerce) {
    product(cli, commerce, "HOT-1", 1_000, 50).await;
    let mut bearers = Vec::new();
    for i in 0..200 {
        let bearer = customer(cli, &format!("hot{i}@example.com"), None).await;
        add(cli, &bearer, "HOT-1", 1).await.assert_status_is_ok();
        bearers.push(bearer);
    }
    let attempts = bearers
        .iter()
        .enumerate()
        .map(|(i, b)| checkout(cli, b, format!("hot-{i}"), json!({})));
    let responses = futures::future::join_all(attempts).await;
    let mut created = 0;
    for r in responses {
        match r.0.status().as_u16() {
            201 => created += 1,
            409 => {
                let body = assert_problem(r, 409, "out_of_stock").await;
                assert!(body["detail"].as_str().unwrap().contains("HOT-1"), "{body}");
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(created, 50);
    let (_, admin) = staff(cli, commerce).await;
    let inv = json(
        cli.get("/api/v1/admin/inventory/HOT-1")
            .header("authorization", admin)
            .send()
            .await,
    )
    .await;
    assert_eq!(
        (inv["onHand"].clone(), inv["reserved"].clone(), inv["available"].clone()),
        (json!(50), json!(50), json!(0))
    );
}

async fn order_lifecycle_privacy_and_stock(cli: &Client, commerce: &Commerce) {
    product(cli, commerce, "LIFE-1", 3_000, 10).await;
    let (_, admin) = staff(cli, commerce).await;
    let alice = customer(cli, "alice@example.com", None).await;
    let bob = customer(cli, "bob@example.com", None).await;
    add(cli, &alice, "LIFE-1", 3).await.assert_status_is_ok();
    let order = json(checkout(cli, &alice, "life-1", json!({})).await).await;
    let id = order["id"].as_str().unwrap().to_owned();
    let inv = || {
        cli.get("/api/v1/admin/inventory/LIFE-1")
            .header("authorization", admin.clone())
            .send()
    };
    assert_eq!(json(inv().await).await["reserved"], 3);

    // Privacy: Bob cannot see or change Alice's order.
    assert_problem(
        cli.get(format!("/api/v1/orders/{id}"))
            .header("authorization", &bob)
            .send()
            .await,
        404,
        "not_found",
    )
    .await;
    assert_problem(
        cli.get(format!("/api/v1/orders/{id}/events"))
            .header("authorization", &bob)
            .send()
            .await,
        404,
        "not_found",
    )
    .await;
    let patch = |who: &str, body: Value| {
        cli.patch(format!("/api/v1/orders/{id}/status"))
            .header("authorization", who.to_owned())
            .body_json(&body)
            .send()
    };
    assert_problem(patch(&bob, json!({"status": "cancelled"})).await, 403, "forbidden").await;

    // Invalid transitions name both states.
    let body = assert_problem(
        patch(&admin, json!({"status": "shipped"})).await,
        409,
        "invalid_transition",
    )
    .await;
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains("pending") && detail.contains("shipped"), "{detail}");
    assert_problem(
        patch(&admin, json!({"status": "teleported"})).await,
        422,
        "validation_failed",
    )
    .await;

    // Cancelling releases the reservation.
    let cancelled = json(patch(&admin, json!({"status": "cancelled", "note": "customer called"})).await).await;
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(json(inv().await).await["reserved"], 0);
    assert_problem(
        patch(&admin, json!({"status": "processing"})).await,
        409,
        "invalid_transition",
    )
    .await;
    let events = json(
        cli.get(format!("/api/v1/orders/{id}/events"))
            .header("authorization", &alice)
            .send()
            .await,
    )
    .await;
    let trail: Vec<(Value, Value)> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["from"].clone(), e["to"].clone()))
        .collect();
    assert_eq!(
        trail,
        vec![(Value::Null, json!("pending")), (json!("pending"), json!("cancelled"))]
    );
    assert_eq!(events["items"][1]["note"], "customer called");

    // A second order goes all the way.
    add(cli, &alice, "LIFE-1", 1).await.assert_status_is_ok();
    let second = json(checkout(cli, &alice, "life-2", json!({})).await).await;
    let id2 = second["id"].as_str().unwrap().to_owned();
    let patch2 = |body: Value| {
        cli.patch(format!("/api/v1/orders/{id2}/status"))
            .header("authorization", admin.clone())
            .body_json(&body)
            .send()
    };
    json(patch2(json!({"status": "processing"})).await).await;
    let inv_now = json(inv().await).await;
    assert_eq!(
        (inv_now["onHand"].clone(), inv_now["reserved"].clone()),
        (json!(9), json!(0)),
        "paid: committed"
    );
    let body = assert_problem(patch2(json!({"status": "shipped"})).await, 422, "validation_failed").await;
    assert!(
        body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["field"] == "carrier")
    );
    let shipped = json(patch2(json!({"status": "shipped", "carrier": "UPS", "trackingNumber": "1Z9"})).await).await;
    assert_eq!(shipped["tracking"], json!({"carrier": "UPS", "number": "1Z9"}));
    json(patch2(json!({"status": "delivered"})).await).await;
    let refunded = json(patch2(json!({"status": "refunded", "restock": true})).await).await;
    assert_eq!(refunded["status"], "refunded");
    assert_eq!(json(inv().await).await["onHand"], 10);

    let mine = json(cli.get("/api/v1/orders").header("authorization", &alice).send().await).await;
    let ids: Vec<&str> = mine["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![id2.as_str(), id.as_str()], "newest first");
    let all = json(
        cli.get("/api/v1/admin/orders?status=refunded")
            .header("authorization", admin.clone())
            .send()
            .await,
    )
    .await;
    assert_eq!(all["total"], 1);
}

/// On hand in all warehouses, and how many warehouses hold the SKU.
async fn stock_of(cli: &Client, bearer: &str, sku: &str) -> (Value, usize) {
    let inv = json(
        cli.get(format!("/api/v1/admin/inventory/{sku}"))
            .header("authorization", bearer.to_owned())
            .send()
            .await,
    )
    .await;
    (inv["onHand"].clone(), inv["warehouses"].as_array().map_or(0, Vec::len))
}

async fn bulk_stock_is_all_or_nothing(cli: &Client, commerce: &Commerce) {
    product(cli, commerce, "BULK-1", 1_000, 10).await;
    product(cli, commerce, "BULK-2", 1_000, 10).await;
    let (_, admin) = staff(cli, commerce).await;
    let put = |body: Value, bearer: Option<&str>| {
        let mut req = cli.put("/api/v1/admin/inventory").body_json(&body);
        if let Some(b) = bearer {
            req = req.header("authorization", b.to_owned());
        }
        req.send()
    };

    // Each invalid item is named by its index, and nothing is written.
    let body = assert_problem(
        put(
            json!({"items": [
                {"sku": "BULK-1", "onHand": 40},
                {"sku": "BULK-2", "onHand": -5},
                {"sku": "bad sku!", "onHand": 1},
                {"sku": "BULK-1", "onHand": 2}
            ]}),
            Some(&admin),
        )
        .await,
        422,
        "validation_failed",
    )
    .await;
    let fields = problem_fields(&body);
    assert_eq!(fields, ["items[1].onHand", "items[2].sku", "items[3].sku"], "{body}");
    assert_eq!(
        stock_of(cli, &admin, "BULK-1").await,
        (json!(10), 1),
        "a refused batch writes nothing"
    );

    // Below what a pending order holds: refused as a whole, the item named.
    let shopper = customer(cli, "bulk@example.com", None).await;
    add(cli, &shopper, "BULK-2", 4).await.assert_status_is_ok();
    checkout(cli, &shopper, "bulk-order-1", json!({}))
        .await
        .assert_status(StatusCode::CREATED);
    let body = assert_problem(
        put(
            json!({"items": [{"sku": "BULK-1", "onHand": 40}, {"sku": "BULK-2", "onHand": 3}]}),
            Some(&admin),
        )
        .await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "items[1].onHand", "{body}");
    assert_eq!(stock_of(cli, &admin, "BULK-1").await, (json!(10), 1), "nothing written");

    let resp = put(
        json!({"items": [
            {"sku": "bulk-1", "onHand": 40, "lowStockThreshold": 7, "reason": "count"},
            {"sku": "BULK-1", "warehouse": "east", "onHand": 5},
            {"sku": "BULK-2", "onHand": 4, "backorderAllowed": true}
        ]}),
        Some(&admin),
    )
    .await;
    resp.assert_status_is_ok();
    let set = json(resp).await;
    let got: Vec<(Value, Value, Value, Value)> = set["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["sku"].clone(),
                l["warehouse"].clone(),
                l["onHand"].clone(),
                l["available"].clone(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (json!("BULK-1"), json!("main"), json!(40), json!(40)),
            (json!("BULK-1"), json!("east"), json!(5), json!(5)),
            (json!("BULK-2"), json!("main"), json!(4), json!(0)),
        ],
        "{set}"
    );
    assert_eq!(set["items"][0]["lowStockThreshold"], 7, "{set}");
    assert_eq!(set["items"][2]["backorderAllowed"], true, "{set}");
    assert_eq!(
        stock_of(cli, &admin, "BULK-1").await,
        (json!(45), 2),
        "both warehouses stored"
    );

    assert_problem(put(json!({"items": []}), Some(&admin)).await, 422, "validation_failed").await;
    assert_problem(
        put(json!({"items": [{"sku": "BULK-1", "onHand": 1}]}), None).await,
        401,
        "unauthorized",
    )
    .await;
    assert_problem(
        put(json!({"items": [{"sku": "BULK-1", "onHand": 1}]}), Some(&shopper)).await,
        403,
        "forbidden",
    )
    .await;
}
