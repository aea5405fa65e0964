//! Services: every business rule lives here, over the ports.

mod accounts;
mod catalog;
mod inventory;
mod passwords;
mod tokens;

pub use accounts::{AccountService, AddressInput, NewAccount, ProfileChanges, Session};
pub use catalog::{
    CatalogPorts, CatalogService, CategoryInput, CategoryNode, MAX_IMAGE_BYTES, MoneyInput, ProductInput,
    ProductRemoval, ReviewInput, ReviewPage, SearchInput, VariantInput, inspect_image, parse_sort,
};
pub use inventory::{InventoryService, StockInput};
pub use passwords::{HashCost, PasswordHasher};
pub use tokens::{AccessToken, Principal, TokenConfig, TokenIssuer, hash_refresh};
