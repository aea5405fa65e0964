//! `/api/v1/reviews`: product reviews and their rating summary.

use commerce_core::Commerce;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};

use super::ApiTags;
use super::catalog_types::{ReviewList, ReviewRequest, ReviewView};
use super::types::{page_request, parse_id};
use crate::JsonBody;
use crate::auth::{BearerAuth, OptionalAuth};
use crate::problem::ApiError;

/// A new review.
#[derive(Debug, ApiResponse)]
pub enum ReviewResponse {
    /// Saved; the product's rating summary includes it.
    #[oai(status = 201)]
    Created(Json<ReviewView>),
}

/// Product reviews.
pub struct ReviewsApi {
    commerce: Commerce,
}

impl ReviewsApi {
    /// Over this engine.
    pub fn new(commerce: Commerce) -> Self {
        Self { commerce }
    }
}

#[OpenApi(prefix_path = "/api/v1/reviews", tag = "ApiTags::Reviews")]
impl ReviewsApi {
    /// Review a product (signed in; one review per user and product, a second is a 409
    /// `already_reviewed`). The review is marked a verified purchase when the caller bought
    /// the product.
    #[oai(path = "/products/:productId", method = "post", operation_id = "createReview")]
    async fn create(
        &self,
        auth: BearerAuth,
        #[oai(name = "productId")] product_id: Path<String>,
        body: JsonBody<ReviewRequest>,
    ) -> Result<ReviewResponse, ApiError> {
        let review = self
            .commerce
            .catalog()
            .add_review(&auth.0, parse_id(&product_id.0, "productId")?, body.0.into_input())
            .await?;
        Ok(ReviewResponse::Created(Json(review.into())))
    }

    /// A product's reviews, newest first, with its rating summary (count, mean, histogram by
    /// stars). Reviews of unpublished products are visible to staff only.
    #[oai(path = "/products/:productId", method = "get", operation_id = "listReviews")]
    async fn list(
        &self,
        auth: OptionalAuth,
        #[oai(name = "productId")] product_id: Path<String>,
        /// Page number, from 1.
        page: Query<Option<u32>>,
        /// Page size, 1 to 100 (default 20).
        limit: Query<Option<u32>>,
    ) -> Result<Json<ReviewList>, ApiError> {
        let page = page_request(page.0, limit.0)?;
        let reviews = self
            .commerce
            .catalog()
            .reviews(auth.principal(), parse_id(&product_id.0, "productId")?, page)
            .await?;
        Ok(Json(reviews.into()))
    }
}
