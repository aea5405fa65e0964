//! The accounts ports on PostgreSQL: users, saved addresses, refresh-token families
//! (tables from `migrations/0001_accounts.sql`).
//!
//! Rows are read into private `*Row` structs and converted to domain types, re-validating what
//! the database cannot (email syntax, role and status names): a bad value read back is
//! `Unexpected`, never a panic. Methods that write more than one row run in one transaction.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use commerce_core::domain::{
    Address, AddressFields, AddressId, Email, Page, PageRequest, ProfileUpdate, RefreshToken, Role, Rotation,
    TokenFamilyId, User, UserFilter, UserId, UserStatus,
};
use commerce_core::ports::{AddressStore, TokenStore, UserStore};
use commerce_core::{Error, Result};
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use crate::PgStore;
use crate::error::{StorageResult, UniqueKey, conflict_or_storage};

// Column lists shared by the queries below (macros, so `concat!` can build `&'static str` SQL).
macro_rules! user_columns {
    () => {
        "id, email, password_hash, first_name, last_name, phone, role, status, created_at, updated_at"
    };
}

macro_rules! address_columns {
    () => {
        "id, user_id, label, first_name, last_name, line1, line2, city, state, postal_code, country, \
         phone, is_default, created_at"
    };
}

/// The `list_users` filter; `$1` role, `$2` status, `$3` escaped ILIKE pattern, each optional.
macro_rules! user_filter {
    () => {
        r"WHERE ($1::text IS NULL OR role = $1)
            AND ($2::text IS NULL OR status = $2)
            AND ($3::text IS NULL OR email ILIKE $3 ESCAPE '\')"
    };
}

const USER_KEYS: &[UniqueKey] = &[
    UniqueKey {
        constraint: "users_email_key",
        code: "email_taken",
        message: "an account with this email already exists",
    },
    UniqueKey {
        constraint: "users_pkey",
        code: "user_exists",
        message: "a user with this id exists",
    },
];

const ADDRESS_KEYS: &[UniqueKey] = &[UniqueKey {
    constraint: "addresses_pkey",
    code: "address_exists",
    message: "an address with this id exists",
}];

const TOKEN_KEYS: &[UniqueKey] = &[UniqueKey {
    constraint: "refresh_tokens_pkey",
    code: "token_exists",
    message: "this token is already stored",
}];

fn user_not_found() -> Error {
    Error::NotFound { entity: "user" }
}

fn address_not_found() -> Error {
    Error::NotFound { entity: "address" }
}

/// A `commerce.users` row.
#[derive(sqlx::FromRow)]
struct UserRow {
    id: Uuid,
    email: String,
    password_hash: String,
    first_name: String,
    last_name: String,
    phone: Option<String>,
    role: String,
    status: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<UserRow> for User {
    type Error = Error;

    fn try_from(row: UserRow) -> Result<Self> {
        // The messages name the user, not the bad value: emails are personal data.
        let email = Email::parse(&row.email)
            .map_err(|_| Error::unexpected_msg(format!("commerce.users {}: stored email is invalid", row.id)))?;
        let role = Role::parse(&row.role)
            .ok_or_else(|| Error::unexpected_msg(format!("commerce.users {}: unknown role {:?}", row.id, row.role)))?;
        let status = UserStatus::parse(&row.status).ok_or_else(|| {
            Error::unexpected_msg(format!("commerce.users {}: unknown status {:?}", row.id, row.status))
        })?;
        Ok(Self {
            id: UserId(row.id),
            email,
            password_hash: row.password_hash,
            first_name: row.first_name,
            last_name: row.last_name,
            phone: row.phone,
            role,
            status,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

/// A user row of `list_users`, with the number of users matching the filter.
#[derive(sqlx::FromRow)]
struct CountedUserRow {
    #[sqlx(flatten)]
    user: UserRow,
    total: i64,
}

/// A `commerce.addresses` row.
#[derive(sqlx::FromRow)]
struct AddressRow {
    id: Uuid,
    user_id: Uuid,
    label: Option<String>,
    first_name: String,
    last_name: String,
    line1: String,
    line2: Option<String>,
    city: String,
    state: Option<String>,
    postal_code: String,
    country: String,
    phone: Option<String>,
    is_default: bool,
    created_at: DateTime<Utc>,
}

impl From<AddressRow> for Address {
    fn from(row: AddressRow) -> Self {
        Self {
            id: AddressId(row.id),
            user_id: UserId(row.user_id),
            fields: AddressFields {
                label: row.label,
                first_name: row.first_name,
                last_name: row.last_name,
                line1: row.line1,
                line2: row.line2,
                city: row.city,
                state: row.state,
                postal_code: row.postal_code,
                country: row.country,
                phone: row.phone,
            },
            is_default: row.is_default,
            created_at: row.created_at,
        }
    }
}

/// A `commerce.refresh_tokens` row (without `spent_at`).
#[derive(sqlx::FromRow)]
struct TokenRow {
    token_hash: String,
    family_id: Uuid,
    user_id: Uuid,
    expires_at: DateTime<Utc>,
    created_at: DateTime<Utc>,
}

impl From<TokenRow> for RefreshToken {
    fn from(row: TokenRow) -> Self {
        Self {
            token_hash: row.token_hash,
            family_id: TokenFamilyId(row.family_id),
            user_id: UserId(row.user_id),
            expires_at: row.expires_at,
            created_at: row.created_at,
        }
    }
}

/// The state of a presented token and its family, read under lock by `rotate_refresh_token`.
#[derive(sqlx::FromRow)]
struct PresentedRow {
    family_id: Uuid,
    user_id: Uuid,
    expires_at: DateTime<Utc>,
    spent_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
}

/// `%needle%` for `ILIKE ... ESCAPE '\'`, with the needle's own `\`, `%` and `_` matched literally.
fn contains_pattern(needle: &str) -> String {
    let mut pattern = String::with_capacity(needle.len() + 2);
    pattern.push('%');
    for c in needle.chars() {
        if matches!(c, '\\' | '%' | '_') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

fn to_i64(n: u64) -> Result<i64> {
    i64::try_from(n).map_err(Error::unexpected)
}

#[async_trait]
impl UserStore for PgStore {
    async fn insert_user(&self, user: &User) -> Result<()> {
        sqlx::query(concat!(
            "INSERT INTO commerce.users (",
            user_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        ))
        .bind(user.id.0)
        .bind(user.email.as_str())
        .bind(&user.password_hash)
        .bind(&user.first_name)
        .bind(&user.last_name)
        .bind(&user.phone)
        .bind(user.role.as_str())
        .bind(user.status.as_str())
        .bind(user.created_at)
        .bind(user.updated_at)
        .execute(self.db())
        .await
        .map_err(|e| conflict_or_storage(e, USER_KEYS))?;
        Ok(())
    }

    async fn get_user(&self, id: UserId) -> Result<User> {
        sqlx::query_as::<_, UserRow>(concat!(
            "SELECT ",
            user_columns!(),
            " FROM commerce.users WHERE id = $1"
        ))
        .bind(id.0)
        .fetch_optional(self.db())
        .await
        .storage()?
        .ok_or_else(user_not_found)?
        .try_into()
    }

    async fn find_user_by_email(&self, email: &Email) -> Result<Option<User>> {
        sqlx::query_as::<_, UserRow>(concat!(
            "SELECT ",
            user_columns!(),
            " FROM commerce.users WHERE email = $1"
        ))
        .bind(email.as_str())
        .fetch_optional(self.db())
        .await
        .storage()?
        .map(User::try_from)
        .transpose()
    }

    async fn update_profile(&self, id: UserId, update: &ProfileUpdate, now: DateTime<Utc>) -> Result<User> {
        // `$4` says whether the phone is being set (`Some(None)` clears it, `None` keeps it).
        sqlx::query_as::<_, UserRow>(concat!(
            "UPDATE commerce.users
                SET first_name = COALESCE($2, first_name),
                    last_name = COALESCE($3, last_name),
                    phone = CASE WHEN $4 THEN $5 ELSE phone END,
                    updated_at = $6
              WHERE id = $1
          RETURNING ",
            user_columns!()
        ))
        .bind(id.0)
        .bind(update.first_name.as_deref())
        .bind(update.last_name.as_deref())
        .bind(update.phone.is_some())
        .bind(update.phone.as_ref().and_then(Option::as_deref))
        .bind(now)
        .fetch_optional(self.db())
        .await
        .storage()?
        .ok_or_else(user_not_found)?
        .try_into()
    }

    async fn set_user_status(&self, id: UserId, status: UserStatus, now: DateTime<Utc>) -> Result<User> {
        sqlx::query_as::<_, UserRow>(concat!(
            "UPDATE commerce.users SET status = $2, updated_at = $3 WHERE id = $1 RETURNING ",
            user_columns!()
        ))
        .bind(id.0)
        .bind(status.as_str())
        .bind(now)
        .fetch_optional(self.db())
        .await
        .storage()?
        .ok_or_else(user_not_found)?
        .try_into()
    }

    async fn set_user_role(&self, id: UserId, role: Role, now: DateTime<Utc>) -> Result<User> {
        sqlx::query_as::<_, UserRow>(concat!(
            "UPDATE commerce.users SET role = $2, updated_at = $3 WHERE id = $1 RETURNING ",
            user_columns!()
        ))
        .bind(id.0)
        .bind(role.as_str())
        .bind(now)
        .fetch_optional(self.db())
        .await
        .storage()?
        .ok_or_else(user_not_found)?
        .try_into()
    }

    async fn set_password_hash(&self, id: UserId, hash: &str, now: DateTime<Utc>) -> Result<()> {
        let done = sqlx::query("UPDATE commerce.users SET password_hash = $2, updated_at = $3 WHERE id = $1")
            .bind(id.0)
            .bind(hash)
            .bind(now)
            .execute(self.db())
            .await
            .storage()?;
        if done.rows_affected() == 0 {
            Err(user_not_found())
        } else {
            Ok(())
        }
    }

    async fn list_users(&self, filter: &UserFilter, page: PageRequest) -> Result<Page<User>> {
        let role = filter.role.map(Role::as_str);
        let status = filter.status.map(UserStatus::as_str);
        let pattern = filter.email_contains.as_deref().map(contains_pattern);
        // One query gives the page and the total (a window count over the whole match) ...
        let rows = sqlx::query_as::<_, CountedUserRow>(concat!(
            "SELECT ",
            user_columns!(),
            ", COUNT(*) OVER () AS total FROM commerce.users ",
            user_filter!(),
            " ORDER BY created_at, id LIMIT $4 OFFSET $5"
        ))
        .bind(role)
        .bind(status)
        .bind(pattern.as_deref())
        .bind(i64::from(page.limit()))
        .bind(to_i64(page.offset())?)
        .fetch_all(self.db())
        .await
        .storage()?;
        let total = match rows.first() {
            Some(row) => row.total,
            // ... except past the last page, where no row carries it: count separately.
            None if page.offset() > 0 => {
                sqlx::query_scalar::<_, i64>(concat!("SELECT COUNT(*) FROM commerce.users ", user_filter!()))
                    .bind(role)
                    .bind(status)
                    .bind(pattern.as_deref())
                    .fetch_one(self.db())
                    .await
                    .storage()?
            }
            None => 0,
        };
        let total = u64::try_from(total).map_err(Error::unexpected)?;
        let users = rows
            .into_iter()
            .map(|row| User::try_from(row.user))
            .collect::<Result<Vec<_>>>()?;
        Ok(Page::new(users, total, page))
    }
}

/// Locks the user's row until the end of the transaction, so that writes moving a user's
/// default address run one after the other (the unique index `addresses_one_default_idx`
/// would otherwise fail the loser of a race). `FOR NO KEY UPDATE` does not block foreign-key
/// checks of rows being inserted for the user meanwhile.
async fn lock_owner(conn: &mut PgConnection, user: UserId) -> Result<()> {
    sqlx::query("SELECT 1 FROM commerce.users WHERE id = $1 FOR NO KEY UPDATE")
        .bind(user.0)
        .execute(conn)
        .await
        .storage()?;
    Ok(())
}

/// Clears the user's default address, if any.
async fn clear_default(conn: &mut PgConnection, user: UserId) -> Result<()> {
    sqlx::query("UPDATE commerce.addresses SET is_default = false WHERE user_id = $1 AND is_default")
        .bind(user.0)
        .execute(conn)
        .await
        .storage()?;
    Ok(())
}

#[async_trait]
impl AddressStore for PgStore {
    async fn insert_address(&self, address: &Address) -> Result<Address> {
        let mut conn = self.db().lease().await.storage()?;
        let mut tx = conn.begin().await.storage()?;
        lock_owner(&mut tx, address.user_id).await?;
        let has_any: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM commerce.addresses WHERE user_id = $1)")
            .bind(address.user_id.0)
            .fetch_one(&mut *tx)
            .await
            .storage()?;
        // The user's first address is the default even when not asked for.
        let is_default = address.is_default || !has_any;
        if is_default {
            clear_default(&mut tx, address.user_id).await?;
        }
        let f = &address.fields;
        let row = sqlx::query_as::<_, AddressRow>(concat!(
            "INSERT INTO commerce.addresses (",
            address_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING ",
            address_columns!()
        ))
        .bind(address.id.0)
        .bind(address.user_id.0)
        .bind(&f.label)
        .bind(&f.first_name)
        .bind(&f.last_name)
        .bind(&f.line1)
        .bind(&f.line2)
        .bind(&f.city)
        .bind(&f.state)
        .bind(&f.postal_code)
        .bind(&f.country)
        .bind(&f.phone)
        .bind(is_default)
        .bind(address.created_at)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| conflict_or_storage(e, ADDRESS_KEYS))?;
        tx.commit().await.storage()?;
        conn.finish();
        Ok(row.into())
    }

    async fn list_addresses(&self, user: UserId) -> Result<Vec<Address>> {
        let rows = sqlx::query_as::<_, AddressRow>(concat!(
            "SELECT ",
            address_columns!(),
            " FROM commerce.addresses WHERE user_id = $1 ORDER BY is_default DESC, created_at, id"
        ))
        .bind(user.0)
        .fetch_all(self.db())
        .await
        .storage()?;
        Ok(rows.into_iter().map(Address::from).collect())
    }

    async fn get_address(&self, user: UserId, id: AddressId) -> Result<Address> {
        sqlx::query_as::<_, AddressRow>(concat!(
            "SELECT ",
            address_columns!(),
            " FROM commerce.addresses WHERE id = $1 AND user_id = $2"
        ))
        .bind(id.0)
        .bind(user.0)
        .fetch_optional(self.db())
        .await
        .storage()?
        .map(Address::from)
        .ok_or_else(address_not_found)
    }

    async fn update_address(&self, user: UserId, id: AddressId, fields: &AddressFields) -> Result<Address> {
        sqlx::query_as::<_, AddressRow>(concat!(
            "UPDATE commerce.addresses
                SET label = $3, first_name = $4, last_name = $5, line1 = $6, line2 = $7, city = $8,
                    state = $9, postal_code = $10, country = $11, phone = $12
              WHERE id = $1 AND user_id = $2
          RETURNING ",
            address_columns!()
        ))
        .bind(id.0)
        .bind(user.0)
        .bind(&fields.label)
        .bind(&fields.first_name)
        .bind(&fields.last_name)
        .bind(&fields.line1)
        .bind(&fields.line2)
        .bind(&fields.city)
        .bind(&fields.state)
        .bind(&fields.postal_code)
        .bind(&fields.country)
        .bind(&fields.phone)
        .fetch_optional(self.db())
        .await
        .storage()?
        .map(Address::from)
        .ok_or_else(address_not_found)
    }

    async fn delete_address(&self, user: UserId, id: AddressId) -> Result<()> {
        let mut conn = self.db().lease().await.storage()?;
        let mut tx = conn.begin().await.storage()?;
        lock_owner(&mut tx, user).await?;
        let was_default: bool =
            sqlx::query_scalar("DELETE FROM commerce.addresses WHERE id = $1 AND user_id = $2 RETURNING is_default")
                .bind(id.0)
                .bind(user.0)
                .fetch_optional(&mut *tx)
                .await
                .storage()?
                .ok_or_else(address_not_found)?;
        if was_default {
            sqlx::query(
                "UPDATE commerce.addresses SET is_default = true
                  WHERE id = (SELECT id FROM commerce.addresses WHERE user_id = $1 ORDER BY created_at, id LIMIT 1)",
            )
            .bind(user.0)
            .execute(&mut *tx)
            .await
            .storage()?;
        }
        tx.commit().await.storage()?;
        conn.finish();
        Ok(())
    }

    async fn set_default_address(&self, user: UserId, id: AddressId) -> Result<Address> {
        let mut conn = self.db().lease().await.storage()?;
        let mut tx = conn.begin().await.storage()?;
        lock_owner(&mut tx, user).await?;
        // Clear first: the unique index is checked row by row, so one statement flipping both
        // rows could trip it. If the address is not the user's, the rollback undoes the clear.
        clear_default(&mut tx, user).await?;
        let row = sqlx::query_as::<_, AddressRow>(concat!(
            "UPDATE commerce.addresses SET is_default = true WHERE id = $1 AND user_id = $2 RETURNING ",
            address_columns!()
        ))
        .bind(id.0)
        .bind(user.0)
        .fetch_optional(&mut *tx)
        .await
        .storage()?
        .ok_or_else(address_not_found)?;
        tx.commit().await.storage()?;
        conn.finish();
        Ok(row.into())
    }
}

/// Inserts one token row.
async fn insert_token(
    conn: &mut PgConnection,
    token: &RefreshToken,
    family: TokenFamilyId,
    user: UserId,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO commerce.refresh_tokens (token_hash, family_id, user_id, expires_at, created_at)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&token.token_hash)
    .bind(family.0)
    .bind(user.0)
    .bind(token.expires_at)
    .bind(token.created_at)
    .execute(conn)
    .await
    .map_err(|e| conflict_or_storage(e, TOKEN_KEYS))?;
    Ok(())
}

#[async_trait]
impl TokenStore for PgStore {
    async fn insert_refresh_token(&self, token: &RefreshToken) -> Result<()> {
        // The family and its first token in one statement, committed without waiting for the WAL
        // flush (`synchronous_commit` off for its own implicit transaction): only the new
        // session's holder knows of it, so a database crash in the moment after the sign-in can
        // only cost that session, and its user signs in again. Any later synchronous commit (a
        // refresh of this token, a logout, an order) flushes it first. Rotations and revocations
        // stay synchronous: re-use detection depends on them.
        sqlx::query(
            "WITH lazy AS (SELECT set_config('synchronous_commit', 'off', true)),
                  family AS (
                      INSERT INTO commerce.token_families (id, user_id, created_at)
                      SELECT $2, $3, $5 FROM lazy
                      ON CONFLICT (id) DO NOTHING
                  )
             INSERT INTO commerce.refresh_tokens (token_hash, family_id, user_id, expires_at, created_at)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&token.token_hash)
        .bind(token.family_id.0)
        .bind(token.user_id.0)
        .bind(token.expires_at)
        .bind(token.created_at)
        .execute(self.db())
        .await
        .map_err(|e| conflict_or_storage(e, TOKEN_KEYS))?;
        Ok(())
    }

    async fn rotate_refresh_token(&self, presented: &str, next: &RefreshToken, now: DateTime<Utc>) -> Result<Rotation> {
        let mut conn = self.db().lease().await.storage()?;
        let mut tx = conn.begin().await.storage()?;
        // Lock the token and its family: a concurrent rotation of the same token waits here and
        // then reads the committed outcome (spent, or family revoked), so exactly one rotates.
        let row = sqlx::query_as::<_, PresentedRow>(
            "SELECT t.family_id, t.user_id, t.expires_at, t.spent_at, f.revoked_at
               FROM commerce.refresh_tokens t
               JOIN commerce.token_families f ON f.id = t.family_id
              WHERE t.token_hash = $1
                FOR NO KEY UPDATE",
        )
        .bind(presented)
        .fetch_optional(&mut *tx)
        .await
        .storage()?;
        let outcome = match row {
            None => Rotation::Invalid,
            Some(row) if row.revoked_at.is_some() => Rotation::Invalid,
            Some(row) => {
                let (family_id, user_id) = (TokenFamilyId(row.family_id), UserId(row.user_id));
                if row.spent_at.is_some() {
                    // Replay of a rotated token: assume theft and end the session (even when
                    // the replayed token has expired since, as the in-memory adapter does).
                    sqlx::query("UPDATE commerce.token_families SET revoked_at = $2 WHERE id = $1")
                        .bind(family_id.0)
                        .bind(now)
                        .execute(&mut *tx)
                        .await
                        .storage()?;
                    Rotation::Reused { family_id, user_id }
                } else if row.expires_at <= now {
                    Rotation::Invalid
                } else {
                    sqlx::query("UPDATE commerce.refresh_tokens SET spent_at = $2 WHERE token_hash = $1")
                        .bind(presented)
                        .bind(now)
                        .execute(&mut *tx)
                        .await
                        .storage()?;
                    insert_token(&mut tx, next, family_id, user_id).await?;
                    Rotation::Rotated { family_id, user_id }
                }
            }
        };
        // For `Invalid` nothing was written: committing just releases the locks.
        tx.commit().await.storage()?;
        conn.finish();
        Ok(outcome)
    }

    async fn revoke_token_family(&self, family: TokenFamilyId) -> Result<()> {
        // The port passes no clock: the database's transaction time stamps the revocation.
        sqlx::query("UPDATE commerce.token_families SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL")
            .bind(family.0)
            .execute(self.db())
            .await
            .storage()?;
        Ok(())
    }

    async fn revoke_user_tokens(&self, user: UserId) -> Result<()> {
        sqlx::query("UPDATE commerce.token_families SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL")
            .bind(user.0)
            .execute(self.db())
            .await
            .storage()?;
        Ok(())
    }

    async fn find_refresh_token(&self, hash: &str, now: DateTime<Utc>) -> Result<Option<RefreshToken>> {
        let row = sqlx::query_as::<_, TokenRow>(
            "SELECT t.token_hash, t.family_id, t.user_id, t.expires_at, t.created_at
               FROM commerce.refresh_tokens t
               JOIN commerce.token_families f ON f.id = t.family_id
              WHERE t.token_hash = $1 AND t.spent_at IS NULL AND t.expires_at > $2 AND f.revoked_at IS NULL",
        )
        .bind(hash)
        .bind(now)
        .fetch_optional(self.db())
        .await
        .storage()?;
        Ok(row.map(RefreshToken::from))
    }
}

#[cfg(test)]
mod tests {
    use super::contains_pattern;

    #[test]
    fn contains_pattern_escapes_wildcards() {
        assert_eq!(contains_pattern("ada"), "%ada%");
        assert_eq!(contains_pattern("a_b%c\\d"), r"%a\_b\%c\\d%");
        assert_eq!(contains_pattern(""), "%%");
    }
}
