//! An image store in process memory, for the embedded default and tests.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;

use super::{read, write};
use crate::Result;
use crate::ports::ImageStore;

/// Content type and bytes per key.
type Objects = HashMap<String, (String, Vec<u8>)>;

/// Keeps image bytes in memory; URLs are `/media/<key>`.
#[derive(Debug, Clone, Default)]
pub struct MemoryImageStore {
    objects: Arc<RwLock<Objects>>,
}

impl MemoryImageStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The content type and bytes stored under `key`, if any.
    ///
    /// # Errors
    /// `Unexpected` when the lock is poisoned.
    pub fn get(&self, key: &str) -> Result<Option<(String, Vec<u8>)>> {
        Ok(read(&self.objects)?.get(key).cloned())
    }

    /// How many objects are stored.
    ///
    /// # Errors
    /// `Unexpected` when the lock is poisoned.
    pub fn len(&self) -> Result<usize> {
        Ok(read(&self.objects)?.len())
    }

    /// Whether nothing is stored.
    ///
    /// # Errors
    /// `Unexpected` when the lock is poisoned.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }
}

#[async_trait]
impl ImageStore for MemoryImageStore {
    async fn put_image(&self, key: &str, bytes: Vec<u8>, content_type: &str) -> Result<String> {
        write(&self.objects)?.insert(key.to_owned(), (content_type.to_owned(), bytes));
        Ok(format!("/media/{key}"))
    }

    async fn delete_image(&self, key: &str) -> Result<()> {
        write(&self.objects)?.remove(key);
        Ok(())
    }
}
