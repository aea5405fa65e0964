//! Accounts: registration, sign-in, token rotation, profiles, addresses, user administration.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::passwords::PasswordHasher;
use super::tokens::{AccessToken, Principal, TokenIssuer, hash_refresh};
use crate::domain::{
    Address, AddressFields, AddressId, Email, Page, PageRequest, Password, ProfileUpdate, RefreshToken, Role, Rotation,
    TokenFamilyId, User, UserFilter, UserId, UserStatus,
};
use crate::ports::{AddressStore, TokenStore, UserStore};
use crate::{Error, Result, Validator};

/// What a visitor sends to register. Raw text: the service validates every field.
#[derive(Debug, Clone, Default)]
pub struct NewAccount {
    /// Sign-in email.
    pub email: String,
    /// 8 to 128 characters.
    pub password: String,
    /// Given name.
    pub first_name: String,
    /// Family name.
    pub last_name: String,
    /// Optional phone.
    pub phone: Option<String>,
}

/// Profile fields to change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct ProfileChanges {
    /// New given name.
    pub first_name: Option<String>,
    /// New family name.
    pub last_name: Option<String>,
    /// New phone; `Some(None)` clears it.
    pub phone: Option<Option<String>>,
}

/// An address as sent by a client, validated by the service.
#[derive(Debug, Clone, Default)]
pub struct AddressInput {
    /// The postal fields.
    pub fields: AddressFields,
    /// Make it the default.
    pub is_default: bool,
}

/// A signed-in session: the user, a short-lived access token and a rotating refresh token.
#[derive(Debug, Clone)]
pub struct Session {
    /// The user.
    pub user: User,
    /// Bearer token for API calls.
    pub access: AccessToken,
    /// Opaque token to get the next session; shown once, stored only as a hash.
    pub refresh_token: String,
    /// When the refresh token expires.
    pub refresh_expires_at: DateTime<Utc>,
}

const GENERIC_LOGIN_FAILURE: &str = "invalid email or password";

/// Accounts use cases.
#[derive(Clone)]
pub struct AccountService {
    users: Arc<dyn UserStore>,
    addresses: Arc<dyn AddressStore>,
    sessions: Arc<dyn TokenStore>,
    hasher: PasswordHasher,
    tokens: TokenIssuer,
}

fn check_name(v: &mut Validator, field: &str, value: &str) -> String {
    let value = value.trim();
    v.ensure(!value.is_empty(), field, "must not be empty");
    v.ensure(value.chars().count() <= 100, field, "must be at most 100 characters");
    value.to_owned()
}

fn check_phone(v: &mut Validator, field: &str, value: Option<&str>) -> Option<String> {
    let value = value.map(str::trim).filter(|p| !p.is_empty())?;
    let digits = value.chars().filter(char::is_ascii_digit).count();
    let ok = (5..=20).contains(&digits) && value.chars().all(|c| c.is_ascii_digit() || " +-().".contains(c));
    v.ensure(ok, field, "must be a phone number of 5 to 20 digits");
    Some(value.to_owned())
}

fn check_text(v: &mut Validator, field: &str, value: &str, required: bool, max: usize) -> String {
    let value = value.trim();
    if required {
        v.ensure(!value.is_empty(), field, "must not be empty");
    }
    v.ensure(
        value.chars().count() <= max,
        field,
        format!("must be at most {max} characters"),
    );
    value.to_owned()
}

fn check_optional(v: &mut Validator, field: &str, value: Option<&str>, max: usize) -> Option<String> {
    let value = value.map(str::trim).filter(|s| !s.is_empty())?;
    v.ensure(
        value.chars().count() <= max,
        field,
        format!("must be at most {max} characters"),
    );
    Some(value.to_owned())
}

/// Validates and normalizes postal fields (country upper-cased ISO 3166-1 alpha-2).
fn check_address(input: &AddressFields) -> Result<AddressFields> {
    let mut v = Validator::new();
    let country = input.country.trim().to_ascii_uppercase();
    v.ensure(
        country.len() == 2 && country.chars().all(|c| c.is_ascii_uppercase()),
        "country",
        "must be a two-letter ISO 3166-1 country code",
    );
    let fields = AddressFields {
        label: check_optional(&mut v, "label", input.label.as_deref(), 50),
        first_name: check_name(&mut v, "firstName", &input.first_name),
        last_name: check_name(&mut v, "lastName", &input.last_name),
        line1: check_text(&mut v, "line1", &input.line1, true, 200),
        line2: check_optional(&mut v, "line2", input.line2.as_deref(), 200),
        city: check_text(&mut v, "city", &input.city, true, 100),
        state: check_optional(&mut v, "state", input.state.as_deref(), 100),
        postal_code: check_text(&mut v, "postalCode", &input.postal_code, true, 20),
        country,
        phone: check_phone(&mut v, "phone", input.phone.as_deref()),
    };
    v.finish()?;
    Ok(fields)
}

impl AccountService {
    /// Wires the service.
    pub fn new(
        users: Arc<dyn UserStore>,
        addresses: Arc<dyn AddressStore>,
        sessions: Arc<dyn TokenStore>,
        hasher: PasswordHasher,
        tokens: TokenIssuer,
    ) -> Self {
        Self {
            users,
            addresses,
            sessions,
            hasher,
            tokens,
        }
    }

    /// The token issuer (the host verifies bearer tokens with it).
    pub fn tokens(&self) -> &TokenIssuer {
        &self.tokens
    }

    /// Verifies a bearer access token.
    ///
    /// # Errors
    /// `Unauthorized` when it is invalid, tampered, of another algorithm or expired.
    pub fn authenticate(&self, access_token: &str) -> Result<Principal> {
        self.tokens.verify_access(access_token)
    }

    async fn start_session(&self, user: User, now: DateTime<Utc>) -> Result<Session> {
        let access = self.tokens.issue_access(user.id, user.role, now)?;
        let (refresh_token, token_hash) = self.tokens.mint_refresh();
        let refresh_expires_at =
            now + chrono::Duration::from_std(self.tokens.config().refresh_ttl).map_err(Error::unexpected)?;
        self.sessions
            .insert_refresh_token(&RefreshToken {
                token_hash,
                family_id: TokenFamilyId::new(),
                user_id: user.id,
                expires_at: refresh_expires_at,
                created_at: now,
            })
            .await?;
        Ok(Session {
            user,
            access,
            refresh_token,
            refresh_expires_at,
        })
    }

    /// Creates a customer account and signs it in.
    ///
    /// # Errors
    /// `Validation` naming every bad field; `Conflict { code: "email_taken" }`.
    pub async fn register(&self, input: NewAccount) -> Result<Session> {
        let mut v = Validator::new();
        let email = v.check("email", Email::parse(&input.email));
        let password = v.check("password", Password::parse(&input.password));
        let first_name = check_name(&mut v, "firstName", &input.first_name);
        let last_name = check_name(&mut v, "lastName", &input.last_name);
        let phone = check_phone(&mut v, "phone", input.phone.as_deref());
        v.finish()?;
        let (Some(email), Some(password)) = (email, password) else {
            return Err(Error::unexpected_msg("validator passed without values"));
        };
        let now = Utc::now();
        let user = User {
            id: UserId::new(),
            email,
            password_hash: self.hasher.hash(&password).await?,
            first_name,
            last_name,
            phone,
            role: Role::Customer,
            status: UserStatus::Active,
            created_at: now,
            updated_at: now,
        };
        self.users.insert_user(&user).await?;
        self.start_session(user, now).await
    }

    /// Signs in. An unknown email and a wrong password cost the same and answer the same.
    ///
    /// # Errors
    /// `Unauthorized` with one generic message; `Forbidden` when the account is suspended
    /// (only after the password matched).
    pub async fn login(&self, email: &str, password: &str) -> Result<Session> {
        let user = match Email::parse(email) {
            Ok(email) => self.users.find_user_by_email(&email).await?,
            Err(_) => None,
        };
        let Some(user) = user else {
            self.hasher.verify_decoy(password).await?;
            return Err(Error::Unauthorized(GENERIC_LOGIN_FAILURE.into()));
        };
        if !self.hasher.verify(password, &user.password_hash).await? {
            return Err(Error::Unauthorized(GENERIC_LOGIN_FAILURE.into()));
        }
        if user.status == UserStatus::Suspended {
            return Err(Error::Forbidden("this account is suspended".into()));
        }
        self.start_session(user, Utc::now()).await
    }

    /// Spends a refresh token for a new session. Re-use of a spent token revokes its whole
    /// family (someone else holds a copy).
    ///
    /// # Errors
    /// `Unauthorized` for an unknown, expired, revoked or re-used token; `Forbidden` when the
    /// account is suspended.
    pub async fn refresh(&self, refresh_token: &str) -> Result<Session> {
        let now = Utc::now();
        let (next_token, next_hash) = self.tokens.mint_refresh();
        let refresh_expires_at =
            now + chrono::Duration::from_std(self.tokens.config().refresh_ttl).map_err(Error::unexpected)?;
        let next = RefreshToken {
            token_hash: next_hash,
            family_id: TokenFamilyId::new(),
            user_id: UserId::new(),
            expires_at: refresh_expires_at,
            created_at: now,
        };
        match self
            .sessions
            .rotate_refresh_token(&hash_refresh(refresh_token), &next, now)
            .await?
        {
            Rotation::Rotated { family_id, user_id } => {
                let user = self.users.get_user(user_id).await?;
                if user.status == UserStatus::Suspended {
                    self.sessions.revoke_token_family(family_id).await?;
                    return Err(Error::Forbidden("this account is suspended".into()));
                }
                let access = self.tokens.issue_access(user.id, user.role, now)?;
                Ok(Session {
                    user,
                    access,
                    refresh_token: next_token,
                    refresh_expires_at,
                })
            }
            Rotation::Reused { family_id, user_id } => {
                tracing::warn!(%family_id, %user_id, "refresh token re-used: session family revoked");
                Err(Error::Unauthorized(
                    "refresh token is no longer valid; sign in again".into(),
                ))
            }
            Rotation::Invalid => Err(Error::Unauthorized(
                "refresh token is no longer valid; sign in again".into(),
            )),
        }
    }

    /// Signs out: revokes the refresh token's family. Unknown tokens are ignored (idempotent).
    ///
    /// # Errors
    /// Storage failures only.
    pub async fn logout(&self, refresh_token: &str) -> Result<()> {
        if let Some(token) = self
            .sessions
            .find_refresh_token(&hash_refresh(refresh_token), Utc::now())
            .await?
        {
            self.sessions.revoke_token_family(token.family_id).await?;
        }
        Ok(())
    }

    /// The caller's own account.
    ///
    /// # Errors
    /// `NotFound { entity: "user" }` when the account was deleted.
    pub async fn profile(&self, who: &Principal) -> Result<User> {
        self.users.get_user(who.user_id).await
    }

    /// Changes the caller's own name or phone. Role, status and email are not changeable here.
    ///
    /// # Errors
    /// `Validation` naming every bad field.
    pub async fn update_profile(&self, who: &Principal, changes: ProfileChanges) -> Result<User> {
        let mut v = Validator::new();
        let update = ProfileUpdate {
            first_name: changes
                .first_name
                .as_deref()
                .map(|n| check_name(&mut v, "firstName", n)),
            last_name: changes.last_name.as_deref().map(|n| check_name(&mut v, "lastName", n)),
            phone: changes.phone.map(|p| check_phone(&mut v, "phone", p.as_deref())),
        };
        v.finish()?;
        self.users.update_profile(who.user_id, &update, Utc::now()).await
    }

    /// The caller's addresses, default first.
    ///
    /// # Errors
    /// Storage failures only.
    pub async fn addresses(&self, who: &Principal) -> Result<Vec<Address>> {
        self.addresses.list_addresses(who.user_id).await
    }

    /// One of the caller's addresses.
    ///
    /// # Errors
    /// `NotFound { entity: "address" }`, also for someone else's.
    pub async fn address(&self, who: &Principal, id: AddressId) -> Result<Address> {
        self.addresses.get_address(who.user_id, id).await
    }

    /// Saves a new address; the first one becomes the default.
    ///
    /// # Errors
    /// `Validation` naming every bad field.
    pub async fn add_address(&self, who: &Principal, input: AddressInput) -> Result<Address> {
        let fields = check_address(&input.fields)?;
        let address = Address {
            id: AddressId::new(),
            user_id: who.user_id,
            fields,
            is_default: input.is_default,
            created_at: Utc::now(),
        };
        self.addresses.insert_address(&address).await
    }

    /// Replaces an address's postal fields, and makes it the default when asked.
    ///
    /// # Errors
    /// `Validation`; `NotFound { entity: "address" }`, also for someone else's.
    pub async fn update_address(&self, who: &Principal, id: AddressId, input: AddressInput) -> Result<Address> {
        let fields = check_address(&input.fields)?;
        let updated = self.addresses.update_address(who.user_id, id, &fields).await?;
        if input.is_default && !updated.is_default {
            return self.addresses.set_default_address(who.user_id, id).await;
        }
        Ok(updated)
    }

    /// Deletes an address.
    ///
    /// # Errors
    /// `NotFound { entity: "address" }`, also for someone else's.
    pub async fn delete_address(&self, who: &Principal, id: AddressId) -> Result<()> {
        self.addresses.delete_address(who.user_id, id).await
    }

    /// Makes an address the default.
    ///
    /// # Errors
    /// `NotFound { entity: "address" }`, also for someone else's.
    pub async fn set_default_address(&self, who: &Principal, id: AddressId) -> Result<Address> {
        self.addresses.set_default_address(who.user_id, id).await
    }

    /// Users for the admin list (staff only).
    ///
    /// # Errors
    /// `Forbidden` for customers.
    pub async fn list_users(&self, who: &Principal, filter: UserFilter, page: PageRequest) -> Result<Page<User>> {
        who.require_staff()?;
        self.users.list_users(&filter, page).await
    }

    /// One user (staff only).
    ///
    /// # Errors
    /// `Forbidden` for customers; `NotFound { entity: "user" }`.
    pub async fn user(&self, who: &Principal, id: UserId) -> Result<User> {
        who.require_staff()?;
        self.users.get_user(id).await
    }

    /// Suspends or reactivates a user (staff only). Suspension revokes every refresh token;
    /// access tokens already issued stay valid until they expire (`JWT_EXPIRES_IN`).
    /// Admins cannot change superadmins, and nobody can suspend themselves.
    ///
    /// # Errors
    /// `Forbidden` as above; `NotFound { entity: "user" }`.
    pub async fn set_status(&self, who: &Principal, id: UserId, status: UserStatus) -> Result<User> {
        who.require_staff()?;
        if id == who.user_id {
            return Err(Error::Forbidden("you cannot change your own status".into()));
        }
        let target = self.users.get_user(id).await?;
        if target.role == Role::Superadmin && who.role != Role::Superadmin {
            return Err(Error::Forbidden("only a superadmin can change a superadmin".into()));
        }
        let user = self.users.set_user_status(id, status, Utc::now()).await?;
        if status == UserStatus::Suspended {
            self.sessions.revoke_user_tokens(id).await?;
        }
        Ok(user)
    }

    /// Changes a user's role (superadmin only; not their own, so the store never loses its
    /// last superadmin by accident). Revokes the user's refresh tokens so the new role takes
    /// effect at the next sign-in or when the current access token expires.
    ///
    /// # Errors
    /// `Forbidden`; `NotFound { entity: "user" }`.
    pub async fn set_role(&self, who: &Principal, id: UserId, role: Role) -> Result<User> {
        who.require_superadmin()?;
        if id == who.user_id {
            return Err(Error::Forbidden("you cannot change your own role".into()));
        }
        let user = self.users.set_user_role(id, role, Utc::now()).await?;
        self.sessions.revoke_user_tokens(id).await?;
        Ok(user)
    }

    /// Makes sure a superadmin with this email exists (start-up `ADMIN_EMAIL`/`ADMIN_PASSWORD`
    /// and the CLI). Idempotent: an existing account is promoted and reactivated, its password
    /// left alone.
    ///
    /// # Errors
    /// `Validation` for a bad email or password.
    pub async fn ensure_superadmin(&self, email: &str, password: &str) -> Result<User> {
        let mut v = Validator::new();
        let email = v.check("ADMIN_EMAIL", Email::parse(email));
        let password = v.check("ADMIN_PASSWORD", Password::parse(password));
        v.finish()?;
        let (Some(email), Some(password)) = (email, password) else {
            return Err(Error::unexpected_msg("validator passed without values"));
        };
        let now = Utc::now();
        if let Some(user) = self.users.find_user_by_email(&email).await? {
            let user = if user.role == Role::Superadmin {
                user
            } else {
                self.users.set_user_role(user.id, Role::Superadmin, now).await?
            };
            return if user.status == UserStatus::Active {
                Ok(user)
            } else {
                self.users.set_user_status(user.id, UserStatus::Active, now).await
            };
        }
        let user = User {
            id: UserId::new(),
            email,
            password_hash: self.hasher.hash(&password).await?,
            first_name: "Store".to_owned(),
            last_name: "Owner".to_owned(),
            phone: None,
            role: Role::Superadmin,
            status: UserStatus::Active,
            created_at: now,
            updated_at: now,
        };
        match self.users.insert_user(&user).await {
            Ok(()) => Ok(user),
            // Another instance created it at the same moment: take theirs.
            Err(Error::Conflict { .. }) => self
                .users
                .find_user_by_email(&user.email)
                .await?
                .ok_or(Error::NotFound { entity: "user" }),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    //! Rules of the service with mocked ports: what it asks the stores to do, and what it
    //! refuses to do without asking them at all.
    use std::sync::Arc;

    use mockall::predicate::eq;

    use super::*;
    use crate::ports::{MockAddressStore, MockTokenStore, MockUserStore};
    use crate::services::{HashCost, TokenConfig};

    fn service(users: MockUserStore, sessions: MockTokenStore) -> AccountService {
        AccountService::new(
            Arc::new(users),
            Arc::new(MockAddressStore::new()),
            Arc::new(sessions),
            PasswordHasher::new(HashCost::insecure_for_tests()).unwrap(),
            TokenIssuer::new(TokenConfig::new(vec![1u8; 32]).unwrap()),
        )
    }

    fn principal(role: Role) -> Principal {
        Principal {
            user_id: UserId::new(),
            role,
        }
    }

    fn user(role: Role, status: UserStatus) -> User {
        let now = Utc::now();
        User {
            id: UserId::new(),
            email: Email::parse("someone@example.com").unwrap(),
            password_hash: String::new(),
            first_name: "S".into(),
            last_name: "O".into(),
            phone: None,
            role,
            status,
            created_at: now,
            updated_at: now,
        }
    }

    #[tokio::test]
    async fn invalid_registration_touches_no_store() {
        // No expectations: any store call would panic.
        let svc = service(MockUserStore::new(), MockTokenStore::new());
        let err = svc
            .register(NewAccount {
                email: "nope".into(),
                password: "short".into(),
                ..NewAccount::default()
            })
            .await
            .unwrap_err();
        let Error::Validation(fields) = err else {
            panic!("expected validation, got {err:?}")
        };
        let names: Vec<_> = fields.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(names, ["email", "password", "firstName", "lastName"]);
    }

    #[tokio::test]
    async fn suspending_revokes_every_session_of_the_user() {
        let target = user(Role::Customer, UserStatus::Active);
        let id = target.id;
        let mut users = MockUserStore::new();
        users
            .expect_get_user()
            .with(eq(id))
            .return_once(move |_| Ok(target.clone()));
        let suspended = user(Role::Customer, UserStatus::Suspended);
        users
            .expect_set_user_status()
            .withf(move |uid, status, _| *uid == id && *status == UserStatus::Suspended)
            .return_once(move |_, _, _| Ok(suspended));
        let mut sessions = MockTokenStore::new();
        sessions
            .expect_revoke_user_tokens()
            .with(eq(id))
            .times(1)
            .returning(|_| Ok(()));
        let svc = service(users, sessions);
        let out = svc
            .set_status(&principal(Role::Admin), id, UserStatus::Suspended)
            .await
            .unwrap();
        assert_eq!(out.status, UserStatus::Suspended);
    }

    #[tokio::test]
    async fn customers_and_admins_cannot_grant_roles() {
        let svc = service(MockUserStore::new(), MockTokenStore::new());
        for role in [Role::Customer, Role::Admin] {
            let err = svc
                .set_role(&principal(role), UserId::new(), Role::Admin)
                .await
                .unwrap_err();
            assert!(matches!(err, Error::Forbidden(_)), "{role:?}: {err:?}");
        }
        let me = principal(Role::Superadmin);
        assert!(matches!(
            svc.set_role(&me, me.user_id, Role::Customer).await,
            Err(Error::Forbidden(_))
        ));
    }

    #[tokio::test]
    async fn refresh_of_a_suspended_user_revokes_the_family_and_is_forbidden() {
        let target = user(Role::Customer, UserStatus::Suspended);
        let (id, family) = (target.id, TokenFamilyId::new());
        let mut sessions = MockTokenStore::new();
        sessions.expect_rotate_refresh_token().returning(move |_, _, _| {
            Ok(Rotation::Rotated {
                family_id: family,
                user_id: id,
            })
        });
        sessions
            .expect_revoke_token_family()
            .with(eq(family))
            .times(1)
            .returning(|_| Ok(()));
        let mut users = MockUserStore::new();
        users.expect_get_user().return_once(move |_| Ok(target));
        let err = service(users, sessions).refresh("token").await.unwrap_err();
        assert!(matches!(err, Error::Forbidden(_)), "{err:?}");
    }

    #[tokio::test]
    async fn storage_failures_propagate_as_storage_errors() {
        let mut users = MockUserStore::new();
        users
            .expect_find_user_by_email()
            .returning(|_| Err(Error::unexpected_msg("db down")));
        let err = service(users, MockTokenStore::new())
            .login("a@example.com", "password-1")
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Unexpected(_)), "{err:?}");
    }
}
