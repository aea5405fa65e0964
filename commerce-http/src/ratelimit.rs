//! Per-client rate limits on the credential endpoints (`POST /api/v1/auth/...`), so passwords
//! cannot be guessed at line speed. A token bucket per client IP; over the limit a request
//! gets 429 with `Retry-After` and the IETF httpapi `RateLimit`/`RateLimit-Policy` headers
//! (also sent on allowed requests).
//!
//! With `REDIS_URL`, the buckets live in Redis, shared by every host of a fleet (one atomic
//! script per attempt: GCRA, the token bucket kept as one timestamp, on Redis's clock). When
//! Redis does not answer, each host falls back to its own buckets for a few seconds rather
//! than refusing or letting everyone through.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use poem::http::{HeaderValue, Method, StatusCode};
use poem::{Endpoint, IntoResponse, Request, Response};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::OnceCell;

use crate::problem::{Problem, ProblemJson};

/// How long Redis gets to connect or answer before the host uses its own buckets.
const REDIS_TIMEOUT: Duration = Duration::from_millis(250);
/// After Redis failed, how long the host uses its own buckets before asking Redis again.
const REDIS_BACKOFF: Duration = Duration::from_secs(5);

/// GCRA over one key: `ARGV[1]` milliseconds per request, `ARGV[2]` the burst. Returns
/// `{1, remaining, 0}` when allowed, `{0, 0, milliseconds until allowed}` when not. The key
/// holds the theoretical arrival time and expires when the bucket would be full again.
const GCRA: &str = r"
redis.replicate_commands()
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - burst * interval
if now < allow_at then
  return {0, 0, allow_at - now}
end
redis.call('SET', KEYS[1], new_tat, 'PX', new_tat - now)
return {1, math.floor((now - allow_at) / interval), 0}
";

/// The buckets in Redis, connected on first use.
struct Shared {
    client: redis::Client,
    connection: OnceCell<ConnectionManager>,
    script: redis::Script,
    /// When Redis last failed: the host's own buckets answer until [`REDIS_BACKOFF`] has passed.
    failed_at: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

impl Shared {
    async fn take(&self, key: &str, per_minute: u32) -> redis::RedisResult<Result<u32, u64>> {
        let connection = self
            .connection
            .get_or_try_init(|| {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(REDIS_TIMEOUT)
                    .set_response_timeout(REDIS_TIMEOUT)
                    .set_number_of_retries(1);
                ConnectionManager::new_with_config(self.client.clone(), config)
            })
            .await?;
        // At least a millisecond: GCRA divides by it.
        let interval_ms = (60_000 / u64::from(per_minute.max(1))).max(1);
        let (allowed, remaining, wait_ms): (i64, i64, i64) = self
            .script
            .key(key)
            .arg(interval_ms)
            .arg(per_minute)
            .invoke_async(&mut connection.clone())
            .await?;
        Ok(if allowed == 1 {
            Ok(u32::try_from(remaining).unwrap_or(0))
        } else {
            Err(u64::try_from(wait_ms).unwrap_or(0).div_ceil(1000).max(1))
        })
    }

    fn resting(&self) -> bool {
        self.failed_at
            .lock()
            .map(|at| at.is_some_and(|at| at.elapsed() < REDIS_BACKOFF))
            .unwrap_or(false)
    }

    fn failed(&self) {
        if let Ok(mut at) = self.failed_at.lock() {
            *at = Some(Instant::now());
        }
    }
}

/// Checks that Redis answers at `url` (at start-up, so a fleet misconfigured does not silently
/// limit per host).
///
/// # Errors
/// The URL is malformed, or Redis does not answer a `PING`.
pub async fn check_redis(url: &str) -> redis::RedisResult<()> {
    let client = redis::Client::open(url)?;
    let mut connection = tokio::time::timeout(Duration::from_secs(5), client.get_multiplexed_async_connection())
        .await
        .map_err(|_| redis::RedisError::from((redis::ErrorKind::IoError, "no answer within 5 s")))??;
    redis::cmd("PING").query_async::<String>(&mut connection).await?;
    Ok(())
}

/// Buckets kept before idle, full ones are dropped.
const MAX_TRACKED: usize = 10_000;

/// A token bucket per client.
#[derive(Debug)]
pub struct RateLimiter {
    per_minute: u32,
    trust_forwarded: bool,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
    shared: Option<Shared>,
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
            shared: None,
        })
    }

    /// As [`Self::new`], with the buckets in the Redis at `redis_url`, shared with every host
    /// using it (see the module docs). Connects on first use.
    ///
    /// # Errors
    /// The URL is malformed.
    pub fn shared(per_minute: u32, trust_forwarded: bool, redis_url: &str) -> redis::RedisResult<Arc<Self>> {
        Ok(Arc::new(Self {
            per_minute,
            trust_forwarded,
            buckets: Mutex::new(HashMap::new()),
            shared: Some(Shared {
                client: redis::Client::open(redis_url)?,
                connection: OnceCell::new(),
                script: redis::Script::new(GCRA),
                failed_at: Mutex::new(None),
            }),
        }))
    }

    /// Who is asking, as a bucket key (see [`client_key`]).
    fn client(&self, req: &Request) -> Option<IpAddr> {
        if self.trust_forwarded
            && let Some(ip) = req
                .headers()
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .and_then(|v| v.trim().parse().ok())
        {
            return Some(client_key(ip));
        }
        req.remote_addr().as_socket_addr().map(|a| client_key(a.ip()))
    }

    /// Takes a token for `client` from the shared buckets, or this host's when there are none
    /// or Redis fails: `Ok(remaining)` or `Err(seconds until one is free)`.
    async fn take(&self, client: Option<IpAddr>) -> Result<u32, u64> {
        if let Some(shared) = self.shared.as_ref().filter(|s| !s.resting()) {
            let key = format!(
                "commerce:ratelimit:auth:{}",
                client.unwrap_or(IpAddr::from([0, 0, 0, 0]))
            );
            match shared.take(&key, self.per_minute).await {
                Ok(taken) => return taken,
                Err(e) => {
                    shared.failed();
                    tracing::warn!(error = %e, "Redis rate limits unavailable: limiting per host for now");
                }
            }
        }
        self.take_here(client)
    }

    /// Takes a token from this host's own bucket for `client`.
    fn take_here(&self, client: Option<IpAddr>) -> Result<u32, u64> {
        let capacity = f64::from(self.per_minute);
        let rate = capacity / 60.0;
        let key = client.unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let now = Instant::now();
        let Ok(mut buckets) = self.buckets.lock() else {
            return Ok(self.per_minute);
        };
        if buckets.len() >= MAX_TRACKED {
            buckets.retain(|_, (tokens, at)| *tokens + now.duration_since(*at).as_secs_f64() * rate < capacity);
            // Still full (that many clients within a minute): the least recently seen half goes,
            // so memory stays bounded and the next request does not scan them all again.
            if buckets.len() >= MAX_TRACKED {
                let mut seen: Vec<Instant> = buckets.values().map(|(_, at)| *at).collect();
                let (_, median, _) = seen.select_nth_unstable(MAX_TRACKED / 2);
                let median = *median;
                buckets.retain(|_, (_, at)| *at > median);
            }
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

/// The bucket an address counts against: an IPv4 address, or the /64 network of an IPv6 one —
/// a single subscriber usually holds a whole /64 and could otherwise take a new address, and a
/// fresh bucket, for every attempt. IPv4-mapped IPv6 addresses count as their IPv4 address.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from_bits(v6.to_bits() & !u128::from(u64::MAX))),
        },
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
    match limiter.take(limiter.client(&req)).await {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_count_by_their_64_network() {
        let key = |s: &str| client_key(s.parse().unwrap()).to_string();
        assert_eq!(key("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::");
        assert_eq!(key("2001:db8:1:2:bbbb::9"), "2001:db8:1:2::");
        assert_ne!(key("2001:db8:1:3::1"), key("2001:db8:1:2::1"));
        assert_eq!(key("::ffff:203.0.113.7"), "203.0.113.7");
        assert_eq!(key("203.0.113.7"), "203.0.113.7");
    }

    #[test]
    fn the_buckets_stay_bounded_when_every_client_is_busy() {
        let limiter = RateLimiter::new(5, false);
        for n in 0..(MAX_TRACKED as u32 + 10) {
            let ip = IpAddr::from(n.to_be_bytes());
            assert!(limiter.take_here(Some(ip)).is_ok());
        }
        let held = limiter.buckets.lock().unwrap().len();
        assert!(held <= MAX_TRACKED / 2 + 11, "{held} buckets held");
        // The most recent clients are still counted.
        let last = IpAddr::from((MAX_TRACKED as u32 + 9).to_be_bytes());
        assert_eq!(limiter.take_here(Some(last)), Ok(3));
    }
}
