//! Conversions between domain values and columns shared by the checkout tables
//! (`migrations/0002_checkout.sql`): the text codes of the domain enums (fenced by CHECK
//! constraints), actors split over two columns, money, SKUs and quantities read back.
//!
//! Reading re-validates what the database cannot: a bad value read back is `Unexpected`
//! (naming the table, the row and the value), never a panic.

use commerce_core::domain::{
    Actor, Currency, Money, MovementKind, OrderStatus, PaymentStatus, Quantity, ReservationStatus, SagaStep, Sku,
    TransactionKind, UserId,
};
use commerce_core::{Error, Result};
use uuid::Uuid;

/// `to_code(value)` and, when named, `from_code(text)` for an enum stored as text. The match in
/// `to_code` is exhaustive, so a new variant is a compile error here (and a CHECK constraint to
/// extend).
macro_rules! text_codes {
    ($ty:ty, $to:ident { $($variant:path => $code:literal),+ $(,)? }) => {
        #[doc = concat!("The stored code of a `", stringify!($ty), "`.")]
        pub(crate) fn $to(value: $ty) -> &'static str {
            match value {
                $($variant => $code),+
            }
        }
    };
    ($ty:ty, $to:ident, $from:ident { $($variant:path => $code:literal),+ $(,)? }) => {
        text_codes!($ty, $to { $($variant => $code),+ });

        #[doc = concat!("The `", stringify!($ty), "` of a stored code.")]
        pub(crate) fn $from(code: &str) -> Option<$ty> {
            match code {
                $($code => Some($variant),)+
                _ => None,
            }
        }
    };
}

text_codes!(MovementKind, movement_kind_code, movement_kind_from {
    MovementKind::Purchase => "purchase",
    MovementKind::Sale => "sale",
    MovementKind::Return => "return",
    MovementKind::Adjustment => "adjustment",
    MovementKind::Damage => "damage",
    MovementKind::Transfer => "transfer",
    MovementKind::Reservation => "reservation",
    MovementKind::Release => "release",
});

// Reservations are only ever read back by status, never as domain values.
text_codes!(ReservationStatus, reservation_status_code {
    ReservationStatus::Active => "active",
    ReservationStatus::Committed => "committed",
    ReservationStatus::Released => "released",
});

text_codes!(SagaStep, saga_step_code, saga_step_from {
    SagaStep::OrderPlaced => "order_placed",
    SagaStep::CartConverted => "cart_converted",
    SagaStep::AwaitingPayment => "awaiting_payment",
    SagaStep::Completed => "completed",
    SagaStep::Compensated => "compensated",
});

text_codes!(PaymentStatus, payment_status_code, payment_status_from {
    PaymentStatus::RequiresPayment => "requires_payment",
    PaymentStatus::Succeeded => "succeeded",
    PaymentStatus::Failed => "failed",
    PaymentStatus::Canceled => "canceled",
    PaymentStatus::PartiallyRefunded => "partially_refunded",
    PaymentStatus::Refunded => "refunded",
});

text_codes!(TransactionKind, transaction_kind_code, transaction_kind_from {
    TransactionKind::Charge => "charge",
    TransactionKind::Refund => "refund",
    TransactionKind::PartialRefund => "partial_refund",
});

/// A value read back from `table` (row `row`) that the domain refuses.
pub(crate) fn bad_value(table: &str, row: impl std::fmt::Display, what: &str, value: impl std::fmt::Debug) -> Error {
    Error::unexpected_msg(format!("commerce.{table} {row}: invalid {what} {value:?}"))
}

/// Decodes a stored code with `from`, or says which value of which row is bad.
pub(crate) fn decode<T>(
    from: fn(&str) -> Option<T>,
    code: &str,
    table: &str,
    row: impl std::fmt::Display,
    what: &str,
) -> Result<T> {
    from(code).ok_or_else(|| bad_value(table, row, what, code))
}

/// The order status of a stored code.
pub(crate) fn order_status(code: &str, table: &str, row: impl std::fmt::Display) -> Result<OrderStatus> {
    decode(OrderStatus::parse, code, table, row, "status")
}

/// An actor as `(actor_kind, actor_id)` columns.
pub(crate) fn actor_columns(actor: &Actor) -> (&'static str, Option<Uuid>) {
    match actor {
        Actor::User(id) => ("user", Some(id.0)),
        Actor::Gateway => ("gateway", None),
        Actor::System => ("system", None),
    }
}

/// The actor of `(actor_kind, actor_id)` columns.
pub(crate) fn actor_from(kind: &str, id: Option<Uuid>, table: &str, row: impl std::fmt::Display) -> Result<Actor> {
    match (kind, id) {
        ("user", Some(id)) => Ok(Actor::User(UserId(id))),
        ("gateway", None) => Ok(Actor::Gateway),
        ("system", None) => Ok(Actor::System),
        _ => Err(bad_value(table, row, "actor", (kind, id))),
    }
}

/// Money of stored minor units and currency code.
pub(crate) fn money(amount_minor: i64, currency: &str, table: &str, row: impl std::fmt::Display) -> Result<Money> {
    let currency = Currency::parse(currency).map_err(|_| bad_value(table, row, "currency", currency))?;
    Ok(Money::new(amount_minor, currency))
}

/// A SKU read back.
pub(crate) fn sku(raw: &str, table: &str, row: impl std::fmt::Display) -> Result<Sku> {
    let sku = Sku::parse(raw).map_err(|_| bad_value(table, row, "sku", raw))?;
    // `parse` upper-cases; a stored SKU must already be in its canonical form.
    if sku.as_str() == raw {
        Ok(sku)
    } else {
        Err(bad_value(table, sku, "sku", raw))
    }
}

/// A quantity read back.
pub(crate) fn quantity(units: i64, table: &str, row: impl std::fmt::Display) -> Result<Quantity> {
    Quantity::new(units).map_err(|_| bad_value(table, row, "quantity", units))
}

/// A quantity as an `integer` column (at most [`Quantity::MAX`], so it always fits).
pub(crate) fn quantity_column(quantity: Quantity) -> Result<i32> {
    i32::try_from(quantity.get()).map_err(Error::unexpected)
}

/// A `u32` of the domain as a `bigint` column.
pub(crate) fn u32_column(n: u32) -> i64 {
    i64::from(n)
}

/// A `bigint` column holding a `u32` of the domain.
pub(crate) fn u32_from(n: i64, table: &str, row: impl std::fmt::Display, what: &str) -> Result<u32> {
    u32::try_from(n).map_err(|_| bad_value(table, row, what, n))
}

/// A page offset as a query parameter.
pub(crate) fn offset(n: u64) -> Result<i64> {
    i64::try_from(n).map_err(Error::unexpected)
}

/// The total of a list read a page at a time with `COUNT(*) OVER () AS total`: from the
/// page's first row, or, when the page is empty, by `count` (only past the last page, where
/// no row carries the total; an empty first page means nothing matched).
pub(crate) async fn page_total(
    first_row_total: Option<i64>,
    offset: u64,
    count: impl Future<Output = Result<i64>>,
) -> Result<u64> {
    let total = match first_row_total {
        Some(total) => total,
        None if offset > 0 => count.await?,
        None => 0,
    };
    u64::try_from(total).map_err(Error::unexpected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_match_the_serde_names() {
        use commerce_core::domain::MovementKind::*;
        for kind in [
            Purchase,
            Sale,
            Return,
            Adjustment,
            Damage,
            Transfer,
            Reservation,
            Release,
        ] {
            let code = movement_kind_code(kind);
            assert_eq!(movement_kind_from(code), Some(kind));
            assert_eq!(serde_json::to_value(kind).unwrap(), serde_json::json!(code));
        }
        for step in [
            SagaStep::OrderPlaced,
            SagaStep::CartConverted,
            SagaStep::AwaitingPayment,
            SagaStep::Completed,
            SagaStep::Compensated,
        ] {
            assert_eq!(saga_step_from(saga_step_code(step)), Some(step));
            assert_eq!(
                serde_json::to_value(step).unwrap(),
                serde_json::json!(saga_step_code(step))
            );
        }
        for status in [
            PaymentStatus::RequiresPayment,
            PaymentStatus::Succeeded,
            PaymentStatus::Failed,
            PaymentStatus::Canceled,
            PaymentStatus::PartiallyRefunded,
            PaymentStatus::Refunded,
        ] {
            assert_eq!(payment_status_from(payment_status_code(status)), Some(status));
            assert_eq!(
                serde_json::to_value(status).unwrap(),
                serde_json::json!(payment_status_code(status))
            );
        }
        for kind in [
            TransactionKind::Charge,
            TransactionKind::Refund,
            TransactionKind::PartialRefund,
        ] {
            assert_eq!(transaction_kind_from(transaction_kind_code(kind)), Some(kind));
        }
        for status in [
            ReservationStatus::Active,
            ReservationStatus::Committed,
            ReservationStatus::Released,
        ] {
            let code = reservation_status_code(status);
            assert_eq!(serde_json::to_value(status).unwrap(), serde_json::json!(code));
        }
        assert_eq!(movement_kind_from("theft"), None);
    }

    #[test]
    fn actors_round_trip_and_refuse_inconsistent_columns() {
        let user = Actor::User(UserId::new());
        for actor in [user, Actor::Gateway, Actor::System] {
            let (kind, id) = actor_columns(&actor);
            assert_eq!(actor_from(kind, id, "t", 1).unwrap(), actor);
        }
        assert!(matches!(actor_from("user", None, "t", 1), Err(Error::Unexpected(_))));
        assert!(matches!(
            actor_from("system", Some(Uuid::now_v7()), "t", 1),
            Err(Error::Unexpected(_))
        ));
    }

    #[test]
    fn non_canonical_values_read_back_are_unexpected() {
        assert!(sku("ABC-1", "t", 1).is_ok());
        let err = sku("abc-1", "t", 1).unwrap_err();
        assert!(err.to_string().contains("abc-1"), "{err}");
        assert!(matches!(money(1, "usd!", "t", 1), Err(Error::Unexpected(_))));
        assert!(matches!(quantity(0, "t", 1), Err(Error::Unexpected(_))));
        assert!(matches!(u32_from(-1, "t", 1, "uses"), Err(Error::Unexpected(_))));
    }
}
