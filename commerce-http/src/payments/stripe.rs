//! Stripe as a [`PaymentGateway`]: PaymentIntents and Refunds over Stripe's REST API
//! (`application/x-www-form-urlencoded` requests, JSON answers), on `reqwest` with rustls.
//!
//! # Requests
//!
//! | port method | request |
//! |---|---|
//! | [`create_intent`](PaymentGateway::create_intent) | `POST /v1/payment_intents` with `amount`, `currency` (lower case), `metadata[order_id]`, `automatic_payment_methods[enabled]=true` and `Idempotency-Key` |
//! | [`retrieve_intent`](PaymentGateway::retrieve_intent) | `GET /v1/payment_intents/{id}` |
//! | [`cancel_intent`](PaymentGateway::cancel_intent) | `POST /v1/payment_intents/{id}/cancel` |
//! | [`refund`](PaymentGateway::refund) | `POST /v1/refunds` with `payment_intent`, `amount` and `Idempotency-Key` |
//!
//! Every request carries `Authorization: Bearer <secret key>`. No `Stripe-Version` is sent, so
//! the account's default API version applies; the fields read here (`id`, `client_secret`,
//! `amount`, `currency`, `status`) are the same in every version.
//!
//! # Statuses
//!
//! See [`intent_status`]: every status in which the money is not (yet) captured is
//! [`PaymentStatus::RequiresPayment`]; a failed attempt puts a Stripe intent back into
//! `requires_payment_method`, so [`PaymentStatus::Failed`] comes from the
//! `payment_intent.payment_failed` webhook event, never from an intent's status.
//!
//! # Errors
//!
//! - An intent id that is not a Stripe id (`[A-Za-z0-9_]+`, at most 255 bytes), an empty or
//!   non-printable idempotency key, or a non-positive amount: `Validation`, before any request
//!   (so no id can reach another path of the API, e.g. `pi_1/../../v1/customers`).
//! - Stripe refuses with a 4xx and its error document (`{"error": {"type", "code", "message"}}`):
//!   [`Error::Payment`] with Stripe's `message` (e.g. "Your card was declined."), which Stripe
//!   writes to be shown to people. Exceptions, where the fault is ours or Stripe's, not the
//!   payment's: 401/403 (bad or restricted key) and 429 (rate limited) are [`Error::Storage`].
//!   An `idempotency_error` (a key sent again with other parameters, or while its first
//!   request still runs) is `Conflict { code: `[`KEY_REUSED`]` }`.
//!   A 404 for an intent in the path ([`retrieve_intent`](PaymentGateway::retrieve_intent),
//!   [`cancel_intent`](PaymentGateway::cancel_intent)) is
//!   `NotFound { entity: "payment intent" }`.
//! - Stripe unreachable, a timeout, a 5xx, an answer that is not Stripe's JSON, or an intent in
//!   a status this adapter does not know: [`Error::Storage`] carrying a [`StripeError`]. The host
//!   logs it and answers 503 "a backend is unavailable; try again" without its text.
//!
//! The secret key is never part of an error: `Debug` of the configuration redacts it, and any
//! occurrence of it in Stripe's messages is replaced by `<redacted>`.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::{StatusCode, Url};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use commerce_core::domain::{Currency, GatewayRefund, Money, OrderId, PaymentIntent, PaymentStatus};
use commerce_core::ports::{KEY_REUSED, PaymentGateway};
use commerce_core::{Error, Result};

/// Stripe's API, the default [`StripeConfig::api_base`].
pub const DEFAULT_API_BASE: &str = "https://api.stripe.com";

/// How long one request may take in all, by default (Stripe answers in well under a second;
/// its own libraries give up after 80 s).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long to wait for a connection, at most.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Stripe ids are far shorter; this bounds what is put in a URL.
const MAX_ID_LEN: usize = 255;

/// Stripe's limit for `Idempotency-Key`.
const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// How much of a Stripe message or answer is kept (for clients and logs).
const MAX_MESSAGE_LEN: usize = 500;

/// How to reach Stripe. Built by the binary from `STRIPE_SECRET_KEY` and friends.
#[derive(Clone, PartialEq, Eq)]
pub struct StripeConfig {
    /// Secret (`sk_test_...`, `sk_live_...`) or restricted (`rk_...`) API key (never printed
    /// by `Debug`).
    pub secret_key: String,
    /// Base URL of the API, [`DEFAULT_API_BASE`] unless a proxy or a fake stands in. A path
    /// prefix is kept: `http://127.0.0.1:12111/stripe` sends `/stripe/v1/...`.
    pub api_base: String,
    /// How long one request may take in all.
    pub timeout: Duration,
}

impl StripeConfig {
    /// `secret_key` against [`DEFAULT_API_BASE`] with [`DEFAULT_TIMEOUT`].
    pub fn new(secret_key: impl Into<String>) -> Self {
        Self {
            secret_key: secret_key.into(),
            api_base: DEFAULT_API_BASE.to_owned(),
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

impl fmt::Debug for StripeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StripeConfig")
            .field("secret_key", &"<redacted>")
            .field("api_base", &self.api_base)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// What went wrong talking to Stripe. Converted into [`Error::Storage`] at the port boundary
/// (see the module docs for which failures); its text is for logs, never for clients, and never
/// contains the secret key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StripeError {
    /// [`StripeConfig`] is unusable.
    #[error("invalid Stripe configuration: {0}")]
    Config(String),
    /// The request could not be sent or its answer not read (connection, TLS, timeout).
    #[error("Stripe {operation} failed: {source}")]
    Request {
        /// What was being done, e.g. `"create payment intent"`.
        operation: &'static str,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// Stripe refused in a way that is not about the payment (401, 403, 429, 5xx, or an answer
    /// that is not Stripe's error document).
    #[error(
        "Stripe answered {status} to {operation} (request id {}): {}{}",
        request_id.as_deref().unwrap_or("none"),
        code.as_deref().map(|c| format!("[{c}] ")).unwrap_or_default(),
        message
    )]
    Status {
        /// What was being done.
        operation: &'static str,
        /// HTTP status code.
        status: u16,
        /// Stripe's `Request-Id` header, to look the request up in the dashboard.
        request_id: Option<String>,
        /// Stripe's error `code` (or `type` when there is no code).
        code: Option<String>,
        /// Stripe's error message, or the start of the body.
        message: String,
    },
    /// A successful answer that does not read as the expected object.
    #[error("Stripe's answer to {operation} (request id {}) is not as expected: {reason}", request_id.as_deref().unwrap_or("none"))]
    Decode {
        /// What was being done.
        operation: &'static str,
        /// Stripe's `Request-Id` header.
        request_id: Option<String>,
        /// What is wrong with it.
        reason: String,
    },
}

impl From<StripeError> for Error {
    fn from(e: StripeError) -> Self {
        Self::storage(e)
    }
}

/// Maps a Stripe PaymentIntent `status` to ours:
///
/// | Stripe | [`PaymentStatus`] |
/// |---|---|
/// | `requires_payment_method`, `requires_confirmation`, `requires_action`, `processing` | `RequiresPayment` |
/// | `requires_capture` (only with manual capture, which this adapter never asks for) | `RequiresPayment` |
/// | `succeeded` | `Succeeded` |
/// | `canceled` | `Canceled` |
///
/// `None` for anything else. Stripe has no "failed" intent status (see the module docs); refunds
/// are tracked on the payment, not the intent.
pub fn intent_status(stripe_status: &str) -> Option<PaymentStatus> {
    match stripe_status {
        "requires_payment_method" | "requires_confirmation" | "requires_action" | "processing" | "requires_capture" => {
            Some(PaymentStatus::RequiresPayment)
        }
        "succeeded" => Some(PaymentStatus::Succeeded),
        "canceled" => Some(PaymentStatus::Canceled),
        _ => None,
    }
}

/// Whether `id` has the shape of a Stripe object id (`pi_3Nx...`): ASCII letters, digits and
/// `_`, at most 255 bytes. Only such ids are put in a URL path.
pub fn is_stripe_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_LEN && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// [`PaymentGateway`] on Stripe's PaymentIntents and Refunds APIs (see the module docs).
#[derive(Debug, Clone)]
pub struct StripeGateway {
    config: StripeConfig,
    /// `api_base` without a trailing slash.
    base: String,
    client: reqwest::Client,
}

fn config_error(message: impl Into<String>) -> StripeError {
    StripeError::Config(message.into())
}

impl StripeGateway {
    /// A gateway for `config`. Makes no request.
    ///
    /// # Errors
    /// [`StripeError::Config`] when the secret key is not a Stripe secret or restricted key
    /// (`sk_...`, `rk_...`; a publishable `pk_...` key cannot create intents), the API base is
    /// not an `http(s)` URL with a host and without credentials, query or fragment, or the
    /// timeout is zero.
    pub fn new(config: StripeConfig) -> std::result::Result<Self, StripeError> {
        let key = &config.secret_key;
        if !(key.starts_with("sk_") || key.starts_with("rk_")) || key.len() <= 3 {
            return Err(config_error(
                "secret_key must be a Stripe secret (sk_...) or restricted (rk_...) key",
            ));
        }
        if !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(config_error(
                "secret_key contains characters that are not printable ASCII",
            ));
        }
        let api_base = config.api_base.trim();
        let url = Url::parse(api_base).map_err(|e| config_error(format!("api_base {api_base:?}: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(config_error(format!(
                "api_base {api_base:?} is not an http(s) URL with a host"
            )));
        }
        if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
            return Err(config_error(format!(
                "api_base {api_base:?} must not have credentials, a query or a fragment"
            )));
        }
        if config.timeout.is_zero() {
            return Err(config_error("timeout must be positive"));
        }
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT.min(config.timeout))
            .timeout(config.timeout)
            .user_agent(concat!("commerce-http/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| config_error(format!("cannot build the HTTP client: {e}")))?;
        let base = url.as_str().trim_end_matches('/').to_owned();
        Ok(Self { config, base, client })
    }

    /// The configuration the gateway was made from.
    pub fn config(&self) -> &StripeConfig {
        &self.config
    }

    /// `{api_base}{path}`; `path` starts with `/v1/` and holds only checked ids.
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request to `path` with the key and, for writes, the idempotency key.
    fn request(&self, method: reqwest::Method, path: &str, idempotency_key: Option<&str>) -> reqwest::RequestBuilder {
        let request = self
            .client
            .request(method, self.url(path))
            .bearer_auth(&self.config.secret_key);
        match idempotency_key {
            Some(key) => request.header("Idempotency-Key", key),
            None => request,
        }
    }

    /// Sends `request` and reads the answer as `T`, or maps the refusal (see the module docs).
    async fn call<T: DeserializeOwned>(&self, op: Op, request: reqwest::RequestBuilder) -> Result<T> {
        let failed = |source| StripeError::Request {
            operation: op.name(),
            source,
        };
        let response = request.send().await.map_err(failed)?;
        let status = response.status();
        let request_id = response
            .headers()
            .get("request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response.bytes().await.map_err(failed)?;
        if status.is_success() {
            return serde_json::from_slice(&body).map_err(|e| {
                StripeError::Decode {
                    operation: op.name(),
                    request_id,
                    reason: e.to_string(),
                }
                .into()
            });
        }
        Err(self.refusal(op, status, request_id, &body))
    }

    /// The error for a non-2xx answer.
    fn refusal(&self, op: Op, status: StatusCode, request_id: Option<String>, body: &[u8]) -> Error {
        let stripe_error = serde_json::from_slice::<ErrorBody>(body).ok().map(|b| b.error);
        if let Some(e) = &stripe_error {
            tracing::info!(
                operation = op.name(),
                status = status.as_u16(),
                request_id = request_id.as_deref().unwrap_or_default(),
                error_type = e.kind.as_deref().unwrap_or_default(),
                code = e.code.as_deref().unwrap_or_default(),
                decline_code = e.decline_code.as_deref().unwrap_or_default(),
                "Stripe refused"
            );
        }
        let ours = matches!(
            status,
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::TOO_MANY_REQUESTS
        );
        match stripe_error {
            // Not the payment's fault: the key was sent with other parameters (400), or is in
            // use by a request still running (409).
            Some(e) if e.kind.as_deref() == Some("idempotency_error") => Error::conflict(
                KEY_REUSED,
                self.clean(
                    e.message
                        .as_deref()
                        .unwrap_or("the idempotency key was used for another request"),
                ),
            ),
            Some(_) if status == StatusCode::NOT_FOUND && op.intent_in_path() => Error::NotFound {
                entity: "payment intent",
            },
            Some(e) if status.is_client_error() && !ours => {
                let message = e
                    .message
                    .as_deref()
                    .map(|m| self.clean(m))
                    .filter(|m| !m.is_empty())
                    .unwrap_or_else(|| "the payment provider refused the request".to_owned());
                Error::Payment(message)
            }
            Some(e) => StripeError::Status {
                operation: op.name(),
                status: status.as_u16(),
                request_id,
                code: e.code.or(e.kind),
                message: self.clean(e.message.as_deref().unwrap_or_default()),
            }
            .into(),
            None => StripeError::Status {
                operation: op.name(),
                status: status.as_u16(),
                request_id,
                code: None,
                message: self.clean(&String::from_utf8_lossy(body)),
            }
            .into(),
        }
    }

    /// `text` without the secret key, cut to [`MAX_MESSAGE_LEN`] characters.
    fn clean(&self, text: &str) -> String {
        let mut text = text.replace(&self.config.secret_key, "<redacted>");
        if let Some((cut, _)) = text.char_indices().nth(MAX_MESSAGE_LEN) {
            text.truncate(cut);
        }
        text.trim().to_owned()
    }
}

/// The calls the gateway makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    CreateIntent,
    RetrieveIntent,
    CancelIntent,
    Refund,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Self::CreateIntent => "create payment intent",
            Self::RetrieveIntent => "retrieve payment intent",
            Self::CancelIntent => "cancel payment intent",
            Self::Refund => "create refund",
        }
    }

    /// Whether the URL names an intent, so a 404 means that intent does not exist.
    fn intent_in_path(self) -> bool {
        matches!(self, Self::RetrieveIntent | Self::CancelIntent)
    }
}

/// Stripe's error document.
#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: ApiError,
}

#[derive(Debug, Deserialize)]
struct ApiError {
    #[serde(rename = "type")]
    kind: Option<String>,
    code: Option<String>,
    decline_code: Option<String>,
    message: Option<String>,
}

/// The fields read from a PaymentIntent object.
#[derive(Debug, Deserialize)]
struct IntentBody {
    id: String,
    client_secret: Option<String>,
    amount: i64,
    currency: Currency,
    status: String,
}

/// The fields read from a Refund object.
#[derive(Debug, Deserialize)]
struct RefundBody {
    id: String,
    amount: i64,
    currency: Currency,
    status: Option<String>,
}

fn decode_error(op: Op, reason: String) -> Error {
    StripeError::Decode {
        operation: op.name(),
        request_id: None,
        reason,
    }
    .into()
}

impl IntentBody {
    fn into_intent(self, op: Op) -> Result<PaymentIntent> {
        let Some(status) = intent_status(&self.status) else {
            return Err(decode_error(
                op,
                format!("unknown payment intent status {:?}", self.status),
            ));
        };
        Ok(PaymentIntent {
            id: self.id,
            client_secret: self.client_secret.unwrap_or_default(),
            amount: Money::new(self.amount, self.currency),
            status,
        })
    }
}

fn check_intent_id(intent_id: &str) -> Result<()> {
    if is_stripe_id(intent_id) {
        Ok(())
    } else {
        Err(Error::invalid(
            "intentId",
            "must be a Stripe id: ASCII letters, digits and `_`, at most 255 characters",
        ))
    }
}

fn check_idempotency_key(key: &str) -> Result<()> {
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_LEN || !key.bytes().all(|b| b.is_ascii_graphic()) {
        Err(Error::invalid(
            "idempotencyKey",
            "must be 1 to 255 printable ASCII characters without spaces",
        ))
    } else {
        Ok(())
    }
}

fn check_amount(amount: Money) -> Result<()> {
    if amount.amount_minor > 0 {
        Ok(())
    } else {
        Err(Error::invalid("amount", "must be positive"))
    }
}

#[async_trait]
impl PaymentGateway for StripeGateway {
    fn name(&self) -> &'static str {
        "stripe"
    }

    async fn create_intent(&self, order: OrderId, amount: Money, idempotency_key: &str) -> Result<PaymentIntent> {
        check_amount(amount)?;
        check_idempotency_key(idempotency_key)?;
        let form = [
            ("amount", amount.amount_minor.to_string()),
            ("currency", amount.currency.as_str().to_ascii_lowercase()),
            ("metadata[order_id]", order.to_string()),
            ("automatic_payment_methods[enabled]", "true".to_owned()),
        ];
        let request = self
            .request(reqwest::Method::POST, "/v1/payment_intents", Some(idempotency_key))
            .form(&form);
        let body: IntentBody = self.call(Op::CreateIntent, request).await?;
        if body.client_secret.as_deref().is_none_or(str::is_empty) {
            return Err(decode_error(
                Op::CreateIntent,
                "the new intent has no client_secret".to_owned(),
            ));
        }
        body.into_intent(Op::CreateIntent)
    }

    async fn retrieve_intent(&self, intent_id: &str) -> Result<PaymentIntent> {
        check_intent_id(intent_id)?;
        let path = format!("/v1/payment_intents/{intent_id}");
        let request = self.request(reqwest::Method::GET, &path, None);
        let body: IntentBody = self.call(Op::RetrieveIntent, request).await?;
        body.into_intent(Op::RetrieveIntent)
    }

    async fn cancel_intent(&self, intent_id: &str) -> Result<PaymentIntent> {
        check_intent_id(intent_id)?;
        let path = format!("/v1/payment_intents/{intent_id}/cancel");
        let no_fields: [(&str, &str); 0] = [];
        let request = self.request(reqwest::Method::POST, &path, None).form(&no_fields);
        let body: IntentBody = self.call(Op::CancelIntent, request).await?;
        body.into_intent(Op::CancelIntent)
    }

    async fn refund(&self, intent_id: &str, amount: Money, idempotency_key: &str) -> Result<GatewayRefund> {
        check_intent_id(intent_id)?;
        check_amount(amount)?;
        check_idempotency_key(idempotency_key)?;
        let form = [
            ("payment_intent", intent_id.to_owned()),
            ("amount", amount.amount_minor.to_string()),
        ];
        let request = self
            .request(reqwest::Method::POST, "/v1/refunds", Some(idempotency_key))
            .form(&form);
        let body: RefundBody = self.call(Op::Refund, request).await?;
        if matches!(body.status.as_deref(), Some("failed" | "canceled")) {
            return Err(Error::Payment(
                "the refund was refused by the payment provider".to_owned(),
            ));
        }
        Ok(GatewayRefund {
            id: body.id,
            amount: Money::new(body.amount, body.currency),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_every_documented_stripe_status() {
        for (stripe, ours) in [
            ("requires_payment_method", PaymentStatus::RequiresPayment),
            ("requires_confirmation", PaymentStatus::RequiresPayment),
            ("requires_action", PaymentStatus::RequiresPayment),
            ("processing", PaymentStatus::RequiresPayment),
            ("requires_capture", PaymentStatus::RequiresPayment),
            ("succeeded", PaymentStatus::Succeeded),
            ("canceled", PaymentStatus::Canceled),
        ] {
            assert_eq!(intent_status(stripe), Some(ours), "{stripe}");
        }
        assert_eq!(intent_status("cancelled"), None);
        assert_eq!(intent_status(""), None);
    }

    #[test]
    fn recognises_stripe_ids_only() {
        assert!(is_stripe_id("pi_3MtwBwLkdIwHu7ix28a3tqPa"));
        assert!(is_stripe_id("re_1Nispe2eZvKYlo2Cd31jOCgZ"));
        for id in [
            "",
            "pi_1/../../v1/customers",
            "pi_1?expand[]=customer",
            "pi_1#x",
            "pi 1",
            "pi_1%2F..",
            "pi-1",
            "pi_é",
            "pi_1\n",
        ] {
            assert!(!is_stripe_id(id), "{id:?}");
        }
        assert!(is_stripe_id(&"a".repeat(255)));
        assert!(!is_stripe_id(&"a".repeat(256)));
    }

    #[test]
    fn cleans_the_secret_out_of_messages() {
        let gateway = StripeGateway::new(StripeConfig::new("sk_test_abc123")).unwrap();
        assert_eq!(
            gateway.clean(" Invalid API Key provided: sk_test_abc123 "),
            "Invalid API Key provided: <redacted>"
        );
        assert_eq!(gateway.clean(&"x".repeat(600)).len(), MAX_MESSAGE_LEN);
    }
}
