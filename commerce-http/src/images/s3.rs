//! Images in an S3-compatible bucket (AWS S3, MinIO, Cloudflare R2, ...).
//!
//! Two requests are needed, `PutObject` and `DeleteObject`, so instead of an SDK this signs
//! them itself with AWS Signature Version 4 (header-based, signed payload), on `reqwest` with
//! rustls. The signer is checked against the worked examples of the S3 documentation.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use reqwest::header::{AUTHORIZATION, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use sha2::{Digest, Sha256};

use commerce_core::Result;
use commerce_core::ports::ImageStore;

use super::{ImageStoreError, check_key, join_url};

/// How long to wait for a connection to the S3 endpoint.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one request may take in all (an image upload of a few MB).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// How much of an error answer's body is kept for the logs.
const MAX_ERROR_BODY: usize = 512;

/// Where and how to reach an S3-compatible bucket. Built by the binary from its configuration.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Config {
    /// Base URL of the S3 API: `http://127.0.0.1:9000` (MinIO),
    /// `https://<account>.r2.cloudflarestorage.com` (R2)... `None` is AWS:
    /// `https://s3.<region>.amazonaws.com`.
    pub endpoint: Option<String>,
    /// Region the requests are signed for (`us-east-1`; `auto` for R2).
    pub region: String,
    /// Bucket name.
    pub bucket: String,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key (never printed by `Debug`).
    pub secret_access_key: String,
    /// Prefix of the public URLs returned for stored images (`https://cdn.example.com`,
    /// or the bucket's public URL); the key is appended after a `/`.
    pub public_base_url: String,
    /// Address objects as `<endpoint>/<bucket>/<key>` (MinIO and most self-hosted servers)
    /// instead of `<bucket>.<endpoint host>/<key>` (virtual-hosted style, AWS's default).
    pub path_style: bool,
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("public_base_url", &self.public_base_url)
            .field("path_style", &self.path_style)
            .finish()
    }
}

/// Stores each image as the object `key` of an S3-compatible bucket (`PutObject` with the
/// image's `Content-Type`) and returns `{public_base_url}/{key}`. Deleting a missing object
/// succeeds (S3 answers 204; a 404 from a compatible server is accepted too). Any other failure
/// is [`commerce_core::Error::Storage`].
#[derive(Debug, Clone)]
pub struct S3ImageStore {
    config: S3Config,
    /// The bucket's URL: objects are this plus `/<key>`.
    bucket_url: Url,
    client: reqwest::Client,
}

fn config_error(message: impl Into<String>) -> ImageStoreError {
    ImageStoreError::Config(message.into())
}

impl S3ImageStore {
    /// A store for the bucket `config` names. Makes no request.
    ///
    /// # Errors
    /// [`ImageStoreError::Config`] when a field is empty, the endpoint is not an `http(s)` URL
    /// with a host, or the bucket name cannot be used in a URL (with `path_style: false`, it
    /// must be a DNS label: lower-case letters, digits, `-` and `.`).
    pub fn new(config: S3Config) -> std::result::Result<Self, ImageStoreError> {
        for (name, value) in [
            ("region", &config.region),
            ("bucket", &config.bucket),
            ("access_key_id", &config.access_key_id),
            ("secret_access_key", &config.secret_access_key),
            ("public_base_url", &config.public_base_url),
        ] {
            if value.trim().is_empty() {
                return Err(config_error(format!("{name} is empty")));
            }
        }
        let dns_compatible = config
            .bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.'));
        let url_safe = config
            .bucket
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
        if !url_safe || (!config.path_style && !dns_compatible) || config.bucket.starts_with('.') {
            return Err(config_error(format!(
                "bucket {:?} is not a valid bucket name for {} addressing",
                config.bucket,
                if config.path_style {
                    "path-style"
                } else {
                    "virtual-hosted"
                }
            )));
        }
        let endpoint = match &config.endpoint {
            Some(e) => e.clone(),
            None => format!("https://s3.{}.amazonaws.com", config.region),
        };
        let mut url = Url::parse(&endpoint).map_err(|e| config_error(format!("endpoint {endpoint:?}: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(config_error(format!("endpoint {endpoint:?} is not an http(s) URL")));
        }
        if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
            return Err(config_error(format!(
                "endpoint {endpoint:?} must not have credentials, a query or a fragment"
            )));
        }
        let Some(host) = url.host_str().map(str::to_owned) else {
            return Err(config_error(format!("endpoint {endpoint:?} has no host")));
        };
        let prefix = url.path().trim_end_matches('/').to_owned();
        if config.path_style {
            url.set_path(&format!("{prefix}/{}", config.bucket));
        } else {
            url.set_host(Some(&format!("{}.{host}", config.bucket)))
                .map_err(|e| config_error(format!("bucket host {}.{host}: {e}", config.bucket)))?;
            url.set_path(&prefix);
        }
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| config_error(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            config,
            bucket_url: url,
            client,
        })
    }

    /// The configuration the store was made from.
    pub fn config(&self) -> &S3Config {
        &self.config
    }

    /// The URL requests for `key` go to (not the public URL).
    pub fn object_url(&self, key: &str) -> std::result::Result<Url, ImageStoreError> {
        let base = self.bucket_url.as_str().trim_end_matches('/');
        let url = format!("{base}/{}", uri_encode(key, false));
        Url::parse(&url).map_err(|e| config_error(format!("object URL {url:?}: {e}")))
    }

    /// The public URL of `key`.
    pub fn public_url(&self, key: &str) -> String {
        join_url(&self.config.public_base_url, key)
    }

    /// Sends one signed request for `key`; returns the object URL (for errors) and the answer.
    async fn send(
        &self,
        op: Op,
        key: &str,
        body: Vec<u8>,
        content_type: Option<&str>,
    ) -> std::result::Result<(String, reqwest::Response), ImageStoreError> {
        let url = self.object_url(key)?;
        let method = op.method();
        let request_error = |url: &Url, source: Box<dyn std::error::Error + Send + Sync>| ImageStoreError::Request {
            method: op.name(),
            url: url.to_string(),
            source,
        };
        let payload_hash = hex::encode(Sha256::digest(&body));
        let now = Utc::now();
        let mut headers = vec![
            ("host", host_header(&url)),
            ("x-amz-content-sha256", payload_hash.clone()),
            ("x-amz-date", now.format(AMZ_DATE).to_string()),
        ];
        if let Some(content_type) = content_type {
            headers.push(("content-type", content_type.to_owned()));
        }
        let signer = Signer {
            access_key_id: &self.config.access_key_id,
            secret_access_key: &self.config.secret_access_key,
            region: &self.config.region,
        };
        let authorization = signer.authorization(method.as_str(), url.path(), &headers, &payload_hash, now);
        let mut request = self.client.request(method, url.clone());
        for (name, value) in headers {
            let value = HeaderValue::from_str(&value).map_err(|e| request_error(&url, Box::new(e)))?;
            request = request.header(HeaderName::from_static(name), value);
        }
        let response = request
            .header(AUTHORIZATION, authorization)
            .body(body)
            .send()
            .await
            .map_err(|e| request_error(&url, Box::new(e)))?;
        Ok((url.to_string(), response))
    }
}

/// The requests the store sends.
#[derive(Debug, Clone, Copy)]
enum Op {
    /// `PutObject`.
    Put,
    /// `DeleteObject`.
    Delete,
}

impl Op {
    fn method(self) -> Method {
        match self {
            Self::Put => Method::PUT,
            Self::Delete => Method::DELETE,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Put => "PUT",
            Self::Delete => "DELETE",
        }
    }
}

/// The refusal in `response`, with the start of its body for the logs.
async fn refused(op: Op, url: String, response: reqwest::Response) -> ImageStoreError {
    let status = response.status().as_u16();
    let mut body = response.text().await.unwrap_or_default();
    if let Some((cut, _)) = body.char_indices().nth(MAX_ERROR_BODY) {
        body.truncate(cut);
    }
    ImageStoreError::Status {
        method: op.name(),
        url,
        status,
        body,
    }
}

#[async_trait]
impl ImageStore for S3ImageStore {
    async fn put_image(&self, key: &str, bytes: Vec<u8>, content_type: &str) -> Result<String> {
        check_key(key)?;
        let (url, response) = self.send(Op::Put, key, bytes, Some(content_type)).await?;
        if response.status().is_success() {
            Ok(self.public_url(key))
        } else {
            Err(refused(Op::Put, url, response).await.into())
        }
    }

    async fn delete_image(&self, key: &str) -> Result<()> {
        check_key(key)?;
        let (url, response) = self.send(Op::Delete, key, Vec::new(), None).await?;
        if response.status().is_success() || response.status() == StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(refused(Op::Delete, url, response).await.into())
        }
    }
}

/// `x-amz-date` format: ISO 8601 basic, UTC.
const AMZ_DATE: &str = "%Y%m%dT%H%M%SZ";

/// The `Host` header for `url`, as signed and sent: the port only when not the scheme's default.
fn host_header(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

/// SigV4 `UriEncode`: every byte but the unreserved characters (`A-Za-z0-9-._~`) as `%XX`
/// (upper-case hex); `/` kept unless `encode_slash`.
fn uri_encode(s: &str, encode_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') || (b == b'/' && !encode_slash) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn hmac_sha256(key: &[u8], data: &str) -> [u8; 32] {
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().into()
}

/// AWS Signature Version 4 for the `s3` service, header-based.
struct Signer<'a> {
    access_key_id: &'a str,
    secret_access_key: &'a str,
    region: &'a str,
}

impl Signer<'_> {
    /// The `Authorization` header for a request without a query string, signing `headers`
    /// (names in any case; values are trimmed and inner runs of spaces folded, as SigV4 wants).
    /// `canonical_uri` is the path as sent (already `UriEncode`d); `payload_hash` the hex
    /// SHA-256 of the body, also sent as `x-amz-content-sha256`.
    fn authorization(
        &self,
        method: &str,
        canonical_uri: &str,
        headers: &[(&str, String)],
        payload_hash: &str,
        now: DateTime<Utc>,
    ) -> String {
        let mut headers: Vec<(String, String)> = headers
            .iter()
            .map(|(name, value)| {
                let value = value.split_whitespace().collect::<Vec<_>>().join(" ");
                (name.to_ascii_lowercase(), value)
            })
            .collect();
        headers.sort();
        let signed_headers = headers.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(";");
        let canonical_headers: String = headers.iter().map(|(n, v)| format!("{n}:{v}\n")).collect();
        let canonical_request =
            format!("{method}\n{canonical_uri}\n\n{canonical_headers}\n{signed_headers}\n{payload_hash}");
        let date = now.format("%Y%m%d").to_string();
        let scope = format!("{date}/{}/s3/aws4_request", self.region);
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256\n{}\n{scope}\n{}",
            now.format(AMZ_DATE),
            hex::encode(Sha256::digest(canonical_request.as_bytes()))
        );
        let key = [self.region, "s3", "aws4_request"].into_iter().fold(
            hmac_sha256(format!("AWS4{}", self.secret_access_key).as_bytes(), &date),
            |key, part| hmac_sha256(&key, part),
        );
        let signature = hex::encode(hmac_sha256(&key, &string_to_sign));
        format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
            self.access_key_id
        )
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use chrono::TimeZone;
    use poem::http::HeaderMap;
    use poem::listener::{Acceptor, Listener, TcpListener};
    use poem::{Request, Response, Server};

    use super::*;

    const ACCESS_KEY: &str = "AKIDTEST";
    const SECRET: &str = "test/secret+key";
    const KEY: &str = "products/0199a3c4-7d2e-7c39-b1c2-4f0e8a9b6d11/0199a3c4-7d2f-7000-8000-000000000001.jpg";

    /// The signing example of the S3 documentation ("Example: GET Object").
    #[test]
    fn signs_the_documented_get_example() {
        let signer = Signer {
            access_key_id: "AKIAIOSFODNN7EXAMPLE",
            secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            region: "us-east-1",
        };
        let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(hex::encode(Sha256::digest(b"")), empty);
        let now = Utc.with_ymd_and_hms(2013, 5, 24, 0, 0, 0).unwrap();
        let headers = [
            ("Host", "examplebucket.s3.amazonaws.com".to_owned()),
            ("Range", "bytes=0-9".to_owned()),
            ("x-amz-content-sha256", empty.to_owned()),
            ("x-amz-date", "20130524T000000Z".to_owned()),
        ];
        assert_eq!(
            signer.authorization("GET", "/test.txt", &headers, empty, now),
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    /// The signing example of the S3 documentation ("Example: PUT Object"): an encoded key,
    /// a signed body, headers given out of order.
    #[test]
    fn signs_the_documented_put_example() {
        let signer = Signer {
            access_key_id: "AKIAIOSFODNN7EXAMPLE",
            secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            region: "us-east-1",
        };
        let body_hash = hex::encode(Sha256::digest(b"Welcome to Amazon S3."));
        assert_eq!(
            body_hash,
            "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072"
        );
        let now = Utc.with_ymd_and_hms(2013, 5, 24, 0, 0, 0).unwrap();
        let headers = [
            ("x-amz-storage-class", "REDUCED_REDUNDANCY".to_owned()),
            ("Host", "examplebucket.s3.amazonaws.com".to_owned()),
            ("Date", " Fri, 24 May 2013   00:00:00 GMT ".to_owned()),
            ("x-amz-date", "20130524T000000Z".to_owned()),
            ("x-amz-content-sha256", body_hash.clone()),
        ];
        let uri = format!("/{}", uri_encode("test$file.text", false));
        assert_eq!(uri, "/test%24file.text");
        assert_eq!(
            signer.authorization("PUT", &uri, &headers, &body_hash, now),
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class, \
             Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"
        );
    }

    #[test]
    fn uri_encoding_keeps_only_unreserved_characters() {
        assert_eq!(uri_encode("a-b_c.d~e/f", false), "a-b_c.d~e/f");
        assert_eq!(uri_encode("a/b", true), "a%2Fb");
        assert_eq!(uri_encode("x y+z=é", false), "x%20y%2Bz%3D%C3%A9");
    }

    fn config(endpoint: Option<&str>, path_style: bool) -> S3Config {
        S3Config {
            endpoint: endpoint.map(str::to_owned),
            region: "eu-west-1".to_owned(),
            bucket: "shop-media".to_owned(),
            access_key_id: ACCESS_KEY.to_owned(),
            secret_access_key: SECRET.to_owned(),
            public_base_url: "https://cdn.example.com/".to_owned(),
            path_style,
        }
    }

    #[test]
    fn addresses_objects_by_style() {
        let aws = S3ImageStore::new(config(None, false)).unwrap();
        assert_eq!(
            aws.object_url("a/b.jpg").unwrap().as_str(),
            "https://shop-media.s3.eu-west-1.amazonaws.com/a/b.jpg"
        );
        let aws_path = S3ImageStore::new(config(None, true)).unwrap();
        assert_eq!(
            aws_path.object_url("a/b.jpg").unwrap().as_str(),
            "https://s3.eu-west-1.amazonaws.com/shop-media/a/b.jpg"
        );
        let minio = S3ImageStore::new(config(Some("http://127.0.0.1:9000/"), true)).unwrap();
        let url = minio.object_url("a/b.jpg").unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:9000/shop-media/a/b.jpg");
        assert_eq!(host_header(&url), "127.0.0.1:9000");
        let prefixed = S3ImageStore::new(config(Some("https://storage.example.com/s3"), false)).unwrap();
        let url = prefixed.object_url("a.jpg").unwrap();
        assert_eq!(url.as_str(), "https://shop-media.storage.example.com/s3/a.jpg");
        assert_eq!(host_header(&url), "shop-media.storage.example.com");
        assert_eq!(minio.public_url("a/b.jpg"), "https://cdn.example.com/a/b.jpg");
    }

    #[test]
    fn refuses_unusable_configuration() {
        let cases: Vec<(S3Config, &str)> = vec![
            (
                S3Config {
                    bucket: String::new(),
                    ..config(None, true)
                },
                "empty bucket",
            ),
            (
                S3Config {
                    region: " ".to_owned(),
                    ..config(None, true)
                },
                "empty region",
            ),
            (
                S3Config {
                    secret_access_key: String::new(),
                    ..config(None, true)
                },
                "empty secret",
            ),
            (
                S3Config {
                    public_base_url: String::new(),
                    ..config(None, true)
                },
                "empty public base",
            ),
            (
                S3Config {
                    bucket: "Shop_Media".to_owned(),
                    ..config(None, false)
                },
                "not a DNS label",
            ),
            (
                S3Config {
                    bucket: "a/b".to_owned(),
                    ..config(None, true)
                },
                "a slash in the bucket",
            ),
            (config(Some("ftp://example.com"), true), "not http"),
            (config(Some("not a url"), true), "not a URL"),
            (
                config(Some("https://user:pw@example.com"), true),
                "credentials in the endpoint",
            ),
            (
                config(Some("https://example.com/?x=1"), true),
                "a query in the endpoint",
            ),
        ];
        for (config, what) in cases {
            assert!(
                matches!(S3ImageStore::new(config), Err(ImageStoreError::Config(_))),
                "{what} is refused"
            );
        }
        assert!(
            S3ImageStore::new(S3Config {
                bucket: "Shop_Media".to_owned(),
                ..config(None, true)
            })
            .is_ok()
        );
    }

    #[test]
    fn debug_never_prints_the_secret() {
        let store = S3ImageStore::new(config(None, true)).unwrap();
        let printed = format!("{store:?} {:?}", store.config());
        assert!(!printed.contains(SECRET), "{printed}");
        assert!(printed.contains("<redacted>"));
    }

    #[derive(Debug, Clone)]
    struct Received {
        method: String,
        path: String,
        headers: HeaderMap,
        body: Vec<u8>,
    }

    /// A stand-in S3 server on a free local port. It records every request and answers by the
    /// key: `.../missing...` 404, `.../broken...` 500, otherwise PUT 200 and DELETE 204.
    struct FakeS3 {
        endpoint: String,
        received: Arc<Mutex<Vec<Received>>>,
        server: tokio::task::JoinHandle<std::io::Result<()>>,
    }

    impl Drop for FakeS3 {
        fn drop(&mut self) {
            self.server.abort();
        }
    }

    impl FakeS3 {
        async fn start() -> Self {
            let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await.unwrap();
            let port = acceptor.local_addr()[0].as_socket_addr().unwrap().port();
            let received = Arc::new(Mutex::new(Vec::new()));
            let log = Arc::clone(&received);
            let app = poem::endpoint::make(move |mut req: Request| {
                let log = Arc::clone(&log);
                async move {
                    let body = req.take_body().into_vec().await.unwrap();
                    let path = req.uri().path().to_owned();
                    let method = req.method().to_string();
                    log.lock().unwrap().push(Received {
                        method: method.clone(),
                        path: path.clone(),
                        headers: req.headers().clone(),
                        body,
                    });
                    let status = if path.contains("missing") {
                        StatusCode::NOT_FOUND
                    } else if path.contains("broken") {
                        StatusCode::INTERNAL_SERVER_ERROR
                    } else if method == "DELETE" {
                        StatusCode::NO_CONTENT
                    } else {
                        StatusCode::OK
                    };
                    let code = status.as_u16();
                    Response::builder()
                        .status(status)
                        .content_type("application/xml")
                        .body(format!("<Error><Code>Status{code}</Code></Error>"))
                }
            });
            let server = tokio::spawn(Server::new_with_acceptor(acceptor).run(app));
            Self {
                endpoint: format!("http://127.0.0.1:{port}"),
                received,
                server,
            }
        }

        fn store(&self) -> S3ImageStore {
            S3ImageStore::new(S3Config {
                region: "us-east-1".to_owned(),
                ..config(Some(&self.endpoint), true)
            })
            .unwrap()
        }

        fn take(&self) -> Vec<Received> {
            std::mem::take(&mut *self.received.lock().unwrap())
        }
    }

    fn header<'a>(r: &'a Received, name: &str) -> &'a str {
        r.headers
            .get(name)
            .unwrap_or_else(|| panic!("{} {} lacks {name}", r.method, r.path))
            .to_str()
            .unwrap()
    }

    /// Checks the SigV4 headers of a received request, and that the signature matches the
    /// request as it arrived (so what was signed is what was sent, `Host` included).
    fn assert_signed(r: &Received, signed_headers: &str) {
        let amz_date = header(r, "x-amz-date");
        let now = chrono::NaiveDateTime::parse_from_str(amz_date, AMZ_DATE)
            .unwrap_or_else(|e| panic!("x-amz-date {amz_date:?}: {e}"))
            .and_utc();
        assert!(
            (Utc::now() - now).num_seconds().abs() < 300,
            "x-amz-date {amz_date} is now"
        );
        let payload_hash = header(r, "x-amz-content-sha256");
        assert_eq!(
            payload_hash,
            hex::encode(Sha256::digest(&r.body)),
            "x-amz-content-sha256 is the body's"
        );
        let authorization = header(r, "authorization");
        let prefix = format!(
            "AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/{}/us-east-1/s3/aws4_request, SignedHeaders={signed_headers}, Signature=",
            now.format("%Y%m%d")
        );
        let signature = authorization
            .strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("authorization {authorization:?} starts with {prefix:?}"));
        assert!(
            signature.len() == 64 && signature.bytes().all(|b| b.is_ascii_hexdigit()),
            "signature {signature:?} is 64 hex digits"
        );
        let headers: Vec<(&str, String)> = signed_headers
            .split(';')
            .map(|name| (name, header(r, name).to_owned()))
            .collect();
        let signer = Signer {
            access_key_id: ACCESS_KEY,
            secret_access_key: SECRET,
            region: "us-east-1",
        };
        assert_eq!(
            signer.authorization(&r.method, &r.path, &headers, payload_hash, now),
            authorization,
            "the signature covers the request as received"
        );
    }

    #[tokio::test]
    async fn put_sends_a_signed_path_style_put_object() {
        let s3 = FakeS3::start().await;
        let store = s3.store();
        let bytes = b"\xff\xd8\xff\xe0 image bytes \xff\xd9".to_vec();
        let url = store.put_image(KEY, bytes.clone(), "image/jpeg").await.unwrap();
        assert_eq!(url, format!("https://cdn.example.com/{KEY}"));
        let received = s3.take();
        assert_eq!(received.len(), 1, "one request");
        let r = &received[0];
        assert_eq!(r.method, "PUT");
        assert_eq!(r.path, format!("/shop-media/{KEY}"));
        assert_eq!(header(r, "content-type"), "image/jpeg");
        assert_eq!(header(r, "host"), s3.endpoint.trim_start_matches("http://"));
        assert_eq!(r.body, bytes);
        assert_signed(r, "content-type;host;x-amz-content-sha256;x-amz-date");
    }

    #[tokio::test]
    async fn delete_sends_a_signed_delete_object_and_accepts_missing_objects() {
        let s3 = FakeS3::start().await;
        let store = s3.store();
        store.delete_image(KEY).await.unwrap();
        store.delete_image("products/missing.jpg").await.unwrap();
        let received = s3.take();
        assert_eq!(received.len(), 2);
        assert_eq!(received[0].method, "DELETE");
        assert_eq!(received[0].path, format!("/shop-media/{KEY}"));
        assert!(received[0].body.is_empty());
        assert_signed(&received[0], "host;x-amz-content-sha256;x-amz-date");
        assert_eq!(received[1].path, "/shop-media/products/missing.jpg");
    }

    #[tokio::test]
    async fn server_errors_and_unreachable_servers_are_storage_errors() {
        let s3 = FakeS3::start().await;
        let store = s3.store();
        for result in [
            store
                .put_image("products/broken.jpg", vec![1], "image/jpeg")
                .await
                .map(drop),
            store.delete_image("products/broken.jpg").await,
        ] {
            match result {
                Err(commerce_core::Error::Storage(e)) => {
                    let e = e.downcast_ref::<ImageStoreError>().unwrap();
                    assert!(
                        matches!(e, ImageStoreError::Status { status: 500, body, .. } if body.contains("Status500")),
                        "{e:?}"
                    );
                }
                other => panic!("expected Storage, got {other:?}"),
            }
        }

        // A port nothing listens on.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let unreachable = S3ImageStore::new(config(Some(&format!("http://127.0.0.1:{port}")), true)).unwrap();
        match unreachable.put_image(KEY, vec![1], "image/jpeg").await {
            Err(commerce_core::Error::Storage(e)) => {
                let e = e.downcast_ref::<ImageStoreError>().unwrap();
                assert!(matches!(e, ImageStoreError::Request { method: "PUT", .. }), "{e:?}");
            }
            other => panic!("expected Storage, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn unsafe_keys_are_refused_without_a_request() {
        let s3 = FakeS3::start().await;
        let store = s3.store();
        for key in ["../x.jpg", "/x.jpg", "a//b.jpg", "a\\b.jpg", ""] {
            assert!(
                matches!(
                    store.put_image(key, vec![1], "image/jpeg").await,
                    Err(commerce_core::Error::Validation(_))
                ),
                "{key:?}"
            );
            assert!(
                matches!(store.delete_image(key).await, Err(commerce_core::Error::Validation(_))),
                "{key:?}"
            );
        }
        assert!(s3.take().is_empty(), "nothing was sent");
    }
}
