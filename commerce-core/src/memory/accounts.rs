//! Accounts: users, addresses, refresh-token families.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{MemoryStore, read, write};
use crate::domain::{
    Address, AddressFields, AddressId, Email, Page, PageRequest, ProfileUpdate, RefreshToken, Role, Rotation,
    TokenFamilyId, User, UserFilter, UserId, UserStatus,
};
use crate::ports::{AddressStore, TokenStore, UserStore};
use crate::{Error, Result};

/// Users (unique email) and their addresses.
#[derive(Default)]
pub(super) struct Accounts {
    users: HashMap<UserId, User>,
    /// Lower-case email -> user.
    by_email: HashMap<String, UserId>,
    addresses: HashMap<AddressId, Address>,
}

impl Accounts {
    fn user_mut(&mut self, id: UserId) -> Result<&mut User> {
        self.users.get_mut(&id).ok_or(Error::NotFound { entity: "user" })
    }

    /// The user's addresses, default first, then oldest first.
    fn addresses_of(&self, user: UserId) -> Vec<&Address> {
        let mut list: Vec<&Address> = self.addresses.values().filter(|a| a.user_id == user).collect();
        list.sort_by(|a, b| {
            b.is_default
                .cmp(&a.is_default)
                .then(a.created_at.cmp(&b.created_at))
                .then(a.id.cmp(&b.id))
        });
        list
    }

    fn owned_address_mut(&mut self, user: UserId, id: AddressId) -> Result<&mut Address> {
        match self.addresses.get_mut(&id) {
            Some(a) if a.user_id == user => Ok(a),
            _ => Err(Error::NotFound { entity: "address" }),
        }
    }

    /// Makes `id` the user's only default.
    fn make_only_default(&mut self, user: UserId, id: AddressId) {
        for a in self.addresses.values_mut().filter(|a| a.user_id == user) {
            a.is_default = a.id == id;
        }
    }
}

#[async_trait]
impl UserStore for MemoryStore {
    async fn insert_user(&self, user: &User) -> Result<()> {
        let mut accounts = write(&self.inner.accounts)?;
        if accounts.by_email.contains_key(user.email.as_str()) {
            return Err(Error::conflict(
                "email_taken",
                "an account with this email already exists",
            ));
        }
        if accounts.users.contains_key(&user.id) {
            return Err(Error::conflict("user_exists", "a user with this id exists"));
        }
        accounts.by_email.insert(user.email.as_str().to_owned(), user.id);
        accounts.users.insert(user.id, user.clone());
        Ok(())
    }

    async fn get_user(&self, id: UserId) -> Result<User> {
        read(&self.inner.accounts)?
            .users
            .get(&id)
            .cloned()
            .ok_or(Error::NotFound { entity: "user" })
    }

    async fn find_user_by_email(&self, email: &Email) -> Result<Option<User>> {
        let accounts = read(&self.inner.accounts)?;
        Ok(accounts
            .by_email
            .get(email.as_str())
            .and_then(|id| accounts.users.get(id))
            .cloned())
    }

    async fn update_profile(&self, id: UserId, update: &ProfileUpdate, now: DateTime<Utc>) -> Result<User> {
        let mut accounts = write(&self.inner.accounts)?;
        let user = accounts.user_mut(id)?;
        if let Some(first) = &update.first_name {
            user.first_name.clone_from(first);
        }
        if let Some(last) = &update.last_name {
            user.last_name.clone_from(last);
        }
        if let Some(phone) = &update.phone {
            user.phone.clone_from(phone);
        }
        user.updated_at = now;
        Ok(user.clone())
    }

    async fn set_user_status(&self, id: UserId, status: UserStatus, now: DateTime<Utc>) -> Result<User> {
        let mut accounts = write(&self.inner.accounts)?;
        let user = accounts.user_mut(id)?;
        user.status = status;
        user.updated_at = now;
        Ok(user.clone())
    }

    async fn set_user_role(&self, id: UserId, role: Role, now: DateTime<Utc>) -> Result<User> {
        let mut accounts = write(&self.inner.accounts)?;
        let user = accounts.user_mut(id)?;
        user.role = role;
        user.updated_at = now;
        Ok(user.clone())
    }

    async fn set_password_hash(&self, id: UserId, hash: &str, now: DateTime<Utc>) -> Result<()> {
        let mut accounts = write(&self.inner.accounts)?;
        let user = accounts.user_mut(id)?;
        hash.clone_into(&mut user.password_hash);
        user.updated_at = now;
        Ok(())
    }

    async fn list_users(&self, filter: &UserFilter, page: PageRequest) -> Result<Page<User>> {
        let needle = filter.email_contains.as_deref().map(str::to_lowercase);
        let mut users: Vec<User> = {
            let accounts = read(&self.inner.accounts)?;
            accounts
                .users
                .values()
                .filter(|u| filter.role.is_none_or(|r| u.role == r))
                .filter(|u| filter.status.is_none_or(|s| u.status == s))
                .filter(|u| needle.as_deref().is_none_or(|n| u.email.as_str().contains(n)))
                .cloned()
                .collect()
        };
        users.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        Ok(Page::slice(users, page))
    }
}

#[async_trait]
impl AddressStore for MemoryStore {
    async fn insert_address(&self, address: &Address) -> Result<Address> {
        let mut accounts = write(&self.inner.accounts)?;
        if accounts.addresses.contains_key(&address.id) {
            return Err(Error::conflict("address_exists", "an address with this id exists"));
        }
        let first = !accounts.addresses.values().any(|a| a.user_id == address.user_id);
        let mut stored = address.clone();
        stored.is_default = address.is_default || first;
        if stored.is_default {
            for a in accounts.addresses.values_mut().filter(|a| a.user_id == address.user_id) {
                a.is_default = false;
            }
        }
        accounts.addresses.insert(stored.id, stored.clone());
        Ok(stored)
    }

    async fn list_addresses(&self, user: UserId) -> Result<Vec<Address>> {
        let accounts = read(&self.inner.accounts)?;
        Ok(accounts.addresses_of(user).into_iter().cloned().collect())
    }

    async fn get_address(&self, user: UserId, id: AddressId) -> Result<Address> {
        match read(&self.inner.accounts)?.addresses.get(&id) {
            Some(a) if a.user_id == user => Ok(a.clone()),
            _ => Err(Error::NotFound { entity: "address" }),
        }
    }

    async fn update_address(&self, user: UserId, id: AddressId, fields: &AddressFields) -> Result<Address> {
        let mut accounts = write(&self.inner.accounts)?;
        let address = accounts.owned_address_mut(user, id)?;
        address.fields = fields.clone();
        Ok(address.clone())
    }

    async fn delete_address(&self, user: UserId, id: AddressId) -> Result<()> {
        let mut accounts = write(&self.inner.accounts)?;
        let was_default = accounts.owned_address_mut(user, id)?.is_default;
        accounts.addresses.remove(&id);
        if was_default {
            // `addresses_of` puts defaults first; none is left, so the first is the oldest.
            let oldest = accounts.addresses_of(user).first().map(|a| a.id);
            if let Some(oldest) = oldest {
                accounts.make_only_default(user, oldest);
            }
        }
        Ok(())
    }

    async fn set_default_address(&self, user: UserId, id: AddressId) -> Result<Address> {
        let mut accounts = write(&self.inner.accounts)?;
        accounts.owned_address_mut(user, id)?;
        accounts.make_only_default(user, id);
        accounts
            .addresses
            .get(&id)
            .cloned()
            .ok_or(Error::NotFound { entity: "address" })
    }
}

/// A stored refresh token and whether it has been rotated away.
struct TokenRow {
    token: RefreshToken,
    spent: bool,
}

/// A sign-in session.
struct Family {
    user_id: UserId,
    revoked: bool,
}

/// Refresh tokens by hash, and their families.
#[derive(Default)]
pub(super) struct Tokens {
    tokens: HashMap<String, TokenRow>,
    families: HashMap<TokenFamilyId, Family>,
}

impl Tokens {
    fn revoke(&mut self, family: TokenFamilyId) {
        if let Some(f) = self.families.get_mut(&family) {
            f.revoked = true;
        }
    }
}

#[async_trait]
impl TokenStore for MemoryStore {
    async fn insert_refresh_token(&self, token: &RefreshToken) -> Result<()> {
        let mut tokens = write(&self.inner.tokens)?;
        if tokens.tokens.contains_key(&token.token_hash) {
            return Err(Error::conflict("token_exists", "this token is already stored"));
        }
        tokens.families.entry(token.family_id).or_insert(Family {
            user_id: token.user_id,
            revoked: false,
        });
        tokens.tokens.insert(
            token.token_hash.clone(),
            TokenRow {
                token: token.clone(),
                spent: false,
            },
        );
        Ok(())
    }

    async fn rotate_refresh_token(&self, presented: &str, next: &RefreshToken, now: DateTime<Utc>) -> Result<Rotation> {
        let mut tokens = write(&self.inner.tokens)?;
        let Some(row) = tokens.tokens.get(presented) else {
            return Ok(Rotation::Invalid);
        };
        let (family_id, user_id, spent, expired) = (
            row.token.family_id,
            row.token.user_id,
            row.spent,
            row.token.expires_at <= now,
        );
        let revoked = tokens.families.get(&family_id).is_none_or(|f| f.revoked);
        if revoked {
            return Ok(Rotation::Invalid);
        }
        if spent {
            // Replay of a rotated token: assume theft and end the session, even if it expired.
            tokens.revoke(family_id);
            return Ok(Rotation::Reused { family_id, user_id });
        }
        if expired {
            return Ok(Rotation::Invalid);
        }
        if tokens.tokens.contains_key(&next.token_hash) {
            return Err(Error::conflict("token_exists", "the next token is already stored"));
        }
        if let Some(row) = tokens.tokens.get_mut(presented) {
            row.spent = true;
        }
        let stored = RefreshToken {
            family_id,
            user_id,
            ..next.clone()
        };
        tokens.tokens.insert(
            stored.token_hash.clone(),
            TokenRow {
                token: stored,
                spent: false,
            },
        );
        Ok(Rotation::Rotated { family_id, user_id })
    }

    async fn revoke_token_family(&self, family: TokenFamilyId) -> Result<()> {
        write(&self.inner.tokens)?.revoke(family);
        Ok(())
    }

    async fn revoke_user_tokens(&self, user: UserId) -> Result<()> {
        let mut tokens = write(&self.inner.tokens)?;
        for f in tokens.families.values_mut().filter(|f| f.user_id == user) {
            f.revoked = true;
        }
        Ok(())
    }

    async fn find_refresh_token(&self, hash: &str, now: DateTime<Utc>) -> Result<Option<RefreshToken>> {
        let tokens = read(&self.inner.tokens)?;
        Ok(tokens
            .tokens
            .get(hash)
            .filter(|row| !row.spent && row.token.expires_at > now)
            .filter(|row| tokens.families.get(&row.token.family_id).is_some_and(|f| !f.revoked))
            .map(|row| row.token.clone()))
    }
}
