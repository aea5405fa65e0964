//! The REST API: one module per resource, assembled in [`api_service`].

mod admin_inventory;
mod admin_products;
mod admin_users;
mod auth;
mod cart;
pub mod catalog_types;
mod categories;
pub mod checkout_types;
mod health;
mod orders;
mod payments;
mod products;
mod reviews;
pub mod types;
mod users;

use std::sync::Arc;

use commerce_core::Commerce;

use crate::Config;
use crate::metrics::Metrics;
use crate::product_json::ProductJson;
use poem_openapi::{OpenApiService, Tags};

pub use admin_inventory::AdminInventoryApi;
pub use admin_products::AdminProductsApi;
pub use admin_users::AdminUsersApi;
pub use auth::{AuthApi, REFRESH_COOKIE};
pub use cart::{CART_TOKEN_HEADER, CartApi};
pub use categories::CategoriesApi;
pub use health::HealthApi;
pub use orders::{AdminOrdersApi, OrdersApi};
pub use payments::{AdminPaymentsApi, PaymentsApi};
pub use products::ProductsApi;
pub use reviews::ReviewsApi;
pub use users::UsersApi;

/// Groups of operations in the docs.
#[derive(Debug, Tags)]
pub enum ApiTags {
    /// Liveness and readiness probes.
    System,
    /// Registration, sign-in, token refresh, sign-out.
    Auth,
    /// A user's own profile and addresses.
    Users,
    /// The catalog.
    Products,
    /// The category tree.
    Categories,
    /// The shopping cart.
    Cart,
    /// Checkout and order history.
    Orders,
    /// Payment intents and gateway webhooks.
    Payments,
    /// Product reviews.
    Reviews,
    /// Store administration.
    Admin,
}

/// Every API of the host, in one OpenAPI document.
pub type Apis = (
    HealthApi,
    AuthApi,
    UsersApi,
    ProductsApi,
    CategoriesApi,
    ReviewsApi,
    AdminUsersApi,
    AdminProductsApi,
    (
        CartApi,
        OrdersApi,
        AdminOrdersApi,
        AdminInventoryApi,
        PaymentsApi,
        AdminPaymentsApi,
    ),
);

/// Builds the OpenAPI service over every API; `GET /metrics` serves `metrics`.
pub fn api_service(commerce: &Commerce, config: &Config, metrics: &Metrics) -> OpenApiService<Apis, ()> {
    let c = commerce.clone();
    let product_json = Arc::new(ProductJson::new(config.page_cache_mib.saturating_mul(1024 * 1024)));
    let apis = (
        HealthApi::new(c.clone(), metrics.clone(), config.metrics_token.as_deref()),
        AuthApi::new(c.clone(), config.cookie_secure),
        UsersApi::new(c.clone()),
        ProductsApi::new(c.clone(), Arc::clone(&product_json)),
        CategoriesApi::new(c.clone(), product_json),
        ReviewsApi::new(c.clone()),
        AdminUsersApi::new(c.clone()),
        AdminProductsApi::new(c.clone()),
        (
            CartApi::new(c.clone()),
            OrdersApi::new(c.clone()),
            AdminOrdersApi::new(c.clone()),
            AdminInventoryApi::new(c.clone()),
            PaymentsApi::new(c.clone(), config.stripe_webhook_secret.clone()),
            AdminPaymentsApi::new(c),
        ),
    );
    OpenApiService::new(apis, "Commerce API", env!("CARGO_PKG_VERSION"))
        .description(
            "REST API of the commerce engine. JSON fields are camelCase; money is \
             `{\"amount\": 1999, \"currency\": \"USD\"}` in minor units; lists are \
             `{\"items\", \"total\", \"page\", \"limit\"}`; every error is an RFC 9457 \
             `application/problem+json` body with a stable `code`.",
        )
        .server("/")
}
