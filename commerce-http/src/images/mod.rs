//! Adapters of the [`ImageStore`](commerce_core::ports::ImageStore) port, chosen by the host:
//!
//! - [`LocalImageStore`]: files under a directory, served by [`media_endpoint`];
//! - [`S3ImageStore`]: any S3-compatible object store (AWS S3, MinIO, Cloudflare R2, ...),
//!   requests signed with AWS Signature Version 4.
//!
//! Both accept only keys shaped like the ones the core generates (`products/<uuid>/<uuid>.jpg`):
//! relative, `/`-separated segments of ASCII letters, digits, `-`, `_` and `.`, no segment empty
//! or starting with a dot (so no `.`/`..`, no hidden files). Anything else is refused with
//! `Validation { field: "key" }` before any I/O, which keeps keys safe as file paths and as URLs.

mod local;
mod s3;

use std::path::PathBuf;

pub use local::{DEFAULT_PUBLIC_BASE, LocalImageStore, MEDIA_CACHE_CONTROL, MEDIA_PATH, media_endpoint};
pub use s3::{S3Config, S3ImageStore};

/// What went wrong in an image store. Converted into
/// [`commerce_core::Error::Storage`] at the port boundary; its text is for logs, never for
/// clients.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageStoreError {
    /// A file system operation of [`LocalImageStore`] failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done (`"write"`, `"rename"`, ...).
        action: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// An S3 request could not be sent or its answer not read (connection, TLS, timeout).
    #[error("S3 {method} {url} failed: {source}")]
    Request {
        /// HTTP method.
        method: &'static str,
        /// The object's URL.
        url: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The S3 server refused a request.
    #[error("S3 answered {status} to {method} {url}: {body}")]
    Status {
        /// HTTP method.
        method: &'static str,
        /// The object's URL.
        url: String,
        /// HTTP status code.
        status: u16,
        /// The start of the answer's body (S3 sends an XML error document).
        body: String,
    },
    /// [`S3Config`] is unusable.
    #[error("invalid S3 configuration: {0}")]
    Config(String),
}

impl From<ImageStoreError> for commerce_core::Error {
    fn from(e: ImageStoreError) -> Self {
        Self::storage(e)
    }
}

/// Checks that `key` is a safe relative object key (see the module docs).
///
/// # Errors
/// `Validation { field: "key" }` saying what is wrong.
pub(crate) fn check_key(key: &str) -> commerce_core::Result<()> {
    /// Long enough for any key the core makes; S3 itself allows 1024 bytes.
    const MAX_LEN: usize = 512;
    let invalid = |reason: &str| Err(commerce_core::Error::invalid("key", reason));
    if key.is_empty() {
        return invalid("must not be empty");
    }
    if key.len() > MAX_LEN {
        return invalid("must be at most 512 bytes");
    }
    if key.starts_with('/') {
        return invalid("must be a relative path");
    }
    if key.contains('\\') {
        return invalid("must not contain backslashes");
    }
    for segment in key.split('/') {
        if segment.is_empty() {
            return invalid("must not contain empty segments");
        }
        if segment == "." || segment == ".." {
            return invalid("must not contain `.` or `..` segments");
        }
        if segment.starts_with('.') {
            return invalid("segments must not start with a dot");
        }
        if !segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return invalid("may only contain ASCII letters, digits, `-`, `_`, `.` and `/`");
        }
    }
    Ok(())
}

/// `{base}/{key}` for a base with or without a trailing slash.
fn join_url(base: &str, key: &str) -> String {
    format!("{}/{key}", base.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::{check_key, join_url};

    #[test]
    fn accepts_keys_the_core_makes() {
        for key in [
            "products/0199a3c4-7d2e-7c39-b1c2-4f0e8a9b6d11/0199a3c4-7d2f-7000-8000-000000000001.jpg",
            "a.png",
            "x/y_z-1.v2.webp",
        ] {
            assert!(check_key(key).is_ok(), "{key} should be accepted");
        }
    }

    #[test]
    fn rejects_unsafe_keys() {
        for key in [
            "",
            "/etc/passwd",
            "../x.jpg",
            "products/../../x.jpg",
            "products/./x.jpg",
            "products/..",
            "products//x.jpg",
            "products/x.jpg/",
            "products\\x.jpg",
            "..\\x.jpg",
            "C:/x.jpg",
            "products/.hidden",
            "products/x y.jpg",
            "products/%2e%2e/x.jpg",
            "products/é.jpg",
            "products/x.jpg?query",
        ] {
            match check_key(key) {
                Err(commerce_core::Error::Validation(errors)) => {
                    assert_eq!(errors[0].field, "key", "{key:?}");
                }
                other => panic!("{key:?} should be refused with Validation on key, got {other:?}"),
            }
        }
        assert!(check_key(&"a".repeat(513)).is_err(), "an overlong key");
    }

    #[test]
    fn joins_urls_with_one_slash() {
        assert_eq!(join_url("/media", "a/b.jpg"), "/media/a/b.jpg");
        assert_eq!(
            join_url("https://cdn.example.com/", "a.jpg"),
            "https://cdn.example.com/a.jpg"
        );
    }
}
