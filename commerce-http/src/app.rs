//! Assembles the host: API, docs, edge middleware.

use commerce_core::Commerce;
use poem::{Endpoint, EndpointExt, Response, Route};

use crate::api::api_service;
use crate::config::Config;
use crate::images::{MEDIA_PATH, media_endpoint};
use crate::metrics::Metrics;
use crate::middleware::edge;

/// Path of the OpenAPI document.
pub const OPENAPI_PATH: &str = "/api/v1/openapi.json";
/// Path of the Swagger UI.
pub const DOCS_PATH: &str = "/api/v1/docs";

/// The whole HTTP app over an engine. Tests drive it with `poem::test::TestClient`.
pub fn build_app(commerce: &Commerce, config: &Config) -> impl Endpoint<Output = Response> + use<> {
    let metrics = host_metrics();
    let api = api_service(commerce, config, &metrics);
    let spec = api.spec_endpoint();
    let docs = api.swagger_ui();
    let mut routes = Route::new().at(OPENAPI_PATH, spec).nest(DOCS_PATH, docs).nest("/", api);
    if config.s3.is_none() {
        // Images kept on local disk are served by the host itself.
        routes = routes.nest(MEDIA_PATH, media_endpoint(config.media_dir.clone()));
    }
    edge(
        {
            let limiter = rate_limiter(config);
            routes
                .around(crate::idempotency::idempotent)
                .around(move |ep, req| crate::ratelimit::limit(limiter.clone(), ep, req))
                .data(commerce.clone())
        },
        config.max_body_bytes,
        config.max_upload_bytes,
        metrics,
    )
    // Its future behind one pointer: the middleware nest deep enough that an embedder's own
    // future holding ours overflowed the compiler's layout query depth (one allocation a
    // request).
    .boxed()
}

/// The credential endpoints' limiter: shared through Redis when `REDIS_URL` is set (the
/// configuration checked the URL; [`crate::ratelimit::check_redis`] that Redis answers).
fn rate_limiter(config: &Config) -> std::sync::Arc<crate::ratelimit::RateLimiter> {
    use crate::ratelimit::RateLimiter;
    let (per_minute, trust) = (config.auth_rate_limit_per_minute, config.trust_forwarded_for);
    match config
        .redis_url
        .as_deref()
        .map(|url| RateLimiter::shared(per_minute, trust, url))
    {
        Some(Ok(shared)) => shared,
        Some(Err(e)) => {
            tracing::error!(error = %e, "REDIS_URL unusable: rate limits are per host");
            RateLimiter::new(per_minute, trust)
        }
        None => RateLimiter::new(per_minute, trust),
    }
}

/// A registry of the host's metrics.
fn host_metrics() -> Metrics {
    match Metrics::new() {
        Ok(m) => m,
        Err(e) => unreachable!("the host's metrics are well-formed: {e}"),
    }
}

/// The OpenAPI document as pretty JSON (for the committed snapshot).
pub fn openapi_json(commerce: &Commerce, config: &Config) -> String {
    api_service(commerce, config, &host_metrics()).spec()
}
