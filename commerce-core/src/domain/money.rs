//! Money in integer minor units with an ISO 4217 currency; arithmetic is checked and refuses
//! mixed currencies.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An ISO 4217 alphabetic currency code, e.g. `USD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency([u8; 3]);

/// Why a currency code was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("must be a three-letter ISO 4217 currency code")]
pub struct InvalidCurrency;

impl Currency {
    /// US dollar.
    pub const USD: Self = Self(*b"USD");
    /// Euro.
    pub const EUR: Self = Self(*b"EUR");

    /// Parses a code, accepting any case and storing upper case.
    pub fn parse(code: &str) -> Result<Self, InvalidCurrency> {
        let bytes = code.as_bytes();
        if bytes.len() != 3 || !bytes.iter().all(u8::is_ascii_alphabetic) {
            return Err(InvalidCurrency);
        }
        Ok(Self([
            bytes[0].to_ascii_uppercase(),
            bytes[1].to_ascii_uppercase(),
            bytes[2].to_ascii_uppercase(),
        ]))
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        // Only ASCII letters are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Currency {
    type Err = InvalidCurrency;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl AsRef<str> for Currency {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// An amount of money: integer minor units (cents for USD) and a currency, as Stripe does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Money {
    /// Amount in the currency's minor unit.
    pub amount_minor: i64,
    /// The currency.
    pub currency: Currency,
}

/// Why a money operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// The two amounts are in different currencies.
    #[error("currency mismatch: {0} and {1}")]
    CurrencyMismatch(Currency, Currency),
    /// The result does not fit in 64 bits.
    #[error("amount overflow")]
    Overflow,
}

impl Money {
    /// `amount_minor` of `currency`.
    pub const fn new(amount_minor: i64, currency: Currency) -> Self {
        Self { amount_minor, currency }
    }

    /// Zero of `currency`.
    pub const fn zero(currency: Currency) -> Self {
        Self {
            amount_minor: 0,
            currency,
        }
    }

    fn same_currency(&self, other: &Self) -> Result<(), MoneyError> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(MoneyError::CurrencyMismatch(self.currency, other.currency))
        }
    }

    /// `self + other`, same currency only.
    pub fn checked_add(self, other: Self) -> Result<Self, MoneyError> {
        self.same_currency(&other)?;
        let amount = self
            .amount_minor
            .checked_add(other.amount_minor)
            .ok_or(MoneyError::Overflow)?;
        Ok(Self::new(amount, self.currency))
    }

    /// `self - other`, same currency only.
    pub fn checked_sub(self, other: Self) -> Result<Self, MoneyError> {
        self.same_currency(&other)?;
        let amount = self
            .amount_minor
            .checked_sub(other.amount_minor)
            .ok_or(MoneyError::Overflow)?;
        Ok(Self::new(amount, self.currency))
    }

    /// `self * factor` (e.g. a unit price times a quantity).
    pub fn checked_mul(self, factor: i64) -> Result<Self, MoneyError> {
        let amount = self.amount_minor.checked_mul(factor).ok_or(MoneyError::Overflow)?;
        Ok(Self::new(amount, self.currency))
    }

    /// `self * basis_points / 10_000`, rounded half away from zero (percent discounts, tax rates).
    pub fn checked_bps(self, basis_points: i64) -> Result<Self, MoneyError> {
        let product = i128::from(self.amount_minor) * i128::from(basis_points);
        let rounded = if product >= 0 {
            (product + 5_000) / 10_000
        } else {
            (product - 5_000) / 10_000
        };
        let amount = i64::try_from(rounded).map_err(|_| MoneyError::Overflow)?;
        Ok(Self::new(amount, self.currency))
    }

    /// Whether the amount is below zero.
    pub fn is_negative(&self) -> bool {
        self.amount_minor < 0
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount_minor, self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_currency_case_insensitively_and_rejects_junk() {
        assert_eq!(Currency::parse("usd"), Ok(Currency::USD));
        assert_eq!(Currency::parse("US"), Err(InvalidCurrency));
        assert_eq!(Currency::parse("U$D"), Err(InvalidCurrency));
        assert_eq!(Currency::parse("USDD"), Err(InvalidCurrency));
    }

    #[test]
    fn arithmetic_is_checked_and_single_currency() {
        let a = Money::new(1999, Currency::USD);
        let b = Money::new(1, Currency::USD);
        assert_eq!(a.checked_add(b), Ok(Money::new(2000, Currency::USD)));
        assert_eq!(a.checked_sub(b), Ok(Money::new(1998, Currency::USD)));
        assert_eq!(a.checked_mul(3), Ok(Money::new(5997, Currency::USD)));
        assert_eq!(
            a.checked_add(Money::new(1, Currency::EUR)),
            Err(MoneyError::CurrencyMismatch(Currency::USD, Currency::EUR))
        );
        assert_eq!(
            Money::new(i64::MAX, Currency::USD).checked_add(b),
            Err(MoneyError::Overflow)
        );
        assert_eq!(
            Money::new(i64::MAX, Currency::USD).checked_mul(2),
            Err(MoneyError::Overflow)
        );
    }

    #[test]
    fn basis_points_round_half_away_from_zero() {
        let price = Money::new(1999, Currency::USD);
        assert_eq!(price.checked_bps(1_000).map(|m| m.amount_minor), Ok(200)); // 199.9 -> 200
        assert_eq!(
            Money::new(5, Currency::USD).checked_bps(1_000).map(|m| m.amount_minor),
            Ok(1)
        ); // 0.5 -> 1
        assert_eq!(
            Money::new(-5, Currency::USD).checked_bps(1_000).map(|m| m.amount_minor),
            Ok(-1)
        );
    }

    #[test]
    fn serializes_as_minor_units_and_code() {
        let json = serde_json::to_value(Money::new(1999, Currency::USD)).unwrap_or_default();
        assert_eq!(json, serde_json::json!({"amountMinor": 1999, "currency": "USD"}));
    }
}
