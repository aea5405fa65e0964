//! The `Commerce` facade: wires ports into services. Embedders build one and call its services.

use std::sync::Arc;

use crate::Result;
use crate::ports::{
    AddressStore, CartStore, CategoryStore, HealthCheck, IdempotencyStore, ImageStore, InventoryStore, OrderStore,
    PaymentGateway, PaymentStore, ProductStore, ReviewStore, TokenStore, UserStore,
};
use crate::services::{
    AccountService, CartPolicy, CartService, CatalogPorts, CatalogService, CheckoutPolicy, HashCost,
    IdempotencyService, InventoryService, ManualGateway, OrderService, PasswordHasher, PaymentService, TokenConfig,
    TokenIssuer,
};

/// The storage areas of the engine; each may live in a different backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Area {
    /// Users, addresses, refresh tokens.
    Accounts,
    /// Products, categories, reviews, carts.
    Catalog,
    /// Inventory, orders, payments, idempotency keys.
    Checkout,
}

impl Area {
    /// Lower-case name, for logs and `/readyz`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accounts => "accounts",
            Self::Catalog => "catalog",
            Self::Checkout => "checkout",
        }
    }
}

/// A store serving the accounts area.
pub trait AccountsBackend: UserStore + AddressStore + TokenStore + HealthCheck {}
impl<T: UserStore + AddressStore + TokenStore + HealthCheck> AccountsBackend for T {}

/// A store serving the catalog area.
pub trait CatalogBackend: ProductStore + CategoryStore + ReviewStore + CartStore + HealthCheck {}
impl<T: ProductStore + CategoryStore + ReviewStore + CartStore + HealthCheck> CatalogBackend for T {}

/// A store serving the checkout area.
pub trait CheckoutBackend: InventoryStore + OrderStore + PaymentStore + IdempotencyStore + HealthCheck {}
impl<T: InventoryStore + OrderStore + PaymentStore + IdempotencyStore + HealthCheck> CheckoutBackend for T {}

/// Every port, as trait objects. Services take the ones they need.
#[derive(Clone)]
pub struct Stores {
    /// Accounts backend.
    pub accounts: Arc<dyn AccountsBackend>,
    /// Catalog backend.
    pub catalog: Arc<dyn CatalogBackend>,
    /// Checkout backend.
    pub checkout: Arc<dyn CheckoutBackend>,
    /// Image bytes.
    pub images: Arc<dyn ImageStore>,
}

/// One backend's answer to a readiness probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendHealth {
    /// The area it serves.
    pub area: Area,
    /// Backend name, e.g. `postgres`.
    pub backend: &'static str,
    /// `None` when it answered, else why not (safe to show operators, not clients).
    pub error: Option<String>,
}

#[cfg(not(feature = "memory"))]
fn missing(area: &'static str) -> crate::Error {
    crate::Error::invalid(
        area,
        "no backend configured for this area (enable the `memory` feature for an in-memory default)",
    )
}

/// Engine settings that are not adapters.
#[derive(Debug, Clone)]
pub struct CommerceConfig {
    /// Access/refresh token settings.
    pub tokens: TokenConfig,
    /// argon2id cost.
    pub hash_cost: HashCost,
    /// Cart limits and lifetime.
    pub cart: CartPolicy,
    /// Currency, payment window, shipping and tax.
    pub checkout: CheckoutPolicy,
}

impl Default for CommerceConfig {
    /// A random token secret (sessions die with the process) and OWASP's argon2id cost.
    fn default() -> Self {
        Self {
            tokens: TokenConfig::ephemeral(),
            hash_cost: HashCost::default(),
            cart: CartPolicy::default(),
            checkout: CheckoutPolicy::default(),
        }
    }
}

/// Builds a [`Commerce`] from adapters; areas left unset use the in-memory adapter (feature
/// `memory`), all sharing one store so in-memory checkout is atomic across areas.
#[derive(Default)]
pub struct CommerceBuilder {
    config: CommerceConfig,
    gateway: Option<Arc<dyn PaymentGateway>>,
    images: Option<Arc<dyn ImageStore>>,
    accounts: Option<Arc<dyn AccountsBackend>>,
    catalog: Option<Arc<dyn CatalogBackend>>,
    checkout: Option<Arc<dyn CheckoutBackend>>,
}

impl CommerceBuilder {
    /// Engine settings (defaults: [`CommerceConfig::default`]).
    pub fn config(mut self, config: CommerceConfig) -> Self {
        self.config = config;
        self
    }

    /// Users, addresses and tokens live here (PostgreSQL in production).
    pub fn accounts(mut self, store: Arc<dyn AccountsBackend>) -> Self {
        self.accounts = Some(store);
        self
    }

    /// Products, categories, reviews and carts live here (MongoDB in production).
    pub fn catalog(mut self, store: Arc<dyn CatalogBackend>) -> Self {
        self.catalog = Some(store);
        self
    }

    /// Inventory, orders, payments and idempotency keys live here (PostgreSQL in production).
    pub fn checkout(mut self, store: Arc<dyn CheckoutBackend>) -> Self {
        self.checkout = Some(store);
        self
    }

    /// The payment gateway (the offline `manual` gateway by default).
    pub fn payment_gateway(mut self, gateway: Arc<dyn PaymentGateway>) -> Self {
        self.gateway = Some(gateway);
        self
    }

    /// Where product images are stored (in memory by default).
    pub fn images(mut self, store: Arc<dyn ImageStore>) -> Self {
        self.images = Some(store);
        self
    }

    /// Wires the services.
    ///
    /// # Errors
    /// `Validation` when an area is unset and the `memory` feature is off (naming the area),
    /// or when the configuration is invalid.
    pub fn build(self) -> Result<Commerce> {
        #[cfg(feature = "memory")]
        let memory = crate::memory::MemoryStore::new();
        #[cfg(feature = "memory")]
        let images = self
            .images
            .unwrap_or_else(|| Arc::new(crate::memory::MemoryImageStore::new()));
        #[cfg(not(feature = "memory"))]
        let images = self.images.ok_or_else(|| missing("images"))?;
        #[cfg(feature = "memory")]
        let (accounts, catalog, checkout) = (
            self.accounts.unwrap_or_else(|| Arc::new(memory.clone())),
            self.catalog.unwrap_or_else(|| Arc::new(memory.clone())),
            self.checkout.unwrap_or_else(|| Arc::new(memory)),
        );
        #[cfg(not(feature = "memory"))]
        let (accounts, catalog, checkout) = (
            self.accounts.ok_or_else(|| missing("accounts"))?,
            self.catalog.ok_or_else(|| missing("catalog"))?,
            self.checkout.ok_or_else(|| missing("checkout"))?,
        );
        Commerce::from_stores(
            Stores {
                accounts,
                catalog,
                checkout,
                images,
            },
            self.config,
            self.gateway,
        )
    }
}

/// The engine: every service, wired to its ports. Cheap to clone: clones share one engine
/// (a clone is one reference count, not a copy of every service and its keys).
#[derive(Clone)]
pub struct Commerce {
    engine: Arc<Engine>,
}

struct Engine {
    stores: Stores,
    accounts: AccountService,
    catalog: CatalogService,
    inventory: InventoryService,
    carts: CartService,
    orders: OrderService,
    idempotency: IdempotencyService,
    payments: PaymentService,
}

impl Commerce {
    /// A builder.
    pub fn builder() -> CommerceBuilder {
        CommerceBuilder::default()
    }

    /// The whole engine in memory: no setup, nothing persisted.
    ///
    /// # Errors
    /// `Validation` when the configuration is invalid.
    #[cfg(feature = "memory")]
    pub fn in_memory(config: CommerceConfig) -> Result<Self> {
        Self::builder().config(config).build()
    }

    fn from_stores(stores: Stores, config: CommerceConfig, gateway: Option<Arc<dyn PaymentGateway>>) -> Result<Self> {
        let hasher = PasswordHasher::new(config.hash_cost)?;
        let tokens = TokenIssuer::new(config.tokens);
        let guest_tokens = tokens.clone();
        let a = &stores.accounts;
        let accounts = AccountService::new(a.clone(), a.clone(), a.clone(), hasher, tokens);
        let (c, k) = (&stores.catalog, &stores.checkout);
        let catalog = CatalogService::new(CatalogPorts {
            products: c.clone(),
            categories: c.clone(),
            reviews: c.clone(),
            users: a.clone(),
            orders: k.clone(),
            inventory: k.clone(),
            images: stores.images.clone(),
        });
        let inventory = InventoryService::new(k.clone());
        let idempotency = IdempotencyService::new(k.clone(), std::time::Duration::from_secs(24 * 3600));
        let carts = CartService::new(c.clone(), c.clone(), k.clone(), config.cart, guest_tokens);
        let orders = OrderService::new(
            k.clone(),
            c.clone(),
            a.clone(),
            c.clone(),
            carts.clone(),
            config.checkout,
        );
        let payments = match gateway {
            Some(g) => PaymentService::new(k.clone(), k.clone(), orders.clone(), g),
            None => PaymentService::with_manual_gateway(
                k.clone(),
                k.clone(),
                orders.clone(),
                Arc::new(ManualGateway::over(k.clone())),
            ),
        };
        Ok(Self {
            engine: Arc::new(Engine {
                stores,
                accounts,
                catalog,
                inventory,
                carts,
                orders,
                idempotency,
                payments,
            }),
        })
    }

    /// Registration, sign-in, profiles, addresses, user administration.
    pub fn accounts(&self) -> &AccountService {
        &self.engine.accounts
    }

    /// Carts of users and guests.
    pub fn carts(&self) -> &CartService {
        &self.engine.carts
    }

    /// Checkout, orders, the saga's recovery, coupons.
    pub fn orders(&self) -> &OrderService {
        &self.engine.orders
    }

    /// Payment intents, gateway events, refunds.
    pub fn payments(&self) -> &PaymentService {
        &self.engine.payments
    }

    /// Idempotency keys for money-bearing writes.
    pub fn idempotency(&self) -> &IdempotencyService {
        &self.engine.idempotency
    }

    /// Stock per SKU and warehouse.
    pub fn inventory(&self) -> &InventoryService {
        &self.engine.inventory
    }

    /// Products, categories, search, reviews, images.
    pub fn catalog(&self) -> &CatalogService {
        &self.engine.catalog
    }

    /// Which backend serves each area, for start-up logs.
    pub fn backends(&self) -> [(Area, &'static str); 3] {
        [
            (Area::Accounts, self.engine.stores.accounts.backend()),
            (Area::Catalog, self.engine.stores.catalog.backend()),
            (Area::Checkout, self.engine.stores.checkout.backend()),
        ]
    }

    /// Pings every backend concurrently.
    pub async fn readiness(&self) -> Vec<BackendHealth> {
        async fn probe(area: Area, store: &dyn HealthCheck) -> BackendHealth {
            BackendHealth {
                area,
                backend: store.backend(),
                error: store.ping().await.err().map(|e| e.to_string()),
            }
        }
        let (a, c, k) = tokio::join!(
            probe(Area::Accounts, self.engine.stores.accounts.as_ref()),
            probe(Area::Catalog, self.engine.stores.catalog.as_ref()),
            probe(Area::Checkout, self.engine.stores.checkout.as_ref()),
        );
        vec![a, c, k]
    }

    /// The raw stores, for embedders that need a port the services do not cover.
    pub fn stores(&self) -> &Stores {
        &self.engine.stores
    }
}
