//! `/api/v1/auth`: register, login, refresh-token, logout.

use chrono::{DateTime, Utc};
use commerce_core::Commerce;
use commerce_core::services::{NewAccount, Principal, Session};
use poem_openapi::param::{Cookie, Header};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde::Deserialize;

use super::ApiTags;
use super::types::UserView;
use crate::JsonBody;
use crate::problem::ApiError;

/// Name of the httpOnly refresh-token cookie.
pub const REFRESH_COOKIE: &str = "refresh_token";
const COOKIE_PATH: &str = "/api/v1/auth";

/// Registration form.
#[derive(Debug, Object, Deserialize)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct RegisterRequest {
    /// Sign-in email (case-insensitive, unique).
    pub email: String,
    /// 8 to 128 characters.
    pub password: String,
    /// Given name.
    pub first_name: String,
    /// Family name.
    pub last_name: String,
    /// Phone (optional).
    pub phone: Option<String>,
}

/// Credentials.
#[derive(Debug, Object, Deserialize)]
pub struct LoginRequest {
    /// Sign-in email.
    pub email: String,
    /// Password.
    pub password: String,
}

/// A refresh token sent in the body by non-browser clients (browsers send the cookie).
#[derive(Debug, Object, Deserialize, Default)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct RefreshRequest {
    /// The refresh token; when absent, the `refresh_token` cookie is used.
    pub refresh_token: Option<String>,
}

/// A new session.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct AuthResponse {
    /// The signed-in user.
    pub user: UserView,
    /// Bearer token for `Authorization: Bearer ...`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// When the access token expires.
    pub expires_at: DateTime<Utc>,
    /// Single-use token for `POST /api/v1/auth/refresh-token` (also set as an httpOnly,
    /// SameSite=Strict cookie). Each use returns a new one; re-using an old one signs out
    /// every session of its family.
    pub refresh_token: String,
    /// When the refresh token expires.
    pub refresh_expires_at: DateTime<Utc>,
}

/// A new session with its refresh cookie.
#[derive(Debug, ApiResponse)]
pub enum SessionResponse {
    /// Signed in; `Set-Cookie` carries the refresh token (httpOnly, SameSite=Strict).
    #[oai(status = 200)]
    Ok(Json<AuthResponse>, #[oai(header = "Set-Cookie")] String),
}

/// A new account's first session with its refresh cookie.
#[derive(Debug, ApiResponse)]
pub enum RegisteredResponse {
    /// Account created and signed in; `Set-Cookie` carries the refresh token.
    #[oai(status = 201)]
    Created(Json<AuthResponse>, #[oai(header = "Set-Cookie")] String),
}

/// Signed out.
#[derive(Debug, ApiResponse)]
pub enum LogoutResponse {
    /// The session's refresh tokens are revoked and the cookie cleared.
    #[oai(status = 204)]
    Done(#[oai(header = "Set-Cookie")] String),
}

/// Registration and sessions.
pub struct AuthApi {
    commerce: Commerce,
    secure_cookie: bool,
}

impl AuthApi {
    /// `secure_cookie` adds `Secure` to the refresh cookie (turn off only for plain-HTTP localhost).
    pub fn new(commerce: Commerce, secure_cookie: bool) -> Self {
        Self {
            commerce,
            secure_cookie,
        }
    }

    fn cookie(&self, value: &str, max_age: i64) -> String {
        let secure = if self.secure_cookie { "; Secure" } else { "" };
        format!("{REFRESH_COOKIE}={value}; Path={COOKIE_PATH}; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}")
    }

    fn session(&self, s: Session) -> (Json<AuthResponse>, String) {
        let now = Utc::now();
        let cookie = self.cookie(&s.refresh_token, (s.refresh_expires_at - now).num_seconds().max(0));
        let body = AuthResponse {
            user: s.user.into(),
            expires_in: (s.access.expires_at - now).num_seconds().max(0),
            access_token: s.access.token,
            token_type: "Bearer".to_owned(),
            expires_at: s.access.expires_at,
            refresh_token: s.refresh_token,
            refresh_expires_at: s.refresh_expires_at,
        };
        (Json(body), cookie)
    }

    /// Folds a guest cart into the signed-in user's. A failure is logged, never fatal to the
    /// sign-in itself: the guest cart stays where it was.
    async fn merge_cart(&self, session: &Session, token: Option<String>) {
        let Some(token) = token.filter(|t| !t.trim().is_empty()) else {
            return;
        };
        let who = Principal {
            user_id: session.user.id,
            role: session.user.role,
        };
        if let Err(e) = self.commerce.carts().merge_guest_cart(&token, &who).await {
            tracing::warn!(user = %who.user_id, error = %e, "guest cart not merged");
        }
    }

    fn presented_token(body: RefreshRequest, cookie: Option<String>) -> Result<String, ApiError> {
        body.refresh_token
            .filter(|t| !t.is_empty())
            .or(cookie.filter(|t| !t.is_empty()))
            .ok_or_else(|| ApiError::from(commerce_core::Error::Unauthorized("no refresh token sent".into())))
    }
}

#[OpenApi(prefix_path = "/api/v1/auth", tag = "ApiTags::Auth")]
impl AuthApi {
    /// Create a customer account and sign in. Unknown fields (such as `role`) are ignored:
    /// every new account is a customer.
    #[oai(path = "/register", method = "post", operation_id = "register")]
    async fn register(
        &self,
        body: JsonBody<RegisterRequest>,
        /// A guest's cart token: the guest cart becomes the new account's cart.
        #[oai(name = "X-Cart-Token")]
        cart_token: Header<Option<String>>,
    ) -> Result<RegisteredResponse, ApiError> {
        let r = body.0;
        let session = self
            .commerce
            .accounts()
            .register(NewAccount {
                email: r.email,
                password: r.password,
                first_name: r.first_name,
                last_name: r.last_name,
                phone: r.phone,
            })
            .await?;
        self.merge_cart(&session, cart_token.0).await;
        let (json, cookie) = self.session(session);
        Ok(RegisteredResponse::Created(json, cookie))
    }

    /// Sign in with email and password. A wrong password and an unknown email get the same
    /// 401 after the same work; a suspended account gets 403.
    #[oai(path = "/login", method = "post", operation_id = "login")]
    async fn login(
        &self,
        body: JsonBody<LoginRequest>,
        /// A guest's cart token: its items are added to the user's cart (quantities add up,
        /// per-line limits apply).
        #[oai(name = "X-Cart-Token")]
        cart_token: Header<Option<String>>,
    ) -> Result<SessionResponse, ApiError> {
        let session = self.commerce.accounts().login(&body.0.email, &body.0.password).await?;
        self.merge_cart(&session, cart_token.0).await;
        let (json, cookie) = self.session(session);
        Ok(SessionResponse::Ok(json, cookie))
    }

    /// Exchange a refresh token (body or cookie) for a new session. The token is single-use:
    /// the answer carries its replacement.
    #[oai(path = "/refresh-token", method = "post", operation_id = "refreshToken")]
    async fn refresh(
        &self,
        body: JsonBody<RefreshRequest>,
        #[oai(name = "refresh_token")] cookie: Cookie<Option<String>>,
    ) -> Result<SessionResponse, ApiError> {
        let token = Self::presented_token(body.0, cookie.0)?;
        let session = self.commerce.accounts().refresh(&token).await?;
        let (json, cookie) = self.session(session);
        Ok(SessionResponse::Ok(json, cookie))
    }

    /// Sign out: revoke the refresh token's session family and clear the cookie. Idempotent.
    #[oai(path = "/logout", method = "post", operation_id = "logout")]
    async fn logout(
        &self,
        body: JsonBody<RefreshRequest>,
        #[oai(name = "refresh_token")] cookie: Cookie<Option<String>>,
    ) -> Result<LogoutResponse, ApiError> {
        if let Ok(token) = Self::presented_token(body.0, cookie.0) {
            self.commerce.accounts().logout(&token).await?;
        }
        Ok(LogoutResponse::Done(self.cookie("", 0)))
    }
}
