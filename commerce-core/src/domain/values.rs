//! Validated value types: constructed only through a fallible `parse`, so a value of the type is
//! always valid.

use std::fmt;

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

macro_rules! string_value {
    ($(#[$doc:meta])* $name:ident, $err:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(CompactString);

        impl $name {
            /// The value as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The owned text.
            pub fn into_inner(self) -> String {
                self.0.into_string()
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = $err;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

string_value! {
    /// An email address, trimmed and lower-cased, so uniqueness is case-insensitive.
    Email, InvalidEmail
}

/// Why an email was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be a valid email address")]
pub struct InvalidEmail;

impl Email {
    /// Parses `local@domain.tld`, at most 254 characters, no whitespace or control characters.
    pub fn parse(raw: &str) -> Result<Self, InvalidEmail> {
        let email = raw.trim().to_lowercase();
        let (local, domain) = email.rsplit_once('@').ok_or(InvalidEmail)?;
        let labels_ok = domain.split('.').all(|l| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_alphanumeric() || c == '-')
        });
        let ok = email.len() <= 254
            && !local.is_empty()
            && local.len() <= 64
            && !local.contains('@')
            && local
                .chars()
                .all(|c| !c.is_whitespace() && !c.is_control() && !"()<>[]\\,;:\"".contains(c))
            && domain.contains('.')
            && labels_ok;
        if ok { Ok(Self(email.into())) } else { Err(InvalidEmail) }
    }
}

string_value! {
    /// A stock-keeping unit: 1-64 characters of `A-Z a-z 0-9 - _ .`, stored upper-case.
    Sku, InvalidSku
}

/// Why a SKU was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be 1-64 characters of letters, digits, '-', '_' or '.'")]
pub struct InvalidSku;

impl Sku {
    /// Parses and upper-cases a SKU.
    pub fn parse(raw: &str) -> Result<Self, InvalidSku> {
        let sku = raw.trim();
        let ok = !sku.is_empty()
            && sku.len() <= 64
            && sku
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if ok {
            Ok(Self(sku.to_ascii_uppercase().into()))
        } else {
            Err(InvalidSku)
        }
    }
}

string_value! {
    /// A URL slug: 1-200 characters of `a-z 0-9` separated by single hyphens.
    Slug, InvalidSlug
}

/// Why a slug was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be 1-200 lower-case letters or digits separated by single hyphens")]
pub struct InvalidSlug;

impl Slug {
    /// Parses an existing slug exactly (no rewriting).
    pub fn parse(raw: &str) -> Result<Self, InvalidSlug> {
        let ok = !raw.is_empty()
            && raw.len() <= 200
            && !raw.starts_with('-')
            && !raw.ends_with('-')
            && !raw.contains("--")
            && raw
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if ok { Ok(Self(raw.into())) } else { Err(InvalidSlug) }
    }

    /// Derives a slug from a display name: transliterated to ASCII, lower-cased, with runs of
    /// other characters folded into single hyphens (`"Crème Brûlée!"` -> `creme-brulee`).
    pub fn from_name(name: &str) -> Result<Self, InvalidSlug> {
        let ascii = deunicode::deunicode(name).to_ascii_lowercase();
        let mut slug = String::with_capacity(ascii.len());
        for c in ascii.chars() {
            if c.is_ascii_alphanumeric() {
                slug.push(c);
            } else if !slug.is_empty() && !slug.ends_with('-') {
                slug.push('-');
            }
        }
        while slug.ends_with('-') {
            slug.pop();
        }
        slug.truncate(200);
        while slug.ends_with('-') {
            slug.pop();
        }
        Self::parse(&slug)
    }
}

/// A positive quantity of items (1 to 1,000,000).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Quantity(u32);

/// Why a quantity was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("must be a whole number from 1 to 1000000")]
pub struct InvalidQuantity;

impl Quantity {
    /// The largest quantity accepted in one line.
    pub const MAX: u32 = 1_000_000;

    /// Accepts 1..=MAX.
    pub fn new(value: i64) -> Result<Self, InvalidQuantity> {
        match u32::try_from(value) {
            Ok(v) if (1..=Self::MAX).contains(&v) => Ok(Self(v)),
            _ => Err(InvalidQuantity),
        }
    }

    /// The number.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::new(i64::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// A review rating from 1 to 5 stars.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Rating(u8);

/// Why a rating was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("must be a whole number from 1 to 5")]
pub struct InvalidRating;

impl Rating {
    /// Accepts 1..=5.
    pub fn new(value: i64) -> Result<Self, InvalidRating> {
        match u8::try_from(value) {
            Ok(v) if (1..=5).contains(&v) => Ok(Self(v)),
            _ => Err(InvalidRating),
        }
    }

    /// The number of stars.
    pub fn get(self) -> u8 {
        self.0
    }
}

impl<'de> Deserialize<'de> for Rating {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::new(i64::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// A plaintext password on its way to the hasher; never stored, never printed.
#[derive(Clone)]
pub struct Password(String);

/// Why a password was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be 8 to 128 characters")]
pub struct WeakPassword;

impl Password {
    /// Accepts 8 to 128 characters (Unicode scalar values).
    pub fn parse(raw: &str) -> Result<Self, WeakPassword> {
        let n = raw.chars().count();
        if (8..=128).contains(&n) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(WeakPassword)
        }
    }

    /// The secret, for the hasher only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_is_normalised_and_validated() {
        assert_eq!(
            Email::parse("  Ada@Example.COM ").map(|e| e.into_inner()),
            Ok("ada@example.com".into())
        );
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a da@example.com",
            "ada@-x.com",
            "a@b@c.com",
        ] {
            assert_eq!(Email::parse(bad), Err(InvalidEmail), "{bad:?}");
        }
    }

    #[test]
    fn sku_is_upper_cased_and_restricted() {
        assert_eq!(Sku::parse("tee-blk-m").map(|s| s.into_inner()), Ok("TEE-BLK-M".into()));
        assert_eq!(Sku::parse("bad sku"), Err(InvalidSku));
        assert_eq!(Sku::parse(&"x".repeat(65)), Err(InvalidSku));
        assert_eq!(Sku::parse("{\"$gt\":\"\"}"), Err(InvalidSku));
    }

    #[test]
    fn slug_from_name_transliterates() {
        assert_eq!(
            Slug::from_name("Crème Brûlée!  Deluxe").map(|s| s.into_inner()),
            Ok("creme-brulee-deluxe".into())
        );
        assert_eq!(Slug::from_name("!!!"), Err(InvalidSlug));
        assert_eq!(Slug::parse("Has-Caps"), Err(InvalidSlug));
        assert_eq!(Slug::parse("a--b"), Err(InvalidSlug));
    }

    #[test]
    fn quantity_and_rating_bounds() {
        assert!(Quantity::new(0).is_err());
        assert!(Quantity::new(-1).is_err());
        assert_eq!(Quantity::new(3).map(Quantity::get), Ok(3));
        assert!(Quantity::new(1_000_001).is_err());
        assert!(Rating::new(0).is_err());
        assert!(Rating::new(6).is_err());
        assert_eq!(Rating::new(5).map(Rating::get), Ok(5));
    }

    #[test]
    fn password_length_and_debug_redaction() {
        assert!(Password::parse("short").is_err());
        assert!(Password::parse(&"x".repeat(129)).is_err());
        let p = Password::parse("correct horse").map(|p| format!("{p:?}"));
        assert_eq!(p, Ok("Password(***)".to_owned()));
    }
}
