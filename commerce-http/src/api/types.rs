//! Wire types shared by several resources, and their conversions from domain types.

use chrono::{DateTime, Utc};
use commerce_core::domain::{Address, AddressFields, Page, PageRequest, User};
use poem_openapi::Object;
use serde::Deserialize;

use super::checkout_types::PostalAddress;
use crate::problem::ApiError;

/// A user as the API shows it (never the password hash).
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct UserView {
    /// Id.
    pub id: String,
    /// Sign-in email, lower-case.
    pub email: String,
    /// Given name.
    pub first_name: String,
    /// Family name.
    pub last_name: String,
    /// Phone.
    pub phone: Option<String>,
    /// `customer`, `admin` or `superadmin`.
    pub role: String,
    /// `active` or `suspended`.
    pub status: String,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<User> for UserView {
    fn from(u: User) -> Self {
        Self {
            id: u.id.to_string(),
            email: u.email.into_inner(),
            first_name: u.first_name,
            last_name: u.last_name,
            phone: u.phone,
            role: u.role.as_str().to_owned(),
            status: u.status.as_str().to_owned(),
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

/// A page of users.
#[derive(Debug, Object)]
pub struct UserPage {
    /// The users.
    pub items: Vec<UserView>,
    /// Matching users in all.
    pub total: u64,
    /// Page number, from 1.
    pub page: u32,
    /// Page size.
    pub limit: u32,
}

impl From<Page<User>> for UserPage {
    fn from(p: Page<User>) -> Self {
        Self {
            items: p.items.into_iter().map(UserView::from).collect(),
            total: p.total,
            page: p.page,
            limit: p.limit,
        }
    }
}

/// Postal fields of an address, as sent by clients.
#[derive(Debug, Clone, Object, Deserialize)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct AddressRequest {
    /// e.g. "Home" (at most 50 characters).
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
    /// ISO 3166-1 alpha-2 country code, e.g. `US`.
    pub country: String,
    /// Contact phone.
    pub phone: Option<String>,
    /// Make this the default address.
    #[serde(default)]
    #[oai(default)]
    pub is_default: bool,
}

impl AddressRequest {
    /// The service input (the service validates it).
    pub fn into_domain(self) -> commerce_core::services::AddressInput {
        commerce_core::services::AddressInput {
            fields: AddressFields {
                label: self.label,
                first_name: self.first_name,
                last_name: self.last_name,
                line1: self.line1,
                line2: self.line2,
                city: self.city,
                state: self.state,
                postal_code: self.postal_code,
                country: self.country,
                phone: self.phone,
            },
            is_default: self.is_default,
        }
    }
}

/// A saved address.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct AddressView {
    /// Id.
    pub id: String,
    /// The postal fields.
    #[oai(flatten)]
    pub address: PostalAddress,
    /// Whether this is the default address.
    pub is_default: bool,
    /// Created.
    pub created_at: DateTime<Utc>,
}

impl From<Address> for AddressView {
    fn from(a: Address) -> Self {
        Self {
            id: a.id.to_string(),
            address: a.fields.into(),
            is_default: a.is_default,
            created_at: a.created_at,
        }
    }
}

/// Parses a path id, answering 400 naming the parameter when malformed.
pub fn parse_id<T: std::str::FromStr>(raw: &str, field: &str) -> Result<T, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::bad_request(field, "is not a valid id"))
}

/// Validates `page`/`limit` query parameters (page from 1, limit 1 to 100, default 20).
pub fn page_request(page: Option<u32>, limit: Option<u32>) -> Result<PageRequest, ApiError> {
    let page_no = page.unwrap_or(1);
    let limit = limit.unwrap_or(PageRequest::DEFAULT_LIMIT);
    PageRequest::new(page_no, limit).map_err(|e| {
        let field = match e {
            commerce_core::domain::InvalidPage::Page => "page",
            commerce_core::domain::InvalidPage::Limit => "limit",
        };
        ApiError::bad_request(field, e.to_string())
    })
}
