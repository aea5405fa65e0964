use async_trait::async_trait;

use crate::Result;
use crate::domain::{GatewayRefund, Money, OrderId, PaymentIntent};

/// The conflict code of an idempotency key used again for another request (Stripe's
/// `idempotency_error`).
pub const KEY_REUSED: &str = "idempotency_key_reused";

/// A payment provider (Stripe, or the offline `manual` gateway).
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait PaymentGateway: Send + Sync {
    /// Short name stored on payments, e.g. `stripe`.
    fn name(&self) -> &'static str;

    /// Creates an intent for the order's amount. `idempotency_key` is derived from the order
    /// so asking twice yields the same intent.
    ///
    /// # Errors
    /// `Payment(..)` when the provider refuses.
    async fn create_intent(&self, order: OrderId, amount: Money, idempotency_key: &str) -> Result<PaymentIntent>;

    /// The intent as the provider sees it now.
    ///
    /// # Errors
    /// `NotFound { entity: "payment intent" }`; `Payment(..)`.
    async fn retrieve_intent(&self, intent_id: &str) -> Result<PaymentIntent>;

    /// Cancels an unpaid intent.
    ///
    /// # Errors
    /// `Payment(..)` when it can no longer be cancelled.
    async fn cancel_intent(&self, intent_id: &str) -> Result<PaymentIntent>;

    /// Refunds all or part of a captured intent. The same `idempotency_key` answers with its
    /// first refund again; used for another intent or amount it is refused, as Stripe does.
    ///
    /// # Errors
    /// `Conflict { code: `[`KEY_REUSED`]` }` when the key was used for another refund;
    /// `Payment(..)` when the provider refuses (e.g. more than captured).
    async fn refund(&self, intent_id: &str, amount: Money, idempotency_key: &str) -> Result<GatewayRefund>;
}

/// Where product images are kept (local files, S3-compatible storage, Cloudinary).
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait ImageStore: Send + Sync {
    /// Stores the bytes under `key`; returns the public URL.
    async fn put_image(&self, key: &str, bytes: Vec<u8>, content_type: &str) -> Result<String>;

    /// Removes the object. Removing a missing object is not an error.
    async fn delete_image(&self, key: &str) -> Result<()>;
}
