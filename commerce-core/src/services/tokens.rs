//! Access tokens (JWT, HS256) and opaque refresh tokens (random, stored only as SHA-256).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use quick_cache::sync::Cache;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::{Role, UserId};
use crate::{Error, Result};

/// Who is calling, as proven by a valid access token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Principal {
    /// The user.
    pub user_id: UserId,
    /// Their role when the token was issued.
    pub role: Role,
}

impl Principal {
    /// Staff (admin or superadmin) only.
    ///
    /// # Errors
    /// `Forbidden` for customers.
    pub fn require_staff(&self) -> Result<()> {
        if self.role.is_staff() {
            Ok(())
        } else {
            Err(Error::Forbidden("staff only".into()))
        }
    }

    /// Superadmins only.
    ///
    /// # Errors
    /// `Forbidden` for everyone else.
    pub fn require_superadmin(&self) -> Result<()> {
        if self.role == Role::Superadmin {
            Ok(())
        } else {
            Err(Error::Forbidden("superadmin only".into()))
        }
    }
}

/// Signing settings.
#[derive(Clone)]
pub struct TokenConfig {
    /// HS256 secret (`JWT_SECRET`), at least 32 bytes.
    pub secret: Vec<u8>,
    /// Access-token lifetime (`JWT_EXPIRES_IN`).
    pub access_ttl: Duration,
    /// Refresh-token lifetime (`JWT_REFRESH_EXPIRES_IN`).
    pub refresh_ttl: Duration,
    /// `iss` claim.
    pub issuer: String,
}

impl std::fmt::Debug for TokenConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenConfig")
            .field("secret", &"***")
            .field("access_ttl", &self.access_ttl)
            .field("refresh_ttl", &self.refresh_ttl)
            .field("issuer", &self.issuer)
            .finish()
    }
}

impl TokenConfig {
    /// Shortest accepted secret.
    pub const MIN_SECRET_BYTES: usize = 32;

    /// Settings with a 15-minute access token and a 7-day refresh token.
    ///
    /// # Errors
    /// `Validation { field: "JWT_SECRET" }` when the secret is shorter than 32 bytes.
    pub fn new(secret: impl Into<Vec<u8>>) -> Result<Self> {
        let secret = secret.into();
        if secret.len() < Self::MIN_SECRET_BYTES {
            return Err(Error::invalid("JWT_SECRET", "must be at least 32 bytes"));
        }
        Ok(Self {
            secret,
            access_ttl: Duration::from_secs(15 * 60),
            refresh_ttl: Duration::from_secs(7 * 24 * 3600),
            issuer: "commerce".to_owned(),
        })
    }

    /// A random secret, for the embedded default (tokens die with the process).
    pub fn ephemeral() -> Self {
        let mut secret = vec![0u8; 48];
        os_random(&mut secret);
        Self {
            secret,
            access_ttl: Duration::from_secs(15 * 60),
            refresh_ttl: Duration::from_secs(7 * 24 * 3600),
            issuer: "commerce".to_owned(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    role: Role,
    iss: String,
    iat: i64,
    exp: i64,
}

/// Issues and verifies access tokens; mints refresh tokens.
#[derive(Clone)]
pub struct TokenIssuer {
    config: TokenConfig,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    /// Tokens whose signature and claims were checked (see [`TokenIssuer::verify_access`]).
    verified: Arc<Cache<String, Verified>>,
}

/// What a verified access token proves, and until when.
#[derive(Clone, Copy)]
struct Verified {
    principal: Principal,
    /// The `exp` claim (seconds since the epoch).
    expires: u64,
}

/// Verified access tokens kept (~300 bytes each): more than the clients active within a token's
/// lifetime on one host is not needed for the hit rate, and bounds the memory (~5 MiB).
const VERIFIED_TOKENS: usize = 16_384;

/// A freshly minted access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessToken {
    /// The JWT.
    pub token: String,
    /// When it stops being accepted.
    pub expires_at: DateTime<Utc>,
}

impl TokenIssuer {
    /// An issuer for these settings.
    pub fn new(config: TokenConfig) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        // Only HS256 is accepted: `alg: none` and every other algorithm are refused.
        validation.algorithms = vec![Algorithm::HS256];
        validation.set_issuer(&[config.issuer.as_str()]);
        validation.set_required_spec_claims(&["exp", "sub", "iss"]);
        validation.leeway = 0;
        Self {
            encoding: EncodingKey::from_secret(&config.secret),
            decoding: DecodingKey::from_secret(&config.secret),
            validation,
            config,
            verified: Arc::new(Cache::new(VERIFIED_TOKENS)),
        }
    }

    /// The settings.
    pub fn config(&self) -> &TokenConfig {
        &self.config
    }

    /// Signs an access token for the user.
    ///
    /// # Errors
    /// `Unexpected` when signing fails.
    pub fn issue_access(&self, user: UserId, role: Role, now: DateTime<Utc>) -> Result<AccessToken> {
        let ttl = chrono::Duration::from_std(self.config.access_ttl).map_err(Error::unexpected)?;
        let expires_at = now + ttl;
        let claims = Claims {
            sub: user.to_string(),
            role,
            iss: self.config.issuer.clone(),
            iat: now.timestamp(),
            exp: expires_at.timestamp(),
        };
        let token =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).map_err(Error::unexpected)?;
        Ok(AccessToken { token, expires_at })
    }

    /// Checks signature, algorithm, issuer and expiry.
    ///
    /// A token is decoded and its signature checked once; the very same token (compared whole)
    /// is then recognised from memory until it expires, which is still checked on every use.
    /// HMAC, base64 and JSON were ~7 % of an authenticated request's CPU; the answer for a given
    /// token cannot change while it is unexpired (the secret is the issuer's for its life), so
    /// nothing is relaxed. Refused tokens are not kept.
    ///
    /// # Errors
    /// `Unauthorized` for any invalid, tampered or expired token.
    pub fn verify_access(&self, token: &str) -> Result<Principal> {
        self.verify_access_at(token, jsonwebtoken::get_current_timestamp())
    }

    /// [`Self::verify_access`] at `now` (seconds since the epoch). The signature check itself
    /// reads the clock, so `now` only moves the expiry check of a kept token (for tests).
    fn verify_access_at(&self, token: &str, now: u64) -> Result<Principal> {
        // As jsonwebtoken with no leeway: valid up to and including the second `exp`.
        let expired = || Error::Unauthorized("invalid or expired access token".into());
        if let Some(kept) = self.verified.get(token) {
            if kept.expires >= now {
                return Ok(kept.principal);
            }
            self.verified.remove(token);
            return Err(expired());
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).map_err(|_| expired())?;
        let user_id = data
            .claims
            .sub
            .parse()
            .map_err(|_| Error::Unauthorized("invalid access token".into()))?;
        let verified = Verified {
            principal: Principal {
                user_id,
                role: data.claims.role,
            },
            expires: u64::try_from(data.claims.exp).map_err(|_| expired())?,
        };
        if verified.expires < now {
            return Err(expired());
        }
        self.verified.insert(token.to_owned(), verified);
        Ok(verified.principal)
    }

    /// A new opaque refresh token (256 random bits, base64url) and its storage hash.
    pub fn mint_refresh(&self) -> (String, String) {
        let mut bytes = [0u8; 32];
        os_random(&mut bytes);
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let hash = hash_refresh(&token);
        (token, hash)
    }
}

/// Fills `bytes` from the operating system's generator. Its failing means the machine cannot make
/// secrets at all, and nothing that needs one may go on.
fn os_random(bytes: &mut [u8]) {
    if let Err(e) = getrandom::fill(bytes) {
        panic!("the operating system's random generator failed: {e}");
    }
}

/// SHA-256 (hex) of a refresh token: what the store keeps.
pub fn hash_refresh(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer() -> TokenIssuer {
        TokenIssuer::new(TokenConfig::new(vec![7u8; 32]).unwrap())
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(TokenConfig::new(b"short".to_vec()).is_err());
    }

    #[test]
    fn access_token_round_trip() {
        let t = issuer();
        let user = UserId::new();
        let tok = t.issue_access(user, Role::Admin, Utc::now()).unwrap();
        assert_eq!(
            t.verify_access(&tok.token).unwrap(),
            Principal {
                user_id: user,
                role: Role::Admin
            }
        );
    }

    #[test]
    fn expired_tampered_wrong_key_and_alg_none_are_refused() {
        let t = issuer();
        let user = UserId::new();
        let old = t
            .issue_access(user, Role::Customer, Utc::now() - chrono::Duration::hours(1))
            .unwrap();
        assert!(matches!(t.verify_access(&old.token), Err(Error::Unauthorized(_))));

        let good = t.issue_access(user, Role::Customer, Utc::now()).unwrap().token;
        // Verified once, so kept: a token that differs from it is still checked in full.
        assert_eq!(t.verify_access(&good).unwrap().role, Role::Customer);
        let mut parts: Vec<&str> = good.split('.').collect();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let forged_claims = b64.encode(
            serde_json::json!({"sub": user.to_string(), "role": "superadmin", "iss": "commerce", "iat": 0, "exp": 4_000_000_000i64})
                .to_string(),
        );
        parts[1] = &forged_claims;
        assert!(t.verify_access(&parts.join(".")).is_err(), "tampered payload");

        let other = TokenIssuer::new(TokenConfig::new(vec![9u8; 32]).unwrap());
        assert!(other.verify_access(&good).is_err(), "wrong key");

        let none_header = b64.encode(r#"{"alg":"none","typ":"JWT"}"#);
        let unsigned = format!("{none_header}.{forged_claims}.");
        assert!(t.verify_access(&unsigned).is_err(), "alg none");
    }

    #[test]
    fn a_kept_token_is_refused_once_it_expires() {
        let t = issuer();
        let user = UserId::new();
        let tok = t.issue_access(user, Role::Customer, Utc::now()).unwrap();
        let exp = u64::try_from(tok.expires_at.timestamp()).unwrap();
        let now = jsonwebtoken::get_current_timestamp();
        let principal = Principal {
            user_id: user,
            role: Role::Customer,
        };
        assert_eq!(t.verify_access_at(&tok.token, now).unwrap(), principal);
        assert_eq!(t.verified.len(), 1, "a verified token is kept");
        // Valid through the second `exp` names, as jsonwebtoken's own check without leeway.
        assert_eq!(t.verify_access_at(&tok.token, exp).unwrap(), principal);
        assert!(matches!(
            t.verify_access_at(&tok.token, exp + 1),
            Err(Error::Unauthorized(_))
        ));
        assert_eq!(t.verified.len(), 0, "an expired token is dropped");
        // Decoded again (the signature is still good), the expiry check still refuses it.
        assert!(t.verify_access_at(&tok.token, exp + 1).is_err());
        assert_eq!(t.verified.len(), 0, "a refused token is not kept");
    }

    #[test]
    fn refresh_tokens_are_random_and_hashed() {
        let t = issuer();
        let (a, ha) = t.mint_refresh();
        let (b, _) = t.mint_refresh();
        assert_ne!(a, b);
        assert_eq!(ha, hash_refresh(&a));
        assert_eq!(ha.len(), 64);
        assert!(!ha.contains(&a));
    }
}
