//! RFC 9457 problem details: the one shape every error takes on the wire, and the one place
//! core errors become HTTP statuses.

use poem::http::{HeaderValue, StatusCode, header};
use poem::{IntoResponse, Response};
use poem_openapi::payload::Payload;
use poem_openapi::registry::{MetaSchemaRef, Registry};
use poem_openapi::types::{ToJSON, Type};
use poem_openapi::{ApiResponse, Object};

/// Media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// One invalid field.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
pub struct ProblemField {
    /// Wire name of the field (camelCase, dotted path for nested fields).
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

/// An RFC 9457 problem details object.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
#[oai(rename_all = "camelCase")]
pub struct Problem {
    /// URI reference identifying the problem type.
    #[oai(rename = "type")]
    pub kind: String,
    /// Short summary of the problem type.
    pub title: String,
    /// HTTP status code.
    pub status: u16,
    /// Explanation of this occurrence.
    pub detail: String,
    /// Stable machine-readable code, e.g. `email_taken`.
    pub code: String,
    /// The request id (also in the `x-request-id` header), for support.
    #[oai(skip_serializing_if_is_none)]
    pub request_id: Option<String>,
    /// Invalid fields, for validation problems.
    #[oai(skip_serializing_if_is_empty, default)]
    pub errors: Vec<ProblemField>,
}

impl Problem {
    /// A problem with the given status, code and detail.
    pub fn new(status: StatusCode, code: &str, detail: impl Into<String>) -> Self {
        Self {
            kind: format!("urn:commerce:problem:{code}"),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            code: code.to_owned(),
            request_id: None,
            errors: Vec::new(),
        }
    }

    /// Adds field errors.
    pub fn with_errors(mut self, errors: Vec<ProblemField>) -> Self {
        self.errors = errors;
        self
    }

    /// The status as a `StatusCode`.
    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

/// A problem serialized as `application/problem+json` (boxed: errors stay small on the
/// happy path's `Result`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProblemJson(pub Box<Problem>);

impl Payload for ProblemJson {
    const CONTENT_TYPE: &'static str = PROBLEM_JSON;

    fn schema_ref() -> MetaSchemaRef {
        Problem::schema_ref()
    }

    fn register(registry: &mut Registry) {
        Problem::register(registry);
    }
}

impl IntoResponse for ProblemJson {
    fn into_response(self) -> Response {
        let body = self.0.to_json_string();
        Response::builder()
            .status(self.0.status_code())
            .header(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON))
            .body(body)
    }
}

/// Every error an operation can answer with. Each variant carries a problem body.
#[derive(Debug, ApiResponse)]
pub enum ApiError {
    /// Malformed request: bad JSON, wrong types, bad parameters.
    #[oai(status = 400)]
    BadRequest(ProblemJson),
    /// Missing, expired or invalid credentials.
    #[oai(status = 401)]
    Unauthorized(ProblemJson, #[oai(header = "WWW-Authenticate")] String),
    /// The payment gateway refused.
    #[oai(status = 402)]
    PaymentRequired(ProblemJson),
    /// Authenticated but not allowed.
    #[oai(status = 403)]
    Forbidden(ProblemJson),
    /// No such record (or not yours).
    #[oai(status = 404)]
    NotFound(ProblemJson),
    /// Clashes with the current state: duplicate, out of stock, invalid transition, in flight.
    #[oai(status = 409)]
    Conflict(ProblemJson),
    /// Well-formed but invalid fields, or an idempotency key reused with another body.
    #[oai(status = 422)]
    Unprocessable(ProblemJson),
    /// Too many requests; retry after the given seconds.
    #[oai(status = 429)]
    TooManyRequests(ProblemJson, #[oai(header = "Retry-After")] u64),
    /// Something broke on our side; the request id helps support find it.
    #[oai(status = 500)]
    Internal(ProblemJson),
    /// A backend is unavailable; try again shortly.
    #[oai(status = 503)]
    Unavailable(ProblemJson),
}

impl ApiError {
    /// Builds the variant matching a problem's status.
    pub fn from_problem(problem: Problem) -> Self {
        let p = ProblemJson(Box::new(problem));
        match p.0.status {
            400 => Self::BadRequest(p),
            401 => Self::Unauthorized(p, "Bearer".to_owned()),
            402 => Self::PaymentRequired(p),
            403 => Self::Forbidden(p),
            404 => Self::NotFound(p),
            409 => Self::Conflict(p),
            422 => Self::Unprocessable(p),
            429 => Self::TooManyRequests(p, 1),
            503 => Self::Unavailable(p),
            _ => Self::Internal(p),
        }
    }

    /// A 400 naming the bad field.
    pub fn bad_request(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self::from_problem(
            Problem::new(StatusCode::BAD_REQUEST, "bad_request", format!("{field}: {message}")).with_errors(vec![
                ProblemField {
                    field: field.to_owned(),
                    message,
                },
            ]),
        )
    }
}

impl From<commerce_core::Error> for ApiError {
    fn from(err: commerce_core::Error) -> Self {
        Self::from_problem(problem_for(&err))
    }
}

/// The one mapping from core errors to HTTP. Exhaustive on purpose: a new core variant must be
/// mapped here before the host compiles.
pub fn problem_for(err: &commerce_core::Error) -> Problem {
    use commerce_core::Error as E;
    match err {
        E::NotFound { entity } => Problem::new(StatusCode::NOT_FOUND, "not_found", format!("{entity} not found")),
        E::Conflict { code, message } => Problem::new(StatusCode::CONFLICT, code, message.as_ref()),
        E::Validation(fields) => Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", err.to_string())
            .with_errors(
                fields
                    .iter()
                    .map(|f| ProblemField {
                        field: f.field.clone(),
                        message: f.message.clone(),
                    })
                    .collect(),
            ),
        E::Unauthorized(message) => Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", message.as_ref()),
        E::Forbidden(message) => Problem::new(StatusCode::FORBIDDEN, "forbidden", message.as_ref()),
        E::OutOfStock { .. } => Problem::new(StatusCode::CONFLICT, "out_of_stock", err.to_string()),
        E::InvalidTransition { .. } => Problem::new(StatusCode::CONFLICT, "invalid_transition", err.to_string()),
        E::Payment(message) => Problem::new(StatusCode::PAYMENT_REQUIRED, "payment_failed", message),
        E::Storage(source) => {
            tracing::error!(error = %source, "storage backend failed");
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "backend_unavailable",
                "a backend is unavailable; try again",
            )
        }
        E::Unexpected(source) => {
            tracing::error!(error = %source, "unexpected error");
            Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "an unexpected error occurred",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use commerce_core::Error;

    #[test]
    fn core_errors_map_to_statuses_and_never_leak_sources() {
        let cases = [
            (Error::NotFound { entity: "order" }, 404, "not_found"),
            (Error::conflict("email_taken", "email is taken"), 409, "email_taken"),
            (Error::invalid("email", "bad"), 422, "validation_failed"),
            (Error::Unauthorized("no".into()), 401, "unauthorized"),
            (Error::Forbidden("no".into()), 403, "forbidden"),
            (
                Error::OutOfStock {
                    sku: "SKU-1".into(),
                    requested: 2,
                    available: 1,
                },
                409,
                "out_of_stock",
            ),
            (
                Error::InvalidTransition {
                    from: "shipped".into(),
                    to: "pending".into(),
                },
                409,
                "invalid_transition",
            ),
            (Error::Payment("declined".into()), 402, "payment_failed"),
            (Error::unexpected_msg("db password is hunter2"), 500, "internal"),
        ];
        for (err, status, code) in cases {
            let p = problem_for(&err);
            assert_eq!((p.status, p.code.as_str()), (status, code), "{err}");
            assert!(!p.detail.contains("hunter2"));
        }
        let p = problem_for(&Error::OutOfStock {
            sku: "SKU-1".into(),
            requested: 2,
            available: 1,
        });
        assert!(p.detail.contains("SKU-1"));
        let p = problem_for(&Error::invalid("email", "must be a valid email address"));
        assert_eq!(
            p.errors,
            vec![ProblemField {
                field: "email".into(),
                message: "must be a valid email address".into()
            }]
        );
    }
}
