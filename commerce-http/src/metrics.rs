//! Prometheus metrics of the host, served at `GET /metrics` (`HealthApi`) in the text exposition format: requests by
//! API operation (its OpenAPI operation id, so a label never holds an id from a path), method
//! and status; their latency; the requests in flight.
//!
//! Each app has its own registry (no process-wide state), so several apps in one process, as in
//! the tests, count apart. With `METRICS_TOKEN` set, the endpoint asks for it as a bearer token.

use std::sync::Arc;
use std::time::Duration;

use poem::http::{Method, StatusCode};
use poem_openapi::OperationId;
use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};
use sha2::{Digest, Sha256};

/// The operation label of requests no API operation answered (documents, media, unknown
/// paths).
const OTHER: &str = "other";

/// Latency buckets, in seconds: from a cached read (well under a millisecond) to a slow login
/// under load (argon2id takes tens of milliseconds a hash).
const BUCKETS: &[f64] = &[
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// The host's request metrics. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    in_flight: IntGauge,
}

impl Metrics {
    /// Registers the host's metrics in a registry of their own.
    ///
    /// # Errors
    /// When a metric's definition is invalid (a programming error, caught by the tests).
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("commerce_http_requests_total", "HTTP requests answered."),
            &["operation", "method", "status"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "commerce_http_request_duration_seconds",
                "Time from a request's arrival to its answer's head, by operation.",
            )
            .buckets(BUCKETS.to_vec()),
            &["operation"],
        )?;
        let in_flight = IntGauge::new("commerce_http_requests_in_flight", "HTTP requests being answered.")?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        Ok(Self {
            inner: Arc::new(Inner {
                registry,
                requests,
                duration,
                in_flight,
            }),
        })
    }

    /// A request has arrived; the guard counts it out when dropped (also when its future is).
    pub(crate) fn start(&self) -> InFlight {
        self.inner.in_flight.inc();
        InFlight(self.inner.in_flight.clone())
    }

    /// Counts an answered request.
    pub(crate) fn observe(&self, operation: Option<OperationId>, method: &Method, status: StatusCode, took: Duration) {
        let operation = operation.map_or(OTHER, |o| o.0);
        self.inner
            .requests
            .with_label_values(&[operation, method_label(method), status.as_str()])
            .inc();
        self.inner
            .duration
            .with_label_values(&[operation])
            .observe(took.as_secs_f64());
    }

    /// Everything, in the text exposition format.
    pub(crate) fn render(&self) -> Result<Vec<u8>, prometheus::Error> {
        let mut out = Vec::with_capacity(16 * 1024);
        TextEncoder::new().encode(&self.inner.registry.gather(), &mut out)?;
        Ok(out)
    }
}

/// The method label: HTTP's own methods by name, any other as `other`. A client may send any
/// token as a method, and each new label value is a new series the registry keeps for good.
fn method_label(method: &Method) -> &str {
    match *method {
        Method::GET
        | Method::HEAD
        | Method::POST
        | Method::PUT
        | Method::PATCH
        | Method::DELETE
        | Method::OPTIONS
        | Method::TRACE
        | Method::CONNECT => method.as_str(),
        _ => OTHER,
    }
}

/// Counts a request out of the in-flight gauge when dropped.
pub(crate) struct InFlight(IntGauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Who may read the metrics: anyone, or whoever bears the token the host was given
/// (`METRICS_TOKEN`).
#[derive(Clone)]
pub(crate) struct MetricsAccess {
    /// SHA-256 of the token: compared by digest, so the comparison's time tells nothing about it.
    token: Option<[u8; 32]>,
}

impl MetricsAccess {
    pub(crate) fn new(token: Option<&str>) -> Self {
        Self {
            token: token.map(|t| Sha256::digest(t.as_bytes()).into()),
        }
    }

    /// Whether `authorization` (the header's value) lets its bearer read the metrics.
    pub(crate) fn allows(&self, authorization: Option<&str>) -> bool {
        let Some(expected) = &self.token else {
            return true;
        };
        authorization
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|given| <[u8; 32]>::from(Sha256::digest(given.as_bytes())) == *expected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_operation_and_renders_the_text_format() {
        let m = Metrics::new().unwrap();
        let guard = m.start();
        m.observe(
            Some(OperationId("getProduct")),
            &Method::GET,
            StatusCode::OK,
            Duration::from_micros(300),
        );
        m.observe(None, &Method::GET, StatusCode::NOT_FOUND, Duration::from_micros(50));
        let invented = Method::from_bytes(b"X-ANYTHING-1").unwrap();
        m.observe(
            None,
            &invented,
            StatusCode::METHOD_NOT_ALLOWED,
            Duration::from_micros(50),
        );
        let text = String::from_utf8(m.render().unwrap()).unwrap();
        assert!(
            text.contains(r#"commerce_http_requests_total{method="GET",operation="getProduct",status="200"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"commerce_http_requests_total{method="GET",operation="other",status="404"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"commerce_http_request_duration_seconds_bucket{operation="getProduct",le="0.0005"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"commerce_http_requests_total{method="other",operation="other",status="405"} 1"#),
            "{text}"
        );
        assert!(
            !text.contains("X-ANYTHING"),
            "a client's invented method is no label: {text}"
        );
        assert!(text.contains("commerce_http_requests_in_flight 1"), "{text}");
        drop(guard);
        let text = String::from_utf8(m.render().unwrap()).unwrap();
        assert!(text.contains("commerce_http_requests_in_flight 0"), "{text}");
    }
}
