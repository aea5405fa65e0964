//! The host's edge: request ids, access logs, body limits, security headers, and turning every
//! error (ours, poem's, a panic) into an RFC 9457 problem body.

use std::time::Instant;

use poem::http::{HeaderValue, StatusCode, header};
use poem::middleware::CatchPanic;
use poem::{Body, Endpoint, EndpointExt, IntoResponse, Request, Response};
use tracing::Instrument;

use crate::metrics::Metrics;
use crate::problem::{PROBLEM_JSON, Problem, ProblemField, ProblemJson};
use poem_openapi::OperationId;
use poem_openapi::error::ParseParamError;

/// Header carrying the request id both ways.
pub const REQUEST_ID_HEADER: header::HeaderName = header::HeaderName::from_static("x-request-id");

/// The request's id, available to handlers as `Data<&RequestId>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

/// Accepts a client's id when it is short and plain, else makes a fresh UUIDv7.
fn request_id_for(req: &Request) -> String {
    req.headers()
        .get(&REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64)
        .filter(|v| {
            v.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        })
        .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_owned)
}

fn is_problem(resp: &Response) -> bool {
    resp.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(PROBLEM_JSON))
}

/// Code for an error poem raised before any handler ran.
fn code_for(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::NOT_FOUND => "route_not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        s if s.is_server_error() => "internal",
        _ => "request_rejected",
    }
}

/// Makes sure an error response is a problem body carrying the request id.
async fn into_problem(resp: Response, request_id: &str) -> Response {
    let status = resp.status();
    let (parts, body) = resp.into_parts();
    let text = body.into_string().await.unwrap_or_default();
    let was_problem = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(PROBLEM_JSON));
    let mut value = if was_problem {
        serde_json::from_str::<serde_json::Value>(&text).unwrap_or_default()
    } else {
        let detail = if status.is_server_error() {
            tracing::error!(status = status.as_u16(), detail = %text, "request failed");
            "an unexpected error occurred".to_owned()
        } else if text.trim().is_empty() {
            status.canonical_reason().unwrap_or("error").to_lowercase()
        } else {
            text
        };
        let problem = Problem::new(status, code_for(status), detail);
        serde_json::to_value(poem_openapi::types::ToJSON::to_json(&problem)).unwrap_or_default()
    };
    if let Some(obj) = value.as_object_mut() {
        obj.insert("requestId".to_owned(), serde_json::Value::String(request_id.to_owned()));
    }
    let mut out = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, PROBLEM_JSON)
        .body(value.to_string());
    // Keep headers that matter to clients (WWW-Authenticate, Retry-After, Allow, rate limits).
    for (name, v) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().append(name.clone(), v.clone());
        }
    }
    out
}

/// A query, path or header parameter that is not of its type (`page=-1`, `inStock=maybe`):
/// 400, naming the parameter in `errors` as a field, as every other bad input does.
fn unparsable_parameter(bad: &ParseParamError) -> Response {
    let problem = Problem::new(
        StatusCode::BAD_REQUEST,
        "bad_request",
        format!("failed to parse parameter `{}`: {}", bad.name, bad.reason),
    )
    .with_errors(vec![ProblemField {
        field: bad.name.to_owned(),
        message: bad.reason.clone(),
    }]);
    ProblemJson(Box::new(problem)).into_response()
}

fn too_large(limit: usize) -> Response {
    ProblemJson(Box::new(Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("request body exceeds {limit} bytes"),
    )))
    .into_response()
}

/// Refuses bodies over `limit` bytes: by `Content-Length` when declared, else (chunked) by
/// reading at most `limit` bytes before giving up.
async fn limit_body(mut req: Request, limit: usize) -> Result<Request, Response> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(n) if n > limit as u64 => Err(too_large(limit)),
        Some(_) => Ok(req),
        None => {
            use futures::TryStreamExt;
            let mut stream = req.take_body().into_bytes_stream();
            let mut buf = Vec::new();
            while let Some(chunk) = stream.try_next().await.map_err(|_| too_large(limit))? {
                if buf.len() + chunk.len() > limit {
                    return Err(too_large(limit));
                }
                buf.extend_from_slice(&chunk);
            }
            req.set_body(Body::from(buf));
            Ok(req)
        }
    }
}

/// Whether the request is an image upload (`POST /api/v1/products/:id/images`), which gets the
/// larger upload limit.
pub fn is_image_upload(req: &Request) -> bool {
    let path = req.uri().path();
    req.method() == poem::http::Method::POST && path.starts_with("/api/v1/products/") && path.ends_with("/images")
}

fn add_security_headers(resp: &mut Response) {
    // Named by constants: a `&str` name is parsed and validated again on every insert.
    const CROSS_ORIGIN_OPENER_POLICY: header::HeaderName =
        header::HeaderName::from_static("cross-origin-opener-policy");
    let h = resp.headers_mut();
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(CROSS_ORIGIN_OPENER_POLICY, HeaderValue::from_static("same-origin"));
}

/// Wraps the whole app in the edge behaviour. Bodies are limited to `max_body_bytes`, image
/// uploads (see [`is_image_upload`]) to `max_upload_bytes` (or `max_body_bytes` if larger).
pub fn edge<E: Endpoint + 'static>(
    app: E,
    max_body_bytes: usize,
    max_upload_bytes: usize,
    metrics: Metrics,
) -> impl Endpoint<Output = Response> {
    app.with(CatchPanic::new()).around(move |ep, req| {
        let metrics = metrics.clone();
        async move {
            let started = Instant::now();
            let _in_flight = metrics.start();
            let id = request_id_for(&req);
            let method = req.method().clone();
            let span = tracing::info_span!("request", id = %id, method = %method, path = %req.uri().path());
            async move {
                let mut req = req;
                req.extensions_mut().insert(RequestId(id.clone()));
                let limit = if is_image_upload(&req) {
                    max_upload_bytes.max(max_body_bytes)
                } else {
                    max_body_bytes
                };
                let mut operation = None;
                let mut resp = match limit_body(req, limit).await {
                    Err(resp) => resp,
                    Ok(req) => match ep.call(req).await {
                        Ok(resp) => {
                            let resp = resp.into_response();
                            operation = resp.data::<OperationId>().copied();
                            resp
                        }
                        Err(err) => {
                            operation = err.data::<OperationId>().copied();
                            match err.downcast_ref::<ParseParamError>() {
                                Some(bad) => unparsable_parameter(bad),
                                None => err.into_response(),
                            }
                        }
                    },
                };
                if resp.status().is_client_error() || resp.status().is_server_error() || is_problem(&resp) {
                    resp = into_problem(resp, &id).await;
                }
                add_security_headers(&mut resp);
                if let Ok(v) = HeaderValue::from_str(&id) {
                    resp.headers_mut().insert(REQUEST_ID_HEADER, v);
                }
                let took = started.elapsed();
                metrics.observe(operation, &method, resp.status(), took);
                tracing::info!(
                    status = resp.status().as_u16(),
                    elapsed_us = took.as_micros() as u64,
                    "served"
                );
                Ok(resp)
            }
            .instrument(span)
            .await
        }
    })
}
