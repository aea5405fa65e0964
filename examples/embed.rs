//! Embedding the engine in your own program: no HTTP, no database — a whole purchase through
//! the typed services of `commerce-core` on the in-memory adapter.
//!
//! Run: `cargo run -p commerce-http --example embed`. Swap in `commerce_pg::PgStore` and
//! `commerce_mongo::MongoStore` with `Commerce::builder()` for persistence.

use commerce_core::domain::AddressFields;
use commerce_core::services::{
    AddressInput, CheckoutInput, MoneyInput, NewAccount, Principal, ProductInput, Shopper, StockInput, VariantInput,
};
use commerce_core::{Commerce, CommerceConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let commerce = Commerce::in_memory(CommerceConfig::default())?;

    // The store owner adds a product and stocks it.
    let owner = commerce
        .accounts()
        .ensure_superadmin("owner@example.com", "owner-password")
        .await?;
    let staff = Principal {
        user_id: owner.id,
        role: owner.role,
    };
    let product = ProductInput {
        name: "Pour-over Kettle".into(),
        status: Some("active".into()),
        variants: vec![VariantInput {
            sku: "KETTLE-1".into(),
            price: MoneyInput {
                amount: 4_900,
                currency: "USD".into(),
            },
            ..VariantInput::default()
        }],
        ..ProductInput::default()
    };
    commerce.catalog().create_product(&staff, product).await?;
    commerce
        .inventory()
        .set_stock(
            &staff,
            "KETTLE-1",
            StockInput {
                on_hand: Some(5),
                ..StockInput::default()
            },
        )
        .await?;

    // A customer signs up, saves an address, fills a cart and checks out.
    let account = NewAccount {
        email: "ada@example.com".into(),
        password: "password-123".into(),
        first_name: "Ada".into(),
        last_name: "Lovelace".into(),
        phone: None,
    };
    let session = commerce.accounts().register(account).await?;
    let ada = Principal {
        user_id: session.user.id,
        role: session.user.role,
    };
    let home = AddressFields {
        first_name: "Ada".into(),
        last_name: "Lovelace".into(),
        line1: "12 St James's Square".into(),
        city: "London".into(),
        postal_code: "SW1Y 4JH".into(),
        country: "GB".into(),
        ..AddressFields::default()
    };
    commerce
        .accounts()
        .add_address(
            &ada,
            AddressInput {
                fields: home,
                is_default: true,
            },
        )
        .await?;
    commerce.carts().add_item(&Shopper::User(ada), "KETTLE-1", 1).await?;
    let order = commerce.orders().checkout(&ada, CheckoutInput::default()).await?;
    println!(
        "order {} placed: {} total, status {}",
        order.id, order.totals.total, order.status
    );

    // The offline manual gateway stands in for Stripe: create the intent, then settle it.
    let payment = commerce.payments().create_intent(&ada, order.id).await?;
    commerce
        .payments()
        .settle_manual(&staff, &payment.intent_id, true)
        .await?;
    let paid = commerce.orders().order(&ada, order.id).await?;
    let stock = commerce.inventory().levels(&staff, "KETTLE-1").await?;
    println!(
        "order status {}, stock on hand {}",
        paid.status,
        stock.iter().map(|l| l.on_hand).sum::<i64>()
    );
    Ok(())
}
