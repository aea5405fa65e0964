//! Services: every business rule lives here, over the ports.

mod accounts;
mod carts;
mod catalog;
mod idempotency;
mod inventory;
mod orders;
mod passwords;
mod payments;
mod tokens;

pub use accounts::{AccountService, AddressInput, NewAccount, ProfileChanges, Session};
pub use carts::{CartPolicy, CartService, LineIssue, PURGE_GRACE, PricedCart, PricedLine, Shopper};
pub use catalog::{
    CatalogPorts, CatalogService, CategoryInput, CategoryNode, MAX_IMAGE_BYTES, MoneyInput, ProductInput,
    ProductRemoval, ReviewInput, ReviewPage, SearchInput, VariantInput, inspect_image, parse_sort,
};
pub use idempotency::{IDEMPOTENCY_HEADER, IdempotencyService, IdempotentStart};
pub use inventory::{InventoryService, MAX_STOCK_ITEMS, StockInput, StockItem};
pub use orders::{
    CheckoutAnswer, CheckoutInput, CheckoutPolicy, CouponInput, FlatRateShipping, OrderService, PercentageTax,
    RecoveryReport, RenderAnswer, ShippingPolicy, StatusChange, TaxPolicy,
};
pub use passwords::{HashCost, PasswordHasher};
pub use payments::{EventOutcome, GatewayEvent, GatewayOutcome, ManualGateway, PaymentService};
pub use tokens::{AccessToken, Principal, TokenConfig, TokenIssuer, hash_refresh};
