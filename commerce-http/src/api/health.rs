//! `/healthz` (the process is up), `/readyz` (every backend answers) and `/metrics` (the host's
//! Prometheus metrics).

use commerce_core::Commerce;
use poem::http::StatusCode;
use poem_openapi::param::Header;
use poem_openapi::payload::{Json, PlainText};
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::ApiTags;
use crate::metrics::{Metrics, MetricsAccess};
use crate::problem::{Problem, ProblemJson};

/// Liveness answer.
#[derive(Debug, Object)]
pub struct Liveness {
    /// Always `ok`.
    pub status: String,
}

/// One backend's readiness.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct BackendStatus {
    /// `accounts`, `catalog` or `checkout`.
    pub area: String,
    /// `memory`, `postgres` or `mongodb`.
    pub backend: String,
    /// Whether it answered.
    pub ok: bool,
}

/// Readiness answer.
#[derive(Debug, Object)]
pub struct Readiness {
    /// `ready` or `unavailable`.
    pub status: String,
    /// Each backend.
    pub backends: Vec<BackendStatus>,
}

/// Readiness responses.
#[derive(Debug, ApiResponse)]
pub enum ReadyResponse {
    /// Every backend answered.
    #[oai(status = 200)]
    Ready(Json<Readiness>),
    /// At least one backend did not answer.
    #[oai(status = 503)]
    Unavailable(Json<Readiness>),
}

/// Metrics responses.
#[derive(ApiResponse)]
pub enum MetricsResponse {
    /// The metrics, in the Prometheus text exposition format 0.0.4.
    #[oai(status = 200, content_type = "text/plain; version=0.0.4; charset=utf-8")]
    Metrics(PlainText<String>),
    /// `METRICS_TOKEN` is set and the request does not bear it.
    #[oai(status = 401)]
    Unauthorized(ProblemJson, #[oai(header = "WWW-Authenticate")] String),
    /// The metrics could not be encoded.
    #[oai(status = 500)]
    Internal(ProblemJson),
}

/// Probes and metrics for orchestrators, load balancers and monitoring.
pub struct HealthApi {
    commerce: Commerce,
    metrics: Metrics,
    access: MetricsAccess,
}

impl HealthApi {
    /// Probes over this engine's backends, and the app's `metrics` for whoever shows
    /// `metrics_token` (anyone when it is `None`).
    pub fn new(commerce: Commerce, metrics: Metrics, metrics_token: Option<&str>) -> Self {
        Self {
            commerce,
            metrics,
            access: MetricsAccess::new(metrics_token),
        }
    }
}

#[OpenApi(tag = "ApiTags::System")]
impl HealthApi {
    /// Liveness: the process is serving requests.
    #[oai(path = "/healthz", method = "get", operation_id = "getHealth")]
    async fn health(&self) -> Json<Liveness> {
        Json(Liveness {
            status: "ok".to_owned(),
        })
    }

    /// Readiness: every backend (PostgreSQL, MongoDB or memory) answers a ping. 503 otherwise,
    /// so a load balancer stops sending traffic here.
    #[oai(path = "/readyz", method = "get", operation_id = "getReadiness")]
    async fn ready(&self) -> ReadyResponse {
        let checks = self.commerce.readiness().await;
        let ready = checks.iter().all(|c| c.error.is_none());
        for c in checks.iter().filter(|c| c.error.is_some()) {
            tracing::warn!(area = c.area.as_str(), backend = c.backend, error = ?c.error, "backend not ready");
        }
        let body = Readiness {
            status: if ready { "ready" } else { "unavailable" }.to_owned(),
            backends: checks
                .into_iter()
                .map(|c| BackendStatus {
                    area: c.area.as_str().to_owned(),
                    backend: c.backend.to_owned(),
                    ok: c.error.is_none(),
                })
                .collect(),
        };
        if ready {
            ReadyResponse::Ready(Json(body))
        } else {
            ReadyResponse::Unavailable(Json(body))
        }
    }

    /// The host's metrics for Prometheus: requests by operation (the `operationId`s of this
    /// document, `other` for paths outside it), method and status
    /// (`commerce_http_requests_total`), their latency (`commerce_http_request_duration_seconds`)
    /// and the requests in flight (`commerce_http_requests_in_flight`). When the host was given
    /// `METRICS_TOKEN`, send it as `Authorization: Bearer <token>`.
    #[oai(path = "/metrics", method = "get", operation_id = "getMetrics")]
    async fn metrics(
        &self,
        /// `Bearer <METRICS_TOKEN>`, when the host has one.
        #[oai(name = "Authorization")]
        authorization: Header<Option<String>>,
    ) -> MetricsResponse {
        if !self.access.allows(authorization.0.as_deref()) {
            let problem = Problem::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "the metrics need the bearer token the host was given in METRICS_TOKEN",
            );
            return MetricsResponse::Unauthorized(ProblemJson(Box::new(problem)), "Bearer".to_owned());
        }
        match self.metrics.render().map(String::from_utf8) {
            Ok(Ok(text)) => MetricsResponse::Metrics(PlainText(text)),
            failed => {
                tracing::error!(error = ?failed.err(), "metrics could not be encoded");
                let problem = Problem::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the metrics could not be encoded",
                );
                MetricsResponse::Internal(ProblemJson(Box::new(problem)))
            }
        }
    }
}
