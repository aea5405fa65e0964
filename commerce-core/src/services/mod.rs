//! Services: every business rule lives here, over the ports.

mod accounts;
mod passwords;
mod tokens;

pub use accounts::{AccountService, AddressInput, NewAccount, ProfileChanges, Session};
pub use passwords::{HashCost, PasswordHasher};
pub use tokens::{AccessToken, Principal, TokenConfig, TokenIssuer, hash_refresh};
