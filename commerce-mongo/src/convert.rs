//! Conversions shared by the document structs: ids, times, money, counters.
//!
//! Ids are stored as the hyphenated lower-case text of their UUID (readable in any shell, and
//! ordered like the UUIDs, so `_id` descending breaks ties as the other adapters do). Times
//! are BSON dates (milliseconds). Counters that are `u64` in the domain are `i64` here.

use bson::Bson;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use commerce_core::domain::{Attributes, CompactString, Currency, Money};

use crate::MongoError;

/// Builds [`MongoError::Corrupt`] for a document of `collection` with `_id` `id`.
pub(crate) struct Reader<'a> {
    pub(crate) collection: &'static str,
    pub(crate) id: &'a str,
}

impl Reader<'_> {
    pub(crate) fn corrupt(&self, reason: impl Into<String>) -> MongoError {
        MongoError::Corrupt {
            collection: self.collection,
            id: self.id.to_owned(),
            reason: reason.into(),
        }
    }

    /// Parses a stored id.
    pub(crate) fn id<T: From<Uuid>>(&self, field: &str, text: &str) -> Result<T, MongoError> {
        Uuid::parse_str(text)
            .map(T::from)
            .map_err(|_| self.corrupt(format!("{field} is not a UUID: {text:?}")))
    }

    /// Parses every id of a list.
    pub(crate) fn ids<T: From<Uuid>>(&self, field: &str, texts: &[String]) -> Result<Vec<T>, MongoError> {
        texts.iter().map(|t| self.id(field, t)).collect()
    }

    /// Parses a value with its domain constructor.
    pub(crate) fn parse<T, E: std::fmt::Display>(&self, field: &str, result: Result<T, E>) -> Result<T, MongoError> {
        result.map_err(|e| self.corrupt(format!("{field}: {e}")))
    }

    /// A stored non-negative counter.
    pub(crate) fn u64(&self, field: &str, value: i64) -> Result<u64, MongoError> {
        u64::try_from(value).map_err(|_| self.corrupt(format!("{field} is negative: {value}")))
    }

    /// A stored 32-bit unsigned size.
    pub(crate) fn u32(&self, field: &str, value: i64) -> Result<u32, MongoError> {
        u32::try_from(value).map_err(|_| self.corrupt(format!("{field} is out of range: {value}")))
    }

    /// Money as stored.
    pub(crate) fn money(&self, field: &str, money: &MoneyDoc) -> Result<Money, MongoError> {
        let currency = self.parse(field, Currency::parse(&money.currency))?;
        Ok(Money::new(money.amount_minor, currency))
    }
}

/// The stored text of an id.
pub(crate) fn id(id: impl std::fmt::Display) -> String {
    id.to_string()
}

/// The stored text of every id.
pub(crate) fn ids<T: std::fmt::Display>(ids: &[T]) -> Vec<String> {
    ids.iter().map(|i| i.to_string()).collect()
}

/// A time as a BSON date (milliseconds; finer digits are dropped).
pub(crate) fn date(time: DateTime<Utc>) -> bson::DateTime {
    bson::DateTime::from_chrono(time)
}

/// A BSON date as a time.
pub(crate) fn time(date: bson::DateTime) -> DateTime<Utc> {
    date.to_chrono()
}

/// A domain counter as stored (saturating: no counter gets near `i64::MAX`).
pub(crate) fn count(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A number from an aggregation (`$sum` gives 32- or 64-bit integers) as a count.
pub(crate) fn bson_count(value: Option<&Bson>) -> u64 {
    match value {
        Some(Bson::Int32(n)) => u64::try_from(*n).unwrap_or(0),
        Some(Bson::Int64(n)) => u64::try_from(*n).unwrap_or(0),
        Some(Bson::Double(n)) if *n >= 0.0 => *n as u64,
        _ => 0,
    }
}

/// Money: integer minor units and an ISO 4217 code, e.g. `{amountMinor: 1999, currency: "USD"}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MoneyDoc {
    pub(crate) amount_minor: i64,
    pub(crate) currency: String,
}

impl From<Money> for MoneyDoc {
    fn from(money: Money) -> Self {
        Self {
            amount_minor: money.amount_minor,
            currency: money.currency.as_str().to_owned(),
        }
    }
}

/// One entry of a string map, stored as `{name, value}` so any key is safe (keys may contain
/// `.` or start with `$`, which field names may not).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PairDoc {
    pub(crate) name: CompactString,
    pub(crate) value: CompactString,
}

/// A map as a list of pairs, in key order.
pub(crate) fn pairs(map: &Attributes) -> Vec<PairDoc> {
    map.iter()
        .map(|(name, value)| PairDoc {
            name: name.clone(),
            value: value.clone(),
        })
        .collect()
}

/// A list of pairs as a map.
pub(crate) fn map(pairs: Vec<PairDoc>) -> Attributes {
    pairs.into_iter().map(|p| (p.name, p.value)).collect()
}
