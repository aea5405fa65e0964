//! Translation of sqlx errors into core errors. Driver text never reaches clients: core's
//! `Storage` variant is logged by the host and answered with a generic message.

use commerce_core::Error;

/// A failure of the PostgreSQL adapter outside any port call (connecting, migrating).
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The database refused or failed.
    #[error("postgres: {0}")]
    Sqlx(#[from] sqlx::Error),
    /// A migration failed.
    #[error("postgres migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl From<PgError> for Error {
    fn from(err: PgError) -> Self {
        Error::storage(err)
    }
}

/// `?` cannot turn a `sqlx::Error` into a core error directly (both types are foreign to this
/// crate, so no `From` impl may exist); `.storage()?` says it in one word: any database failure
/// is core's `Storage`, with the driver error kept as the source for the logs.
pub(crate) trait StorageResult<T> {
    /// The value, or the database failure as [`Error::Storage`].
    fn storage(self) -> commerce_core::Result<T>;
}

impl<T> StorageResult<T> for Result<T, sqlx::Error> {
    fn storage(self) -> commerce_core::Result<T> {
        self.map_err(|e| PgError::Sqlx(e).into())
    }
}

/// A unique constraint whose violation means a conflict the caller can act on.
pub(crate) struct UniqueKey {
    /// Constraint (or unique index) name, as in `migrations/`.
    pub constraint: &'static str,
    /// The `Conflict` code.
    pub code: &'static str,
    /// The `Conflict` message.
    pub message: &'static str,
}

/// Translates a failed write: a unique violation on one of `keys` becomes that key's
/// `Conflict`; anything else is `Storage`.
pub(crate) fn conflict_or_storage(err: sqlx::Error, keys: &[UniqueKey]) -> Error {
    let hit = unique_violation(&err).and_then(|c| keys.iter().find(|k| k.constraint == c));
    match hit {
        Some(key) => Error::conflict(key.code, key.message),
        None => PgError::Sqlx(err).into(),
    }
}

/// The constraint a unique violation (SQLSTATE 23505) hit, if that is what `err` is.
pub(crate) fn unique_violation(err: &sqlx::Error) -> Option<&str> {
    match err {
        sqlx::Error::Database(db) if db.code().as_deref() == Some("23505") => db.constraint(),
        _ => None,
    }
}
