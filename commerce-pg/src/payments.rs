//! The payment port on PostgreSQL: payments (one per order), their transactions and the
//! gateway events already processed (tables from `migrations/0002_checkout.sql`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use commerce_core::domain::{
    Currency, OrderId, Payment, PaymentId, PaymentSeen, PaymentTransaction, PaymentTransactionId,
};
use commerce_core::ports::PaymentStore;
use commerce_core::{Error, Result};
use uuid::Uuid;

use crate::codec::{self, payment_status_code, payment_status_from, transaction_kind_code, transaction_kind_from};
use crate::error::{StorageResult, UniqueKey, conflict_or_storage};
use crate::{PgStore, retry};

macro_rules! payment_columns {
    () => {
        "id, order_id, gateway, intent_id, client_secret, currency, amount_minor, amount_refunded_minor, status, \
         card_brand, card_last4, created_at, updated_at"
    };
}

macro_rules! transaction_columns {
    () => {
        "id, payment_id, kind, currency, amount_minor, gateway_reference, created_at"
    };
}

/// Every unique key of a payment is the one conflict the port names.
const PAYMENT_KEYS: &[UniqueKey] = &[
    UniqueKey {
        constraint: "payments_order_id_key",
        code: "payment_exists",
        message: "the order already has a payment",
    },
    UniqueKey {
        constraint: "payments_pkey",
        code: "payment_exists",
        message: "a payment with this id exists",
    },
    UniqueKey {
        constraint: "payments_intent_id_key",
        code: "payment_exists",
        message: "a payment for this gateway intent exists",
    },
];

/// A `commerce.payments` row.
#[derive(sqlx::FromRow)]
struct PaymentRow {
    id: Uuid,
    order_id: Uuid,
    gateway: String,
    intent_id: String,
    client_secret: String,
    currency: String,
    amount_minor: i64,
    amount_refunded_minor: i64,
    status: String,
    card_brand: Option<String>,
    card_last4: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<PaymentRow> for Payment {
    type Error = Error;

    fn try_from(row: PaymentRow) -> Result<Self> {
        const TABLE: &str = "payments";
        let id = row.id;
        Ok(Self {
            id: PaymentId(id),
            order_id: OrderId(row.order_id),
            gateway: row.gateway,
            intent_id: row.intent_id,
            client_secret: row.client_secret,
            amount: codec::money(row.amount_minor, &row.currency, TABLE, id)?,
            amount_refunded: codec::money(row.amount_refunded_minor, &row.currency, TABLE, id)?,
            status: codec::decode(payment_status_from, &row.status, TABLE, id, "status")?,
            card_brand: row.card_brand,
            card_last4: row.card_last4,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

/// A `commerce.payment_transactions` row (without `seq`).
#[derive(sqlx::FromRow)]
struct TransactionRow {
    id: Uuid,
    payment_id: Uuid,
    kind: String,
    currency: String,
    amount_minor: i64,
    gateway_reference: Option<String>,
    created_at: DateTime<Utc>,
}

impl TryFrom<TransactionRow> for PaymentTransaction {
    type Error = Error;

    fn try_from(row: TransactionRow) -> Result<Self> {
        const TABLE: &str = "payment_transactions";
        let id = row.id;
        Ok(Self {
            id: PaymentTransactionId(id),
            payment_id: PaymentId(row.payment_id),
            kind: codec::decode(transaction_kind_from, &row.kind, TABLE, id, "kind")?,
            amount: codec::money(row.amount_minor, &row.currency, TABLE, id)?,
            gateway_reference: row.gateway_reference,
            created_at: row.created_at,
        })
    }
}

/// The one currency of a payment's amounts (stored once, in `payments.currency`).
///
/// # Errors
/// `Validation { field: "amountRefunded" }` when the refunded amount is in another currency.
fn payment_currency(payment: &Payment) -> Result<Currency> {
    let currency = payment.amount.currency;
    if payment.amount_refunded.currency == currency {
        Ok(currency)
    } else {
        Err(Error::invalid(
            "amountRefunded",
            format!("must be in the payment's currency ({currency})"),
        ))
    }
}

impl PgStore {
    /// One run of `update_payment`'s transaction.
    async fn update_payment_once(
        &self,
        payment: &Payment,
        seen: PaymentSeen,
        transaction: Option<&PaymentTransaction>,
        currency: Currency,
    ) -> Result<Payment> {
        let mut conn = self.db().lease().await.storage()?;
        let mut tx = retry::begin(&mut conn).await?;
        // Compare-and-set on the status and the refunded amount; the order and creation time are
        // fixed.
        let row = sqlx::query_as::<_, PaymentRow>(concat!(
            "UPDATE commerce.payments
                SET gateway = $3, intent_id = $4, client_secret = $5, currency = $6, amount_minor = $7,
                    amount_refunded_minor = $8, status = $9, card_brand = $10, card_last4 = $11, updated_at = $12
              WHERE id = $1 AND status = $2 AND amount_refunded_minor = $13
          RETURNING ",
            payment_columns!()
        ))
        .bind(payment.id.0)
        .bind(payment_status_code(seen.status))
        .bind(&payment.gateway)
        .bind(&payment.intent_id)
        .bind(&payment.client_secret)
        .bind(currency.as_str())
        .bind(payment.amount.amount_minor)
        .bind(payment.amount_refunded.amount_minor)
        .bind(payment_status_code(payment.status))
        .bind(payment.card_brand.as_deref())
        .bind(payment.card_last4.as_deref())
        .bind(payment.updated_at)
        .bind(seen.amount_refunded_minor)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| conflict_or_storage(e, PAYMENT_KEYS))?;
        let Some(row) = row else {
            let current: Option<String> = sqlx::query_scalar("SELECT status FROM commerce.payments WHERE id = $1")
                .bind(payment.id.0)
                .fetch_optional(&mut *tx)
                .await
                .storage()?;
            return Err(match current {
                None => Error::NotFound { entity: "payment" },
                Some(current) if current == payment_status_code(seen.status) => PaymentSeen::changed(),
                Some(current) => Error::InvalidTransition {
                    from: current,
                    to: payment_status_code(payment.status).to_owned(),
                },
            });
        };
        if let Some(t) = transaction {
            // Recorded under the payment updated, as the in-memory adapter does.
            sqlx::query(concat!(
                "INSERT INTO commerce.payment_transactions (",
                transaction_columns!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7)"
            ))
            .bind(t.id.0)
            .bind(payment.id.0)
            .bind(transaction_kind_code(t.kind))
            .bind(t.amount.currency.as_str())
            .bind(t.amount.amount_minor)
            .bind(t.gateway_reference.as_deref())
            .bind(t.created_at)
            .execute(&mut *tx)
            .await
            .storage()?;
        }
        tx.commit().await.storage()?;
        conn.finish();
        row.try_into()
    }
}

#[async_trait]
impl PaymentStore for PgStore {
    async fn insert_payment(&self, payment: &Payment) -> Result<()> {
        let currency = payment_currency(payment)?;
        sqlx::query(concat!(
            "INSERT INTO commerce.payments (",
            payment_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        ))
        .bind(payment.id.0)
        .bind(payment.order_id.0)
        .bind(&payment.gateway)
        .bind(&payment.intent_id)
        .bind(&payment.client_secret)
        .bind(currency.as_str())
        .bind(payment.amount.amount_minor)
        .bind(payment.amount_refunded.amount_minor)
        .bind(payment_status_code(payment.status))
        .bind(payment.card_brand.as_deref())
        .bind(payment.card_last4.as_deref())
        .bind(payment.created_at)
        .bind(payment.updated_at)
        .execute(self.db())
        .await
        .map_err(|e| conflict_or_storage(e, PAYMENT_KEYS))?;
        Ok(())
    }

    async fn find_payment_by_order(&self, order: OrderId) -> Result<Option<Payment>> {
        sqlx::query_as::<_, PaymentRow>(concat!(
            "SELECT ",
            payment_columns!(),
            " FROM commerce.payments WHERE order_id = $1"
        ))
        .bind(order.0)
        .fetch_optional(self.db())
        .await
        .storage()?
        .map(Payment::try_from)
        .transpose()
    }

    async fn find_payment_by_intent(&self, intent_id: &str) -> Result<Option<Payment>> {
        sqlx::query_as::<_, PaymentRow>(concat!(
            "SELECT ",
            payment_columns!(),
            " FROM commerce.payments WHERE intent_id = $1"
        ))
        .bind(intent_id)
        .fetch_optional(self.db())
        .await
        .storage()?
        .map(Payment::try_from)
        .transpose()
    }

    async fn update_payment(
        &self,
        payment: &Payment,
        seen: PaymentSeen,
        transaction: Option<PaymentTransaction>,
    ) -> Result<Payment> {
        let currency = payment_currency(payment)?;
        retry::retrying(|| self.update_payment_once(payment, seen, transaction.as_ref(), currency)).await
    }

    async fn payment_transactions(&self, payment: &Payment) -> Result<Vec<PaymentTransaction>> {
        let rows = sqlx::query_as::<_, TransactionRow>(concat!(
            "SELECT ",
            transaction_columns!(),
            " FROM commerce.payment_transactions WHERE payment_id = $1 ORDER BY created_at, seq"
        ))
        .bind(payment.id.0)
        .fetch_all(self.db())
        .await
        .storage()?;
        rows.into_iter().map(PaymentTransaction::try_from).collect()
    }

    async fn record_gateway_event(&self, event_id: &str, kind: &str, now: DateTime<Utc>) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO commerce.gateway_events (event_id, kind, received_at) VALUES ($1, $2, $3)
             ON CONFLICT (event_id) DO NOTHING",
        )
        .bind(event_id)
        .bind(kind)
        .bind(now)
        .execute(self.db())
        .await
        .storage()?;
        Ok(done.rows_affected() == 1)
    }
}
