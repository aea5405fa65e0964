//! `Idempotency-Key` for money-bearing POSTs (IETF httpapi draft, Stripe's semantics), as one
//! middleware so every such route behaves the same: the first request with a key runs and its
//! answer is stored; the same key with the same request replays that answer with
//! `Idempotent-Replayed: true`; the same key with a different request is 422; a retry while
//! the first still runs is 409. Server errors are not stored (the client may retry).
//!
//! A handler may store its answer with its own write instead (checkout: the order and its
//! answer in one transaction, `OrderService::checkout_answering`), through the [`ClaimedKey`]
//! in the request's data: then a crash or an abandoned request between the write and the
//! answer cannot leave the key unanswered, for the client's retry to place a second order.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use commerce_core::Commerce;
use commerce_core::domain::{IdempotencyKey, StoredResponse};
use commerce_core::services::{IdempotencyService, IdempotentStart};
use poem::http::{HeaderValue, Method, header};
use poem::{Body, Endpoint, IntoResponse, Request, Response};
use sha2::{Digest, Sha256};

use crate::problem::{ApiError, PROBLEM_JSON};

/// The request header.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// Set on replayed answers.
pub const REPLAYED: &str = "idempotent-replayed";

/// POST routes that take an `Idempotency-Key`.
const ROUTES: &[&str] = &["/api/v1/orders", "/api/v1/payments/create-intent"];

/// JSON with object keys sorted, so the same request with keys in another order or other
/// whitespace has the same fingerprint.
fn canonical(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => {
            let mut entries: Vec<_> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            serde_json::Value::Object(entries.into_iter().map(|(k, v)| (k, canonical(v))).collect())
        }
        serde_json::Value::Array(items) => serde_json::Value::Array(items.into_iter().map(canonical).collect()),
        other => other,
    }
}

fn fingerprint(method: &Method, path: &str, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(method.as_str().as_bytes());
    h.update(b" ");
    h.update(path.as_bytes());
    h.update(b"\n");
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(v) => h.update(canonical(v).to_string().as_bytes()),
        Err(_) => h.update(body),
    }
    hex::encode(h.finalize())
}

fn replay(stored: StoredResponse) -> Response {
    let content_type = if stored.status >= 400 {
        PROBLEM_JSON
    } else {
        "application/json; charset=utf-8"
    };
    Response::builder()
        .status(poem::http::StatusCode::from_u16(stored.status).unwrap_or(poem::http::StatusCode::OK))
        .header(header::CONTENT_TYPE, content_type)
        .header(REPLAYED, "true")
        .body(stored.body)
}

/// The request's claimed key, in its data for a handler that stores its answer with its own
/// write rather than have this middleware store it afterwards.
#[derive(Clone, Debug)]
pub struct ClaimedKey {
    key: IdempotencyKey,
    with_write: Arc<AtomicBool>,
}

impl ClaimedKey {
    /// The key, to store the answer under.
    pub fn key(&self) -> &IdempotencyKey {
        &self.key
    }

    /// Says the handler's write is about to store its answer: a success was then stored by that
    /// write; a failure must replace it (a client error's answer) or forget the key (a server
    /// error: the write's effect was undone, or never made).
    pub fn answering_with_write(&self) {
        self.with_write.store(true, Ordering::Release);
    }

    fn answered_with_write(&self) -> bool {
        self.with_write.load(Ordering::Acquire)
    }
}

/// Releases a claimed key if the request is abandoned (client gone, task cancelled) before it
/// finished, so the client's retry is not refused as "in flight" for a day.
struct Claim {
    service: IdempotencyService,
    key: Option<IdempotencyKey>,
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            let service = self.service.clone();
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move {
                    let _ = service.release(&key).await;
                });
            }
        }
    }
}

/// The middleware body, for `EndpointExt::around`.
pub async fn idempotent<E: Endpoint>(ep: Arc<E>, mut req: Request) -> poem::Result<Response> {
    // Every request passes here: decide from the method and path alone, before cloning anything.
    let path = req.uri().path().trim_end_matches('/');
    if req.method() != Method::POST || !ROUTES.contains(&path) {
        return ep.call(req).await.map(IntoResponse::into_response);
    }
    let path = path.to_owned();
    let key = req
        .headers()
        .get(IDEMPOTENCY_KEY)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let commerce = req.data::<Commerce>().cloned();
    let (Some(key), Some(commerce)) = (key, commerce) else {
        return ep.call(req).await.map(IntoResponse::into_response);
    };
    // Keys are scoped to the caller and the route; an unauthenticated request goes on to the
    // handler, which answers 401.
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(principal) = bearer.and_then(|t| commerce.accounts().authenticate(t.trim()).ok()) else {
        return ep.call(req).await.map(IntoResponse::into_response);
    };
    let body = req.take_body().into_bytes().await?;
    let scope = format!("{}:{path}", principal.user_id);
    let fp = fingerprint(req.method(), &path, &body);
    req.set_body(Body::from(body));
    let service = commerce.idempotency().clone();
    let key = match service.begin(&scope, &key, &fp).await {
        Err(e) => return Ok(ApiError::from(e).into_response()),
        Ok(IdempotentStart::Replay(stored)) => return Ok(replay(stored)),
        Ok(IdempotentStart::Proceed(key)) => key,
    };
    let mut claim = Claim {
        service: service.clone(),
        key: Some(key.clone()),
    };
    let claimed = ClaimedKey {
        key: key.clone(),
        with_write: Arc::default(),
    };
    req.set_data(claimed.clone());
    let resp = match ep.call(req).await {
        Ok(r) => r.into_response(),
        Err(e) => e.into_response(),
    };
    if resp.status().is_server_error() {
        // Nothing reliable to replay: let the client retry (the claim's drop releases it). An
        // answer the handler's write stored is wrong now: forget it too.
        if claimed.answered_with_write() {
            claim.key = None;
            if let Err(e) = service.forget(&key).await {
                tracing::warn!(error = %e, "idempotency key not forgotten after a server error");
            }
        }
        return Ok(resp);
    }
    if claimed.answered_with_write() && resp.status().is_success() {
        claim.key = None;
        let mut resp = resp;
        resp.headers_mut().insert(REPLAYED, HeaderValue::from_static("false"));
        return Ok(resp);
    }
    let (parts, body) = resp.into_parts();
    let bytes = body.into_vec().await.unwrap_or_default();
    let stored = StoredResponse {
        status: parts.status.as_u16(),
        body: String::from_utf8_lossy(&bytes).into_owned(),
    };
    match service.complete(&key, stored).await {
        Ok(()) => claim.key = None,
        Err(e) => tracing::warn!(error = %e, "idempotency answer not stored; the key is released"),
    }
    let mut resp = Response::from_parts(parts, Body::from(bytes));
    resp.headers_mut().insert(REPLAYED, HeaderValue::from_static("false"));
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    use chrono::Utc;
    use commerce_core::CommerceConfig;
    use commerce_core::domain::{IdempotencyClaim, Role, UserId};
    use commerce_core::services::HashCost;
    use poem::http::StatusCode;

    /// A handler storing `"written"` under the claimed key, as a checkout's order write does,
    /// then answering `status` with `"answered"`; it counts its runs.
    fn handler(status: StatusCode, runs: Arc<std::sync::atomic::AtomicUsize>) -> impl Endpoint {
        poem::endpoint::make(move |req: Request| {
            let runs = runs.clone();
            async move {
                runs.fetch_add(1, Ordering::SeqCst);
                let commerce = req
                    .data::<Commerce>()
                    .cloned()
                    .ok_or_else(|| poem::Error::from_status(StatusCode::IM_A_TEAPOT))?;
                let claimed = req
                    .data::<ClaimedKey>()
                    .cloned()
                    .ok_or_else(|| poem::Error::from_status(StatusCode::IM_A_TEAPOT))?;
                claimed.answering_with_write();
                let written = StoredResponse {
                    status: 201,
                    body: "written".to_owned(),
                };
                commerce
                    .stores()
                    .checkout
                    .complete_key(claimed.key(), &written)
                    .await
                    .map_err(|_| poem::Error::from_status(StatusCode::IM_A_TEAPOT))?;
                Ok::<_, poem::Error>(Response::builder().status(status).body("answered"))
            }
        })
    }

    /// Whether `key` is still held for `user` (a claim with another request mismatches) or
    /// was forgotten (a claim starts; it expires at once, so it leaves nothing behind).
    async fn stored_state(commerce: &Commerce, user: UserId, key: &str) -> &'static str {
        let key = IdempotencyKey {
            scope: format!("{user}:/api/v1/orders"),
            key: key.to_owned(),
        };
        let now = Utc::now();
        match commerce
            .stores()
            .checkout
            .claim_key(&key, "other", now, now)
            .await
            .unwrap()
        {
            IdempotencyClaim::Mismatch => "kept",
            IdempotencyClaim::Started => "forgotten",
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn an_answer_stored_by_the_handlers_write_is_kept_replaced_or_forgotten() {
        let commerce = Commerce::in_memory(CommerceConfig {
            hash_cost: HashCost::insecure_for_tests(),
            ..CommerceConfig::default()
        })
        .unwrap();
        let user = UserId::new();
        let token = commerce
            .accounts()
            .tokens()
            .issue_access(user, Role::Customer, Utc::now())
            .unwrap()
            .token;
        let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let send = |status: StatusCode, key: &'static str| {
            let mut req = Request::builder()
                .method(Method::POST)
                .uri_str("/api/v1/orders")
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .header(IDEMPOTENCY_KEY, key)
                .body("{}");
            req.set_data(commerce.clone());
            idempotent(Arc::new(handler(status, runs.clone())), req)
        };
        let stored = |key: &'static str| {
            let commerce = commerce.clone();
            async move { stored_state(&commerce, user, key).await }
        };

        // A success: the write's answer stands; the middleware stores nothing after it.
        let resp = send(StatusCode::CREATED, "ok").await.unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        assert_eq!(resp.headers().get(REPLAYED).unwrap(), "false");
        let replayed = send(StatusCode::CREATED, "ok").await.unwrap();
        assert_eq!(replayed.headers().get(REPLAYED).unwrap(), "true");
        assert_eq!(replayed.into_body().into_string().await.unwrap(), "written");
        assert_eq!(runs.load(Ordering::SeqCst), 1, "the replay did not run the handler");

        // A client error after the write: its answer replaces the write's.
        let resp = send(StatusCode::CONFLICT, "conflict").await.unwrap();
        assert_eq!(resp.status(), StatusCode::CONFLICT);
        let replayed = send(StatusCode::CREATED, "conflict").await.unwrap();
        assert_eq!(replayed.status(), StatusCode::CONFLICT);
        assert_eq!(replayed.into_body().into_string().await.unwrap(), "answered");
        assert_eq!(runs.load(Ordering::SeqCst), 2);

        // A server error after the write: the key is forgotten, so a retry runs again.
        let resp = send(StatusCode::INTERNAL_SERVER_ERROR, "failed").await.unwrap();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(stored("failed").await, "forgotten");
        let retried = send(StatusCode::CREATED, "failed").await.unwrap();
        assert_eq!(retried.headers().get(REPLAYED).unwrap(), "false");
        assert_eq!(runs.load(Ordering::SeqCst), 4, "the retry ran the handler");
        assert_eq!(stored("failed").await, "kept");
    }

    #[test]
    fn fingerprint_ignores_key_order_and_whitespace_but_not_values() {
        let a = fingerprint(
            &Method::POST,
            "/api/v1/orders",
            br#"{"addressId":"a","couponCode":null}"#,
        );
        let b = fingerprint(
            &Method::POST,
            "/api/v1/orders",
            b"{ \"couponCode\": null,\n \"addressId\": \"a\" }",
        );
        let c = fingerprint(
            &Method::POST,
            "/api/v1/orders",
            br#"{"addressId":"b","couponCode":null}"#,
        );
        let d = fingerprint(
            &Method::POST,
            "/api/v1/payments/create-intent",
            br#"{"addressId":"a","couponCode":null}"#,
        );
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
    }
}
