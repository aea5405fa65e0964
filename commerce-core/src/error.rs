//! The one error type of the core: what went wrong, in domain terms.

use std::borrow::Cow;

/// Result alias used throughout the core.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, said in the caller's terms. Adapters translate driver errors into these
/// variants; the HTTP host maps each to a status and an RFC 9457 problem body.
///
/// Deliberately not `#[non_exhaustive]`: hosts match it exhaustively, so a new variant is a
/// compile error in every mapping instead of a silent catch-all.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The record does not exist, or the caller may not know that it exists.
    #[error("{entity} not found")]
    NotFound {
        /// Kind of record, e.g. `"product"`.
        entity: &'static str,
    },
    /// The write clashes with the current state (duplicate key, record in use).
    #[error("{message}")]
    Conflict {
        /// Stable machine-readable code, e.g. `"email_taken"`.
        code: &'static str,
        /// Human-readable explanation.
        message: Cow<'static, str>,
    },
    /// One or more input fields are invalid.
    #[error("invalid input: {}", .0.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; "))]
    Validation(Vec<FieldError>),
    /// The caller is not authenticated, or their credentials are wrong.
    #[error("{0}")]
    Unauthorized(Cow<'static, str>),
    /// The caller is authenticated but not allowed to do this.
    #[error("{0}")]
    Forbidden(Cow<'static, str>),
    /// Not enough stock of `sku` to satisfy the request.
    #[error("out of stock: {sku} (requested {requested}, available {available})")]
    OutOfStock {
        /// The SKU that ran out.
        sku: String,
        /// Quantity asked for.
        requested: i64,
        /// Quantity that was available.
        available: i64,
    },
    /// A state machine refused the move.
    #[error("cannot move from {from} to {to}")]
    InvalidTransition {
        /// Current state.
        from: String,
        /// Requested state.
        to: String,
    },
    /// The payment gateway refused or failed.
    #[error("payment error: {0}")]
    Payment(String),
    /// A storage backend failed; the source is logged, never shown to clients.
    #[error("storage failure: {0}")]
    Storage(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Something that should not happen; carries the cause for the logs.
    #[error("unexpected: {0}")]
    Unexpected(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// One invalid field and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FieldError {
    /// The field's wire name (camelCase path, e.g. `variants[0].price`).
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl Error {
    /// A validation error for one field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError {
            field: field.into(),
            message: message.into(),
        }])
    }

    /// The same error with each invalid field renamed by `rename` (e.g. to its place in a
    /// list: `onHand` → `items[2].onHand`); other errors are returned as they are.
    #[must_use]
    pub fn map_fields(self, rename: impl Fn(&str) -> String) -> Self {
        match self {
            Self::Validation(errors) => Self::Validation(
                errors
                    .into_iter()
                    .map(|e| FieldError {
                        field: rename(&e.field),
                        message: e.message,
                    })
                    .collect(),
            ),
            other => other,
        }
    }

    /// A conflict with a stable code.
    pub fn conflict(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self::Conflict {
            code,
            message: message.into(),
        }
    }

    /// Wraps a backend error.
    pub fn storage(source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Storage(Box::new(source))
    }

    /// Wraps an error that should not happen.
    pub fn unexpected(source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Unexpected(Box::new(source))
    }

    /// Wraps a message describing something that should not happen.
    pub fn unexpected_msg(message: impl Into<String>) -> Self {
        Self::Unexpected(message.into().into())
    }

    /// Whether this is a `NotFound`.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound { .. })
    }
}

/// Collects field errors so a request reports every bad field at once.
#[derive(Debug, Default)]
pub struct Validator {
    errors: Vec<FieldError>,
}

impl Validator {
    /// An empty collector.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records an error on `field`.
    pub fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    /// Runs a fallible parse, recording its error under `field`.
    pub fn check<T, E: std::fmt::Display>(&mut self, field: &str, result: std::result::Result<T, E>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.push(field, e.to_string());
                None
            }
        }
    }

    /// Runs a check that reports [`Error::Validation`] itself, keeping its fields and messages
    /// (through [`Self::check`] they would read "invalid input: field: ..."); any other error
    /// is recorded under `field`.
    pub fn absorb<T>(&mut self, field: &str, result: Result<T>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(Error::Validation(errors)) => {
                self.errors.extend(errors);
                None
            }
            Err(e) => {
                self.push(field, e.to_string());
                None
            }
        }
    }

    /// Records an error when `ok` is false.
    pub fn ensure(&mut self, ok: bool, field: &str, message: impl Into<String>) {
        if !ok {
            self.push(field, message);
        }
    }

    /// `Ok(())` when nothing was recorded, else a `Validation` error with every field.
    pub fn finish(self) -> Result<()> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(Error::Validation(self.errors))
        }
    }
}
