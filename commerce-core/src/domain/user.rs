//! Accounts: users, roles, addresses, refresh-token families.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{AddressId, Email, TokenFamilyId, UserId};

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Shops for themselves.
    Customer,
    /// Runs the store.
    Admin,
    /// Runs the store and grants roles.
    Superadmin,
}

impl Role {
    /// Whether the role may use the admin API.
    pub fn is_staff(self) -> bool {
        matches!(self, Self::Admin | Self::Superadmin)
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Customer => "customer",
            Self::Admin => "admin",
            Self::Superadmin => "superadmin",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "customer" => Some(Self::Customer),
            "admin" => Some(Self::Admin),
            "superadmin" => Some(Self::Superadmin),
            _ => None,
        }
    }
}

/// Whether a user may sign in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserStatus {
    /// May sign in.
    Active,
    /// May not sign in or refresh.
    Suspended,
}

impl UserStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "suspended" => Some(Self::Suspended),
            _ => None,
        }
    }
}

/// A stored user account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    /// Id.
    pub id: UserId,
    /// Unique, lower-case sign-in email.
    pub email: Email,
    /// PHC-format argon2id hash.
    pub password_hash: String,
    /// Given name.
    pub first_name: String,
    /// Family name.
    pub last_name: String,
    /// Optional phone number.
    pub phone: Option<String>,
    /// Role.
    pub role: Role,
    /// Status.
    pub status: UserStatus,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

/// Fields a user may change on their own profile.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfileUpdate {
    /// New given name.
    pub first_name: Option<String>,
    /// New family name.
    pub last_name: Option<String>,
    /// New phone (`Some(None)` clears it).
    pub phone: Option<Option<String>>,
}

/// Filters for the admin user list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserFilter {
    /// Only this role.
    pub role: Option<Role>,
    /// Only this status.
    pub status: Option<UserStatus>,
    /// Case-insensitive substring of the email.
    pub email_contains: Option<String>,
}

/// A postal address saved by a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Address {
    /// Id.
    pub id: AddressId,
    /// Owner.
    pub user_id: UserId,
    /// The postal fields.
    #[serde(flatten)]
    pub fields: AddressFields,
    /// Whether this is the user's default address.
    pub is_default: bool,
    /// Created.
    pub created_at: DateTime<Utc>,
}

/// The postal content of an address, also snapshotted into orders.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AddressFields {
    /// e.g. "Home".
    pub label: Option<String>,
    /// Recipient given name.
    pub first_name: String,
    /// Recipient family name.
    pub last_name: String,
    /// Street and number.
    pub line1: String,
    /// Flat, suite.
    pub line2: Option<String>,
    /// City.
    pub city: String,
    /// State or region.
    pub state: Option<String>,
    /// Postal code.
    pub postal_code: String,
    /// ISO 3166-1 alpha-2 country code, upper-case.
    pub country: String,
    /// Contact phone.
    pub phone: Option<String>,
}

/// One stored refresh token: only its hash is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshToken {
    /// SHA-256 of the token, hex.
    pub token_hash: String,
    /// The session it belongs to.
    pub family_id: TokenFamilyId,
    /// The user.
    pub user_id: UserId,
    /// When it stops being accepted.
    pub expires_at: DateTime<Utc>,
    /// Issued.
    pub created_at: DateTime<Utc>,
}

/// Result of presenting a refresh token for rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// The token was current; it is now spent and the new one is current.
    Rotated {
        /// The family.
        family_id: TokenFamilyId,
        /// The user.
        user_id: UserId,
    },
    /// The token had already been rotated: the whole family is now revoked (theft detection).
    Reused {
        /// The revoked family.
        family_id: TokenFamilyId,
        /// The user.
        user_id: UserId,
    },
    /// Unknown, expired, or its family is revoked.
    Invalid,
}
