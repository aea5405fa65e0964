#![doc = include_str!("../README.md")]

mod carts;
mod categories;
mod convert;
mod error;
pub mod indexes;
mod products;
mod reviews;
#[cfg(feature = "testing")]
pub mod testing;

use std::fmt;

use async_trait::async_trait;
use bson::doc;
use mongodb::options::ClientOptions;
use mongodb::{Client, Collection, Database};

use commerce_core::ports::HealthCheck;

pub use error::MongoError;

use carts::CartDoc;
use categories::CategoryDoc;
use error::OrStorage;
use products::ProductDoc;
use reviews::ReviewDoc;

/// Name of the collection of products (with embedded variants and search terms).
pub const PRODUCTS: &str = "products";
/// Name of the collection of categories.
pub const CATEGORIES: &str = "categories";
/// Name of the collection of reviews.
pub const REVIEWS: &str = "reviews";
/// Name of the collection of carts.
pub const CARTS: &str = "carts";

/// The catalog ports ([`ProductStore`](commerce_core::ports::ProductStore),
/// [`CategoryStore`](commerce_core::ports::CategoryStore),
/// [`ReviewStore`](commerce_core::ports::ReviewStore),
/// [`CartStore`](commerce_core::ports::CartStore)) and [`HealthCheck`] on one MongoDB database.
///
/// Cheap to clone: clones share the driver's connection pool.
#[derive(Clone)]
pub struct MongoStore {
    db: Database,
    products: Collection<ProductDoc>,
    categories: Collection<CategoryDoc>,
    reviews: Collection<ReviewDoc>,
    carts: Collection<CartDoc>,
}

impl MongoStore {
    /// Connects to `uri` (a `mongodb://` or `mongodb+srv://` connection string), uses the
    /// database named `database`, and creates the indexes the adapter relies on (idempotent).
    ///
    /// # Errors
    /// [`MongoError::Driver`] when the URI is invalid, the server cannot be reached, or an
    /// index cannot be created (e.g. an index of the same name exists with other options).
    pub async fn open(uri: &str, database: &str) -> Result<Self, MongoError> {
        let mut options = ClientOptions::parse(uri).await?;
        if options.app_name.is_none() {
            options.app_name = Some("commerce-mongo".to_owned());
        }
        let client = Client::with_options(options)?;
        let store = Self::new(client.database(database));
        store.ensure_indexes().await?;
        Ok(store)
    }

    /// Wraps a database handle of an existing client. Call [`MongoStore::ensure_indexes`] once
    /// before use: uniqueness (slugs, SKUs, one review per user, one active cart per owner)
    /// rests on the indexes.
    pub fn new(db: Database) -> Self {
        Self {
            products: db.collection(PRODUCTS),
            categories: db.collection(CATEGORIES),
            reviews: db.collection(REVIEWS),
            carts: db.collection(CARTS),
            db,
        }
    }

    /// Creates every index of [`indexes`] that does not exist yet. Safe to call at every
    /// start-up and from several processes at once.
    ///
    /// # Errors
    /// [`MongoError::Driver`] when the server refuses an index, e.g. because an index with the
    /// same name but other keys or options already exists.
    pub async fn ensure_indexes(&self) -> Result<(), MongoError> {
        indexes::ensure(&self.db).await
    }

    /// The database this store works in (for embedders' own collections and for operations).
    pub fn database(&self) -> &Database {
        &self.db
    }
}

impl fmt::Debug for MongoStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MongoStore")
            .field("database", &self.db.name())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl HealthCheck for MongoStore {
    fn backend(&self) -> &'static str {
        "mongodb"
    }

    async fn ping(&self) -> commerce_core::Result<()> {
        self.db.run_command(doc! { "ping": 1 }).await.or_storage()?;
        Ok(())
    }
}
