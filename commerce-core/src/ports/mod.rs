//! Ports: the traits every storage adapter and gateway implements.
//!
//! Each method documents, under `# Errors`, the variant an adapter MUST return; the conformance
//! suite (feature `conformance`) checks exactly that for every adapter. Methods that must be
//! atomic say so; an adapter begins and commits its own transaction and never lets one escape.
//! Any other backend failure is [`Error::Storage`](crate::Error::Storage).

mod accounts;
mod catalog;
mod checkout;
mod gateways;

pub use accounts::*;
pub use catalog::*;
pub use checkout::*;
pub use gateways::*;

use async_trait::async_trait;

use crate::Result;

/// A backend the host can probe for `/readyz`.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait HealthCheck: Send + Sync {
    /// Short name of the backend, e.g. `postgres`, `mongodb`, `memory`.
    fn backend(&self) -> &'static str;

    /// Round-trips to the backend.
    ///
    /// # Errors
    /// [`Error::Storage`](crate::Error::Storage) when it does not answer.
    async fn ping(&self) -> Result<()>;
}
