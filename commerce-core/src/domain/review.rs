//! Reviews of products.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{ProductId, Rating, ReviewId, UserId};

/// A customer's review; one per user per product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Review {
    /// Id.
    pub id: ReviewId,
    /// Reviewed product.
    pub product_id: ProductId,
    /// Author.
    pub user_id: UserId,
    /// Author's display name at the time of writing.
    pub author_name: String,
    /// Stars.
    pub rating: Rating,
    /// Headline.
    pub title: String,
    /// Text.
    pub body: String,
    /// The author bought the product.
    pub verified_purchase: bool,
    /// Written.
    pub created_at: DateTime<Utc>,
}
