//! The host's skeleton through the real router: docs, probes, and that malformed requests get
//! 4xx problem bodies, never a 500.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use poem::http::StatusCode;
use serde_json::{Value, json};
use support::{assert_problem, json, memory_client};

#[tokio::test]
async fn serves_a_valid_openapi_3_document_and_swagger_ui() {
    let (cli, _) = memory_client();
    let resp = cli.get("/api/v1/openapi.json").send().await;
    resp.assert_status_is_ok();
    let doc = json(resp).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{}", doc["openapi"]);
    assert_eq!(doc["info"]["title"], "Commerce API");
    for path in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/api/v1/auth/register",
        "/api/v1/auth/login",
        "/api/v1/users/profile",
    ] {
        assert!(doc["paths"][path].is_object(), "missing {path}");
    }
    assert_eq!(doc["components"]["securitySchemes"]["bearerAuth"]["scheme"], "bearer");
    // Every operation has an operationId, a description and at least one documented error.
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            assert!(op["operationId"].is_string(), "{method} {path} has no operationId");
            assert!(
                op["summary"].is_string() || op["description"].is_string(),
                "{method} {path} is undocumented"
            );
        }
    }

    let ui = cli.get("/api/v1/docs").send().await;
    ui.assert_status_is_ok();
    let html = ui.0.into_body().into_string().await.unwrap();
    assert!(html.contains("swagger-ui"), "not a Swagger UI page");
    assert!(
        html.contains("/api/v1/auth/login"),
        "Swagger UI does not carry the spec"
    );
}

#[tokio::test]
async fn openapi_document_matches_the_committed_snapshot() {
    let (cli, _) = memory_client();
    let live: Value = json(cli.get("/api/v1/openapi.json").send().await).await;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.json");
    let pretty = serde_json::to_string_pretty(&sorted(live)).unwrap() + "\n";
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &pretty).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == pretty,
        "the OpenAPI document changed: review the diff, then run `UPDATE_OPENAPI=1 cargo test -p commerce-http --test foundation` and commit commerce-http/openapi.json"
    );
}

/// Keys in sorted order whatever serde_json's `preserve_order` feature (which feature
/// unification may switch on) does, so the snapshot compares the same in every build.
fn sorted(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

#[tokio::test]
async fn health_and_readiness_report_every_backend() {
    let (cli, _) = memory_client();
    let resp = cli.get("/healthz").send().await;
    resp.assert_status_is_ok();
    assert_eq!(json(resp).await, json!({"status": "ok"}));

    let resp = cli.get("/readyz").send().await;
    resp.assert_status_is_ok();
    let body = json(resp).await;
    assert_eq!(body["status"], "ready");
    let areas: Vec<_> = body["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (b["area"].clone(), b["backend"].clone(), b["ok"].clone()))
        .collect();
    assert_eq!(
        areas,
        vec![
            (json!("accounts"), json!("memory"), json!(true)),
            (json!("catalog"), json!("memory"), json!(true)),
            (json!("checkout"), json!("memory"), json!(true)),
        ]
    );
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_security_headers() {
    let (cli, _) = memory_client();
    let resp = cli.get("/healthz").header("x-request-id", "trace-123").send().await;
    resp.assert_header("x-request-id", "trace-123");
    resp.assert_header("x-content-type-options", "nosniff");
    let resp = cli
        .get("/healthz")
        .header("x-request-id", "bad id with spaces")
        .send()
        .await;
    let id = resp
        .0
        .headers()
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert_ne!(id, "bad id with spaces");
    assert_eq!(id.len(), 36, "a fresh UUID replaces an unsafe client id");
}

#[tokio::test]
async fn unknown_route_and_wrong_method_are_problems() {
    let (cli, _) = memory_client();
    assert_problem(cli.get("/api/v1/nope").send().await, 404, "route_not_found").await;
    assert_problem(cli.get("/api/v1/auth/login").send().await, 405, "method_not_allowed").await;
}

#[tokio::test]
async fn malformed_json_is_a_400_problem_naming_the_spot() {
    let (cli, _) = memory_client();
    let resp = cli
        .post("/api/v1/auth/login")
        .content_type("application/json")
        .body("{\"email\": ")
        .send()
        .await;
    let body = assert_problem(resp, 400, "malformed_body").await;
    assert!(body["detail"].as_str().unwrap().contains("malformed JSON"), "{body}");
}

#[tokio::test]
async fn wrong_types_and_missing_fields_name_the_field() {
    let (cli, _) = memory_client();
    let resp = cli
        .post("/api/v1/auth/login")
        .content_type("application/json")
        .body_json(&json!({"email": 42, "password": "x"}))
        .send()
        .await;
    let body = assert_problem(resp, 400, "malformed_body").await;
    assert_eq!(body["errors"][0]["field"], "email", "{body}");

    let resp = cli
        .post("/api/v1/auth/login")
        .content_type("application/json")
        .body_json(&json!({"email": "a@b.co"}))
        .send()
        .await;
    let body = assert_problem(resp, 400, "malformed_body").await;
    assert_eq!(body["errors"][0]["field"], "password", "{body}");

    // A query operator smuggled into a string field is just a wrong type.
    let resp = cli
        .post("/api/v1/auth/login")
        .content_type("application/json")
        .body_json(&json!({"email": {"$gt": ""}, "password": "x"}))
        .send()
        .await;
    let body = assert_problem(resp, 400, "malformed_body").await;
    assert_eq!(body["errors"][0]["field"], "email", "{body}");
}

#[tokio::test]
async fn wrong_content_type_is_415() {
    let (cli, _) = memory_client();
    let resp = cli
        .post("/api/v1/auth/login")
        .content_type("text/plain")
        .body("email=a")
        .send()
        .await;
    assert_problem(resp, 415, "unsupported_media_type").await;
}

#[tokio::test]
async fn oversize_bodies_are_413_with_or_without_content_length() {
    let (cli, _) = memory_client();
    let big = format!("{{\"email\": \"{}\", \"password\": \"x\"}}", "a".repeat(70 * 1024));
    let resp = cli
        .post("/api/v1/auth/login")
        .content_type("application/json")
        .body(big.clone())
        .send()
        .await;
    assert_problem(resp, 413, "payload_too_large").await;

    let stream = futures::stream::iter(
        big.into_bytes()
            .chunks(4096)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    let resp = cli
        .post("/api/v1/auth/login")
        .content_type("application/json")
        .header("transfer-encoding", "chunked")
        .body(poem::Body::from_bytes_stream(stream))
        .send()
        .await;
    assert_problem(resp, 413, "payload_too_large").await;
}

#[tokio::test]
async fn bad_query_parameters_are_400_naming_the_parameter() {
    let (cli, commerce) = memory_client();
    let admin = commerce
        .accounts()
        .ensure_superadmin("root@example.com", "password-123")
        .await
        .unwrap();
    let session = commerce
        .accounts()
        .login(admin.email.as_str(), "password-123")
        .await
        .unwrap();
    let auth = format!("Bearer {}", session.access.token);
    let resp = cli
        .get("/api/v1/admin/users")
        .query("limit", &"500")
        .header("authorization", &auth)
        .send()
        .await;
    let body = assert_problem(resp, 400, "bad_request").await;
    assert_eq!(body["errors"][0]["field"], "limit");
    let resp = cli
        .get("/api/v1/admin/users")
        .query("page", &"abc")
        .header("authorization", &auth)
        .send()
        .await;
    let body = assert_problem(resp, 400, "bad_request").await;
    assert!(body["detail"].as_str().unwrap().contains("page"), "{body}");
    assert_eq!(StatusCode::BAD_REQUEST.as_u16(), 400);
}

#[tokio::test]
async fn credential_endpoints_are_rate_limited_per_client() {
    let commerce = commerce_core::Commerce::in_memory(support::test_config()).unwrap();
    let mut config = support::host_config();
    config.auth_rate_limit_per_minute = 3;
    config.trust_forwarded_for = true;
    let app = commerce_http::build_app(&commerce, &config);
    let cli = poem::test::TestClient::new(poem::EndpointExt::map_to_response(app));
    let attempt = |ip: &'static str| {
        cli.post("/api/v1/auth/login")
            .header("x-forwarded-for", ip)
            .body_json(&json!({"email": "nobody@example.com", "password": "wrong-password"}))
            .send()
    };
    for _ in 0..3 {
        let resp = attempt("203.0.113.7").await;
        assert_eq!(resp.0.status().as_u16(), 401);
        resp.assert_header("ratelimit-policy", "3;w=60");
    }
    let resp = attempt("203.0.113.7").await;
    let retry_after: u64 = resp
        .0
        .headers()
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=20).contains(&retry_after), "{retry_after}");
    assert!(
        resp.0
            .headers()
            .get("ratelimit")
            .unwrap()
            .to_str()
            .unwrap()
            .contains("remaining=0")
    );
    assert_problem(resp, 429, "rate_limited").await;
    // Another client is unaffected, and so are other routes.
    assert_eq!(attempt("198.51.100.1").await.0.status().as_u16(), 401);
    cli.get("/healthz")
        .header("x-forwarded-for", "203.0.113.7")
        .send()
        .await
        .assert_status_is_ok();
}

#[tokio::test]
async fn metrics_count_requests_by_operation_and_ask_for_their_token() {
    let (cli, _) = memory_client();
    cli.get("/healthz").send().await.assert_status_is_ok();
    cli.get("/healthz").send().await.assert_status_is_ok();
    let missing = format!("/api/v1/products/{}", uuid::Uuid::now_v7());
    assert_eq!(cli.get(&missing).send().await.0.status().as_u16(), 404);
    assert_eq!(cli.get("/no/such/route").send().await.0.status().as_u16(), 404);

    let resp = cli.get("/metrics").send().await;
    resp.assert_status_is_ok();
    resp.assert_content_type("text/plain; version=0.0.4; charset=utf-8");
    let text = resp.0.into_body().into_string().await.unwrap();
    for line in [
        r#"commerce_http_requests_total{method="GET",operation="getHealth",status="200"} 2"#,
        // By the route's operation, never by the id in the path.
        r#"commerce_http_requests_total{method="GET",operation="getProduct",status="404"} 1"#,
        r#"commerce_http_requests_total{method="GET",operation="other",status="404"} 1"#,
        r#"commerce_http_request_duration_seconds_count{operation="getHealth"} 2"#,
        // This request itself.
        "commerce_http_requests_in_flight 1",
    ] {
        assert!(text.contains(line), "missing {line} in:\n{text}");
    }
    assert!(!text.contains(&missing[17..]), "no path id in a label");

    // With a token configured, the metrics are for whoever shows it.
    let commerce = commerce_core::Commerce::in_memory(support::test_config()).unwrap();
    let mut config = support::host_config();
    config.metrics_token = Some("scrape-token".to_owned());
    let app = commerce_http::build_app(&commerce, &config);
    let cli = poem::test::TestClient::new(poem::EndpointExt::map_to_response(app));
    let denied = cli.get("/metrics").send().await;
    denied.assert_header("www-authenticate", "Bearer");
    assert_problem(denied, 401, "unauthorized").await;
    let wrong = cli.get("/metrics").header("authorization", "Bearer other").send().await;
    assert_eq!(wrong.0.status().as_u16(), 401);
    cli.get("/metrics")
        .header("authorization", "Bearer scrape-token")
        .send()
        .await
        .assert_status_is_ok();
}

/// Redis for the shared rate limits: `TEST_REDIS_URL`, or the local one `./scripts/test` starts.
async fn test_redis_url() -> String {
    let url = std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    if let Err(e) = commerce_http::ratelimit::check_redis(&url).await {
        panic!(
            "Redis does not answer at {url} ({e}): run the tests with ./scripts/test, which starts it, \
             or start it with `redis-server --port 6379 --daemonize yes`, or set TEST_REDIS_URL"
        );
    }
    url
}

/// A host of a fleet: its own app over its own engine, limiting sign-ins to 3 a minute.
fn fleet_host(redis_url: Option<&str>) -> poem::test::TestClient<impl poem::Endpoint> {
    let commerce = commerce_core::Commerce::in_memory(support::test_config()).unwrap();
    let mut config = support::host_config();
    config.auth_rate_limit_per_minute = 3;
    config.trust_forwarded_for = true;
    config.redis_url = redis_url.map(str::to_owned);
    poem::test::TestClient::new(poem::EndpointExt::map_to_response(commerce_http::build_app(
        &commerce, &config,
    )))
}

async fn sign_in_status<E: poem::Endpoint>(cli: &poem::test::TestClient<E>, ip: &str) -> u16 {
    cli.post("/api/v1/auth/login")
        .header("x-forwarded-for", ip)
        .body_json(&json!({"email": "nobody@example.com", "password": "wrong-password"}))
        .send()
        .await
        .0
        .status()
        .as_u16()
}

#[tokio::test]
async fn hosts_sharing_redis_share_one_limit_per_client() {
    let url = test_redis_url().await;
    let (a, b) = (fleet_host(Some(&url)), fleet_host(Some(&url)));
    // Clients of their own in every run: random /64 networks of the documentation prefix (an
    // IPv6 client counts by its /64).
    let random_client = || {
        let bits = uuid::Uuid::now_v7().as_u128(); // its low 62 bits are random
        format!("2001:db8:{:x}:{:x}::1", bits as u16, (bits >> 16) as u16)
    };
    let (ip, other) = (random_client(), random_client());
    assert_eq!(sign_in_status(&a, &ip).await, 401);
    assert_eq!(sign_in_status(&b, &ip).await, 401);
    assert_eq!(sign_in_status(&a, &ip).await, 401);
    // Three attempts over two hosts: the fourth is refused by either.
    let refused = b
        .post("/api/v1/auth/login")
        .header("x-forwarded-for", &ip)
        .body_json(&json!({"email": "nobody@example.com", "password": "wrong-password"}))
        .send()
        .await;
    let retry_after: u64 = refused.0.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=20).contains(&retry_after), "{retry_after}");
    assert_problem(refused, 429, "rate_limited").await;
    assert_eq!(sign_in_status(&a, &ip).await, 429);
    assert_eq!(sign_in_status(&b, &other).await, 401, "another client is unaffected");

    // Hosts on their own buckets (no Redis) do not see each other's attempts.
    let (c, d) = (fleet_host(None), fleet_host(None));
    for _ in 0..3 {
        assert_eq!(sign_in_status(&c, &ip).await, 401);
    }
    assert_eq!(sign_in_status(&d, &ip).await, 401);
}

#[tokio::test]
async fn when_redis_does_not_answer_each_host_limits_on_its_own() {
    // A port nothing listens on: every attempt is still limited, by the host itself.
    let host = fleet_host(Some("redis://127.0.0.1:1"));
    let ip = "2001:db8:2::1";
    for _ in 0..3 {
        assert_eq!(sign_in_status(&host, ip).await, 401);
    }
    assert_eq!(sign_in_status(&host, ip).await, 429);
}

/// The host's own connection loop (`commerce_http::serve`), over real sockets.
mod serving {
    use std::net::SocketAddr;
    use std::time::{Duration, Instant};

    use commerce_core::Commerce;
    use poem::{Endpoint, EndpointExt, Request, Response, Route, handler};
    use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::oneshot;
    use tokio::task::JoinHandle;

    use crate::support::{host_config, test_config};

    /// Serves `app` on a free port until the returned sender fires (or drops).
    async fn start(
        app: impl Endpoint<Output = Response> + 'static,
        grace: Duration,
    ) -> (SocketAddr, oneshot::Sender<()>, JoinHandle<std::io::Result<()>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(commerce_http::serve(
            listener,
            app,
            async move {
                let _ = stopped.await;
            },
            grace,
        ));
        (addr, stop, server)
    }

    /// Sends one HTTP/1.1 request on `stream` and reads its response: status, head, body
    /// (of the length `content-length` gives).
    async fn exchange(stream: &mut TcpStream, method: &str, path: &str) -> (u16, String, Vec<u8>) {
        let request = format!("{method} {path} HTTP/1.1\r\nHost: test\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut reader = BufReader::new(stream);
        let mut head = String::new();
        loop {
            let mut line = String::new();
            assert!(
                reader.read_line(&mut line).await.unwrap() > 0,
                "closed mid-head: {head}"
            );
            if line == "\r\n" {
                break;
            }
            head.push_str(&line);
        }
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length: ")
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| panic!("no content-length: {head}"))
            .trim()
            .parse()
            .unwrap();
        let mut body = vec![0; length];
        reader.read_exact(&mut body).await.unwrap();
        (status, head, body)
    }

    #[handler]
    fn addresses(req: &Request) -> String {
        format!("{} {}", req.remote_addr(), req.local_addr())
    }

    #[handler]
    async fn slow() -> &'static str {
        tokio::time::sleep(Duration::from_millis(300)).await;
        "finished"
    }

    #[handler]
    async fn hang() -> &'static str {
        tokio::time::sleep(Duration::from_secs(60)).await;
        "never"
    }

    #[tokio::test]
    async fn serves_the_host_over_tcp_on_kept_alive_connections() {
        let commerce = Commerce::in_memory(test_config()).unwrap();
        let app = commerce_http::build_app(&commerce, &host_config());
        let (addr, stop, server) = start(app, Duration::from_secs(1)).await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        // A large body (the OpenAPI document) goes out whole, then the same connection serves
        // the next request.
        let (status, head, body) = exchange(&mut stream, "GET", "/api/v1/openapi.json").await;
        assert_eq!(status, 200, "{head}");
        assert!(body.len() > 100_000, "{} bytes", body.len());
        let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(doc["info"]["title"], "Commerce API");
        let (status, head, body) = exchange(&mut stream, "GET", "/api/v1/products?limit=5").await;
        assert_eq!(status, 200, "{head}");
        assert!(head.to_ascii_lowercase().contains("x-request-id: "), "{head}");
        let page: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(page["total"], 0);
        // Errors are the host's problem documents here too.
        let (status, head, _) = exchange(&mut stream, "GET", "/api/v1/products?limit=many").await;
        assert_eq!(status, 400, "{head}");
        assert!(head.contains("application/problem+json"), "{head}");
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn each_request_knows_its_peer_and_the_address_it_came_in_on() {
        let (addr, _stop, _server) = start(Route::new().at("/", addresses), Duration::from_secs(1)).await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let client = stream.local_addr().unwrap();
        let (status, _, body) = exchange(&mut stream, "GET", "/").await;
        assert_eq!(status, 200);
        assert_eq!(
            String::from_utf8(body).unwrap(),
            format!("socket://{client} socket://{addr}")
        );
    }

    #[tokio::test]
    async fn http2_by_prior_knowledge_is_served_on_the_same_port() {
        let (addr, _stop, _server) = start(Route::new().at("/", addresses), Duration::from_secs(1)).await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        // The client preface, then an empty SETTINGS frame (length 0, type 4, no flags, stream 0).
        stream.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.unwrap();
        stream.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.unwrap();
        // An HTTP/2 server's first frame is its own SETTINGS; an HTTP/1 one would answer 400.
        let mut header = [0u8; 9];
        tokio::time::timeout(Duration::from_secs(2), stream.read_exact(&mut header))
            .await
            .expect("the server answers the preface")
            .unwrap();
        assert_eq!((header[3], header[5..9].to_vec()), (4, vec![0, 0, 0, 0]), "{header:?}");
    }

    #[tokio::test]
    async fn a_shutdown_lets_requests_in_flight_finish_and_takes_no_new_connection() {
        let app = Route::new().at("/slow", slow).at("/", addresses).boxed();
        let (addr, stop, server) = start(app, Duration::from_secs(5)).await;
        let mut idle = TcpStream::connect(addr).await.unwrap();
        assert_eq!(exchange(&mut idle, "GET", "/").await.0, 200);
        let in_flight = tokio::spawn(async move {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            exchange(&mut stream, "GET", "/slow").await
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        stop.send(()).unwrap();
        let (status, _, body) = in_flight.await.unwrap();
        assert_eq!((status, body.as_slice()), (200, b"finished".as_slice()));
        tokio::time::timeout(Duration::from_secs(2), server)
            .await
            .expect("the server stops once its requests are answered")
            .unwrap()
            .unwrap();
        // The idle kept-alive connection was closed, and nobody listens any more.
        let mut rest = Vec::new();
        assert_eq!(idle.read_to_end(&mut rest).await.unwrap_or(0), 0);
        assert!(TcpStream::connect(addr).await.is_err(), "still accepting");
    }

    #[tokio::test]
    async fn connections_still_busy_after_the_grace_period_are_dropped() {
        let (addr, stop, server) = start(Route::new().at("/hang", hang), Duration::from_millis(200)).await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /hang HTTP/1.1\r\nHost: test\r\n\r\n")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let asked = Instant::now();
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(3), server)
            .await
            .expect("the server stops after its grace period")
            .unwrap()
            .unwrap();
        assert!(
            asked.elapsed() >= Duration::from_millis(200),
            "stopped before the grace period"
        );
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(3), stream.read_to_end(&mut rest))
            .await
            .expect("the hung request's connection is closed");
        assert!(
            read.is_err() || rest.is_empty(),
            "answered: {}",
            String::from_utf8_lossy(&rest)
        );
    }
}
