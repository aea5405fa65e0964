//! The adapter's error type and the translation of duplicate-key errors.

use mongodb::error::{ErrorKind, WriteFailure};

/// What went wrong in the MongoDB adapter. Converted into
/// [`commerce_core::Error::Storage`] at the port boundary; its text is for logs, never for
/// clients.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MongoError {
    /// The driver or the server failed (connection, timeout, refused command).
    #[error("MongoDB operation failed: {0}")]
    Driver(#[from] mongodb::error::Error),
    /// A value could not be encoded as BSON.
    #[error("cannot encode a document: {0}")]
    Encode(#[from] bson::ser::Error),
    /// A server answer could not be decoded.
    #[error("cannot decode a document: {0}")]
    Decode(#[from] bson::de::Error),
    /// A stored document does not have the shape the adapter writes (edited by hand, or written
    /// by an incompatible version).
    #[error("stored {collection} document {id} is invalid: {reason}")]
    Corrupt {
        /// Collection.
        collection: &'static str,
        /// The document's `_id`.
        id: String,
        /// What is wrong.
        reason: String,
    },
}

impl From<MongoError> for commerce_core::Error {
    fn from(e: MongoError) -> Self {
        Self::storage(e)
    }
}

/// `?` for driver results inside port methods: any adapter-side failure becomes
/// [`commerce_core::Error::Storage`].
pub(crate) trait OrStorage<T> {
    /// The value, or the failure as a storage error.
    fn or_storage(self) -> commerce_core::Result<T>;
}

impl<T, E: Into<MongoError>> OrStorage<T> for Result<T, E> {
    fn or_storage(self) -> commerce_core::Result<T> {
        self.map_err(|e| commerce_core::Error::from(e.into()))
    }
}

/// The server's duplicate-key error code.
const DUPLICATE_KEY: i32 = 11000;

/// When `error` is a duplicate-key error (E11000), the name of the unique index that refused
/// the write (`Some("")` when the server did not name it).
pub(crate) fn duplicate_key_index(error: &mongodb::error::Error) -> Option<String> {
    let message = match error.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(e)) if e.code == DUPLICATE_KEY => &e.message,
        ErrorKind::Command(e) if e.code == DUPLICATE_KEY => &e.message,
        ErrorKind::InsertMany(e) => {
            &e.write_errors
                .as_ref()?
                .iter()
                .find(|w| w.code == DUPLICATE_KEY)?
                .message
        }
        _ => return None,
    };
    Some(index_name(message).unwrap_or_default().to_owned())
}

/// The index name in `E11000 duplicate key error collection: db.coll index: NAME dup key: {..}`.
fn index_name(message: &str) -> Option<&str> {
    let (_, rest) = message.split_once(" index: ")?;
    rest.split_whitespace().next()
}

#[cfg(test)]
mod tests {
    use super::index_name;

    #[test]
    fn reads_the_index_name_of_an_e11000_message() {
        let m = "E11000 duplicate key error collection: shop.products index: slug_unique dup key: { slug: \"a\" }";
        assert_eq!(index_name(m), Some("slug_unique"));
        assert_eq!(index_name("E11000 duplicate key error"), None);
    }
}
