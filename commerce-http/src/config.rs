//! Typed configuration from the planned environment variables. Only binaries read the
//! environment; everything else receives a [`Config`].

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

/// A variable is set but malformed.
#[derive(Debug, thiserror::Error)]
#[error("environment variable {name} is invalid: {reason}")]
pub struct ConfigError {
    /// The variable.
    pub name: &'static str,
    /// What is wrong.
    pub reason: String,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Everything the host needs, parsed and checked once at start-up. `Debug` prints no secret:
/// keys, tokens and passwords are `<redacted>`, and so is the password of a connection URL.
#[derive(Clone)]
pub struct Config {
    /// `HOST`, default `0.0.0.0`.
    pub host: IpAddr,
    /// `PORT`, default 8080.
    pub port: u16,
    /// `DATABASE_URL`: PostgreSQL for accounts and checkout; in memory when absent.
    pub database_url: Option<String>,
    /// `DATABASE_MAX_CONNECTIONS`, default 16: the PostgreSQL pool size.
    pub database_max_connections: u32,
    /// `MONGO_URI`: MongoDB for the catalog; in memory when absent.
    pub mongo_uri: Option<String>,
    /// `MONGO_DB`, default `commerce`.
    pub mongo_db: String,
    /// `REDIS_URL`: rate limits shared by every host using the same Redis; per host otherwise.
    pub redis_url: Option<String>,
    /// `MAX_BODY_BYTES`, default 1 MiB: larger request bodies get 413.
    pub max_body_bytes: usize,
    /// `MAX_UPLOAD_BYTES`, default 6 MiB: the body limit of image uploads
    /// (`POST /api/v1/products/:id/images`), above the 5 MiB the catalog accepts per image so
    /// the multipart framing fits.
    pub max_upload_bytes: usize,
    /// `PAGE_CACHE_MIB`, default 16: budget for whole pages of products' JSON (listings,
    /// searches, category pages), each kept from its second request while its products and
    /// counts are unchanged; 0 keeps none. A page of 20 demo products weighs ~50 KiB, so the
    /// default holds ~320 pages: the first pages of every category and of a store's common
    /// searches, and two thirds of a 10,000-product catalog's pages, within the host's 100 MiB
    /// over its data beside its 36 MiB empty and a 19 MiB password-hashing workspace per core.
    pub page_cache_mib: usize,
    /// `LOG_FORMAT` (`pretty` or `json`), default pretty.
    pub log_format: LogFormat,
    /// `SHUTDOWN_GRACE_SECS`, default 20: how long in-flight requests get after SIGTERM.
    pub shutdown_grace: Duration,
    /// `JWT_SECRET` (at least 32 bytes); a random one per process when absent.
    pub jwt_secret: Option<String>,
    /// `JWT_EXPIRES_IN` (e.g. `15m`, `1h`, `900s`), default 15 minutes: access-token lifetime.
    pub jwt_expires_in: Duration,
    /// `JWT_REFRESH_EXPIRES_IN`, default 7 days: refresh-token lifetime.
    pub jwt_refresh_expires_in: Duration,
    /// `COOKIE_SECURE`, default true: mark the refresh cookie `Secure` (false for plain-HTTP
    /// localhost only).
    pub cookie_secure: bool,
    /// `ADMIN_EMAIL` and `ADMIN_PASSWORD`: a superadmin made sure of at start-up.
    pub admin: Option<(String, String)>,
    /// `MEDIA_DIR`, default `data/media`: where product images are kept and served from
    /// (`/media/...`) when no S3 bucket is configured.
    pub media_dir: std::path::PathBuf,
    /// `S3_BUCKET` (with `S3_REGION`, `S3_ENDPOINT`, `S3_ACCESS_KEY_ID`,
    /// `S3_SECRET_ACCESS_KEY`, `S3_PUBLIC_BASE_URL`, `S3_PATH_STYLE`): store images in an
    /// S3-compatible bucket instead.
    pub s3: Option<crate::images::S3Config>,
    /// `AUTH_RATE_LIMIT_PER_MINUTE`, default 20 (0: off): sign-in, registration and refresh
    /// attempts per client IP and minute; more get 429.
    pub auth_rate_limit_per_minute: u32,
    /// `METRICS_TOKEN`: when set, `GET /metrics` asks for it as a bearer token; open otherwise.
    pub metrics_token: Option<String>,
    /// `TRUST_X_FORWARDED_FOR`, default false: take the client IP from `X-Forwarded-For`
    /// (only behind a proxy that sets it).
    pub trust_forwarded_for: bool,
    /// `STORE_CURRENCY`, default `USD`: the currency carts and orders are priced in.
    pub currency: commerce_core::domain::Currency,
    /// `PAYMENT_WINDOW`, default `30m`: how long a pending order waits for payment.
    pub payment_window: Duration,
    /// `SHIPPING_FLAT_FEE` (minor units, default 599) and `SHIPPING_FREE_FROM` (default 5000;
    /// `none` to always charge).
    pub shipping: commerce_core::services::FlatRateShipping,
    /// `TAX_RATE_BPS`, default 0 (prices include tax): one tax rate in basis points.
    pub tax_rate_bps: i64,
    /// `STRIPE_SECRET_KEY`: take payments with Stripe; the offline `manual` gateway otherwise.
    pub stripe_secret_key: Option<String>,
    /// `STRIPE_WEBHOOK_SECRET`: verifies `POST /api/v1/payments/webhook`.
    pub stripe_webhook_secret: Option<String>,
    /// `STRIPE_API_BASE`, default `https://api.stripe.com` (tests point it at a fake).
    pub stripe_api_base: Option<String>,
    /// `MAINTENANCE_INTERVAL_SECS`, default 60: how often checkout recovery, unpaid-order
    /// expiry and the expired-cart sweep run.
    pub maintenance_interval: Duration,
    /// `SEED_DEMO_PRODUCTS`: load a demo store of this many products at start-up when the
    /// catalog is empty (handy with the in-memory default).
    pub seed_demo_products: Option<usize>,
}

/// What `Debug` prints in place of a secret.
const REDACTED: &str = "<redacted>";

/// A connection URL with its password (if any) replaced by [`REDACTED`].
fn without_password(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            // Only fails for URLs that cannot carry a password, which this one did.
            let _ = parsed.set_password(Some(REDACTED));
            parsed.to_string()
        }
        Ok(_) => url.to_owned(),
        Err(_) => REDACTED.to_owned(),
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Taken apart without `..`, so that a field added later fails to compile until it is
        // printed here, redacted or not.
        let Self {
            host,
            port,
            database_url,
            database_max_connections,
            mongo_uri,
            mongo_db,
            redis_url,
            max_body_bytes,
            max_upload_bytes,
            page_cache_mib,
            log_format,
            shutdown_grace,
            jwt_secret,
            jwt_expires_in,
            jwt_refresh_expires_in,
            cookie_secure,
            admin,
            media_dir,
            s3,
            auth_rate_limit_per_minute,
            metrics_token,
            trust_forwarded_for,
            currency,
            payment_window,
            shipping,
            tax_rate_bps,
            stripe_secret_key,
            stripe_webhook_secret,
            stripe_api_base,
            maintenance_interval,
            seed_demo_products,
        } = self;
        let secret = |value: &Option<String>| value.as_ref().map(|_| REDACTED);
        let url = |value: &Option<String>| value.as_deref().map(without_password);
        f.debug_struct("Config")
            .field("host", host)
            .field("port", port)
            .field("database_url", &url(database_url))
            .field("database_max_connections", database_max_connections)
            .field("mongo_uri", &url(mongo_uri))
            .field("mongo_db", mongo_db)
            .field("redis_url", &url(redis_url))
            .field("max_body_bytes", max_body_bytes)
            .field("max_upload_bytes", max_upload_bytes)
            .field("page_cache_mib", page_cache_mib)
            .field("log_format", log_format)
            .field("shutdown_grace", shutdown_grace)
            .field("jwt_secret", &secret(jwt_secret))
            .field("jwt_expires_in", jwt_expires_in)
            .field("jwt_refresh_expires_in", jwt_refresh_expires_in)
            .field("cookie_secure", cookie_secure)
            .field("admin", &admin.as_ref().map(|(email, _)| (email, REDACTED)))
            .field("media_dir", media_dir)
            .field("s3", s3)
            .field("auth_rate_limit_per_minute", auth_rate_limit_per_minute)
            .field("metrics_token", &secret(metrics_token))
            .field("trust_forwarded_for", trust_forwarded_for)
            .field("currency", currency)
            .field("payment_window", payment_window)
            .field("shipping", shipping)
            .field("tax_rate_bps", tax_rate_bps)
            .field("stripe_secret_key", &secret(stripe_secret_key))
            .field("stripe_webhook_secret", &secret(stripe_webhook_secret))
            .field("stripe_api_base", stripe_api_base)
            .field("maintenance_interval", maintenance_interval)
            .field("seed_demo_products", seed_demo_products)
            .finish()
    }
}

impl Config {
    /// Reads the process environment.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first malformed variable.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))
    }

    /// Reads variables through `lookup` (tests pass a map).
    ///
    /// # Errors
    /// [`ConfigError`] naming the first malformed variable.
    pub fn from_lookup(lookup: impl Fn(&'static str) -> Option<String>) -> Result<Self, ConfigError> {
        fn parse<T: std::str::FromStr>(
            lookup: &impl Fn(&'static str) -> Option<String>,
            name: &'static str,
            default: T,
        ) -> Result<T, ConfigError>
        where
            T::Err: std::fmt::Display,
        {
            match lookup(name) {
                None => Ok(default),
                Some(raw) => raw.trim().parse().map_err(|e: T::Err| ConfigError {
                    name,
                    reason: e.to_string(),
                }),
            }
        }
        let log_format = match lookup("LOG_FORMAT").as_deref() {
            None | Some("pretty") => LogFormat::Pretty,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(ConfigError {
                    name: "LOG_FORMAT",
                    reason: format!("{other:?} is not pretty or json"),
                });
            }
        };
        let duration = |name: &'static str, default: Duration| -> Result<Duration, ConfigError> {
            match lookup(name) {
                None => Ok(default),
                Some(raw) => {
                    let raw = raw.trim();
                    // A bare number is seconds, as in the original plan's `JWT_EXPIRES_IN=900`.
                    let parsed = match raw.parse::<u64>() {
                        Ok(secs) => Ok(Duration::from_secs(secs)),
                        Err(_) => humantime::parse_duration(raw).map_err(|e| e.to_string()),
                    };
                    parsed
                        .and_then(|d| {
                            if d.is_zero() {
                                Err("must be longer than zero".to_owned())
                            } else {
                                Ok(d)
                            }
                        })
                        .map_err(|reason| ConfigError { name, reason })
                }
            }
        };
        let admin = match (lookup("ADMIN_EMAIL"), lookup("ADMIN_PASSWORD")) {
            (Some(email), Some(password)) => Some((email, password)),
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError {
                    name: "ADMIN_PASSWORD",
                    reason: "must be set with ADMIN_EMAIL".to_owned(),
                });
            }
            (None, Some(_)) => {
                return Err(ConfigError {
                    name: "ADMIN_EMAIL",
                    reason: "must be set with ADMIN_PASSWORD".to_owned(),
                });
            }
        };
        if let Some(secret) = lookup("JWT_SECRET")
            && secret.len() < 32
        {
            return Err(ConfigError {
                name: "JWT_SECRET",
                reason: "must be at least 32 bytes".to_owned(),
            });
        }
        Ok(Self {
            jwt_secret: lookup("JWT_SECRET"),
            jwt_expires_in: duration("JWT_EXPIRES_IN", Duration::from_secs(15 * 60))?,
            jwt_refresh_expires_in: duration("JWT_REFRESH_EXPIRES_IN", Duration::from_secs(7 * 24 * 3600))?,
            cookie_secure: parse(&lookup, "COOKIE_SECURE", true)?,
            admin,
            media_dir: lookup("MEDIA_DIR").unwrap_or_else(|| "data/media".to_owned()).into(),
            s3: match lookup("S3_BUCKET") {
                None => None,
                Some(bucket) => {
                    let required = |name: &'static str| {
                        lookup(name).ok_or(ConfigError {
                            name,
                            reason: "must be set with S3_BUCKET".to_owned(),
                        })
                    };
                    Some(crate::images::S3Config {
                        endpoint: lookup("S3_ENDPOINT"),
                        region: lookup("S3_REGION").unwrap_or_else(|| "us-east-1".to_owned()),
                        access_key_id: required("S3_ACCESS_KEY_ID")?,
                        secret_access_key: required("S3_SECRET_ACCESS_KEY")?,
                        public_base_url: required("S3_PUBLIC_BASE_URL")?,
                        path_style: parse(&lookup, "S3_PATH_STYLE", false)?,
                        bucket,
                    })
                }
            },
            auth_rate_limit_per_minute: parse(&lookup, "AUTH_RATE_LIMIT_PER_MINUTE", 20u32)?,
            trust_forwarded_for: parse(&lookup, "TRUST_X_FORWARDED_FOR", false)?,
            metrics_token: lookup("METRICS_TOKEN").filter(|t| !t.trim().is_empty()),
            currency: parse(&lookup, "STORE_CURRENCY", commerce_core::domain::Currency::USD)?,
            payment_window: duration("PAYMENT_WINDOW", Duration::from_secs(30 * 60))?,
            shipping: commerce_core::services::FlatRateShipping {
                fee: parse(&lookup, "SHIPPING_FLAT_FEE", 599i64)?,
                free_from: match lookup("SHIPPING_FREE_FROM").as_deref().map(str::trim) {
                    Some("none") => None,
                    _ => Some(parse(&lookup, "SHIPPING_FREE_FROM", 5_000i64)?),
                },
            },
            tax_rate_bps: parse(&lookup, "TAX_RATE_BPS", 0i64)?,
            stripe_secret_key: lookup("STRIPE_SECRET_KEY"),
            stripe_webhook_secret: lookup("STRIPE_WEBHOOK_SECRET"),
            stripe_api_base: lookup("STRIPE_API_BASE"),
            maintenance_interval: Duration::from_secs(parse(&lookup, "MAINTENANCE_INTERVAL_SECS", 60u64)?.max(1)),
            seed_demo_products: lookup("SEED_DEMO_PRODUCTS")
                .map(|raw| {
                    raw.trim().parse::<usize>().map_err(|e| ConfigError {
                        name: "SEED_DEMO_PRODUCTS",
                        reason: e.to_string(),
                    })
                })
                .transpose()?,
            host: parse(&lookup, "HOST", IpAddr::from([0, 0, 0, 0]))?,
            port: parse(&lookup, "PORT", 8080)?,
            database_url: lookup("DATABASE_URL"),
            database_max_connections: parse(&lookup, "DATABASE_MAX_CONNECTIONS", 16u32)?.max(1),
            mongo_uri: lookup("MONGO_URI"),
            mongo_db: lookup("MONGO_DB").unwrap_or_else(|| "commerce".to_owned()),
            // Checked as the rate limiter will open it (so `rediss://`, which this build cannot
            // speak, is refused here rather than at the first sign-in).
            redis_url: match lookup("REDIS_URL") {
                Some(url) => match redis::Client::open(url.as_str()) {
                    Ok(_) => Some(url),
                    Err(e) => {
                        return Err(ConfigError {
                            name: "REDIS_URL",
                            reason: format!("not a usable Redis URL (redis://host:6379): {e}"),
                        });
                    }
                },
                None => None,
            },
            max_body_bytes: parse(&lookup, "MAX_BODY_BYTES", 1024 * 1024)?,
            max_upload_bytes: parse(&lookup, "MAX_UPLOAD_BYTES", 6 * 1024 * 1024)?,
            page_cache_mib: parse(&lookup, "PAGE_CACHE_MIB", 16)?,
            log_format,
            shutdown_grace: Duration::from_secs(parse(&lookup, "SHUTDOWN_GRACE_SECS", 20)?),
        })
    }

    /// The engine settings this configuration implies.
    ///
    /// # Errors
    /// `Validation` when the JWT secret is unusable.
    pub fn commerce_config(&self) -> commerce_core::Result<commerce_core::CommerceConfig> {
        let mut tokens = match &self.jwt_secret {
            Some(secret) => commerce_core::services::TokenConfig::new(secret.as_bytes().to_vec())?,
            None => commerce_core::services::TokenConfig::ephemeral(),
        };
        tokens.access_ttl = self.jwt_expires_in;
        tokens.refresh_ttl = self.jwt_refresh_expires_in;
        let mut config = commerce_core::CommerceConfig {
            tokens,
            ..commerce_core::CommerceConfig::default()
        };
        config.cart.currency = self.currency;
        config.checkout.currency = self.currency;
        config.checkout.payment_window = self.payment_window;
        config.checkout.shipping = std::sync::Arc::new(self.shipping);
        config.checkout.tax = std::sync::Arc::new(commerce_core::services::PercentageTax {
            basis_points: self.tax_rate_bps,
        });
        Ok(config)
    }

    /// Defaults for tests and embedders: in memory, port 8080.
    pub fn in_memory() -> Self {
        Self::from_lookup(|_| None).unwrap_or_else(|_| unreachable!("defaults always parse"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_prints_no_secret() {
        let env = [
            ("DATABASE_URL", "postgres://app:db-pass-1@db.internal:5432/commerce"),
            (
                "MONGO_URI",
                "mongodb://catalog:mongo-pass-2@mongo.internal/?authSource=admin",
            ),
            ("REDIS_URL", "redis://:redis-pass-3@cache.internal:6379"),
            ("JWT_SECRET", "jwt-secret-4-jwt-secret-4-jwt-secret-4"),
            ("ADMIN_EMAIL", "root@shop.example"),
            ("ADMIN_PASSWORD", "admin-pass-5"),
            ("METRICS_TOKEN", "metrics-token-6"),
            ("STRIPE_SECRET_KEY", "sk_test_stripe7"),
            ("STRIPE_WEBHOOK_SECRET", "whsec_stripe8"),
            ("S3_BUCKET", "media"),
            ("S3_ACCESS_KEY_ID", "AKIAKEY9"),
            ("S3_SECRET_ACCESS_KEY", "s3-secret-10"),
            ("S3_PUBLIC_BASE_URL", "https://cdn.shop.example"),
        ];
        let config =
            Config::from_lookup(|k| env.iter().find(|(name, _)| *name == k).map(|(_, v)| (*v).to_owned())).unwrap();
        let printed = format!("{config:?}");
        for secret in [
            "db-pass-1",
            "mongo-pass-2",
            "redis-pass-3",
            "jwt-secret-4",
            "admin-pass-5",
            "metrics-token-6",
            "sk_test_stripe7",
            "whsec_stripe8",
            "s3-secret-10",
        ] {
            assert!(!printed.contains(secret), "{secret} printed: {printed}");
        }
        // What is not secret stays readable.
        for shown in [
            "db.internal:5432/commerce",
            "mongo.internal",
            "cache.internal",
            "root@shop.example",
            "media",
        ] {
            assert!(printed.contains(shown), "{shown} missing: {printed}");
        }
    }

    #[test]
    fn defaults_and_overrides() {
        let c = Config::in_memory();
        assert_eq!(c.port, 8080);
        assert!(c.database_url.is_none() && c.mongo_uri.is_none());
        assert_eq!((c.max_body_bytes, c.max_upload_bytes), (1024 * 1024, 6 * 1024 * 1024));
        let c = Config::from_lookup(|k| (k == "PORT").then(|| "9000".to_owned())).unwrap();
        assert_eq!(c.port, 9000);
    }

    #[test]
    fn redis_urls_are_checked_as_the_limiter_opens_them() {
        let with = |url: &str| {
            let url = url.to_owned();
            Config::from_lookup(move |k| (k == "REDIS_URL").then(|| url.clone()))
        };
        assert_eq!(
            with("redis://cache:6379").unwrap().redis_url.as_deref(),
            Some("redis://cache:6379")
        );
        for bad in ["http://cache:6379", "cache:6379", "rediss://cache:6379"] {
            assert_eq!(with(bad).unwrap_err().name, "REDIS_URL", "{bad}");
        }
    }

    #[test]
    fn durations_accept_seconds_and_units() {
        let c = Config::from_lookup(|k| match k {
            "JWT_EXPIRES_IN" => Some("900".to_owned()),
            "JWT_REFRESH_EXPIRES_IN" => Some("7d".to_owned()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.jwt_expires_in, Duration::from_secs(900));
        assert_eq!(c.jwt_refresh_expires_in, Duration::from_secs(7 * 86_400));
        let err = Config::from_lookup(|k| (k == "JWT_EXPIRES_IN").then(|| "soon".to_owned())).unwrap_err();
        assert_eq!(err.name, "JWT_EXPIRES_IN");
        let err = Config::from_lookup(|k| (k == "JWT_SECRET").then(|| "short".to_owned())).unwrap_err();
        assert_eq!(err.name, "JWT_SECRET");
        let err = Config::from_lookup(|k| (k == "ADMIN_EMAIL").then(|| "a@b.co".to_owned())).unwrap_err();
        assert_eq!(err.name, "ADMIN_PASSWORD");
    }

    #[test]
    fn malformed_variable_is_named() {
        let err = Config::from_lookup(|k| (k == "PORT").then(|| "eighty".to_owned())).unwrap_err();
        assert_eq!(err.name, "PORT");
        let err = Config::from_lookup(|k| (k == "LOG_FORMAT").then(|| "xml".to_owned())).unwrap_err();
        assert_eq!(err.name, "LOG_FORMAT");
    }
}
