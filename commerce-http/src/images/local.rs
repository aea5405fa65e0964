//! Images as files under a local directory, and the endpoint that serves them.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use poem::endpoint::StaticFilesEndpoint;
use poem::error::NotFoundError;
use poem::http::header::CACHE_CONTROL;
use poem::http::{HeaderValue, StatusCode};
use poem::{Endpoint, Request, Response};
use tokio::fs;
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

use commerce_core::Result;
use commerce_core::ports::ImageStore;

use super::{ImageStoreError, check_key, join_url};

/// Where the host mounts [`media_endpoint`], and the default URL prefix of [`LocalImageStore`].
pub const MEDIA_PATH: &str = "/media";

/// The default `public_base` of [`LocalImageStore`]: [`MEDIA_PATH`], so URLs are relative to
/// the host that serves them.
pub const DEFAULT_PUBLIC_BASE: &str = MEDIA_PATH;

/// `Cache-Control` of every file [`media_endpoint`] serves: a key is never reused for other
/// bytes (it holds a fresh image id), so caches may keep a file for a year without revalidating.
pub const MEDIA_CACHE_CONTROL: &str = "public, max-age=31536000, immutable";

/// Stores each image as the file `{root}/{key}` and returns the URL `{public_base}/{key}`.
///
/// Writes are atomic: the bytes go to a hidden temporary file in the target directory, are
/// flushed to disk, then renamed over the target, so a reader never sees half a file. The
/// content type is not stored: [`media_endpoint`] derives it from the key's extension, which
/// the core chooses from the image's detected type.
#[derive(Debug, Clone)]
pub struct LocalImageStore {
    root: PathBuf,
    public_base: String,
}

impl LocalImageStore {
    /// A store writing under `root` (created on the first write), with URLs under
    /// [`DEFAULT_PUBLIC_BASE`] (`/media`).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            public_base: DEFAULT_PUBLIC_BASE.to_owned(),
        }
    }

    /// Sets the URL prefix of stored images: a path (`/media`) or an absolute URL
    /// (`https://cdn.example.com/media`); a trailing slash is ignored.
    #[must_use]
    pub fn with_public_base(mut self, public_base: impl Into<String>) -> Self {
        self.public_base = public_base.into().trim_end_matches('/').to_owned();
        self
    }

    /// The directory the files live in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The URL prefix of stored images.
    pub fn public_base(&self) -> &str {
        &self.public_base
    }

    /// The public URL of `key`.
    pub fn url(&self, key: &str) -> String {
        join_url(&self.public_base, key)
    }
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ImageStoreError {
    let path = path.to_owned();
    move |source| ImageStoreError::Io { action, path, source }
}

/// Writes `bytes` to a new file at `path` and flushes it to disk.
async fn write_synced(path: &Path, bytes: &[u8]) -> std::result::Result<(), ImageStoreError> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .await
        .map_err(io_error("create", path))?;
    file.write_all(bytes).await.map_err(io_error("write", path))?;
    file.sync_all().await.map_err(io_error("sync", path))?;
    Ok(())
}

/// Removes a temporary file left by a failed write; a failure here is only logged.
async fn discard(tmp: &Path) {
    if let Err(e) = fs::remove_file(tmp).await
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %tmp.display(), error = %e, "could not remove a temporary image file");
    }
}

#[async_trait]
impl ImageStore for LocalImageStore {
    async fn put_image(&self, key: &str, bytes: Vec<u8>, _content_type: &str) -> Result<String> {
        check_key(key)?;
        let path = self.root.join(key);
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(commerce_core::Error::invalid("key", "must name a file"));
        };
        fs::create_dir_all(dir)
            .await
            .map_err(io_error("create the directory", dir))?;
        // Hidden (leading dot), so the media endpoint never serves it.
        let tmp = dir.join(format!(".{}.{}.tmp", name.to_string_lossy(), Uuid::now_v7().simple()));
        if let Err(e) = write_synced(&tmp, &bytes).await {
            discard(&tmp).await;
            return Err(e.into());
        }
        if let Err(e) = fs::rename(&tmp, &path).await {
            discard(&tmp).await;
            return Err(io_error("rename a temporary file to", &path)(e).into());
        }
        Ok(self.url(key))
    }

    async fn delete_image(&self, key: &str) -> Result<()> {
        check_key(key)?;
        let path = self.root.join(key);
        match fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error("remove", &path)(e).into()),
        }
    }
}

/// Serves the files of a [`LocalImageStore`] rooted at `root`: `GET {key}` relative to where
/// it is nested, so mount it with `Route::new().nest(MEDIA_PATH, media_endpoint(root))` to
/// answer `GET /media/*path`.
///
/// Only paths that are valid image keys are looked up (no `..`, no hidden files, no
/// percent-escapes); anything else, a directory (never listed) or a missing file is
/// `404 Not Found`. Files are served by poem's [`StaticFilesEndpoint`] (content type from the
/// extension, `ETag`/`Last-Modified`, conditional and range requests) with
/// `Cache-Control: public, max-age=31536000, immutable`. Methods other than GET are
/// `405 Method Not Allowed`.
pub fn media_endpoint(root: PathBuf) -> impl Endpoint<Output = Response> {
    MediaEndpoint {
        files: StaticFilesEndpoint::new(root),
    }
}

struct MediaEndpoint {
    files: StaticFilesEndpoint,
}

impl Endpoint for MediaEndpoint {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        let path = req.uri().path();
        let key = path.strip_prefix('/').unwrap_or(path);
        if check_key(key).is_err() {
            return Err(NotFoundError.into());
        }
        let mut resp = self.files.call(req).await?;
        if resp.status().is_success() || resp.status() == StatusCode::NOT_MODIFIED {
            resp.headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_static(MEDIA_CACHE_CONTROL));
        }
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    use poem::Route;
    use poem::http::StatusCode;
    use poem::test::TestClient;

    use super::*;

    const KEY: &str = "products/0199a3c4-7d2e-7c39-b1c2-4f0e8a9b6d11/0199a3c4-7d2f-7000-8000-000000000001.jpg";
    /// Not a real JPEG: the endpoint does not look inside.
    const BYTES: &[u8] = b"\xff\xd8\xff\xe0 not really a jpeg \xff\xd9";

    fn assert_invalid_key<T: std::fmt::Debug>(result: Result<T>, key: &str) {
        match result {
            Err(commerce_core::Error::Validation(errors)) if errors.iter().any(|e| e.field == "key") => {}
            other => panic!("{key:?}: expected Validation on key, got {other:?}"),
        }
    }

    /// Every entry under `dir`, recursively, relative to it.
    fn entries(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_owned()];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).unwrap() {
                let path = entry.unwrap().path();
                out.push(path.strip_prefix(dir).unwrap().display().to_string());
                if path.is_dir() {
                    stack.push(path);
                }
            }
        }
        out.sort();
        out
    }

    #[tokio::test]
    async fn put_writes_the_file_and_returns_its_url() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("media");
        let store = LocalImageStore::new(&root);
        let url = store.put_image(KEY, BYTES.to_vec(), "image/jpeg").await.unwrap();
        assert_eq!(url, format!("/media/{KEY}"));
        assert_eq!(std::fs::read(root.join(KEY)).unwrap(), BYTES);
        assert_eq!(
            entries(&root),
            vec![
                "products".to_owned(),
                "products/0199a3c4-7d2e-7c39-b1c2-4f0e8a9b6d11".to_owned(),
                format!("products/0199a3c4-7d2e-7c39-b1c2-4f0e8a9b6d11/0199a3c4-7d2f-7000-8000-000000000001.jpg"),
            ],
            "no temporary file is left behind"
        );

        // Writing the key again replaces the bytes.
        store.put_image(KEY, b"second".to_vec(), "image/jpeg").await.unwrap();
        assert_eq!(std::fs::read(root.join(KEY)).unwrap(), b"second");

        let cdn = LocalImageStore::new(&root).with_public_base("https://cdn.example.com/media/");
        assert_eq!(cdn.public_base(), "https://cdn.example.com/media");
        assert_eq!(
            cdn.put_image("a.png", vec![1, 2, 3], "image/png").await.unwrap(),
            "https://cdn.example.com/media/a.png"
        );
        assert_eq!(cdn.root(), root.as_path());
    }

    #[tokio::test]
    async fn unsafe_keys_are_refused_before_touching_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("media");
        let store = LocalImageStore::new(&root);
        let outside = dir.path().join("escaped.jpg");
        for key in [
            "../escaped.jpg",
            "products/../../escaped.jpg",
            "..",
            "/tmp/escaped.jpg",
            outside.to_str().unwrap(),
            "products\\..\\..\\escaped.jpg",
            "products//x.jpg",
            "",
            "products/.x.jpg",
        ] {
            assert_invalid_key(store.put_image(key, BYTES.to_vec(), "image/jpeg").await, key);
            assert_invalid_key(store.delete_image(key).await, key);
        }
        assert!(!root.exists(), "nothing was written under the root");
        assert!(!outside.exists(), "nothing was written outside the root");
    }

    #[tokio::test]
    async fn delete_removes_and_deleting_twice_is_fine() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalImageStore::new(dir.path());
        store.put_image(KEY, BYTES.to_vec(), "image/jpeg").await.unwrap();
        store.delete_image(KEY).await.unwrap();
        assert!(!dir.path().join(KEY).exists());
        store.delete_image(KEY).await.unwrap();
        store.delete_image("never/stored.jpg").await.unwrap();
    }

    #[tokio::test]
    async fn a_failed_write_is_a_storage_error() {
        let dir = tempfile::tempdir().unwrap();
        // The key's directory is taken by a file.
        std::fs::write(dir.path().join("products"), b"a file").unwrap();
        let store = LocalImageStore::new(dir.path());
        match store.put_image(KEY, BYTES.to_vec(), "image/jpeg").await {
            Err(commerce_core::Error::Storage(_)) => {}
            other => panic!("expected Storage, got {other:?}"),
        }
        // Renaming onto a directory fails after the temporary file was written: it is removed.
        std::fs::create_dir_all(dir.path().join("dir/taken.jpg/inside")).unwrap();
        match store.put_image("dir/taken.jpg", BYTES.to_vec(), "image/jpeg").await {
            Err(commerce_core::Error::Storage(_)) => {}
            other => panic!("expected Storage, got {other:?}"),
        }
        assert_eq!(
            entries(&dir.path().join("dir")),
            vec!["taken.jpg".to_owned(), "taken.jpg/inside".to_owned()],
            "the temporary file is removed"
        );
    }

    #[tokio::test]
    async fn concurrent_writes_of_one_key_leave_one_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalImageStore::new(dir.path());
        let bodies: Vec<Vec<u8>> = (0..8_u8).map(|i| vec![i; 64 * 1024]).collect();
        let writes = bodies.iter().map(|b| store.put_image(KEY, b.clone(), "image/jpeg"));
        for r in futures::future::join_all(writes).await {
            r.unwrap();
        }
        let stored = std::fs::read(dir.path().join(KEY)).unwrap();
        assert!(bodies.contains(&stored), "the file is one of the written bodies, whole");
    }

    fn media_app(root: &Path) -> Route {
        Route::new().nest(MEDIA_PATH, media_endpoint(root.to_owned()))
    }

    #[tokio::test]
    async fn media_endpoint_serves_stored_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalImageStore::new(dir.path());
        let url = store.put_image(KEY, BYTES.to_vec(), "image/jpeg").await.unwrap();
        store.put_image("b.png", vec![0x89, b'P'], "image/png").await.unwrap();
        let cli = TestClient::new(media_app(dir.path()));

        let resp = cli.get(&url).send().await;
        resp.assert_status_is_ok();
        resp.assert_content_type("image/jpeg");
        resp.assert_header(CACHE_CONTROL, MEDIA_CACHE_CONTROL);
        resp.assert_bytes(BYTES).await;

        let resp = cli.get("/media/b.png").send().await;
        resp.assert_status_is_ok();
        resp.assert_content_type("image/png");
        resp.assert_bytes([0x89, b'P']).await;
    }

    #[tokio::test]
    async fn media_endpoint_answers_404_for_missing_files_directories_and_escapes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("media");
        std::fs::create_dir_all(root.join("products")).unwrap();
        std::fs::write(root.join("products/.x.jpg.0199.tmp"), b"partial").unwrap();
        std::fs::write(dir.path().join("secret.txt"), b"secret").unwrap();
        let cli = TestClient::new(media_app(&root));
        for path in [
            "/media/missing.jpg",
            "/media/products/missing.jpg",
            "/media/products",
            "/media/products/",
            "/media/",
            "/media",
            "/media/../secret.txt",
            "/media/products/../../secret.txt",
            "/media/%2e%2e/secret.txt",
            "/media/..%2fsecret.txt",
            "/media/products/.x.jpg.0199.tmp",
            "/media//etc/passwd",
            "/media/..\\secret.txt",
        ] {
            let resp = cli.get(path).send().await;
            resp.assert_status(StatusCode::NOT_FOUND);
            assert!(
                resp.0.headers().get(CACHE_CONTROL).is_none(),
                "{path}: a 404 is not cached for a year"
            );
        }
        let resp = cli.post("/media/products/missing.jpg").send().await;
        resp.assert_status(StatusCode::METHOD_NOT_ALLOWED);
    }
}
