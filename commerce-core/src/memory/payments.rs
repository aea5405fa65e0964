//! Payments, their transactions, processed gateway events, and idempotency keys.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{MemoryStore, read, write};
use crate::domain::{
    IdempotencyClaim, IdempotencyKey, IdempotencyRecord, OrderId, Payment, PaymentId, PaymentSeen, PaymentStatus,
    PaymentTransaction, StoredResponse,
};
use crate::ports::{IdempotencyStore, PaymentStore};
use crate::{Error, Result};

/// Payments (one per order), their transactions and the gateway events seen.
#[derive(Default)]
pub(super) struct Payments {
    payments: HashMap<PaymentId, Payment>,
    by_order: HashMap<OrderId, PaymentId>,
    by_intent: HashMap<String, PaymentId>,
    /// Each payment's transactions, oldest first.
    transactions: HashMap<PaymentId, Vec<PaymentTransaction>>,
    /// Gateway event ids already processed.
    gateway_events: HashMap<String, (String, DateTime<Utc>)>,
}

/// The wire name of a payment status, as serialized.
fn status_name(status: PaymentStatus) -> &'static str {
    match status {
        PaymentStatus::RequiresPayment => "requires_payment",
        PaymentStatus::Succeeded => "succeeded",
        PaymentStatus::Failed => "failed",
        PaymentStatus::Canceled => "canceled",
        PaymentStatus::PartiallyRefunded => "partially_refunded",
        PaymentStatus::Refunded => "refunded",
    }
}

#[async_trait]
impl PaymentStore for MemoryStore {
    async fn insert_payment(&self, payment: &Payment) -> Result<()> {
        let mut payments = write(&self.inner.payments)?;
        if payments.by_order.contains_key(&payment.order_id)
            || payments.payments.contains_key(&payment.id)
            || payments.by_intent.contains_key(&payment.intent_id)
        {
            return Err(Error::conflict("payment_exists", "the order already has a payment"));
        }
        payments.by_order.insert(payment.order_id, payment.id);
        payments.by_intent.insert(payment.intent_id.clone(), payment.id);
        payments.payments.insert(payment.id, payment.clone());
        Ok(())
    }

    async fn find_payment_by_order(&self, order: OrderId) -> Result<Option<Payment>> {
        let payments = read(&self.inner.payments)?;
        Ok(payments
            .by_order
            .get(&order)
            .and_then(|id| payments.payments.get(id))
            .cloned())
    }

    async fn find_payment_by_intent(&self, intent_id: &str) -> Result<Option<Payment>> {
        let payments = read(&self.inner.payments)?;
        Ok(payments
            .by_intent
            .get(intent_id)
            .and_then(|id| payments.payments.get(id))
            .cloned())
    }

    async fn update_payment(
        &self,
        payment: &Payment,
        seen: PaymentSeen,
        transaction: Option<PaymentTransaction>,
    ) -> Result<Payment> {
        let mut payments = write(&self.inner.payments)?;
        let stored = payments
            .payments
            .get(&payment.id)
            .ok_or(Error::NotFound { entity: "payment" })?;
        if stored.status != seen.status {
            return Err(Error::InvalidTransition {
                from: status_name(stored.status).to_owned(),
                to: status_name(payment.status).to_owned(),
            });
        }
        if stored.amount_refunded.amount_minor != seen.amount_refunded_minor {
            return Err(PaymentSeen::changed());
        }
        // The order and creation time are fixed; everything else is the caller's.
        let updated = Payment {
            order_id: stored.order_id,
            created_at: stored.created_at,
            ..payment.clone()
        };
        let old_intent = stored.intent_id.clone();
        if old_intent != updated.intent_id {
            payments.by_intent.remove(&old_intent);
            payments.by_intent.insert(updated.intent_id.clone(), updated.id);
        }
        if let Some(tx) = transaction {
            payments.transactions.entry(updated.id).or_default().push(tx);
        }
        payments.payments.insert(updated.id, updated.clone());
        Ok(updated)
    }

    async fn payment_transactions(&self, payment: &Payment) -> Result<Vec<PaymentTransaction>> {
        let mut list = read(&self.inner.payments)?
            .transactions
            .get(&payment.id)
            .cloned()
            .unwrap_or_default();
        // Stable: transactions at the same instant stay in the order recorded.
        list.sort_by_key(|t| t.created_at);
        Ok(list)
    }

    async fn record_gateway_event(&self, event_id: &str, kind: &str, now: DateTime<Utc>) -> Result<bool> {
        let mut payments = write(&self.inner.payments)?;
        if payments.gateway_events.contains_key(event_id) {
            return Ok(false);
        }
        payments
            .gateway_events
            .insert(event_id.to_owned(), (kind.to_owned(), now));
        Ok(true)
    }
}

/// Claimed idempotency keys.
#[derive(Default)]
pub(super) struct Idempotency {
    records: HashMap<IdempotencyKey, IdempotencyRecord>,
}

impl Idempotency {
    /// Whether `key` is claimed, unexpired at `now` and not yet answered.
    pub(super) fn is_claimed(&self, key: &IdempotencyKey, now: DateTime<Utc>) -> bool {
        self.records
            .get(key)
            .is_some_and(|r| r.expires_at > now && r.response.is_none())
    }

    /// Stores `key`'s answer; `false` when the key has no record.
    pub(super) fn answer(&mut self, key: &IdempotencyKey, response: &StoredResponse) -> bool {
        match self.records.get_mut(key) {
            Some(record) => {
                record.response = Some(response.clone());
                true
            }
            None => false,
        }
    }
}

#[async_trait]
impl IdempotencyStore for MemoryStore {
    async fn claim_key(
        &self,
        key: &IdempotencyKey,
        fingerprint: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<IdempotencyClaim> {
        let mut keys = write(&self.inner.idempotency)?;
        if let Some(record) = keys.records.get(key).filter(|r| r.expires_at > now) {
            return Ok(if record.fingerprint != fingerprint {
                IdempotencyClaim::Mismatch
            } else {
                match &record.response {
                    Some(response) => IdempotencyClaim::Completed(response.clone()),
                    None => IdempotencyClaim::InFlight,
                }
            });
        }
        keys.records.insert(
            key.clone(),
            IdempotencyRecord {
                key: key.clone(),
                fingerprint: fingerprint.to_owned(),
                response: None,
                created_at: now,
                expires_at,
            },
        );
        Ok(IdempotencyClaim::Started)
    }

    async fn complete_key(&self, key: &IdempotencyKey, response: &StoredResponse) -> Result<()> {
        if write(&self.inner.idempotency)?.answer(key, response) {
            Ok(())
        } else {
            Err(Error::NotFound {
                entity: "idempotency key",
            })
        }
    }

    async fn release_key(&self, key: &IdempotencyKey) -> Result<()> {
        let mut keys = write(&self.inner.idempotency)?;
        if keys.records.get(key).is_some_and(|r| r.response.is_none()) {
            keys.records.remove(key);
        }
        Ok(())
    }

    async fn forget_key(&self, key: &IdempotencyKey) -> Result<()> {
        write(&self.inner.idempotency)?.records.remove(key);
        Ok(())
    }
}
