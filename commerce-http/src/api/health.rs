//! `/healthz` (the process is up) and `/readyz` (every backend answers).

use commerce_core::Commerce;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::ApiTags;

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

/// Probes for orchestrators and load balancers.
pub struct HealthApi {
    commerce: Commerce,
}

impl HealthApi {
    /// Probes over this engine's backends.
    pub fn new(commerce: Commerce) -> Self {
        Self { commerce }
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
}
