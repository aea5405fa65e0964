//! The catalog through the real host, on the in-memory engine and on MongoDB: products,
//! search and facets, the category tree, reviews, images and bulk administration.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod support;

use std::collections::BTreeMap;

use base64::Engine;
use commerce_core::Commerce;
use commerce_core::memory::MemoryImageStore;
use poem::http::StatusCode;
use poem::test::{TestForm, TestFormField, TestResponse};
use serde_json::{Value, json};
use support::{Client, assert_problem, json, problem_fields};

on_backends!(
    {memory => crate::support::memory_client(), mongo => crate::support::mongo_client().await}
    product_crud_by_id_and_slug,
    slugs_are_derived_numbered_and_unique,
    skus_are_unique_across_the_catalog,
    bad_product_input_names_the_field,
    customers_see_listed_products_only,
    writes_need_staff,
    search_filters_sorts_pages_and_counts_facets,
    bad_listing_parameters_are_named,
    category_tree_moves_and_deletes,
    reviews_one_per_user_with_summary,
    concurrent_reviews_are_counted_exactly,
    bulk_create_update_and_archive,
);

on_backends!(
    {memory_images => crate::images_env(false).await, mongo_images => crate::images_env(true).await}
    images_upload_thumbnail_and_delete,
    bad_images_are_refused,
);

// ---------------------------------------------------------------------------------------------
// Helpers

/// A signed-in superadmin's `Authorization` header.
async fn staff(cli: &Client, commerce: &Commerce) -> String {
    commerce
        .accounts()
        .ensure_superadmin("root@example.com", "root-password")
        .await
        .unwrap();
    let resp = cli
        .post("/api/v1/auth/login")
        .body_json(&json!({"email": "root@example.com", "password": "root-password"}))
        .send()
        .await;
    resp.assert_status_is_ok();
    format!("Bearer {}", json(resp).await["accessToken"].as_str().unwrap())
}

/// A newly registered customer's `Authorization` header.
async fn customer(cli: &Client, email: &str) -> String {
    let resp = cli
        .post("/api/v1/auth/register")
        .body_json(&json!({"email": email, "password": "password-123", "firstName": "Ada", "lastName": "Lovelace"}))
        .send()
        .await;
    resp.assert_status(StatusCode::CREATED);
    format!("Bearer {}", json(resp).await["accessToken"].as_str().unwrap())
}

/// An active product with one variant.
fn product(name: &str, sku: &str, price: i64) -> Value {
    json!({
        "name": name,
        "description": format!("All about the {name}."),
        "status": "active",
        "variants": [{"sku": sku, "price": {"amount": price, "currency": "USD"}}],
    })
}

async fn post(cli: &Client, path: &str, auth: &str, body: &Value) -> TestResponse {
    cli.post(path)
        .header("authorization", auth)
        .body_json(body)
        .send()
        .await
}

async fn put(cli: &Client, path: &str, auth: &str, body: &Value) -> TestResponse {
    cli.put(path).header("authorization", auth).body_json(body).send().await
}

async fn get(cli: &Client, path: &str, auth: Option<&str>) -> TestResponse {
    match auth {
        Some(a) => cli.get(path).header("authorization", a).send().await,
        None => cli.get(path).send().await,
    }
}

async fn delete(cli: &Client, path: &str, auth: &str) -> TestResponse {
    cli.delete(path).header("authorization", auth).send().await
}

/// Creates a product, expecting 201.
async fn create(cli: &Client, auth: &str, body: &Value) -> Value {
    let resp = post(cli, "/api/v1/products", auth, body).await;
    resp.assert_status(StatusCode::CREATED);
    json(resp).await
}

/// Creates a category, expecting 201.
async fn category(cli: &Client, auth: &str, name: &str, parent: Option<&Value>) -> Value {
    let mut body = json!({"name": name});
    if let Some(p) = parent {
        body["parentId"] = p["id"].clone();
    }
    let resp = post(cli, "/api/v1/categories", auth, &body).await;
    resp.assert_status(StatusCode::CREATED);
    json(resp).await
}

/// A listing with these query parameters.
async fn list(cli: &Client, path: &str, auth: Option<&str>, query: &[(&str, &str)]) -> Value {
    let mut req = cli.get(path);
    for (k, v) in query {
        req = req.query(*k, v);
    }
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let resp = req.send().await;
    resp.assert_status_is_ok();
    json(resp).await
}

fn names(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn strs(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// The first field error of a 422.
async fn invalid_field(resp: TestResponse) -> String {
    let body = assert_problem(resp, 422, "validation_failed").await;
    body["errors"][0]["field"].as_str().unwrap().to_owned()
}

// ---------------------------------------------------------------------------------------------
// Products

async fn product_crud_by_id_and_slug(cli: &Client, commerce: &Commerce) {
    let admin = staff(cli, commerce).await;
    let mut body = product("Trail Running Shoe", "trs-42", 8999);
    body["brand"] = json!("Acme");
    body["tags"] = json!(["running", "outdoor"]);
    body["shortDescription"] = json!("Grippy.");
    body["specifications"] = json!({"weight": "280 g", "drop": "6 mm"});
    body["seo"] = json!({"metaTitle": "Trail shoe", "keywords": ["trail", "shoe"]});
    body["variants"] = json!([
        {"sku": "trs-42", "name": "42", "options": {"size": "42"}, "price": {"amount": 8999, "currency": "usd"},
         "compareAtPrice": {"amount": 10999, "currency": "USD"}, "weightGrams": 560,
         "dimensions": {"lengthMm": 320, "widthMm": 200, "heightMm": 120}},
        {"sku": "trs-43", "options": {"size": "43"}, "price": {"amount": 7999, "currency": "USD"}}
    ]);
    let created = create(cli, &admin, &body).await;
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["slug"], "trail-running-shoe");
    assert_eq!(created["status"], "active");
    assert_eq!(created["visibility"], "public");
    assert_eq!(created["brand"], "Acme");
    assert_eq!(created["tags"], json!(["running", "outdoor"]));
    assert_eq!(created["specifications"]["drop"], "6 mm");
    assert_eq!(created["seo"]["metaTitle"], "Trail shoe");
    assert_eq!(created["seo"]["keywords"], json!(["trail", "shoe"]));
    let v0 = &created["variants"][0];
    assert_eq!(v0["sku"], "TRS-42");
    assert_eq!(v0["price"], json!({"amount": 8999, "currency": "USD"}));
    assert_eq!(v0["compareAtPrice"], json!({"amount": 10999, "currency": "USD"}));
    assert_eq!(v0["weightGrams"], 560);
    assert_eq!(
        v0["dimensions"],
        json!({"lengthMm": 320, "widthMm": 200, "heightMm": 120})
    );
    assert_eq!(v0["options"], json!({"size": "42"}));
    assert_eq!(created["minPrice"], json!({"amount": 7999, "currency": "USD"}));
    assert_eq!(created["rating"], json!({"count": 0, "average": 0.0}));
    assert_eq!(created["salesCount"], 0);
    assert_eq!(created["images"], json!([]));
    assert!(created["createdAt"].is_string() && created["updatedAt"].is_string());

    // Anyone reads it by id or by slug.
    let by_id = json(get(cli, &format!("/api/v1/products/{id}"), None).await).await;
    assert_eq!(by_id["name"], "Trail Running Shoe");
    let by_slug = json(get(cli, "/api/v1/products/trail-running-shoe", None).await).await;
    assert_eq!(by_slug["id"], created["id"]);
    assert_problem(
        get(cli, "/api/v1/products/no-such-product", None).await,
        404,
        "not_found",
    )
    .await;
    assert_problem(
        get(cli, "/api/v1/products/Not%20A%20Slug", None).await,
        404,
        "not_found",
    )
    .await;

    // PUT replaces the content; an absent slug keeps the current one.
    let mut changed = product("Trail Running Shoe v2", "trs-42", 9499);
    changed["brand"] = json!("Acme");
    let resp = put(cli, &format!("/api/v1/products/{id}"), &admin, &changed).await;
    resp.assert_status_is_ok();
    let updated = json(resp).await;
    assert_eq!(updated["name"], "Trail Running Shoe v2");
    assert_eq!(updated["slug"], "trail-running-shoe");
    assert_eq!(updated["createdAt"], created["createdAt"]);
    assert_eq!(updated["variants"].as_array().unwrap().len(), 1);
    let again = json(get(cli, &format!("/api/v1/products/{id}"), None).await).await;
    assert_eq!(again["minPrice"]["amount"], 9499);
    assert_problem(
        put(cli, "/api/v1/products/not-an-id", &admin, &changed).await,
        400,
        "bad_request",
    )
    .await;
    let unknown = uuid::Uuid::now_v7();
    assert_problem(
        put(cli, &format!("/api/v1/products/{unknown}"), &admin, &changed).await,
        404,
        "not_found",
    )
    .await;

    // Delete: no orders reference it, so it is gone.
    let resp = delete(cli, &format!("/api/v1/products/{id}"), &admin).await;
    resp.assert_status_is_ok();
    assert_eq!(json(resp).await, json!({"result": "deleted"}));
    assert_problem(
        get(cli, &format!("/api/v1/products/{id}"), Some(&admin)).await,
        404,
        "not_found",
    )
    .await;
    assert_problem(
        delete(cli, &format!("/api/v1/products/{id}"), &admin).await,
        404,
        "not_found",
    )
    .await;
}

async fn slugs_are_derived_numbered_and_unique(cli: &Client, commerce: &Commerce) {
    let admin = staff(cli, commerce).await;
    let first = create(cli, &admin, &product("Café Crème Mug", "mug-1", 1500)).await;
    assert_eq!(first["slug"], "cafe-creme-mug");
    let second = create(cli, &admin, &product("Café Crème Mug", "mug-2", 1500)).await;
    assert_eq!(second["slug"], "cafe-creme-mug-2");
    let third = create(cli, &admin, &product("Café Crème Mug", "mug-3", 1500)).await;
    assert_eq!(third["slug"], "cafe-creme-mug-3");
    // An explicit slug is never renumbered.
    let mut body = product("Another Mug", "mug-4", 1500);
    body["slug"] = json!("cafe-creme-mug");
    let problem = assert_problem(post(cli, "/api/v1/products", &admin, &body).await, 409, "slug_taken").await;
    assert!(problem["detail"].as_str().unwrap().contains("slug"), "{problem}");
    body["slug"] = json!("Bad Slug!");
    assert_eq!(
        invalid_field(post(cli, "/api/v1/products", &admin, &body).await).await,
        "slug"
    );
    // Renaming onto a taken slug via PUT is refused too.
    let mut renamed = product("Café Crème Mug", "mug-2", 1500);
    renamed["slug"] = json!("cafe-creme-mug");
    let path = format!("/api/v1/products/{}", second["id"].as_str().unwrap());
    assert_problem(put(cli, &path, &admin, &renamed).await, 409, "slug_taken").await;
}

async fn skus_are_unique_across_the_catalog(cli: &Client, commerce: &Commerce) {
    let admin = staff(cli, commerce).await;
    create(cli, &admin, &product("Blue Cap", "CAP-1", 1200)).await;
    // SKUs are case-insensitive: `cap-1` is `CAP-1`.
    let problem = assert_problem(
        post(cli, "/api/v1/products", &admin, &product("Red Cap", "cap-1", 1200)).await,
        409,
        "sku_taken",
    )
    .await;
    assert!(problem["detail"].as_str().is_some());
    let mut twice = product("Green Cap", "CAP-2", 1200);
    twice["variants"] = json!([
        {"sku": "CAP-2", "price": {"amount": 1200, "currency": "USD"}},
        {"sku": "cap-2", "price": {"amount": 1300, "currency": "USD"}}
    ]);
    assert_eq!(
        invalid_field(post(cli, "/api/v1/products", &admin, &twice).await).await,
        "variants[1].sku"
    );
    // Neither refused product was written.
    let all = list(cli, "/api/v1/products", Some(&admin), &[]).await;
    assert_eq!(names(&all), strs(&["Blue Cap"]));
}

async fn bad_product_input_names_the_field(cli: &Client, commerce: &Commerce) {
    let admin = staff(cli, commerce).await;
    let send = |body: Value| {
        let admin = admin.clone();
        async move { post(cli, "/api/v1/products", &admin, &body).await }
    };
    assert_eq!(
        invalid_field(send(product("Mug", "M-1", -1)).await).await,
        "variants[0].price.amount"
    );
    assert_eq!(invalid_field(send(product("   ", "M-1", 100)).await).await, "name");
    let mut body = product("Mug", "M-1", 100);
    body["variants"][0]["price"]["currency"] = json!("dollars");
    assert_eq!(invalid_field(send(body).await).await, "variants[0].price.currency");
    let mut body = product("Mug", "M-1", 100);
    body["variants"] = json!([]);
    assert_eq!(invalid_field(send(body).await).await, "variants");
    let mut body = product("Mug", "M-1", 100);
    body["status"] = json!("published");
    assert_eq!(invalid_field(send(body).await).await, "status");
    let mut body = product("Mug", "M-1", 100);
    body["categoryId"] = json!(uuid::Uuid::now_v7().to_string());
    assert_eq!(invalid_field(send(body).await).await, "categoryId");
    let mut body = product("Mug", "M-1", 100);
    body["categoryId"] = json!("not-a-uuid");
    assert_eq!(invalid_field(send(body).await).await, "categoryId");
    let mut body = product("Mug", "M-1", 100);
    body["subcategoryIds"] = json!(["nope"]);
    assert_eq!(invalid_field(send(body).await).await, "subcategoryIds[0]");

    // Every invalid field is reported at once.
    let mut body = product("", "M-1", -5);
    body["visibility"] = json!("secret");
    let problem = assert_problem(send(body).await, 422, "validation_failed").await;
    let fields = problem_fields(&problem);
    for f in ["name", "visibility", "variants[0].price.amount"] {
        assert!(fields.contains(&f), "{f} missing from {fields:?}");
    }

    // Wrong JSON types, including a query operator smuggled into a string, are 400s.
    let mut body = product("Mug", "M-1", 100);
    body["name"] = json!({"$gt": ""});
    let problem = assert_problem(send(body).await, 400, "malformed_body").await;
    assert_eq!(problem["errors"][0]["field"], "name");
    let mut body = product("Mug", "M-1", 100);
    body["variants"][0]["sku"] = json!({"$ne": null});
    let problem = assert_problem(send(body).await, 400, "malformed_body").await;
    assert_eq!(problem["errors"][0]["field"], "variants[0].sku");
    let mut body = product("Mug", "M-1", 100);
    body["variants"][0]["price"]["amount"] = json!("100");
    let problem = assert_problem(send(body).await, 400, "malformed_body").await;
    assert_eq!(problem["errors"][0]["field"], "variants[0].price.amount");
    let mut body = product("Mug", "M-1", 100);
    body.as_object_mut().unwrap().remove("variants");
    let problem = assert_problem(send(body).await, 400, "malformed_body").await;
    assert_eq!(problem["errors"][0]["field"], "variants");

    // Nothing was written.
    assert_eq!(list(cli, "/api/v1/products", Some(&admin), &[]).await["total"], 0);
}

async fn customers_see_listed_products_only(cli: &Client, commerce: &Commerce) {
    let admin = staff(cli, commerce).await;
    let shopper = customer(cli, "shopper@example.com").await;
    let active = create(cli, &admin, &product("Active Lamp", "L-1", 3000)).await;
    let mut body = product("Draft Lamp", "L-2", 3000);
    body["status"] = json!("draft");
    let draft = create(cli, &admin, &body).await;
    let mut body = product("Archived Lamp", "L-3", 3000);
    body["status"] = json!("archived");
    let archived = create(cli, &admin, &body).await;
    let mut body = product("Hidden Lamp", "L-4", 3000);
    body["visibility"] = json!("hidden");
    let hidden = create(cli, &admin, &body).await;
    // Without a status, a product starts as a draft.
    let mut body = product("Default Lamp", "L-5", 3000);
    body.as_object_mut().unwrap().remove("status");
    let default = create(cli, &admin, &body).await;
    assert_eq!(default["status"], "draft");

    for viewer in [None, Some(shopper.as_str())] {
        let page = list(cli, "/api/v1/products", viewer, &[]).await;
        assert_eq!(names(&page), strs(&["Active Lamp"]), "{viewer:?}");
        assert_eq!(page["total"], 1);
        for p in [&draft, &archived, &default] {
            let path = format!("/api/v1/products/{}", p["id"].as_str().unwrap());
            assert_problem(get(cli, &path, viewer).await, 404, "not_found").await;
            let path = format!("/api/v1/products/{}", p["slug"].as_str().unwrap());
            assert_problem(get(cli, &path, viewer).await, 404, "not_found").await;
        }
        // Hidden: not listed, but reachable by link.
        let path = format!("/api/v1/products/{}", hidden["slug"].as_str().unwrap());
        get(cli, &path, viewer).await.assert_status_is_ok();
        let path = format!("/api/v1/products/{}", active["id"].as_str().unwrap());
        get(cli, &path, viewer).await.assert_status_is_ok();
    }
    // Staff see everything, by id and in the list.
    let page = list(cli, "/api/v1/products", Some(&admin), &[]).await;
    assert_eq!(page["total"], 5);
    for p in [&draft, &archived, &default, &hidden] {
        let path = format!("/api/v1/products/{}", p["id"].as_str().unwrap());
        get(cli, &path, Some(&admin)).await.assert_status_is_ok();
    }
    // A bad token on a public endpoint is a 401, never a silent anonymous view.
    assert_problem(
        get(cli, "/api/v1/products", Some("Bearer not-a-token")).await,
        401,
        "unauthorized",
    )
    .await;
    let resp = get(cli, "/api/v1/products", Some("Basic dXNlcjpwYXNz")).await;
    assert_eq!(resp.0.headers().get("www-authenticate").unwrap(), "Bearer");
    assert_problem(resp, 401, "unauthorized").await;
    let path = format!("/api/v1/products/{}", active["id"].as_str().unwrap());
    assert_problem(get(cli, &path, Some("Bearer x.y.z")).await, 401, "unauthorized").await;
}

async fn writes_need_staff(cli: &Client, commerce: &Commerce) {
    let admin = staff(cli, commerce).await;
    let shopper = customer(cli, "shopper@example.com").await;
    let body = product("Lamp", "L-1", 3000);
    assert_problem(post(cli, "/api/v1/products", &shopper, &body).await, 403, "forbidden").await;
    let resp = cli.post("/api/v1/products").body_json(&body).send().await;
    assert_problem(resp, 401, "unauthorized").await;
    let p = create(cli, &admin, &body).await;
    let path = format!("/api/v1/products/{}", p["id"].as_str().unwrap());
    assert_problem(put(cli, &path, &shopper, &body).await, 403, "forbidden").await;
    assert_problem(delete(cli, &path, &shopper).await, 403, "forbidden").await;
    assert_problem(cli.delete(&path).send().await, 401, "unauthorized").await;
    assert_problem(
        post(cli, "/api/v1/categories", &shopper, &json!({"name": "Lamps"})).await,
        403,
        "forbidden",
    )
    .await;
    assert_problem(
        post(cli, "/api/v1/admin/products/bulk", &shopper, &json!({"items": [body]})).await,
        403,
        "forbidden",
    )
    .await;
    // Nothing changed.
    let again = json(get(cli, &path, None).await).await;
    assert_eq!(again["name"], "Lamp");
    assert_eq!(
        json(get(cli, "/api/v1/categories", None).await).await["items"],
        json!([])
    );
}

// ---------------------------------------------------------------------------------------------
// Search

async fn search_filters_sorts_pages_and_counts_facets(cli: &Client, commerce: &Commerce) {
    let admin = staff(cli, commerce).await;
    let clothing = category(cli, &admin, "Clothing", None).await;
    let shoes = category(cli, &admin, "Shoes", Some(&clothing)).await;
    let trail = category(cli, &admin, "Trail", Some(&shoes)).await;
    let kitchen = category(cli, &admin, "Kitchen", None).await;
    let items = [
        ("Trail Running Shoes", "Acme", &trail, 8999, vec!["running", "outdoor"]),
        ("City Sneaker", "Stride", &shoes, 4999, vec!["running", "casual"]),
        ("Wool Sweater", "Acme", &clothing, 12000, vec!["winter"]),
        ("Crème Brûlée Torch", "Chefly", &kitchen, 2000, vec!["dessert"]),
        ("Café Mugs", "Chefly", &kitchen, 30000, vec!["coffee"]),
    ];
    let mut ids = BTreeMap::new();
    for (i, (name, brand, cat, price, tags)) in items.iter().enumerate() {
        let mut body = product(name, &format!("SKU-{i}"), *price);
        body["brand"] = json!(brand);
        body["categoryId"] = cat["id"].clone();
        body["tags"] = json!(tags);
        let p = create(cli, &admin, &body).await;
        ids.insert((*name).to_owned(), p["id"].as_str().unwrap().to_owned());
        // Distinct creation times, so `newest` has one right answer on every backend.
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    let mut secret = product("Secret Shoe", "SKU-X", 1000);
    secret["status"] = json!("draft");
    secret["brand"] = json!("Acme");
    secret["categoryId"] = shoes["id"].clone();
    create(cli, &admin, &secret).await;

    let products = "/api/v1/products";
    let all = list(cli, products, None, &[]).await;
    assert_eq!(all["total"], 5);
    assert_eq!((all["page"].clone(), all["limit"].clone()), (json!(1), json!(20)));

    // Text: case, accents and plurals fold; every word must match.
    let find = |q: &'static str| async move { names(&list(cli, products, None, &[("q", q)]).await) };
    assert_eq!(find("creme brulee").await, strs(&["Crème Brûlée Torch"]));
    assert_eq!(find("CAFE MUG").await, strs(&["Café Mugs"]));
    assert_eq!(find("shoe").await, strs(&["Trail Running Shoes"]));
    assert_eq!(find("sneakers").await, strs(&["City Sneaker"]));
    assert_eq!(find("running shoes").await, strs(&["Trail Running Shoes"]));
    assert_eq!(
        sorted(find("RUNNING").await),
        strs(&["City Sneaker", "Trail Running Shoes"])
    );
    assert_eq!(find("chefly torch").await, strs(&["Crème Brûlée Torch"]));
    assert!(find("running torch").await.is_empty());
    // A name match outranks a tag match.
    let mut body = product("Running Belt", "SKU-B", 1500);
    body["tags"] = json!(["gear"]);
    create(cli, &admin, &body).await;
    assert_eq!(find("running").await[0], "Running Belt");

    // Category: by slug or id, including descendants; staff also see the draft.
    let in_shoes = list(cli, products, None, &[("category", "shoes")]).await;
    assert_eq!(sorted(names(&in_shoes)), strs(&["City Sneaker", "Trail Running Shoes"]));
    let clothing_id = clothing["id"].as_str().unwrap();
    let in_clothing = list(cli, products, None, &[("category", clothing_id)]).await;
    assert_eq!(in_clothing["total"], 3);
    assert_eq!(
        list(cli, products, Some(&admin), &[("category", "shoes")]).await["total"],
        3
    );
    let same = list(cli, "/api/v1/categories/shoes/products", None, &[]).await;
    assert_eq!(sorted(names(&same)), sorted(names(&in_shoes)));
    let trail_only = list(
        cli,
        &format!("/api/v1/categories/{}/products", trail["id"].as_str().unwrap()),
        None,
        &[],
    )
    .await;
    assert_eq!(names(&trail_only), strs(&["Trail Running Shoes"]));
    assert_problem(
        get(cli, "/api/v1/products?category=no-such-category", None).await,
        404,
        "not_found",
    )
    .await;
    assert_problem(
        get(cli, "/api/v1/categories/nope/products", None).await,
        404,
        "not_found",
    )
    .await;

    // Brand (case-insensitive), price range on the "from" price, every tag.
    let acme = list(cli, products, None, &[("brand", "acme")]).await;
    assert_eq!(sorted(names(&acme)), strs(&["Trail Running Shoes", "Wool Sweater"]));
    let mid = list(cli, products, None, &[("minPrice", "4000"), ("maxPrice", "10000")]).await;
    assert_eq!(sorted(names(&mid)), strs(&["City Sneaker", "Trail Running Shoes"]));
    let cheap = list(cli, products, None, &[("maxPrice", "2000")]).await;
    assert_eq!(sorted(names(&cheap)), strs(&["Crème Brûlée Torch", "Running Belt"]));
    let tagged = list(cli, products, None, &[("tags", "running,casual")]).await;
    assert_eq!(names(&tagged), strs(&["City Sneaker"]));
    let tagged = list(cli, products, None, &[("tags", "running")]).await;
    assert_eq!(tagged["total"], 2);
    // Filters combine, and apply inside a category listing too.
    let combined = list(
        cli,
        "/api/v1/categories/clothing/products",
        None,
        &[("brand", "Acme"), ("minPrice", "10000")],
    )
    .await;
    assert_eq!(names(&combined), strs(&["Wool Sweater"]));
    // Nothing is in stock yet.
    assert_eq!(list(cli, products, None, &[("inStock", "true")]).await["total"], 0);
    assert_eq!(list(cli, products, None, &[("inStock", "false")]).await["total"], 6);

    // Ratings: minRating and sort by rating.
    let a = customer(cli, "a@example.com").await;
    let b = customer(cli, "b@example.com").await;
    for (who, name, stars) in [
        (&a, "Trail Running Shoes", 5),
        (&b, "Trail Running Shoes", 4),
        (&a, "City Sneaker", 3),
    ] {
        let path = format!("/api/v1/reviews/products/{}", ids[name]);
        let review = json!({"rating": stars, "title": "Verdict", "body": "Worth it."});
        post(cli, &path, who, &review).await.assert_status(StatusCode::CREATED);
    }
    let rated = list(cli, products, None, &[("minRating", "4")]).await;
    assert_eq!(names(&rated), strs(&["Trail Running Shoes"]));
    assert_eq!(rated["items"][0]["rating"], json!({"count": 2, "average": 4.5}));
    let by_rating = list(cli, products, None, &[("sort", "rating"), ("limit", "2")]).await;
    assert_eq!(names(&by_rating), strs(&["Trail Running Shoes", "City Sneaker"]));

    // Sorts and pages.
    let asc = list(cli, products, None, &[("sort", "price-asc")]).await;
    let order = strs(&[
        "Running Belt",
        "Crème Brûlée Torch",
        "City Sneaker",
        "Trail Running Shoes",
        "Wool Sweater",
        "Café Mugs",
    ]);
    assert_eq!(names(&asc), order);
    let desc = list(cli, products, None, &[("sort", "price-desc")]).await;
    assert_eq!(names(&desc), order.iter().rev().cloned().collect::<Vec<_>>());
    let newest = list(cli, products, None, &[("sort", "newest")]).await;
    assert_eq!(
        names(&newest),
        strs(&[
            "Running Belt",
            "Café Mugs",
            "Crème Brûlée Torch",
            "Wool Sweater",
            "City Sneaker",
            "Trail Running Shoes"
        ])
    );
    let page2 = list(
        cli,
        products,
        None,
        &[("sort", "price-asc"), ("limit", "4"), ("page", "2")],
    )
    .await;
    assert_eq!(names(&page2), order[4..].to_vec());
    assert_eq!(
        (page2["total"].clone(), page2["page"].clone(), page2["limit"].clone()),
        (json!(6), json!(2), json!(4))
    );
    let beyond = list(cli, products, None, &[("page", "9")]).await;
    assert_eq!(
        (beyond["items"].clone(), beyond["total"].clone()),
        (json!([]), json!(6))
    );

    // Facets count the whole match, not the page.
    let facets = |page: &Value| {
        let brands: BTreeMap<String, u64> = page["facets"]["brands"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| (b["value"].as_str().unwrap().to_owned(), b["count"].as_u64().unwrap()))
            .collect();
        let bands: BTreeMap<i64, (Value, u64)> = page["facets"]["priceBands"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["count"].as_u64().unwrap() > 0)
            .map(|b| {
                (
                    b["min"].as_i64().unwrap(),
                    (b["max"].clone(), b["count"].as_u64().unwrap()),
                )
            })
            .collect();
        (brands, bands)
    };
    let (brands, bands) = facets(&list(cli, products, None, &[("limit", "1")]).await);
    assert_eq!(
        brands,
        BTreeMap::from([
            ("Acme".to_owned(), 2),
            ("Chefly".to_owned(), 2),
            ("Stride".to_owned(), 1)
        ])
    );
    assert_eq!(
        bands,
        BTreeMap::from([
            (0, (json!(2500), 2)),
            (2500, (json!(5000), 1)),
            (5000, (json!(10000), 1)),
            (10000, (json!(25000), 1)),
            (25000, (Value::Null, 1)),
        ])
    );
    let (brands, bands) = facets(&list(cli, products, None, &[("category", "shoes")]).await);
    assert_eq!(
        brands,
        BTreeMap::from([("Acme".to_owned(), 1), ("Stride".to_owned(), 1)])
    );
    assert_eq!(bands.values().map(|(_, n)| n).sum::<u64>(), 2);
}

async fn bad_listing_parameters_are_named(cli: &Client, _: &Commerce) {
    let p = "/api/v1/products";
    let resp = get(cli, &format!("{p}?sort=cheapest"), None).await;
    assert_eq!(invalid_field(resp).await, "sort");
    let resp = get(cli, &format!("{p}?minPrice=-1"), None).await;
    assert_eq!(invalid_field(resp).await, "minPrice");
    let resp = get(cli, &format!("{p}?minPrice=500&maxPrice=100"), None).await;
    assert_eq!(invalid_field(resp).await, "maxPrice");
    let resp = get(cli, &format!("{p}?minRating=6"), None).await;
    assert_eq!(invalid_field(resp).await, "minRating");
    let body = assert_problem(get(cli, &format!("{p}?limit=500"), None).await, 400, "bad_request").await;
    assert_eq!(body["errors"][0]["field"], "limit");
    let body = assert_problem(get(cli, &format!("{p}?page=0"), None).await, 400, "bad_request").await;
    assert_eq!(body["errors"][0]["field"], "page");
    let body = assert_problem(get(cli, &format!("{p}?minPrice=cheap"), None).await, 400, "bad_request").await;
    assert!(body["detail"].as_str().unwrap().contains("minPrice"), "{body}");
    assert_eq!(body["errors"][0]["field"], "minPrice", "{body}");
    let body = assert_problem(get(cli, &format!("{p}?inStock=maybe"), None).await, 400, "bad_request").await;
    assert!(body["detail"].as_str().unwrap().contains("inStock"), "{body}");
    assert_eq!(body["errors"][0]["field"], "inStock", "{body}");
    let body = assert_problem(get(cli, &format!("{p}?page=-1"), None).await, 400, "bad_request").await;
    assert_eq!(body["errors"][0]["field"], "page", "{body}");
    // A field's message is the rule, not a nested error's "invalid input: sort: ...".
    let body = assert_problem(
        get(cli, &format!("{p}?sort=cheapest"), None).await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(
        body["errors"],
        json!([{"field": "sort", "message": "must be relevance, price-asc, price-desc, newest, rating or best-selling"}]),
        "{body}"
    );
    let q = "x".repeat(201);
    assert_eq!(invalid_field(get(cli, &format!("{p}?q={q}"), None).await).await, "q");
}

// ---------------------------------------------------------------------------------------------
// Categories

/// `(name, children)` of a tree, recursively, to compare shapes.
fn shape(nodes: &Value) -> Value {
    Value::Array(
        nodes
            .as_array()
            .unwrap()
            .iter()
            .map(|n| json!([n["name"], shape(&n["children"])]))
            .collect(),
    )
}

async fn category_tree_moves_and_deletes(cli: &Client, commerce: &Commerce) {
    let admin = staff(cli, commerce).await;
    let resp = post(
        cli,
        "/api/v1/categories",
        &admin,
        &json!({"name": "Apparel", "sortOrder": 2, "description": "Clothes."}),
    )
    .await;
    resp.assert_status(StatusCode::CREATED);
    let a = json(resp).await;
    assert_eq!(a["slug"], "apparel");
    assert_eq!(a["sortOrder"], 2);
    assert_eq!(a["description"], "Clothes.");
    assert_eq!(a["ancestors"], json!([]));
    assert!(a["parentId"].is_null());
    let b = json(
        post(
            cli,
            "/api/v1/categories",
            &admin,
            &json!({"name": "Books", "sortOrder": 1}),
        )
        .await,
    )
    .await;
    let a1 = category(cli, &admin, "Jackets", Some(&a)).await;
    let a1x = category(cli, &admin, "Rain Jackets", Some(&a1)).await;
    assert_eq!(a1x["parentId"], a1["id"]);
    assert_eq!(a1x["ancestors"], json!([a["id"], a1["id"]]));

    let tree = json(get(cli, "/api/v1/categories", None).await).await;
    assert_eq!(
        shape(&tree["items"]),
        json!([["Books", []], ["Apparel", [["Jackets", [["Rain Jackets", []]]]]]])
    );
    assert_eq!(tree["items"][1]["children"][0]["id"], a1["id"]);
    assert_eq!(tree["items"][1]["children"][0]["parentId"], a["id"]);

    // By id or slug.
    let by_slug = json(get(cli, "/api/v1/categories/rain-jackets", None).await).await;
    assert_eq!(by_slug["id"], a1x["id"]);
    let path = format!("/api/v1/categories/{}", a1["id"].as_str().unwrap());
    assert_eq!(json(get(cli, &path, None).await).await["name"], "Jackets");
    assert_problem(get(cli, "/api/v1/categories/nope", None).await, 404, "not_found").await;
    assert_problem(
        post(cli, "/api/v1/categories", &admin, &json!({"name": "Apparel"})).await,
        409,
        "slug_taken",
    )
    .await;
    let resp = post(
        cli,
        "/api/v1/categories",
        &admin,
        &json!({"name": "Orphans", "parentId": uuid::Uuid::now_v7().to_string()}),
    )
    .await;
    assert_eq!(invalid_field(resp).await, "parentId");
    assert_eq!(
        invalid_field(post(cli, "/api/v1/categories", &admin, &json!({"name": ""})).await).await,
        "name"
    );

    // A product deep in the Jackets subtree.
    let mut body = product("Storm Shell", "SHELL-1", 19900);
    body["categoryId"] = a1x["id"].clone();
    create(cli, &admin, &body).await;
    assert_eq!(
        list(cli, "/api/v1/categories/apparel/products", None, &[]).await["total"],
        1
    );

    // Move Jackets (with its subtree) under Books.
    let a1_path = format!("/api/v1/categories/{}", a1["id"].as_str().unwrap());
    let resp = put(cli, &a1_path, &admin, &json!({"name": "Jackets", "parentId": b["id"]})).await;
    resp.assert_status_is_ok();
    let moved = json(resp).await;
    assert_eq!(moved["parentId"], b["id"]);
    assert_eq!(moved["ancestors"], json!([b["id"]]));
    assert_eq!(moved["slug"], "jackets");
    let tree = json(get(cli, "/api/v1/categories", None).await).await;
    assert_eq!(
        shape(&tree["items"]),
        json!([["Books", [["Jackets", [["Rain Jackets", []]]]]], ["Apparel", []]])
    );
    let deep = json(get(cli, "/api/v1/categories/rain-jackets", None).await).await;
    assert_eq!(deep["ancestors"], json!([b["id"], a1["id"]]));
    // Listings follow the move.
    assert_eq!(
        list(cli, "/api/v1/categories/apparel/products", None, &[]).await["total"],
        0
    );
    assert_eq!(
        list(cli, "/api/v1/categories/books/products", None, &[]).await["total"],
        1
    );

    // Never under itself or a descendant.
    let b_path = format!("/api/v1/categories/{}", b["id"].as_str().unwrap());
    let resp = put(cli, &b_path, &admin, &json!({"name": "Books", "parentId": a1x["id"]})).await;
    assert_eq!(invalid_field(resp).await, "parentId");
    let resp = put(cli, &a1_path, &admin, &json!({"name": "Jackets", "parentId": a1["id"]})).await;
    assert_eq!(invalid_field(resp).await, "parentId");
    // Back to a root.
    let resp = put(cli, &a1_path, &admin, &json!({"name": "Outerwear", "sortOrder": 0})).await;
    resp.assert_status_is_ok();
    let tree = json(get(cli, "/api/v1/categories", None).await).await;
    assert_eq!(
        shape(&tree["items"]),
        json!([["Outerwear", [["Rain Jackets", []]]], ["Books", []], ["Apparel", []]])
    );
    let deep = json(get(cli, "/api/v1/categories/rain-jackets", None).await).await;
    assert_eq!(deep["ancestors"], json!([a1["id"]]));
    assert_problem(
        put(cli, "/api/v1/categories/xyz", &admin, &json!({"name": "X"})).await,
        400,
        "bad_request",
    )
    .await;

    // Deletes: not with children, not with products; an empty leaf goes.
    assert_problem(delete(cli, &a1_path, &admin).await, 409, "category_has_children").await;
    let a1x_path = format!("/api/v1/categories/{}", a1x["id"].as_str().unwrap());
    assert_problem(delete(cli, &a1x_path, &admin).await, 409, "category_has_products").await;
    let a_path = format!("/api/v1/categories/{}", a["id"].as_str().unwrap());
    delete(cli, &a_path, &admin).await.assert_status(StatusCode::NO_CONTENT);
    assert_problem(get(cli, &a_path, None).await, 404, "not_found").await;
    assert_problem(delete(cli, &a_path, &admin).await, 404, "not_found").await;
}

// ---------------------------------------------------------------------------------------------
// Reviews

async fn reviews_one_per_user_with_summary(cli: &Client, commerce: &Commerce) {
    let admin = staff(cli, commerce).await;
    let p = create(cli, &admin, &product("Desk Lamp", "LAMP-1", 4500)).await;
    let path = format!("/api/v1/reviews/products/{}", p["id"].as_str().unwrap());
    let ada = customer(cli, "ada@example.com").await;
    let resp = post(
        cli,
        &path,
        &ada,
        &json!({"rating": 4, "title": "Bright", "body": "Lights my desk."}),
    )
    .await;
    resp.assert_status(StatusCode::CREATED);
    let review = json(resp).await;
    assert_eq!(review["rating"], 4);
    assert_eq!(review["authorName"], "Ada L.");
    assert_eq!(review["productId"], p["id"]);
    assert_eq!(review["verifiedPurchase"], false);
    assert!(review.get("userId").is_none());

    assert_problem(
        post(
            cli,
            &path,
            &ada,
            &json!({"rating": 5, "title": "Again", "body": "Second go."}),
        )
        .await,
        409,
        "already_reviewed",
    )
    .await;
    let bob = customer(cli, "bob@example.com").await;
    for bad in [0, 6, -1] {
        let resp = post(
            cli,
            &path,
            &bob,
            &json!({"rating": bad, "title": "Hmm", "body": "Hmm."}),
        )
        .await;
        assert_eq!(invalid_field(resp).await, "rating");
    }
    let resp = post(
        cli,
        &path,
        &bob,
        &json!({"rating": 4.5, "title": "Hmm", "body": "Hmm."}),
    )
    .await;
    assert_eq!(
        assert_problem(resp, 400, "malformed_body").await["errors"][0]["field"],
        "rating"
    );
    let resp = post(cli, &path, &bob, &json!({"rating": 3, "title": "", "body": "Hmm."})).await;
    assert_eq!(invalid_field(resp).await, "title");
    post(
        cli,
        &path,
        &bob,
        &json!({"rating": 2, "title": "Dim", "body": "Too dim."}),
    )
    .await
    .assert_status(StatusCode::CREATED);
    // Anonymous callers cannot review; malformed and unknown products are refused.
    let resp = cli
        .post(&path)
        .body_json(&json!({"rating": 5, "title": "A", "body": "B"}))
        .send()
        .await;
    assert_problem(resp, 401, "unauthorized").await;
    let resp = post(
        cli,
        "/api/v1/reviews/products/nope",
        &bob,
        &json!({"rating": 5, "title": "A", "body": "B"}),
    )
    .await;
    let body = assert_problem(resp, 400, "bad_request").await;
    assert_eq!(body["errors"][0]["field"], "productId");
    let unknown = format!("/api/v1/reviews/products/{}", uuid::Uuid::now_v7());
    assert_problem(
        post(cli, &unknown, &bob, &json!({"rating": 5, "title": "A", "body": "B"})).await,
        404,
        "not_found",
    )
    .await;
    assert_problem(get(cli, &unknown, None).await, 404, "not_found").await;

    let page = list(cli, &path, None, &[]).await;
    assert_eq!(page["total"], 2);
    assert_eq!((page["page"].clone(), page["limit"].clone()), (json!(1), json!(20)));
    // Newest first.
    assert_eq!(page["items"][0]["title"], "Dim");
    assert_eq!(page["items"][1]["title"], "Bright");
    assert_eq!(
        page["summary"],
        json!({"count": 2, "average": 3.0, "histogram": {"1": 0, "2": 1, "3": 0, "4": 1, "5": 0}})
    );
    let second = list(cli, &path, None, &[("limit", "1"), ("page", "2")]).await;
    assert_eq!(second["items"][0]["title"], "Bright");
    assert_eq!(second["total"], 2);
    let reread = json(get(cli, &format!("/api/v1/products/{}", p["id"].as_str().unwrap()), None).await).await;
    assert_eq!(reread["rating"], json!({"count": 2, "average": 3.0}));

    // Drafts cannot be reviewed, and their reviews are for staff only.
    let mut body = product("Draft Lamp", "LAMP-2", 4500);
    body["status"] = json!("draft");
    let draft = create(cli, &admin, &body).await;
    let draft_path = format!("/api/v1/reviews/products/{}", draft["id"].as_str().unwrap());
    assert_problem(
        post(cli, &draft_path, &ada, &json!({"rating": 5, "title": "A", "body": "B"})).await,
        404,
        "not_found",
    )
    .await;
    assert_problem(get(cli, &draft_path, None).await, 404, "not_found").await;
    assert_eq!(list(cli, &draft_path, Some(&admin), &[]).await["total"], 0);
}

async fn concurrent_reviews_are_counted_exactly(cli: &Client, commerce: &Commerce) {
    let admin = staff(cli, commerce).await;
    let p = create(cli, &admin, &product("Popular Kettle", "KETTLE-1", 3900)).await;
    let path = format!("/api/v1/reviews/products/{}", p["id"].as_str().unwrap());
    let mut users = Vec::new();
    for i in 0..20 {
        users.push(customer(cli, &format!("reviewer{i}@example.com")).await);
    }
    // 7 fives, 5 fours, 5 threes, 2 twos, 1 one: sum 75, mean 3.75.
    let stars = |i: usize| match i {
        0..7 => 5,
        7..12 => 4,
        12..17 => 3,
        17..19 => 2,
        _ => 1,
    };
    let sends = users.iter().enumerate().map(|(i, auth)| {
        let path = path.clone();
        async move {
            let body = json!({"rating": stars(i), "title": format!("Review {i}"), "body": "Concurrent."});
            post(cli, &path, auth, &body).await.0.status()
        }
    });
    let statuses = futures::future::join_all(sends).await;
    assert!(statuses.iter().all(|s| *s == StatusCode::CREATED), "{statuses:?}");
    let page = list(cli, &path, None, &[("limit", "100")]).await;
    assert_eq!(page["total"], 20);
    assert_eq!(page["items"].as_array().unwrap().len(), 20);
    assert_eq!(
        page["summary"],
        json!({"count": 20, "average": 3.75, "histogram": {"1": 1, "2": 2, "3": 5, "4": 5, "5": 7}})
    );
    let reread = json(get(cli, &format!("/api/v1/products/{}", p["id"].as_str().unwrap()), None).await).await;
    assert_eq!(reread["rating"], json!({"count": 20, "average": 3.75}));
}

// ---------------------------------------------------------------------------------------------
// Bulk

async fn bulk_create_update_and_archive(cli: &Client, commerce: &Commerce) {
    let admin = staff(cli, commerce).await;
    let items = json!({"items": [
        product("Bulk One", "BULK-1", 1000),
        product("Bulk Two", "BULK-2", -1),
        product("Bulk Three", "BULK-3", 3000),
        product("Bulk Four", "BULK-1", 4000),
    ]});
    let resp = post(cli, "/api/v1/admin/products/bulk", &admin, &items).await;
    resp.assert_status_is_ok();
    let result = json(resp).await;
    assert_eq!(
        (result["succeeded"].clone(), result["failed"].clone()),
        (json!(2), json!(2))
    );
    let r = result["items"].as_array().unwrap();
    assert_eq!(r.len(), 4);
    for (i, item) in r.iter().enumerate() {
        assert_eq!(item["index"], i);
    }
    assert_eq!(
        (r[0]["ok"].clone(), r[0]["product"]["name"].clone()),
        (json!(true), json!("Bulk One"))
    );
    assert_eq!(r[1]["ok"], false);
    assert!(r[1].get("product").is_none());
    assert_eq!(r[1]["error"]["status"], 422);
    assert_eq!(r[1]["error"]["code"], "validation_failed");
    assert_eq!(r[1]["error"]["errors"][0]["field"], "variants[0].price.amount");
    assert_eq!(r[2]["ok"], true);
    // The same SKU twice in one batch: the first wins.
    assert_eq!(
        (r[3]["ok"].clone(), r[3]["error"]["code"].clone()),
        (json!(false), json!("sku_taken"))
    );
    assert_eq!(r[3]["error"]["status"], 409);

    // Nothing of the refused items was written: their names are absent and the SKU is free.
    let all = list(cli, "/api/v1/products", Some(&admin), &[]).await;
    assert_eq!(sorted(names(&all)), strs(&["Bulk One", "Bulk Three"]));
    create(cli, &admin, &product("Bulk Two", "BULK-2", 2000)).await;

    // Bulk update: each item on its own.
    let one = r[0]["product"]["id"].as_str().unwrap();
    let three = r[2]["product"]["id"].as_str().unwrap();
    let missing = uuid::Uuid::now_v7().to_string();
    let update = json!({"items": [
        {"id": one, "product": product("Bulk One Renamed", "BULK-1", 1100)},
        {"id": missing, "product": product("Ghost", "GHOST-1", 100)},
        {"id": three, "product": product("Bulk Three", "BULK-3", -5)},
    ]});
    let resp = put(cli, "/api/v1/admin/products/bulk", &admin, &update).await;
    resp.assert_status_is_ok();
    let result = json(resp).await;
    let r = result["items"].as_array().unwrap();
    assert_eq!(r[0]["product"]["name"], "Bulk One Renamed");
    assert_eq!(r[0]["product"]["slug"], "bulk-one");
    assert_eq!(
        (r[1]["ok"].clone(), r[1]["error"]["status"].clone()),
        (json!(false), json!(404))
    );
    assert_eq!(r[2]["error"]["errors"][0]["field"], "variants[0].price.amount");
    let three_now = json(get(cli, &format!("/api/v1/products/{three}"), None).await).await;
    assert_eq!(three_now["minPrice"]["amount"], 3000);
    let resp = put(
        cli,
        "/api/v1/admin/products/bulk",
        &admin,
        &json!({"items": [{"id": "nope", "product": product("X", "X-1", 1)}]}),
    )
    .await;
    assert_eq!(
        assert_problem(resp, 400, "bad_request").await["errors"][0]["field"],
        "items[0].id"
    );

    // Bulk archive: customers no longer see them; staff still do.
    let resp = post(
        cli,
        "/api/v1/admin/products/bulk/archive",
        &admin,
        &json!({"ids": [one, missing]}),
    )
    .await;
    resp.assert_status_is_ok();
    let result = json(resp).await;
    assert_eq!(result["items"][0]["product"]["status"], "archived");
    assert_eq!(result["items"][1]["error"]["code"], "not_found");
    assert_problem(
        get(cli, &format!("/api/v1/products/{one}"), None).await,
        404,
        "not_found",
    )
    .await;
    assert_eq!(
        sorted(names(&list(cli, "/api/v1/products", None, &[]).await)),
        strs(&["Bulk Three", "Bulk Two"])
    );
    let archived = json(get(cli, &format!("/api/v1/products/{one}"), Some(&admin)).await).await;
    assert_eq!(archived["status"], "archived");
    let resp = post(
        cli,
        "/api/v1/admin/products/bulk/archive",
        &admin,
        &json!({"ids": ["nope"]}),
    )
    .await;
    assert_eq!(
        assert_problem(resp, 400, "bad_request").await["errors"][0]["field"],
        "ids[0]"
    );

    // At most 100 items per call.
    let many: Vec<Value> = (0..101)
        .map(|i| product(&format!("Many {i}"), &format!("MANY-{i}"), 100))
        .collect();
    let resp = post(cli, "/api/v1/admin/products/bulk", &admin, &json!({"items": many})).await;
    assert_eq!(invalid_field(resp).await, "items");
    let ids: Vec<String> = (0..101).map(|_| uuid::Uuid::now_v7().to_string()).collect();
    let resp = post(cli, "/api/v1/admin/products/bulk/archive", &admin, &json!({"ids": ids})).await;
    assert_eq!(invalid_field(resp).await, "ids");
    assert_eq!(list(cli, "/api/v1/products", Some(&admin), &[]).await["total"], 3);
}

// ---------------------------------------------------------------------------------------------
// Images

/// The host over the given backend with an image store the test can look into.
async fn images_env(mongo: bool) -> (Client, (Commerce, MemoryImageStore)) {
    let images = MemoryImageStore::new();
    let (cli, commerce) = if mongo {
        support::mongo_client_with_images(images.clone()).await
    } else {
        support::memory_client_with_images(images.clone())
    };
    (cli, (commerce, images))
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A valid `width` x `height` RGBA PNG (uncompressed deflate blocks).
fn png(width: u32, height: u32) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&u32::try_from(data.len()).unwrap().to_be_bytes());
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        out.extend_from_slice(&body);
        out.extend_from_slice(&crc32(&body).to_be_bytes());
    }
    let mut raw = Vec::new();
    for y in 0..height {
        raw.push(0); // filter: none
        for x in 0..width {
            raw.extend_from_slice(&[(x * 40) as u8, (y * 40) as u8, 200, 255]);
        }
    }
    assert!(raw.len() < 65_535, "one stored block");
    let len = u16::try_from(raw.len()).unwrap();
    let mut zlib = vec![0x78, 0x01, 0x01];
    zlib.extend_from_slice(&len.to_le_bytes());
    zlib.extend_from_slice(&(!len).to_le_bytes());
    zlib.extend_from_slice(&raw);
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in &raw {
        a = (a + u32::from(byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    zlib.extend_from_slice(&((b << 16) | a).to_be_bytes());
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 6, 0, 0, 0]); // 8-bit RGBA, no interlace
    let mut out = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &zlib);
    chunk(&mut out, b"IEND", &[]);
    out
}

/// A 1x1 progressive greyscale JPEG (a well-known smallest one browsers render).
fn jpeg() -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(
            "/9j/4AAQSkZJRgABAQEASABIAAD/2wBDAP//////////////////////////////////////////////////////\
             ////////////////////////////////wgALCAABAAEBAREA/8QAFBABAAAAAAAAAAAAAAAAAAAAAP/aAAgBAQABPxA=",
        )
        .unwrap()
}

/// A 1x1 lossless WebP.
fn webp() -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode("UklGRhoAAABXRUJQVlA4TA0AAAAvAAAAEAcQERGIiP4HAA==")
        .unwrap()
}

async fn upload(
    cli: &Client,
    auth: &str,
    product_id: &str,
    file: Vec<u8>,
    name: &str,
    alt: Option<&str>,
) -> TestResponse {
    let mut form = TestForm::new().field(
        TestFormField::bytes(file)
            .name("file")
            .filename(name)
            .content_type("image/png"),
    );
    if let Some(alt) = alt {
        form = form.text("alt", alt);
    }
    cli.post(format!("/api/v1/products/{product_id}/images"))
        .header("authorization", auth)
        .multipart(form)
        .send()
        .await
}

async fn images_upload_thumbnail_and_delete(cli: &Client, env: &(Commerce, MemoryImageStore)) {
    let (commerce, images) = env;
    let admin = staff(cli, commerce).await;
    let p = create(cli, &admin, &product("Framed Print", "PRINT-1", 2500)).await;
    let id = p["id"].as_str().unwrap();
    assert!(p["thumbnail"].is_null());

    let resp = upload(cli, &admin, id, png(3, 2), "print.png", Some("The print, framed")).await;
    resp.assert_status(StatusCode::CREATED);
    let first = json(resp).await;
    let image = &first["image"];
    assert_eq!(image["contentType"], "image/png");
    assert_eq!((image["width"].clone(), image["height"].clone()), (json!(3), json!(2)));
    assert_eq!(image["sizeBytes"], png(3, 2).len());
    assert_eq!(image["alt"], "The print, framed");
    let first_url = image["url"].as_str().unwrap().to_owned();
    assert_eq!(first["product"]["thumbnail"], first_url.as_str());
    let first_key = format!("products/{id}/{}.png", image["id"].as_str().unwrap());
    let (content_type, bytes) = images.get(&first_key).unwrap().expect("stored");
    assert_eq!((content_type.as_str(), bytes), ("image/png", png(3, 2)));

    // The type comes from the bytes, whatever the file is called.
    let resp = upload(cli, &admin, id, jpeg(), "photo.png", None).await;
    resp.assert_status(StatusCode::CREATED);
    let second = json(resp).await;
    assert_eq!(second["image"]["contentType"], "image/jpeg");
    assert_eq!(
        (second["image"]["width"].clone(), second["image"]["height"].clone()),
        (json!(1), json!(1))
    );
    assert!(second["image"]["alt"].is_null());
    let resp = upload(cli, &admin, id, webp(), "pixel.webp", None).await;
    resp.assert_status(StatusCode::CREATED);
    let third = json(resp).await;
    assert_eq!(third["image"]["contentType"], "image/webp");
    assert_eq!(third["image"]["width"], 1);
    assert_eq!(images.len().unwrap(), 3);

    // The first image stays the thumbnail; the product lists all three in order.
    let now = json(get(cli, &format!("/api/v1/products/{id}"), None).await).await;
    assert_eq!(now["thumbnail"], first_url.as_str());
    let ids: Vec<&Value> = now["images"].as_array().unwrap().iter().map(|i| &i["id"]).collect();
    assert_eq!(
        ids,
        vec![&first["image"]["id"], &second["image"]["id"], &third["image"]["id"]]
    );

    // An upload near the 5 MiB core limit passes the edge (whose JSON limit is far lower).
    let mut big = png(1, 1);
    big.resize(5 * 1024 * 1024 - 1024, 0);
    let resp = upload(cli, &admin, id, big, "big.png", None).await;
    resp.assert_status(StatusCode::CREATED);
    let big_image = json(resp).await["image"].clone();
    let big_path = format!("/api/v1/products/{id}/images/{}", big_image["id"].as_str().unwrap());
    delete(cli, &big_path, &admin).await.assert_status_is_ok();

    // Deleting the thumbnail's image: the object goes and the next image takes its place.
    let path = format!("/api/v1/products/{id}/images/{}", image["id"].as_str().unwrap());
    let resp = delete(cli, &path, &admin).await;
    resp.assert_status_is_ok();
    let after = json(resp).await;
    assert_eq!(after["images"].as_array().unwrap().len(), 2);
    assert_eq!(after["thumbnail"], second["image"]["url"]);
    assert!(images.get(&first_key).unwrap().is_none());
    assert_eq!(images.len().unwrap(), 2);
    let reread = json(get(cli, &format!("/api/v1/products/{id}"), None).await).await;
    assert_eq!(reread["thumbnail"], second["image"]["url"]);
    assert_problem(delete(cli, &path, &admin).await, 404, "not_found").await;
    let bad = format!("/api/v1/products/{id}/images/nope");
    let body = assert_problem(delete(cli, &bad, &admin).await, 400, "bad_request").await;
    assert_eq!(body["errors"][0]["field"], "imageId");

    // Deleting the product deletes its remaining images.
    let resp = delete(cli, &format!("/api/v1/products/{id}"), &admin).await;
    assert_eq!(json(resp).await["result"], "deleted");
    assert!(images.is_empty().unwrap());
}

async fn bad_images_are_refused(cli: &Client, env: &(Commerce, MemoryImageStore)) {
    let (commerce, images) = env;
    let admin = staff(cli, commerce).await;
    let shopper = customer(cli, "shopper@example.com").await;
    let p = create(cli, &admin, &product("Poster", "POSTER-1", 900)).await;
    let id = p["id"].as_str().unwrap();

    // Text dressed up as a PNG.
    let resp = upload(cli, &admin, id, b"just some text, honestly".to_vec(), "evil.png", None).await;
    assert_eq!(invalid_field(resp).await, "file");
    // PNG magic with a broken header.
    let resp = upload(cli, &admin, id, png(2, 2)[..12].to_vec(), "cut.png", None).await;
    assert_eq!(invalid_field(resp).await, "file");
    let resp = upload(cli, &admin, id, Vec::new(), "empty.png", None).await;
    assert_eq!(invalid_field(resp).await, "file");
    // Over the core's 5 MiB but within the edge's 6 MiB upload limit: 422 naming the file.
    let mut big = png(1, 1);
    big.resize(5 * 1024 * 1024 + 1, 0);
    let body = assert_problem(
        upload(cli, &admin, id, big, "big.png", None).await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "file");
    assert!(
        body["errors"][0]["message"].as_str().unwrap().contains("5 MiB"),
        "{body}"
    );
    // Over the edge's upload limit: 413 before anything is read.
    let mut huge = png(1, 1);
    huge.resize(7 * 1024 * 1024, 0);
    assert_problem(
        upload(cli, &admin, id, huge, "huge.png", None).await,
        413,
        "payload_too_large",
    )
    .await;
    // The larger limit is for image uploads only.
    let mut padded = product("Poster", "POSTER-1", 900);
    padded["description"] = json!("x".repeat(100 * 1024));
    assert_problem(
        post(cli, "/api/v1/products", &admin, &padded).await,
        413,
        "payload_too_large",
    )
    .await;
    // Alt text is checked too.
    let long_alt = "a".repeat(201);
    let resp = upload(cli, &admin, id, png(1, 1), "ok.png", Some(&long_alt)).await;
    assert_eq!(invalid_field(resp).await, "alt");

    // Staff only, known products only, and a `file` part is required.
    assert_problem(
        upload(cli, &shopper, id, png(1, 1), "a.png", None).await,
        403,
        "forbidden",
    )
    .await;
    let resp = cli
        .post(format!("/api/v1/products/{id}/images"))
        .multipart(TestForm::new().bytes("file", png(1, 1)))
        .send()
        .await;
    assert_problem(resp, 401, "unauthorized").await;
    let unknown = uuid::Uuid::now_v7().to_string();
    assert_problem(
        upload(cli, &admin, &unknown, png(1, 1), "a.png", None).await,
        404,
        "not_found",
    )
    .await;
    let resp = cli
        .post(format!("/api/v1/products/{id}/images"))
        .header("authorization", &admin)
        .multipart(TestForm::new().text("alt", "no file"))
        .send()
        .await;
    assert_problem(resp, 400, "bad_request").await;
    let resp = cli
        .post(format!("/api/v1/products/{id}/images"))
        .header("authorization", &admin)
        .body_json(&json!({"file": "x"}))
        .send()
        .await;
    assert_eq!(resp.0.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // Nothing was stored.
    assert!(images.is_empty().unwrap());
    let now = json(get(cli, &format!("/api/v1/products/{id}"), None).await).await;
    assert_eq!(now["images"], json!([]));
    assert!(now["thumbnail"].is_null());
}
