//! Accounts and authentication through the real host: the whole flow, token rotation and
//! theft detection, suspension, every role rule, and every bad input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod support;

use base64::Engine;
use serde_json::{Value, json};
use support::{Client, assert_problem, json, problem_fields};

async fn register(cli: &Client, email: &str) -> Value {
    let resp = cli
        .post("/api/v1/auth/register")
        .body_json(&json!({"email": email, "password": "password-123", "firstName": "Ada", "lastName": "Lovelace"}))
        .send()
        .await;
    resp.assert_status(poem::http::StatusCode::CREATED);
    json(resp).await
}

async fn login(cli: &Client, email: &str, password: &str) -> poem::test::TestResponse {
    cli.post("/api/v1/auth/login")
        .body_json(&json!({"email": email, "password": password}))
        .send()
        .await
}

fn bearer(session: &Value) -> String {
    format!("Bearer {}", session["accessToken"].as_str().unwrap())
}

async fn refresh(cli: &Client, token: &str) -> poem::test::TestResponse {
    cli.post("/api/v1/auth/refresh-token")
        .body_json(&json!({"refreshToken": token}))
        .send()
        .await
}

/// A signed-in superadmin made through the start-up path.
async fn superadmin(cli: &Client, commerce: &commerce_core::Commerce) -> Value {
    commerce
        .accounts()
        .ensure_superadmin("root@example.com", "root-password")
        .await
        .unwrap();
    json(login(cli, "root@example.com", "root-password").await).await
}

on_backends!(
    {memory => crate::support::memory_client(), postgres => crate::support::postgres_client().await}
    whole_flow_register_profile_refresh_logout,
    refresh_rotates_and_reuse_revokes_the_family,
    refresh_token_cookie_works_without_a_body,
    concurrent_refreshes_of_one_token_exactly_one_wins,
    suspended_users_cannot_sign_in_or_refresh,
    role_rules,
    registration_rejects_bad_input_and_ignores_smuggled_fields,
    wrong_credentials_get_one_generic_answer,
    bad_tokens_are_401,
    addresses_are_private_and_keep_one_default,
    admin_user_list_filters_and_pages,
);

async fn whole_flow_register_profile_refresh_logout(cli: &Client, _: &commerce_core::Commerce) {
    let resp = cli
        .post("/api/v1/auth/register")
        .body_json(&json!({"email": "Ada@Example.com", "password": "password-123", "firstName": " Ada ", "lastName": "Lovelace"}))
        .send()
        .await;
    resp.assert_status(poem::http::StatusCode::CREATED);
    let cookie = resp.0.headers().get("set-cookie").unwrap().to_str().unwrap().to_owned();
    assert!(cookie.starts_with("refresh_token="), "{cookie}");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/api/v1/auth"] {
        assert!(cookie.contains(attr), "cookie lacks {attr}: {cookie}");
    }
    let session = json(resp).await;
    assert_eq!(session["user"]["email"], "ada@example.com");
    assert_eq!(session["user"]["firstName"], "Ada");
    assert_eq!(session["user"]["role"], "customer");
    assert_eq!(session["tokenType"], "Bearer");
    assert!(session["expiresIn"].as_i64().unwrap() > 800);
    assert!(session["user"].get("passwordHash").is_none());

    let profile = json(
        cli.get("/api/v1/users/profile")
            .header("authorization", bearer(&session))
            .send()
            .await,
    )
    .await;
    assert_eq!(profile["id"], session["user"]["id"]);

    let resp = cli
        .put("/api/v1/users/profile")
        .header("authorization", bearer(&session))
        .body_json(&json!({"lastName": "Byron", "phone": "+44 20 7946 0000"}))
        .send()
        .await;
    resp.assert_status_is_ok();
    let updated = json(resp).await;
    assert_eq!(
        (updated["firstName"].clone(), updated["lastName"].clone()),
        (json!("Ada"), json!("Byron"))
    );
    assert_eq!(updated["phone"], "+44 20 7946 0000");
    let cleared = json(
        cli.put("/api/v1/users/profile")
            .header("authorization", bearer(&session))
            .body_json(&json!({"phone": null}))
            .send()
            .await,
    )
    .await;
    assert_eq!(cleared["phone"], Value::Null);

    let signed_in = login(cli, "ADA@example.com", "password-123").await;
    signed_in.assert_status_is_ok();
    let second = json(signed_in).await;

    let rotated = refresh(cli, second["refreshToken"].as_str().unwrap()).await;
    rotated.assert_status_is_ok();
    let rotated = json(rotated).await;
    assert_ne!(rotated["refreshToken"], second["refreshToken"]);

    let resp = cli
        .post("/api/v1/auth/logout")
        .body_json(&json!({"refreshToken": rotated["refreshToken"]}))
        .send()
        .await;
    resp.assert_status(poem::http::StatusCode::NO_CONTENT);
    assert!(
        resp.0
            .headers()
            .get("set-cookie")
            .unwrap()
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    assert_problem(
        refresh(cli, rotated["refreshToken"].as_str().unwrap()).await,
        401,
        "unauthorized",
    )
    .await;
    // Logging out one session leaves the other (the registration's) alone.
    refresh(cli, session["refreshToken"].as_str().unwrap())
        .await
        .assert_status_is_ok();
    // Logout is idempotent.
    cli.post("/api/v1/auth/logout")
        .body_json(&json!({"refreshToken": "unknown"}))
        .send()
        .await
        .assert_status(poem::http::StatusCode::NO_CONTENT);
}

async fn refresh_rotates_and_reuse_revokes_the_family(cli: &Client, _: &commerce_core::Commerce) {
    let first = register(cli, "rotate@example.com").await;
    let t1 = first["refreshToken"].as_str().unwrap().to_owned();
    let second = json(refresh(cli, &t1).await).await;
    let t2 = second["refreshToken"].as_str().unwrap().to_owned();
    let third = json(refresh(cli, &t2).await).await;
    let t3 = third["refreshToken"].as_str().unwrap().to_owned();
    // t1 is replayed by a thief: rejected, and the whole family dies, including the live t3.
    assert_problem(refresh(cli, &t1).await, 401, "unauthorized").await;
    assert_problem(refresh(cli, &t3).await, 401, "unauthorized").await;
    // A fresh login starts a new family.
    let again = json(login(cli, "rotate@example.com", "password-123").await).await;
    refresh(cli, again["refreshToken"].as_str().unwrap())
        .await
        .assert_status_is_ok();
}

async fn refresh_token_cookie_works_without_a_body(cli: &Client, _: &commerce_core::Commerce) {
    let session = register(cli, "cookie@example.com").await;
    let token = session["refreshToken"].as_str().unwrap();
    let resp = cli
        .post("/api/v1/auth/refresh-token")
        .header("cookie", format!("refresh_token={token}"))
        .send()
        .await;
    resp.assert_status_is_ok();
    assert_problem(cli.post("/api/v1/auth/refresh-token").send().await, 401, "unauthorized").await;
}

async fn concurrent_refreshes_of_one_token_exactly_one_wins(cli: &Client, _: &commerce_core::Commerce) {
    let session = register(cli, "race@example.com").await;
    let token = session["refreshToken"].as_str().unwrap().to_owned();
    let attempts = (0..8).map(|_| refresh(cli, &token));
    let statuses: Vec<u16> = futures::future::join_all(attempts)
        .await
        .iter()
        .map(|r| r.0.status().as_u16())
        .collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 401).count(), 7, "{statuses:?}");
}

async fn suspended_users_cannot_sign_in_or_refresh(cli: &Client, commerce: &commerce_core::Commerce) {
    let root = superadmin(cli, commerce).await;
    let user = register(cli, "suspend@example.com").await;
    let id = user["user"]["id"].as_str().unwrap();
    let resp = cli
        .post(format!("/api/v1/admin/users/{id}/suspend"))
        .header("authorization", bearer(&root))
        .send()
        .await;
    resp.assert_status_is_ok();
    assert_eq!(json(resp).await["status"], "suspended");
    assert_problem(
        login(cli, "suspend@example.com", "password-123").await,
        403,
        "forbidden",
    )
    .await;
    assert_problem(
        refresh(cli, user["refreshToken"].as_str().unwrap()).await,
        401,
        "unauthorized",
    )
    .await;
    // Wrong password on a suspended account still says nothing about the account.
    assert_problem(
        login(cli, "suspend@example.com", "wrong-password").await,
        401,
        "unauthorized",
    )
    .await;

    cli.post(format!("/api/v1/admin/users/{id}/reactivate"))
        .header("authorization", bearer(&root))
        .send()
        .await
        .assert_status_is_ok();
    login(cli, "suspend@example.com", "password-123")
        .await
        .assert_status_is_ok();
    // Nobody suspends themselves.
    let root_id = root["user"]["id"].as_str().unwrap();
    let resp = cli
        .post(format!("/api/v1/admin/users/{root_id}/suspend"))
        .header("authorization", bearer(&root))
        .send()
        .await;
    assert_problem(resp, 403, "forbidden").await;
}

async fn role_rules(cli: &Client, commerce: &commerce_core::Commerce) {
    let root = superadmin(cli, commerce).await;
    let customer = register(cli, "customer@example.com").await;
    let staff = register(cli, "staff@example.com").await;
    let staff_id = staff["user"]["id"].as_str().unwrap().to_owned();
    let customer_id = customer["user"]["id"].as_str().unwrap().to_owned();

    // Customers are kept out of the admin API.
    assert_problem(
        cli.get("/api/v1/admin/users")
            .header("authorization", bearer(&customer))
            .send()
            .await,
        403,
        "forbidden",
    )
    .await;
    // No token at all is 401.
    assert_problem(cli.get("/api/v1/admin/users").send().await, 401, "unauthorized").await;

    // Only a superadmin grants roles.
    let grant = |who: &Value, id: &str, role: &str| {
        cli.put(format!("/api/v1/admin/users/{id}/role"))
            .header("authorization", bearer(who))
            .body_json(&json!({"role": role}))
            .send()
    };
    assert_problem(grant(&customer, &staff_id, "admin").await, 403, "forbidden").await;
    let resp = grant(&root, &staff_id, "admin").await;
    resp.assert_status_is_ok();
    assert_eq!(json(resp).await["role"], "admin");
    let staff = json(login(cli, "staff@example.com", "password-123").await).await;
    assert_eq!(staff["user"]["role"], "admin");
    cli.get("/api/v1/admin/users")
        .header("authorization", bearer(&staff))
        .send()
        .await
        .assert_status_is_ok();
    // An admin cannot grant roles, nor touch a superadmin.
    assert_problem(grant(&staff, &customer_id, "admin").await, 403, "forbidden").await;
    let root_id = root["user"]["id"].as_str().unwrap();
    let resp = cli
        .post(format!("/api/v1/admin/users/{root_id}/suspend"))
        .header("authorization", bearer(&staff))
        .send()
        .await;
    assert_problem(resp, 403, "forbidden").await;
    // A superadmin cannot change their own role; unknown roles are 422 naming the field.
    assert_problem(grant(&root, root_id, "customer").await, 403, "forbidden").await;
    let body = assert_problem(grant(&root, &customer_id, "god").await, 422, "validation_failed").await;
    assert_eq!(body["errors"][0]["field"], "role");
    // Unknown and malformed ids.
    let unknown = uuid::Uuid::now_v7();
    assert_problem(grant(&root, &unknown.to_string(), "admin").await, 404, "not_found").await;
    let body = assert_problem(grant(&root, "not-an-id", "admin").await, 400, "bad_request").await;
    assert_eq!(body["errors"][0]["field"], "id");
}

async fn registration_rejects_bad_input_and_ignores_smuggled_fields(cli: &Client, _: &commerce_core::Commerce) {
    let post = |body: Value| cli.post("/api/v1/auth/register").body_json(&body).send();
    let body = assert_problem(
        post(json!({"email": "not-an-email", "password": "short", "firstName": "", "lastName": "X"})).await,
        422,
        "validation_failed",
    )
    .await;
    let fields = problem_fields(&body);
    assert_eq!(fields, vec!["email", "password", "firstName"]);
    let long = "x".repeat(129);
    let body = assert_problem(
        post(json!({"email": "a@b.co", "password": long, "firstName": "A", "lastName": "B"})).await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "password");

    let resp = post(
        json!({"email": "smuggler@example.com", "password": "password-123", "firstName": "A", "lastName": "B",
        "role": "superadmin", "status": "active", "id": "00000000-0000-0000-0000-000000000000"}),
    )
    .await;
    resp.assert_status(poem::http::StatusCode::CREATED);
    let session = json(resp).await;
    assert_eq!(session["user"]["role"], "customer");
    assert_ne!(session["user"]["id"], "00000000-0000-0000-0000-000000000000");

    let dup =
        post(json!({"email": "SMUGGLER@example.com", "password": "password-123", "firstName": "A", "lastName": "B"}))
            .await;
    assert_problem(dup, 409, "email_taken").await;

    // Profile updates ignore email/role too.
    let resp = cli
        .put("/api/v1/users/profile")
        .header("authorization", bearer(&session))
        .body_json(&json!({"role": "superadmin", "email": "other@example.com", "firstName": "Z"}))
        .send()
        .await;
    let profile = json(resp).await;
    assert_eq!(
        (
            profile["role"].clone(),
            profile["email"].clone(),
            profile["firstName"].clone()
        ),
        (json!("customer"), json!("smuggler@example.com"), json!("Z"))
    );
    let body = assert_problem(
        cli.put("/api/v1/users/profile")
            .header("authorization", bearer(&session))
            .body_json(&json!({"firstName": "  "}))
            .send()
            .await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "firstName");
}

async fn wrong_credentials_get_one_generic_answer(cli: &Client, _: &commerce_core::Commerce) {
    register(cli, "known@example.com").await;
    let wrong_password = assert_problem(
        login(cli, "known@example.com", "wrong-password").await,
        401,
        "unauthorized",
    )
    .await;
    let unknown_email = assert_problem(
        login(cli, "nobody@example.com", "wrong-password").await,
        401,
        "unauthorized",
    )
    .await;
    let malformed_email = assert_problem(login(cli, "nobody", "wrong-password").await, 401, "unauthorized").await;
    assert_eq!(wrong_password["detail"], unknown_email["detail"]);
    assert_eq!(wrong_password["detail"], malformed_email["detail"]);
}

async fn bad_tokens_are_401(cli: &Client, _: &commerce_core::Commerce) {
    let session = register(cli, "tokens@example.com").await;
    let good = session["accessToken"].as_str().unwrap();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = good.split('.').collect();
    let mut claims: Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    claims["role"] = json!("superadmin");
    let forged = b64.encode(claims.to_string());
    let tampered = format!("{}.{}.{}", parts[0], forged, parts[2]);
    let alg_none = format!("{}.{}.", b64.encode(r#"{"alg":"none","typ":"JWT"}"#), forged);
    let wrong_key = {
        let key = jsonwebtoken::EncodingKey::from_secret(b"another-secret-another-secret-another!!");
        jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
    };
    let expired = {
        let mut old = claims.clone();
        old["role"] = json!("customer");
        old["exp"] = json!(chrono::Utc::now().timestamp() - 60);
        let key = jsonwebtoken::EncodingKey::from_secret(support::SECRET);
        jsonwebtoken::encode(&jsonwebtoken::Header::default(), &old, &key).unwrap()
    };
    for (name, token) in [
        ("tampered", tampered),
        ("alg none", alg_none),
        ("wrong key", wrong_key),
        ("expired", expired),
        ("garbage", "abc".to_owned()),
    ] {
        let resp = cli
            .get("/api/v1/users/profile")
            .header("authorization", format!("Bearer {token}"))
            .send()
            .await;
        assert_eq!(resp.0.status().as_u16(), 401, "{name}");
        assert_problem(resp, 401, "unauthorized").await;
    }
    cli.get("/api/v1/users/profile")
        .header("authorization", format!("Bearer {good}"))
        .send()
        .await
        .assert_status_is_ok();
}

async fn addresses_are_private_and_keep_one_default(cli: &Client, _: &commerce_core::Commerce) {
    let alice = register(cli, "alice@example.com").await;
    let bob = register(cli, "bob@example.com").await;
    let addr = |label: &str| json!({"label": label, "firstName": "Alice", "lastName": "A", "line1": "1 Main St", "city": "Springfield", "postalCode": "12345", "country": "us"});
    let create = |who: &Value, body: Value| {
        cli.post("/api/v1/users/addresses")
            .header("authorization", bearer(who))
            .body_json(&body)
            .send()
    };
    let home = create(&alice, addr("Home")).await;
    home.assert_status(poem::http::StatusCode::CREATED);
    let home = json(home).await;
    assert_eq!(
        (home["isDefault"].clone(), home["country"].clone()),
        (json!(true), json!("US")),
        "first address is the default"
    );
    let mut work_body = addr("Work");
    work_body["isDefault"] = json!(true);
    let work = json(create(&alice, work_body).await).await;
    let list = json(
        cli.get("/api/v1/users/addresses")
            .header("authorization", bearer(&alice))
            .send()
            .await,
    )
    .await;
    let defaults: Vec<_> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["isDefault"] == json!(true))
        .map(|a| a["id"].clone())
        .collect();
    assert_eq!(defaults, vec![work["id"].clone()], "exactly one default");

    let home_id = home["id"].as_str().unwrap();
    let resp = cli
        .post(format!("/api/v1/users/addresses/{home_id}/default"))
        .header("authorization", bearer(&alice))
        .send()
        .await;
    assert_eq!(json(resp).await["isDefault"], true);

    // Bob cannot see, change, delete or default Alice's address: 404, as if it did not exist.
    let path = format!("/api/v1/users/addresses/{home_id}");
    assert_problem(
        cli.get(&path).header("authorization", bearer(&bob)).send().await,
        404,
        "not_found",
    )
    .await;
    assert_problem(
        cli.put(&path)
            .header("authorization", bearer(&bob))
            .body_json(&addr("Mine"))
            .send()
            .await,
        404,
        "not_found",
    )
    .await;
    assert_problem(
        cli.delete(&path).header("authorization", bearer(&bob)).send().await,
        404,
        "not_found",
    )
    .await;
    let resp = cli
        .post(format!("{path}/default"))
        .header("authorization", bearer(&bob))
        .send()
        .await;
    assert_problem(resp, 404, "not_found").await;
    let bobs = json(
        cli.get("/api/v1/users/addresses")
            .header("authorization", bearer(&bob))
            .send()
            .await,
    )
    .await;
    assert_eq!(bobs["items"], json!([]));

    let mut bad = addr("Bad");
    bad["country"] = json!("USA");
    bad["postalCode"] = json!("");
    let body = assert_problem(create(&alice, bad).await, 422, "validation_failed").await;
    let fields = problem_fields(&body);
    assert_eq!(fields, vec!["country", "postalCode"]);

    cli.delete(&path)
        .header("authorization", bearer(&alice))
        .send()
        .await
        .assert_status(poem::http::StatusCode::NO_CONTENT);
    let list = json(
        cli.get("/api/v1/users/addresses")
            .header("authorization", bearer(&alice))
            .send()
            .await,
    )
    .await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        list["items"][0]["isDefault"], true,
        "the remaining address became the default"
    );
    assert_problem(
        cli.get("/api/v1/users/addresses/xyz")
            .header("authorization", bearer(&alice))
            .send()
            .await,
        400,
        "bad_request",
    )
    .await;
}

async fn admin_user_list_filters_and_pages(cli: &Client, commerce: &commerce_core::Commerce) {
    let root = superadmin(cli, commerce).await;
    for i in 0..5 {
        register(cli, &format!("shopper{i}@shop.example")).await;
    }
    let list = |q: &str| {
        cli.get(format!("/api/v1/admin/users?{q}"))
            .header("authorization", bearer(&root))
            .send()
    };
    let page = json(list("limit=2&page=2").await).await;
    assert_eq!(
        (page["total"].clone(), page["page"].clone(), page["limit"].clone()),
        (json!(6), json!(2), json!(2))
    );
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let shoppers = json(list("search=SHOP.example&role=customer").await).await;
    assert_eq!(shoppers["total"], 5);
    let supers = json(list("role=superadmin").await).await;
    assert_eq!(supers["total"], 1);
    assert_eq!(supers["items"][0]["email"], "root@example.com");
    let body = assert_problem(list("status=sleeping").await, 422, "validation_failed").await;
    assert_eq!(body["errors"][0]["field"], "status");
    // The start-up superadmin is idempotent.
    commerce
        .accounts()
        .ensure_superadmin("root@example.com", "root-password")
        .await
        .unwrap();
    assert_eq!(json(list("role=superadmin").await).await["total"], 1);
}
