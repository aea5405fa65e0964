//! Per-client rate limits on the credential endpoints (`POST /api/v1/auth/...`), so passwords
//! cannot be guessed at line speed. A token bucket per client IP; over the limit a request
//! gets 429 with `Retry-After` and the IETF httpapi `RateLimit`/`RateLimit-Policy` headers
//! (also sent on allowed requests). In process: several hosts each keep their own buckets
//! (a shared Redis limiter is the next step for fleets).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use poem::http::{HeaderValue, Method, StatusCode};
use poem::{Endpoint, IntoResponse, Request, Response};

use crate::problem::{Problem, ProblemJson};

/// Buckets kept before idle, full ones are dropped.
const MAX_TRACKED: usize = 10_000;

/// A token bucket per client.
#[derive(Debug)]
pub struct RateLimiter {
    per_minute: u32,
    trust_forwarded: bool,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl RateLimiter {
    /// `per_minute` requests per client and minute, in bursts up to the same number; 0 turns
    /// limiting off. With `trust_forwarded`, the client is the first `X-Forwarded-For` address
    /// (set it only behind a proxy that overwrites that header).
    pub fn new(per_minute: u32, trust_forwarded: bool) -> Arc<Self> {
        Arc::new(Self {
            per_minute,
            trust_forwarded,
            buckets: Mutex::new(HashMap::new()),
        })
    }

    fn client(&self, req: &Request) -> Option<IpAddr> {
        if self.trust_forwarded
            && let Some(ip) = req
                .headers()
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .and_then(|v| v.trim().parse().ok())
        {
            return Some(ip);
        }
        req.remote_addr().as_socket_addr().map(|a| a.ip())
    }

    /// Takes a token for `client`: `Ok(remaining)` or `Err(seconds until one is free)`.
    fn take(&self, client: Option<IpAddr>) -> Result<u32, u64> {
        let capacity = f64::from(self.per_minute);
        let rate = capacity / 60.0;
        let key = client.unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let now = Instant::now();
        let Ok(mut buckets) = self.buckets.lock() else {
            return Ok(self.per_minute);
        };
        if buckets.len() >= MAX_TRACKED {
            buckets.retain(|_, (tokens, at)| *tokens + now.duration_since(*at).as_secs_f64() * rate < capacity);
        }
        let (tokens, at) = buckets.entry(key).or_insert((capacity, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * rate).min(capacity);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(*tokens as u32)
        } else {
            Err(((1.0 - *tokens) / rate).ceil() as u64)
        }
    }

    fn applies(&self, req: &Request) -> bool {
        self.per_minute > 0 && req.method() == Method::POST && req.uri().path().starts_with("/api/v1/auth/")
    }
}

fn set(resp: &mut Response, name: &'static str, value: String) {
    if let Ok(v) = HeaderValue::from_str(&value) {
        resp.headers_mut().insert(name, v);
    }
}

/// The middleware body, for `EndpointExt::around`.
pub async fn limit<E: Endpoint>(limiter: Arc<RateLimiter>, ep: Arc<E>, req: Request) -> poem::Result<Response> {
    if !limiter.applies(&req) {
        return ep.call(req).await.map(IntoResponse::into_response);
    }
    let policy = format!("{};w=60", limiter.per_minute);
    match limiter.take(limiter.client(&req)) {
        Ok(remaining) => {
            let mut resp = match ep.call(req).await {
                Ok(r) => r.into_response(),
                Err(e) => e.into_response(),
            };
            set(&mut resp, "ratelimit-policy", policy);
            set(
                &mut resp,
                "ratelimit",
                format!("limit={}, remaining={remaining}, reset=0", limiter.per_minute),
            );
            Ok(resp)
        }
        Err(retry_after) => {
            let problem = Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("too many attempts; retry in {retry_after} s"),
            );
            let mut resp = ProblemJson(Box::new(problem)).into_response();
            set(&mut resp, "retry-after", retry_after.to_string());
            set(&mut resp, "ratelimit-policy", policy);
            set(
                &mut resp,
                "ratelimit",
                format!("limit={}, remaining=0, reset={retry_after}", limiter.per_minute),
            );
            Ok(resp)
        }
    }
}
