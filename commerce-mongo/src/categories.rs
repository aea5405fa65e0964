//! The category tree as materialized paths: each category stores its `ancestors` (root
//! first), so "every descendant" is one indexed query and a subtree move is one update.

use async_trait::async_trait;
use bson::doc;
use futures::TryStreamExt;
use mongodb::options::ReturnDocument;
use serde::{Deserialize, Serialize};

use commerce_core::domain::{Category, CategoryId, Slug};
use commerce_core::ports::CategoryStore;
use commerce_core::{Error, Result};

use crate::convert::{self, Reader};
use crate::error::{OrStorage, duplicate_key_index};
use crate::{CATEGORIES, MongoError, MongoStore};

/// A category as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CategoryDoc {
    #[serde(rename = "_id")]
    id: String,
    name: String,
    slug: String,
    description: Option<String>,
    parent_id: Option<String>,
    ancestors: Vec<String>,
    sort_order: i32,
    created_at: bson::DateTime,
    updated_at: bson::DateTime,
}

impl CategoryDoc {
    fn new(c: &Category) -> Self {
        Self {
            id: convert::id(c.id),
            name: c.name.clone(),
            slug: c.slug.as_str().to_owned(),
            description: c.description.clone(),
            parent_id: c.parent_id.map(convert::id),
            ancestors: convert::ids(&c.ancestors),
            sort_order: c.sort_order,
            created_at: convert::date(c.created_at),
            updated_at: convert::date(c.updated_at),
        }
    }

    fn into_category(self) -> Result<Category, MongoError> {
        let r = Reader {
            collection: CATEGORIES,
            id: &self.id,
        };
        Ok(Category {
            id: r.id("_id", &self.id)?,
            name: self.name,
            slug: r.parse("slug", Slug::parse(&self.slug))?,
            description: self.description,
            parent_id: self.parent_id.as_deref().map(|p| r.id("parentId", p)).transpose()?,
            ancestors: r.ids("ancestors", &self.ancestors)?,
            sort_order: self.sort_order,
            created_at: convert::time(self.created_at),
            updated_at: convert::time(self.updated_at),
        })
    }
}

fn not_found() -> Error {
    Error::NotFound { entity: "category" }
}

fn slug_taken(slug: &Slug) -> Error {
    Error::conflict("slug_taken", format!("the slug {slug} is taken"))
}

impl MongoStore {
    async fn all_categories(&self, filter: bson::Document) -> Result<Vec<Category>> {
        let docs: Vec<CategoryDoc> = self
            .categories
            .find(filter)
            .await
            .or_storage()?
            .try_collect()
            .await
            .or_storage()?;
        docs.into_iter().map(|d| d.into_category().or_storage()).collect()
    }
}

#[async_trait]
impl CategoryStore for MongoStore {
    async fn insert_category(&self, category: &Category) -> Result<()> {
        let Err(error) = self.categories.insert_one(CategoryDoc::new(category)).await else {
            return Ok(());
        };
        if duplicate_key_index(&error).is_none() {
            return Err(MongoError::from(error).into());
        }
        // The id is checked before the slug, as the other adapters do.
        let same_id = self
            .categories
            .count_documents(doc! { "_id": convert::id(category.id) })
            .await
            .or_storage()?;
        if same_id > 0 {
            Err(Error::conflict("category_exists", "a category with this id exists"))
        } else {
            Err(slug_taken(&category.slug))
        }
    }

    async fn get_category(&self, id: CategoryId) -> Result<Category> {
        let found = self
            .categories
            .find_one(doc! { "_id": convert::id(id) })
            .await
            .or_storage()?;
        found.ok_or_else(not_found)?.into_category().or_storage()
    }

    async fn find_category_by_slug(&self, slug: &Slug) -> Result<Option<Category>> {
        let found = self
            .categories
            .find_one(doc! { "slug": slug.as_str() })
            .await
            .or_storage()?;
        found.map(|d| d.into_category().or_storage()).transpose()
    }

    /// Sorted here rather than by the server, so names order by their bytes whatever the
    /// server's collation.
    async fn list_categories(&self) -> Result<Vec<Category>> {
        let mut list = self.all_categories(doc! {}).await?;
        list.sort_by(|a, b| {
            a.sort_order
                .cmp(&b.sort_order)
                .then_with(|| a.name.cmp(&b.name))
                .then_with(|| a.id.cmp(&b.id))
        });
        Ok(list)
    }

    /// Shallow first, then as listed, so the answer is stable.
    async fn descendant_ids(&self, id: CategoryId) -> Result<Vec<CategoryId>> {
        let mut below = self.all_categories(doc! { "ancestors": convert::id(id) }).await?;
        below.sort_by(|a, b| {
            a.ancestors
                .len()
                .cmp(&b.ancestors.len())
                .then_with(|| a.sort_order.cmp(&b.sort_order))
                .then_with(|| a.name.cmp(&b.name))
                .then_with(|| a.id.cmp(&b.id))
        });
        Ok(below.into_iter().map(|c| c.id).collect())
    }

    /// Replaces the category; when its ancestors changed, one pipeline update rewrites the
    /// path of every descendant: the new ancestors, then the old path from this category down.
    async fn update_category(&self, category: &Category) -> Result<()> {
        let id = convert::id(category.id);
        let replaced = self
            .categories
            .find_one_and_replace(doc! { "_id": &id }, CategoryDoc::new(category))
            .return_document(ReturnDocument::Before)
            .await;
        let old = match replaced {
            Ok(Some(old)) => old,
            Ok(None) => return Err(not_found()),
            Err(e) if duplicate_key_index(&e).is_some() => return Err(slug_taken(&category.slug)),
            Err(e) => return Err(MongoError::from(e).into()),
        };
        let ancestors = convert::ids(&category.ancestors);
        if old.ancestors != ancestors {
            let rewrite = vec![doc! { "$set": { "ancestors": { "$concatArrays": [
                { "$literal": ancestors },
                { "$slice": [
                    "$ancestors",
                    { "$indexOfArray": ["$ancestors", &id] },
                    { "$size": "$ancestors" },
                ] },
            ] } } }];
            self.categories
                .update_many(doc! { "ancestors": &id }, rewrite)
                .await
                .or_storage()?;
        }
        Ok(())
    }

    async fn delete_category(&self, id: CategoryId) -> Result<()> {
        let id = convert::id(id);
        let exists = self
            .categories
            .count_documents(doc! { "_id": &id })
            .await
            .or_storage()?;
        if exists == 0 {
            return Err(not_found());
        }
        let children = self
            .categories
            .count_documents(doc! { "$or": [{ "parentId": &id }, { "ancestors": &id }] })
            .await
            .or_storage()?;
        if children > 0 {
            return Err(Error::conflict(
                "category_has_children",
                "the category has subcategories",
            ));
        }
        let deleted = self.categories.delete_one(doc! { "_id": &id }).await.or_storage()?;
        if deleted.deleted_count == 0 {
            Err(not_found())
        } else {
            Ok(())
        }
    }
}
