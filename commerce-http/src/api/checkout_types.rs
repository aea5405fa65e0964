//! Wire types of carts, orders, inventory and coupons.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use commerce_core::domain::{
    Actor, AddressFields, Coupon, Discount, Order, OrderEvent, OrderItem, StockLevel, StockMovement,
};
use commerce_core::services::{PricedCart, PricedLine, StockInput};
use poem_openapi::Object;
use poem_openapi::types::Example;
use serde::{Deserialize, Serialize};

use super::catalog_types::MoneyView;
use crate::problem::ApiError;
use crate::product_json::encoding_failed;
use crate::reply::EncodedJson;

/// One line of a cart, priced now.
#[derive(Debug, Clone, Object, Serialize)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct CartLineView {
    /// Line id (for PUT/DELETE `/cart/items/:itemId`).
    pub id: String,
    /// Variant SKU.
    pub sku: String,
    /// Units.
    pub quantity: u32,
    /// Product id, when the product still exists.
    pub product_id: Option<String>,
    /// Product name.
    pub name: Option<String>,
    /// Product slug.
    pub slug: Option<String>,
    /// Variant options (size, color...).
    pub options: BTreeMap<String, String>,
    /// Thumbnail URL.
    pub thumbnail: Option<String>,
    /// Current unit price.
    pub unit_price: Option<MoneyView>,
    /// `unitPrice * quantity`.
    pub line_total: Option<MoneyView>,
    /// Units available now.
    pub available: i64,
    /// `unavailable`, `insufficient_stock` or `currency_mismatch` when the line cannot be
    /// bought as it is.
    pub issue: Option<String>,
}

impl From<PricedLine> for CartLineView {
    fn from(l: PricedLine) -> Self {
        let options = l
            .product
            .as_ref()
            .and_then(|p| p.variant(&l.item.sku))
            .map(|v| (&v.options).into());
        Self {
            id: l.item.id.to_string(),
            sku: l.item.sku.to_string(),
            quantity: l.item.quantity.get(),
            product_id: l.product.as_ref().map(|p| p.id.to_string()),
            name: l.product.as_ref().map(|p| p.name.clone()),
            slug: l.product.as_ref().map(|p| p.slug.to_string()),
            options: options.unwrap_or_default(),
            thumbnail: l.product.as_ref().and_then(|p| p.thumbnail.clone()),
            unit_price: l.unit_price.map(MoneyView::from),
            line_total: l.line_total.map(MoneyView::from),
            available: l.available,
            issue: l.issue.map(|i| i.as_str().to_owned()),
        }
    }
}

/// A cart, priced from the catalog and stock at the time of the request.
#[derive(Debug, Clone, Object, Serialize)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct CartView {
    /// Cart id (absent until the first item is added).
    pub id: Option<String>,
    /// Lines, in the order they were added.
    pub items: Vec<CartLineView>,
    /// Units in all.
    pub item_count: u32,
    /// Sum of the lines that can be bought.
    pub subtotal: MoneyView,
    /// Whether every line can be bought as it is.
    pub ready_for_checkout: bool,
    /// When an untouched cart is dropped.
    #[serde(serialize_with = "crate::reply::rfc3339_opt")]
    pub expires_at: Option<DateTime<Utc>>,
    /// For guests: the opaque token to send as `X-Cart-Token` from now on (also in the
    /// response header). Absent for signed-in users.
    pub cart_token: Option<String>,
}

impl CartView {
    /// The cart's JSON written from the priced cart in place (the view's seven strings and
    /// options map per line cost a tenth of an add to cart); debug builds compare it with the
    /// view's encoding, so every HTTP test checks they agree.
    pub fn encode(priced: &PricedCart, cart_token: Option<&str>) -> Result<EncodedJson<Self>, ApiError> {
        let bytes = sonic_rs::to_vec(&cart_wire::CartOut::of(priced, cart_token)).map_err(encoding_failed)?;
        Ok(EncodedJson::new(bytes, || {
            Self::new(priced.clone(), cart_token.map(str::to_owned))
        }))
    }

    /// The view of a priced cart, with the guest token when there is one.
    pub fn new(priced: PricedCart, cart_token: Option<String>) -> Self {
        Self {
            id: priced.cart.as_ref().map(|c| c.id.to_string()),
            item_count: priced.lines.iter().map(|l| l.item.quantity.get()).sum(),
            expires_at: priced.cart.as_ref().map(|c| c.expires_at),
            items: priced.lines.into_iter().map(CartLineView::from).collect(),
            subtotal: priced.subtotal.into(),
            ready_for_checkout: priced.ready,
            cart_token,
        }
    }
}

/// [`CartView`]'s JSON, borrowing from the priced cart.
mod cart_wire {
    use chrono::{DateTime, Utc};
    use commerce_core::domain::{Attributes, CartId, CartItemId, ProductId};
    use commerce_core::services::{PricedCart, PricedLine};
    use serde::{Serialize, Serializer};

    #[derive(Serialize)]
    struct MoneyOut {
        amount: i64,
        #[serde(serialize_with = "currency")]
        currency: commerce_core::domain::Currency,
    }

    impl From<commerce_core::domain::Money> for MoneyOut {
        fn from(m: commerce_core::domain::Money) -> Self {
            Self {
                amount: m.amount_minor,
                currency: m.currency,
            }
        }
    }

    fn currency<S: Serializer>(c: &commerce_core::domain::Currency, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(c.as_str())
    }

    /// The options of a line whose product or variant is gone.
    static NO_OPTIONS: Attributes = Attributes::new();

    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    pub(super) struct CartOut<'a> {
        id: Option<CartId>,
        #[serde(serialize_with = "lines")]
        items: &'a [PricedLine],
        item_count: u32,
        subtotal: MoneyOut,
        ready_for_checkout: bool,
        #[serde(serialize_with = "crate::reply::rfc3339_opt")]
        expires_at: Option<DateTime<Utc>>,
        cart_token: Option<&'a str>,
    }

    impl<'a> CartOut<'a> {
        pub(super) fn of(priced: &'a PricedCart, cart_token: Option<&'a str>) -> Self {
            Self {
                id: priced.cart.as_ref().map(|c| c.id),
                items: &priced.lines,
                item_count: priced.lines.iter().map(|l| l.item.quantity.get()).sum(),
                subtotal: priced.subtotal.into(),
                ready_for_checkout: priced.ready,
                expires_at: priced.cart.as_ref().map(|c| c.expires_at),
                cart_token,
            }
        }
    }

    fn lines<S: Serializer>(lines: &&[PricedLine], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(lines.iter().map(LineOut::from))
    }

    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct LineOut<'a> {
        id: CartItemId,
        sku: &'a str,
        quantity: u32,
        product_id: Option<ProductId>,
        name: Option<&'a str>,
        slug: Option<&'a str>,
        options: &'a Attributes,
        thumbnail: Option<&'a str>,
        unit_price: Option<MoneyOut>,
        line_total: Option<MoneyOut>,
        available: i64,
        issue: Option<&'static str>,
    }

    impl<'a> From<&'a PricedLine> for LineOut<'a> {
        fn from(l: &'a PricedLine) -> Self {
            let product = l.product.as_deref();
            Self {
                id: l.item.id,
                sku: l.item.sku.as_str(),
                quantity: l.item.quantity.get(),
                product_id: product.map(|p| p.id),
                name: product.map(|p| p.name.as_str()),
                slug: product.map(|p| p.slug.as_str()),
                options: product
                    .and_then(|p| p.variant(&l.item.sku))
                    .map_or(&NO_OPTIONS, |v| &v.options),
                thumbnail: product.and_then(|p| p.thumbnail.as_deref()),
                unit_price: l.unit_price.map(MoneyOut::from),
                line_total: l.line_total.map(MoneyOut::from),
                available: l.available,
                issue: l.issue.map(|i| i.as_str()),
            }
        }
    }
}

/// Add a SKU to the cart.
#[derive(Debug, Object, Deserialize)]
pub struct AddItemRequest {
    /// Variant SKU.
    pub sku: String,
    /// Units (1 to the per-line limit, 99 by default).
    pub quantity: i64,
}

/// Change a line's quantity.
#[derive(Debug, Object, Deserialize)]
pub struct UpdateItemRequest {
    /// Units (1 to the per-line limit).
    pub quantity: i64,
}

/// Check out the caller's cart.
#[derive(Debug, Default, Object, Deserialize)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct CheckoutRequest {
    /// Saved address to ship to; the default address when absent.
    pub address_id: Option<String>,
    /// Coupon code.
    pub coupon_code: Option<String>,
}

/// The postal fields of an address (saved, or snapshotted into an order).
#[derive(Debug, Clone, Object, Serialize)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct PostalAddress {
    /// e.g. "Home".
    pub label: Option<String>,
    /// Recipient given name.
    pub first_name: String,
    /// Recipient family name.
    pub last_name: String,
    /// Street and number.
    pub line1: String,
    /// Flat, suite.
    pub line2: Option<String>,
    /// City.
    pub city: String,
    /// State or region.
    pub state: Option<String>,
    /// Postal code.
    pub postal_code: String,
    /// ISO 3166-1 alpha-2.
    pub country: String,
    /// Contact phone.
    pub phone: Option<String>,
}

impl From<AddressFields> for PostalAddress {
    fn from(a: AddressFields) -> Self {
        Self {
            label: a.label,
            first_name: a.first_name,
            last_name: a.last_name,
            line1: a.line1,
            line2: a.line2,
            city: a.city,
            state: a.state,
            postal_code: a.postal_code,
            country: a.country,
            phone: a.phone,
        }
    }
}

/// A line of an order: what was bought, at the price of the day.
#[derive(Debug, Clone, Object, Serialize)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct OrderItemView {
    /// Id.
    pub id: String,
    /// Product id.
    pub product_id: String,
    /// SKU.
    pub sku: String,
    /// Product name at the time.
    pub name: String,
    /// Variant options at the time.
    pub options: BTreeMap<String, String>,
    /// Unit price at the time.
    pub unit_price: MoneyView,
    /// Units.
    pub quantity: u32,
    /// `unitPrice * quantity`.
    pub line_total: MoneyView,
}

impl From<OrderItem> for OrderItemView {
    fn from(i: OrderItem) -> Self {
        Self {
            id: i.id.to_string(),
            product_id: i.product_id.to_string(),
            sku: i.sku.to_string(),
            name: i.name,
            options: i.options.into(),
            unit_price: i.unit_price.into(),
            quantity: i.quantity.get(),
            line_total: i.line_total.into(),
        }
    }
}

/// Carrier details.
#[derive(Debug, Clone, Object, Serialize)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct TrackingView {
    /// Carrier.
    pub carrier: String,
    /// Tracking number.
    pub number: String,
}

/// An order.
#[derive(Debug, Clone, Object, Serialize)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct OrderView {
    /// Id.
    pub id: String,
    /// Customer id.
    pub user_id: String,
    /// `pending`, `processing`, `shipped`, `delivered`, `cancelled` or `refunded`.
    pub status: String,
    /// Lines.
    pub items: Vec<OrderItemView>,
    /// Sum of the lines.
    pub subtotal: MoneyView,
    /// Shipping charge.
    pub shipping: MoneyView,
    /// Tax.
    pub tax: MoneyView,
    /// Discount (subtracted).
    pub discount: MoneyView,
    /// `subtotal - discount + shipping + tax`.
    pub total: MoneyView,
    /// Coupon used.
    pub coupon_code: Option<String>,
    /// Where it ships.
    pub shipping_address: PostalAddress,
    /// Set when shipped.
    pub tracking: Option<TrackingView>,
    /// A pending order is cancelled (and its stock released) if unpaid by then.
    #[serde(serialize_with = "crate::reply::rfc3339")]
    pub payment_due_by: DateTime<Utc>,
    /// Placed.
    #[serde(serialize_with = "crate::reply::rfc3339")]
    pub created_at: DateTime<Utc>,
    /// Last changed.
    #[serde(serialize_with = "crate::reply::rfc3339")]
    pub updated_at: DateTime<Utc>,
}

impl From<Order> for OrderView {
    fn from(o: Order) -> Self {
        Self {
            id: o.id.to_string(),
            user_id: o.user_id.to_string(),
            status: o.status.as_str().to_owned(),
            items: o.items.into_iter().map(OrderItemView::from).collect(),
            subtotal: o.totals.subtotal.into(),
            shipping: o.totals.shipping.into(),
            tax: o.totals.tax.into(),
            discount: o.totals.discount.into(),
            total: o.totals.total.into(),
            coupon_code: o.coupon_code,
            shipping_address: o.shipping_address.into(),
            tracking: o.tracking.map(|t| TrackingView {
                carrier: t.carrier,
                number: t.number,
            }),
            payment_due_by: o.payment_due_by,
            created_at: o.created_at,
            updated_at: o.updated_at,
        }
    }
}

/// A page of orders.
#[derive(Debug, Object, Serialize)]
pub struct OrderPage {
    /// Newest first.
    pub items: Vec<OrderView>,
    /// Matching orders in all.
    pub total: u64,
    /// Page number.
    pub page: u32,
    /// Page size.
    pub limit: u32,
}

fn actor(a: &Actor) -> (String, Option<String>) {
    match a {
        Actor::User(id) => ("user".to_owned(), Some(id.to_string())),
        Actor::Gateway => ("gateway".to_owned(), None),
        Actor::System => ("system".to_owned(), None),
    }
}

/// One entry of an order's history.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct OrderEventView {
    /// Id.
    pub id: String,
    /// Previous status (absent on creation).
    pub from: Option<String>,
    /// New status.
    pub to: String,
    /// `user`, `gateway` or `system`.
    pub actor: String,
    /// The user, when a user acted.
    pub actor_id: Option<String>,
    /// Why.
    pub note: Option<String>,
    /// When.
    pub at: DateTime<Utc>,
}

impl From<OrderEvent> for OrderEventView {
    fn from(e: OrderEvent) -> Self {
        let (actor, actor_id) = actor(&e.actor);
        Self {
            id: e.id.to_string(),
            from: e.from.map(|s| s.as_str().to_owned()),
            to: e.to.as_str().to_owned(),
            actor,
            actor_id,
            note: e.note,
            at: e.at,
        }
    }
}

/// An order's history.
#[derive(Debug, Object)]
pub struct OrderEventList {
    /// Oldest first.
    pub items: Vec<OrderEventView>,
}

/// A status change.
#[derive(Debug, Object, Deserialize)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct StatusRequest {
    /// The new status.
    pub status: String,
    /// Why (kept in the history).
    pub note: Option<String>,
    /// Carrier (required for `shipped`).
    pub carrier: Option<String>,
    /// Tracking number (required for `shipped`).
    pub tracking_number: Option<String>,
    /// For `refunded`: put the units back in stock.
    #[serde(default)]
    #[oai(default)]
    pub restock: bool,
}

/// Stock of a SKU in one warehouse.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct StockLevelView {
    /// SKU.
    pub sku: String,
    /// Warehouse code.
    pub warehouse: String,
    /// Physically present.
    pub on_hand: i64,
    /// Held for pending orders.
    pub reserved: i64,
    /// `onHand - reserved`.
    pub available: i64,
    /// Low-stock warning level.
    pub low_stock_threshold: i64,
    /// Reorder level.
    pub reorder_point: i64,
    /// Sells beyond what is available.
    pub backorder_allowed: bool,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<StockLevel> for StockLevelView {
    fn from(l: StockLevel) -> Self {
        Self {
            available: l.available(),
            sku: l.sku.to_string(),
            warehouse: l.warehouse,
            on_hand: l.on_hand,
            reserved: l.reserved,
            low_stock_threshold: l.low_stock_threshold,
            reorder_point: l.reorder_point,
            backorder_allowed: l.backorder_allowed,
            updated_at: l.updated_at,
        }
    }
}

/// A SKU's stock across warehouses.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct InventoryView {
    /// SKU.
    pub sku: String,
    /// Per warehouse.
    pub warehouses: Vec<StockLevelView>,
    /// On hand in all warehouses.
    pub on_hand: i64,
    /// Reserved in all warehouses.
    pub reserved: i64,
    /// Available in all warehouses.
    pub available: i64,
}

impl InventoryView {
    /// Sums the levels of one SKU.
    pub fn new(sku: String, levels: Vec<StockLevel>) -> Self {
        Self {
            on_hand: levels.iter().map(|l| l.on_hand).sum(),
            reserved: levels.iter().map(|l| l.reserved).sum(),
            available: levels.iter().map(StockLevel::available).sum(),
            warehouses: levels.into_iter().map(StockLevelView::from).collect(),
            sku,
        }
    }
}

/// Set a SKU's stock in one warehouse.
#[derive(Debug, Object, Deserialize)]
#[oai(rename_all = "camelCase", skip_serializing_if_is_none)]
#[serde(rename_all = "camelCase")]
pub struct StockRequest {
    /// Units on hand (absolute count).
    pub on_hand: Option<i64>,
    /// Warehouse code; `main` when absent.
    pub warehouse: Option<String>,
    /// Low-stock warning level.
    pub low_stock_threshold: Option<i64>,
    /// Reorder level.
    pub reorder_point: Option<i64>,
    /// Allow selling beyond what is available.
    pub backorder_allowed: Option<bool>,
    /// Why (kept in the movements log).
    pub reason: Option<String>,
}

impl From<StockRequest> for StockInput {
    fn from(r: StockRequest) -> Self {
        Self {
            on_hand: r.on_hand,
            warehouse: r.warehouse,
            low_stock_threshold: r.low_stock_threshold,
            reorder_point: r.reorder_point,
            backorder_allowed: r.backorder_allowed,
            reason: r.reason,
        }
    }
}

/// Many levels to set at once, all or nothing.
#[derive(Debug, Object, Deserialize)]
#[oai(example)]
pub struct StockBulkRequest {
    /// 1 to 1,000 levels, each SKU and warehouse at most once.
    pub items: Vec<StockBulkItem>,
}

impl Example for StockBulkRequest {
    fn example() -> Self {
        let item = |sku: &str, on_hand, warehouse: Option<&str>| StockBulkItem {
            sku: sku.to_owned(),
            stock: StockRequest {
                on_hand: Some(on_hand),
                warehouse: warehouse.map(str::to_owned),
                low_stock_threshold: None,
                reorder_point: None,
                backorder_allowed: None,
                reason: Some("stock count".to_owned()),
            },
        };
        Self {
            items: vec![item("TEE-M", 50, None), item("TEE-L", 20, Some("east"))],
        }
    }
}

/// One level of a bulk stock request: a SKU and what to set, as for one SKU.
#[derive(Debug, Object, Deserialize)]
pub struct StockBulkItem {
    /// SKU.
    pub sku: String,
    /// What to set.
    #[oai(flatten)]
    #[serde(flatten)]
    pub stock: StockRequest,
}

/// The levels a bulk set left, in the order asked.
#[derive(Debug, Object)]
pub struct StockBulkResult {
    /// One level per item.
    pub items: Vec<StockLevelView>,
}

/// Add or remove units.
#[derive(Debug, Object, Deserialize)]
pub struct AdjustRequest {
    /// Units, negative to remove.
    pub delta: i64,
    /// `purchase`, `return`, `damage` or `adjustment`.
    pub kind: String,
    /// Warehouse code; `main` when absent.
    pub warehouse: Option<String>,
    /// Why.
    pub reason: Option<String>,
}

/// Move units between warehouses.
#[derive(Debug, Object, Deserialize)]
pub struct TransferRequest {
    /// Source warehouse.
    pub from: String,
    /// Destination warehouse.
    pub to: String,
    /// Units.
    pub quantity: i64,
}

/// A page of stock levels.
#[derive(Debug, Object)]
pub struct StockLevelPage {
    /// Levels.
    pub items: Vec<StockLevelView>,
    /// In all.
    pub total: u64,
    /// Page number.
    pub page: u32,
    /// Page size.
    pub limit: u32,
}

/// One stock movement.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct MovementView {
    /// Id.
    pub id: String,
    /// Warehouse.
    pub warehouse: String,
    /// `purchase`, `sale`, `return`, `adjustment`, `damage`, `transfer`, `reservation`, `release`.
    pub kind: String,
    /// On hand before.
    pub on_hand_before: i64,
    /// On hand after.
    pub on_hand_after: i64,
    /// Reserved before.
    pub reserved_before: i64,
    /// Reserved after.
    pub reserved_after: i64,
    /// Why.
    pub reason: Option<String>,
    /// Order concerned.
    pub order_id: Option<String>,
    /// `user`, `gateway` or `system`.
    pub actor: String,
    /// The user, when a user acted.
    pub actor_id: Option<String>,
    /// When.
    pub at: DateTime<Utc>,
}

impl From<StockMovement> for MovementView {
    fn from(m: StockMovement) -> Self {
        let (actor, actor_id) = actor(&m.actor);
        let kind = serde_json::to_value(m.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        Self {
            id: m.id.to_string(),
            warehouse: m.warehouse,
            kind,
            on_hand_before: m.on_hand_before,
            on_hand_after: m.on_hand_after,
            reserved_before: m.reserved_before,
            reserved_after: m.reserved_after,
            reason: m.reason,
            order_id: m.order_id.map(|o| o.to_string()),
            actor,
            actor_id,
            at: m.at,
        }
    }
}

/// A page of movements.
#[derive(Debug, Object)]
pub struct MovementPage {
    /// Newest first.
    pub items: Vec<MovementView>,
    /// In all.
    pub total: u64,
    /// Page number.
    pub page: u32,
    /// Page size.
    pub limit: u32,
}

/// A coupon.
#[derive(Debug, Object, Deserialize)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct CouponRequest {
    /// Code; matched case-insensitively.
    pub code: String,
    /// Percentage off in basis points (1000 = 10 %); give this or `amountOff`.
    pub percent_off_bps: Option<u32>,
    /// A fixed amount off; give this or `percentOffBps`.
    pub amount_off: Option<MoneyView>,
    /// Minimum subtotal to qualify.
    pub min_subtotal: Option<MoneyView>,
    /// Last moment it is accepted.
    pub expires_at: Option<DateTime<Utc>>,
    /// Uses in all.
    pub usage_limit: Option<u32>,
    /// Uses per customer.
    pub per_customer_limit: Option<u32>,
}

/// A coupon as stored.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct CouponView {
    /// Upper-case code.
    pub code: String,
    /// Percentage off in basis points.
    pub percent_off_bps: Option<u32>,
    /// Fixed amount off.
    pub amount_off: Option<MoneyView>,
    /// Minimum subtotal.
    pub min_subtotal: Option<MoneyView>,
    /// Expiry.
    pub expires_at: Option<DateTime<Utc>>,
    /// Uses in all.
    pub usage_limit: Option<u32>,
    /// Uses per customer.
    pub per_customer_limit: Option<u32>,
    /// Uses so far.
    pub times_used: u32,
}

impl From<Coupon> for CouponView {
    fn from(c: Coupon) -> Self {
        let (percent_off_bps, amount_off) = match c.discount {
            Discount::Percentage(bps) => (Some(bps), None),
            Discount::Fixed(m) => (None, Some(m.into())),
        };
        Self {
            code: c.code,
            percent_off_bps,
            amount_off,
            min_subtotal: c.min_subtotal.map(MoneyView::from),
            expires_at: c.expires_at,
            usage_limit: c.usage_limit,
            per_customer_limit: c.per_customer_limit,
            times_used: c.times_used,
        }
    }
}
