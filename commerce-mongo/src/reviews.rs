//! Reviews, one per user per product (a unique index on `{productId, userId}`).

use async_trait::async_trait;
use bson::doc;
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};

use commerce_core::domain::{Page, PageRequest, ProductId, Rating, Review, UserId};
use commerce_core::ports::ReviewStore;
use commerce_core::{Error, Result};

use crate::convert::{self, Reader};
use crate::error::{OrStorage, duplicate_key_index};
use crate::{MongoError, MongoStore, REVIEWS};

/// A review as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ReviewDoc {
    #[serde(rename = "_id")]
    id: String,
    product_id: String,
    user_id: String,
    author_name: String,
    rating: i32,
    title: String,
    body: String,
    verified_purchase: bool,
    created_at: bson::DateTime,
}

impl ReviewDoc {
    fn new(r: &Review) -> Self {
        Self {
            id: convert::id(r.id),
            product_id: convert::id(r.product_id),
            user_id: convert::id(r.user_id),
            author_name: r.author_name.clone(),
            rating: i32::from(r.rating.get()),
            title: r.title.clone(),
            body: r.body.clone(),
            verified_purchase: r.verified_purchase,
            created_at: convert::date(r.created_at),
        }
    }

    fn into_review(self) -> Result<Review, MongoError> {
        let r = Reader {
            collection: REVIEWS,
            id: &self.id,
        };
        Ok(Review {
            id: r.id("_id", &self.id)?,
            product_id: r.id("productId", &self.product_id)?,
            user_id: r.id("userId", &self.user_id)?,
            author_name: self.author_name,
            rating: r.parse("rating", Rating::new(i64::from(self.rating)))?,
            title: self.title,
            body: self.body,
            verified_purchase: self.verified_purchase,
            created_at: convert::time(self.created_at),
        })
    }
}

#[async_trait]
impl ReviewStore for MongoStore {
    async fn insert_review(&self, review: &Review) -> Result<()> {
        let Err(error) = self.reviews.insert_one(ReviewDoc::new(review)).await else {
            return Ok(());
        };
        if duplicate_key_index(&error).is_none() {
            return Err(MongoError::from(error).into());
        }
        // The author rule wins over a repeated id, as in the other adapters.
        if self.find_review(review.product_id, review.user_id).await?.is_some() {
            Err(Error::conflict(
                "already_reviewed",
                "you have already reviewed this product",
            ))
        } else {
            Err(Error::conflict("review_exists", "a review with this id exists"))
        }
    }

    async fn list_reviews(&self, product: ProductId, page: PageRequest) -> Result<Page<Review>> {
        let filter = doc! { "productId": convert::id(product) };
        let (docs, total) = futures::try_join!(
            async {
                self.reviews
                    .find(filter.clone())
                    .sort(doc! { "createdAt": -1, "_id": -1 })
                    .skip(page.offset())
                    .limit(i64::from(page.limit()))
                    .await?
                    .try_collect::<Vec<ReviewDoc>>()
                    .await
            },
            self.reviews.count_documents(filter.clone()).into_future(),
        )
        .or_storage()?;
        let items = docs
            .into_iter()
            .map(|d| d.into_review().or_storage())
            .collect::<Result<Vec<_>>>()?;
        Ok(Page::new(items, total, page))
    }

    async fn find_review(&self, product: ProductId, user: UserId) -> Result<Option<Review>> {
        let found = self
            .reviews
            .find_one(doc! { "productId": convert::id(product), "userId": convert::id(user) })
            .await
            .or_storage()?;
        found.map(|d| d.into_review().or_storage()).transpose()
    }
}
