use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::Result;
use crate::domain::{
    Address, AddressFields, AddressId, Email, Page, PageRequest, ProfileUpdate, RefreshToken, Role, Rotation,
    TokenFamilyId, User, UserFilter, UserId, UserStatus,
};

/// User accounts.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait UserStore: Send + Sync {
    /// Stores a new user.
    ///
    /// # Errors
    /// `Conflict { code: "email_taken" }` when a user with the same (lower-cased) email exists.
    async fn insert_user(&self, user: &User) -> Result<()>;

    /// The user with this id.
    ///
    /// # Errors
    /// `NotFound { entity: "user" }`.
    async fn get_user(&self, id: UserId) -> Result<User>;

    /// The user with this email, if any.
    async fn find_user_by_email(&self, email: &Email) -> Result<Option<User>>;

    /// Applies the given profile fields and bumps `updated_at`; returns the user as stored.
    ///
    /// # Errors
    /// `NotFound { entity: "user" }`.
    async fn update_profile(&self, id: UserId, update: &ProfileUpdate, now: DateTime<Utc>) -> Result<User>;

    /// Sets the status.
    ///
    /// # Errors
    /// `NotFound { entity: "user" }`.
    async fn set_user_status(&self, id: UserId, status: UserStatus, now: DateTime<Utc>) -> Result<User>;

    /// Sets the role.
    ///
    /// # Errors
    /// `NotFound { entity: "user" }`.
    async fn set_user_role(&self, id: UserId, role: Role, now: DateTime<Utc>) -> Result<User>;

    /// Replaces the password hash.
    ///
    /// # Errors
    /// `NotFound { entity: "user" }`.
    async fn set_password_hash(&self, id: UserId, hash: &str, now: DateTime<Utc>) -> Result<()>;

    /// Users matching the filter, oldest first.
    async fn list_users(&self, filter: &UserFilter, page: PageRequest) -> Result<Page<User>>;
}

/// Saved addresses. Every method is scoped to the owner: another user's address is `NotFound`.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait AddressStore: Send + Sync {
    /// Stores an address. Atomically: if it is the default (or the user's first), every other
    /// address of the user stops being the default. Returns it as stored.
    ///
    /// # Errors
    /// None beyond storage.
    async fn insert_address(&self, address: &Address) -> Result<Address>;

    /// The user's addresses, default first, then oldest first.
    async fn list_addresses(&self, user: UserId) -> Result<Vec<Address>>;

    /// One of the user's addresses.
    ///
    /// # Errors
    /// `NotFound { entity: "address" }`, also when it belongs to someone else.
    async fn get_address(&self, user: UserId, id: AddressId) -> Result<Address>;

    /// Replaces the postal fields.
    ///
    /// # Errors
    /// `NotFound { entity: "address" }`, also when it belongs to someone else.
    async fn update_address(&self, user: UserId, id: AddressId, fields: &AddressFields) -> Result<Address>;

    /// Deletes it; if it was the default, the oldest remaining address becomes the default.
    ///
    /// # Errors
    /// `NotFound { entity: "address" }`, also when it belongs to someone else.
    async fn delete_address(&self, user: UserId, id: AddressId) -> Result<()>;

    /// Makes it the user's only default, atomically.
    ///
    /// # Errors
    /// `NotFound { entity: "address" }`, also when it belongs to someone else.
    async fn set_default_address(&self, user: UserId, id: AddressId) -> Result<Address>;
}

/// Refresh tokens, kept only as hashes, grouped in families (one family per sign-in).
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait TokenStore: Send + Sync {
    /// Stores the first token of a new family.
    async fn insert_refresh_token(&self, token: &RefreshToken) -> Result<()>;

    /// Atomically spends the token with hash `presented` and stores `next` in its family.
    /// - current, unexpired, family not revoked -> `Rotated` (and `next` is stored);
    /// - already spent, family not revoked -> the family is revoked, `Reused`;
    /// - unknown, expired, or family revoked -> `Invalid` (nothing stored).
    ///
    /// Of two concurrent rotations of one token exactly one gets `Rotated`.
    /// `next.family_id` is ignored: the presented token's family is used.
    async fn rotate_refresh_token(&self, presented: &str, next: &RefreshToken, now: DateTime<Utc>) -> Result<Rotation>;

    /// Revokes a family (logout). Revoking an unknown or revoked family is not an error.
    async fn revoke_token_family(&self, family: TokenFamilyId) -> Result<()>;

    /// Revokes every family of a user (suspension, password change).
    async fn revoke_user_tokens(&self, user: UserId) -> Result<()>;

    /// The family and user of a current (unspent, unexpired, unrevoked) token, if any.
    async fn find_refresh_token(&self, hash: &str, now: DateTime<Utc>) -> Result<Option<RefreshToken>>;
}
