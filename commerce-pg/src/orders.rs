//! The order port on PostgreSQL: orders and their items, the append-only event history, the
//! checkout saga log, coupons, and the stock reservations a checkout takes (tables from
//! `migrations/0002_checkout.sql`).
//!
//! **No oversell.** `place_order` writes the whole order in one statement (`write_orders`): the
//! order, its items, first event, saga row and the answer to its request's idempotency key
//! (`NewOrder::answer`: the key's row, claimed by that request, is the only lock the statement
//! takes on a table no other transaction locks together with stock), then, with every stock
//! level of the order's SKUs
//! locked in `(sku, warehouse)` order, the levels' conditional increments
//! (`reserved = reserved + $n WHERE on_hand - reserved >= $n`), the reservations, and a movement
//! each whose before and after come from the levels as locked. A level that cannot give what
//! the statement asks of it makes it raise an error, which undoes all of it. A checkout runs in
//! one of two ways:
//! - **at once** (no coupon): the statement takes every line from its SKU's first warehouse in
//!   name order, which is what the reservation rule gives whenever that warehouse has every unit
//!   the order wants of the SKU (the usual case: one round trip, one commit, the levels locked
//!   only while that statement and its commit run). Checkouts asking while others' statements
//!   run share the next one (`Checkouts`): one statement and one commit for all their orders.
//! - **in a READ COMMITTED transaction** otherwise (stock spread over warehouses, backorders, a
//!   shortage to name, a coupon): the levels are locked and read, the reservations computed from
//!   them in Rust exactly as the in-memory adapter does (lines in order, warehouses in name
//!   order, the rest onto the first level allowing backorders), the same statement writes them,
//!   and a coupon is redeemed with a conditional increment (`times_used < usage_limit`). Any
//!   refusal returns before the commit, so the rollback leaves nothing behind.
//!
//! **No deadlock.** Every transaction takes its locks in one global order: the order row
//! (inserted, or moved by compare-and-set), then stock levels in `(sku, warehouse)` order, then
//! the coupon. A transaction aborted all the same (an embedder's transaction on these tables,
//! a server set to SERIALIZABLE) is run again, see `retry.rs`.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use commerce_core::domain::{
    Actor, AddressFields, CartId, Coupon, Currency, Discount, KeyAnswer, MovementContext, MovementId, MovementKind,
    Order, OrderEvent, OrderEventId, OrderId, OrderItem, OrderItemId, OrderStatus, OrderTotals, Page, PageRequest,
    ProductId, Quantity, Reservation, ReservationId, ReservationStatus, SagaRecord, SagaStep, Sku, StockLevel,
    StockMovement, Tracking, UserId, split_reservation,
};
use commerce_core::ports::{NewOrder, OrderStore, OrderTransition, StockEffect};

use crate::stock_cache::may_have_written;
use commerce_core::{Error, Result};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use crate::coalesce::{self, Batch, Queue};
use crate::codec::{
    self, actor_columns, actor_from, bad_value, movement_kind_code, order_status, reservation_status_code,
    saga_step_code, saga_step_from,
};
use crate::error::{StorageResult, UniqueKey, conflict_or_storage};
use crate::inventory::{self, level_columns};
use crate::{PgStore, retry};
use futures::future::BoxFuture;

// Column lists shared by the queries below (macros, so `concat!` can build `&'static str` SQL).
macro_rules! order_columns {
    () => {
        "id, user_id, cart_id, status, currency, subtotal_minor, shipping_minor, tax_minor, discount_minor, \
         total_minor, coupon_code, shipping_address, tracking_carrier, tracking_number, payment_due_by, \
         created_at, updated_at"
    };
}

macro_rules! item_columns {
    () => {
        "id, order_id, product_id, sku, name, options, currency, unit_price_minor, quantity, line_total_minor"
    };
}

macro_rules! event_columns {
    () => {
        "id, order_id, from_status, to_status, actor_kind, actor_id, note, at"
    };
}

/// Binds an event's values in `event_columns!()` order (a `query` or a `query_as`).
macro_rules! bind_event {
    ($query:expr, $event:expr) => {{
        let event: &OrderEvent = $event;
        let (actor_kind, actor_id) = actor_columns(&event.actor);
        $query
            .bind(event.id.0)
            .bind(event.order_id.0)
            .bind(event.from.map(OrderStatus::as_str))
            .bind(event.to.as_str())
            .bind(actor_kind)
            .bind(actor_id)
            .bind(event.note.as_deref())
            .bind(event.at)
    }};
}

macro_rules! saga_columns {
    () => {
        "order_id, cart_id, step, updated_at"
    };
}

macro_rules! coupon_columns {
    () => {
        "code, discount_kind, discount_value, discount_currency, min_subtotal_minor, min_subtotal_currency, \
         expires_at, usage_limit, per_customer_limit, times_used, active"
    };
}

const ORDER_KEYS: &[UniqueKey] = &[UniqueKey {
    constraint: "orders_pkey",
    code: "order_exists",
    message: "an order with this id exists",
}];

const COUPON_KEYS: &[UniqueKey] = &[UniqueKey {
    constraint: "coupons_pkey",
    code: "coupon_exists",
    message: "a coupon with this code exists",
}];

fn order_not_found() -> Error {
    Error::NotFound { entity: "order" }
}

/// A `commerce.orders` row; its items are read separately.
#[derive(sqlx::FromRow)]
struct OrderRow {
    id: Uuid,
    user_id: Uuid,
    cart_id: Option<Uuid>,
    status: String,
    currency: String,
    subtotal_minor: i64,
    shipping_minor: i64,
    tax_minor: i64,
    discount_minor: i64,
    total_minor: i64,
    coupon_code: Option<String>,
    shipping_address: serde_json::Value,
    tracking_carrier: Option<String>,
    tracking_number: Option<String>,
    payment_due_by: DateTime<Utc>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl OrderRow {
    fn into_order(self, items: Vec<OrderItem>) -> Result<Order> {
        const TABLE: &str = "orders";
        let id = self.id;
        let amount = |minor| codec::money(minor, &self.currency, TABLE, id);
        let totals = OrderTotals {
            subtotal: amount(self.subtotal_minor)?,
            shipping: amount(self.shipping_minor)?,
            tax: amount(self.tax_minor)?,
            discount: amount(self.discount_minor)?,
            total: amount(self.total_minor)?,
        };
        let shipping_address: AddressFields = serde_json::from_value(self.shipping_address)
            .map_err(|e| bad_value(TABLE, id, "shipping address", e.to_string()))?;
        let tracking = match (self.tracking_carrier, self.tracking_number) {
            (Some(carrier), Some(number)) => Some(Tracking { carrier, number }),
            (None, None) => None,
            other => return Err(bad_value(TABLE, id, "tracking", other)),
        };
        Ok(Order {
            id: OrderId(id),
            user_id: UserId(self.user_id),
            cart_id: self.cart_id.map(CartId),
            status: order_status(&self.status, TABLE, id)?,
            items,
            totals,
            coupon_code: self.coupon_code,
            shipping_address,
            tracking,
            payment_due_by: self.payment_due_by,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

/// An order row of a paged list, with the number of orders matching.
#[derive(sqlx::FromRow)]
struct CountedOrderRow {
    #[sqlx(flatten)]
    order: OrderRow,
    total: i64,
}

/// A `commerce.order_items` row.
#[derive(sqlx::FromRow)]
struct ItemRow {
    id: Uuid,
    order_id: Uuid,
    product_id: Uuid,
    sku: String,
    name: String,
    options: serde_json::Value,
    currency: String,
    unit_price_minor: i64,
    quantity: i32,
    line_total_minor: i64,
}

impl TryFrom<ItemRow> for OrderItem {
    type Error = Error;

    fn try_from(row: ItemRow) -> Result<Self> {
        const TABLE: &str = "order_items";
        let id = row.id;
        Ok(Self {
            id: OrderItemId(id),
            product_id: ProductId(row.product_id),
            sku: codec::sku(&row.sku, TABLE, id)?,
            name: row.name,
            options: serde_json::from_value(row.options).map_err(|e| bad_value(TABLE, id, "options", e.to_string()))?,
            unit_price: codec::money(row.unit_price_minor, &row.currency, TABLE, id)?,
            quantity: codec::quantity(i64::from(row.quantity), TABLE, id)?,
            line_total: codec::money(row.line_total_minor, &row.currency, TABLE, id)?,
        })
    }
}

/// A `commerce.order_events` row (without `seq`).
#[derive(sqlx::FromRow)]
struct EventRow {
    id: Uuid,
    order_id: Uuid,
    from_status: Option<String>,
    to_status: String,
    actor_kind: String,
    actor_id: Option<Uuid>,
    note: Option<String>,
    at: DateTime<Utc>,
}

impl TryFrom<EventRow> for OrderEvent {
    type Error = Error;

    fn try_from(row: EventRow) -> Result<Self> {
        const TABLE: &str = "order_events";
        let id = row.id;
        Ok(Self {
            id: OrderEventId(id),
            order_id: OrderId(row.order_id),
            from: row.from_status.map(|s| order_status(&s, TABLE, id)).transpose()?,
            to: order_status(&row.to_status, TABLE, id)?,
            actor: actor_from(&row.actor_kind, row.actor_id, TABLE, id)?,
            note: row.note,
            at: row.at,
        })
    }
}

/// A `commerce.checkout_sagas` row.
#[derive(sqlx::FromRow)]
struct SagaRow {
    order_id: Uuid,
    cart_id: Uuid,
    step: String,
    updated_at: DateTime<Utc>,
}

impl TryFrom<SagaRow> for SagaRecord {
    type Error = Error;

    fn try_from(row: SagaRow) -> Result<Self> {
        Ok(Self {
            order_id: OrderId(row.order_id),
            cart_id: CartId(row.cart_id),
            step: codec::decode(saga_step_from, &row.step, "checkout_sagas", row.order_id, "step")?,
            updated_at: row.updated_at,
        })
    }
}

/// A `commerce.coupons` row.
#[derive(sqlx::FromRow)]
struct CouponRow {
    code: String,
    discount_kind: String,
    discount_value: i64,
    discount_currency: Option<String>,
    min_subtotal_minor: Option<i64>,
    min_subtotal_currency: Option<String>,
    expires_at: Option<DateTime<Utc>>,
    usage_limit: Option<i64>,
    per_customer_limit: Option<i64>,
    times_used: i64,
    active: bool,
}

impl TryFrom<CouponRow> for Coupon {
    type Error = Error;

    fn try_from(row: CouponRow) -> Result<Self> {
        const TABLE: &str = "coupons";
        let code = row.code.as_str();
        let discount = match (row.discount_kind.as_str(), row.discount_currency.as_deref()) {
            ("percentage", None) => {
                Discount::Percentage(codec::u32_from(row.discount_value, TABLE, code, "percentage")?)
            }
            ("fixed", Some(currency)) => Discount::Fixed(codec::money(row.discount_value, currency, TABLE, code)?),
            (kind, currency) => return Err(bad_value(TABLE, code, "discount", (kind, currency))),
        };
        let min_subtotal = match (row.min_subtotal_minor, row.min_subtotal_currency.as_deref()) {
            (Some(minor), Some(currency)) => Some(codec::money(minor, currency, TABLE, code)?),
            (None, None) => None,
            other => return Err(bad_value(TABLE, code, "minimum subtotal", other)),
        };
        let limit = |n: Option<i64>, what| n.map(|n| codec::u32_from(n, TABLE, code, what)).transpose();
        Ok(Self {
            discount,
            min_subtotal,
            expires_at: row.expires_at,
            usage_limit: limit(row.usage_limit, "usage limit")?,
            per_customer_limit: limit(row.per_customer_limit, "per-customer limit")?,
            times_used: codec::u32_from(row.times_used, TABLE, code, "times used")?,
            active: row.active,
            code: row.code,
        })
    }
}

/// A reservation row as a transition needs it.
#[derive(sqlx::FromRow)]
struct HeldRow {
    sku: String,
    warehouse: String,
    quantity: i32,
}

/// The one currency of every amount of an order (stored once, in `orders.currency`).
///
/// # Errors
/// `Validation { field: "currency" }` when the order mixes currencies.
fn order_currency(order: &Order) -> Result<Currency> {
    let t = &order.totals;
    let currency = t.total.currency;
    let amounts = [t.subtotal, t.shipping, t.tax, t.discount]
        .into_iter()
        .chain(order.items.iter().flat_map(|i| [i.unit_price, i.line_total]));
    for amount in amounts {
        if amount.currency != currency {
            return Err(Error::invalid(
                "currency",
                format!(
                    "every amount of an order must be in one currency ({currency}, not {})",
                    amount.currency
                ),
            ));
        }
    }
    Ok(currency)
}

/// The orders of these rows, with their items, in the rows' order.
async fn with_items(conn: impl PgExecutor<'_>, rows: Vec<OrderRow>) -> Result<Vec<Order>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let item_rows = sqlx::query_as::<_, ItemRow>(concat!(
        "SELECT ",
        item_columns!(),
        " FROM commerce.order_items WHERE order_id = ANY($1) ORDER BY order_id, position"
    ))
    .bind(ids)
    .fetch_all(conn)
    .await
    .storage()?;
    let mut items: HashMap<Uuid, Vec<OrderItem>> = HashMap::new();
    for row in item_rows {
        items.entry(row.order_id).or_default().push(row.try_into()?);
    }
    rows.into_iter()
        .map(|row| {
            let lines = items.remove(&row.id).unwrap_or_default();
            row.into_order(lines)
        })
        .collect()
}

/// Every stock level of the order's SKUs (`skus`, see [`order_skus`]) in `(sku, warehouse)`
/// order, locked in that order (`FOR NO KEY UPDATE`) until the transaction ends: what the
/// transaction of `place_order` plans its reservations from.
async fn lock_levels(conn: &mut PgConnection, skus: &[&str]) -> Result<Vec<StockLevel>> {
    let rows = sqlx::query_as::<_, inventory::LevelRow>(concat!(
        "SELECT ",
        level_columns!(),
        " FROM commerce.stock_levels WHERE sku = ANY($1) ORDER BY sku, warehouse FOR NO KEY UPDATE"
    ))
    .bind(skus)
    .fetch_all(conn)
    .await
    .storage()?;
    inventory::levels_from(rows)
}

/// The SQLSTATE `commerce.refuse_reservation()` raises (`migrations/0003_checkout_at_once.sql`).
const RESERVATION_REFUSED: &str = "CM001";

/// The SQLSTATE `commerce.refuse_answer()` raises (`migrations/0004_order_answer.sql`).
const ANSWER_REFUSED: &str = "CM002";

/// The reservations `write_orders` is to make for one order, one row each, in order (reservation
/// position).
struct Takes<'a> {
    reservation_ids: Vec<Uuid>,
    movement_ids: Vec<Uuid>,
    skus: Vec<&'a str>,
    /// `None`: the SKU's first warehouse in name order, for the statement to find.
    warehouses: Vec<Option<&'a str>>,
    quantities: Vec<i64>,
}

impl<'a> Takes<'a> {
    /// Every line from its SKU's first warehouse: the reservations [`plan_reservations`] makes
    /// whenever that warehouse has every unit the order wants of the SKU available.
    fn from_first_warehouses(order: &'a Order) -> Self {
        let n = order.items.len();
        Self {
            reservation_ids: (0..n).map(|_| ReservationId::new().0).collect(),
            movement_ids: (0..n).map(|_| MovementId::new().0).collect(),
            skus: order.items.iter().map(|i| i.sku.as_str()).collect(),
            warehouses: vec![None; n],
            quantities: order.items.iter().map(|i| i64::from(i.quantity.get())).collect(),
        }
    }

    /// The reservations of a plan made on locked levels.
    fn planned(reservations: &'a [Reservation]) -> Self {
        let n = reservations.len();
        Self {
            reservation_ids: reservations.iter().map(|r| r.id.0).collect(),
            movement_ids: (0..n).map(|_| MovementId::new().0).collect(),
            skus: reservations.iter().map(|r| r.sku.as_str()).collect(),
            warehouses: reservations.iter().map(|r| Some(r.warehouse.as_str())).collect(),
            quantities: reservations.iter().map(|r| i64::from(r.quantity.get())).collect(),
        }
    }
}

/// One order for [`write_orders`] to write: the order, its one currency, and the reservations
/// to make for it.
struct Writing<'a> {
    new: &'a NewOrder,
    currency: Currency,
    takes: Takes<'a>,
}

/// The orders of one [`write_orders`] statement as column arrays, one `UNNEST` per table.
#[derive(Default)]
struct OrderColumns<'a> {
    // commerce.orders, in `order_columns!()` order.
    ids: Vec<Uuid>,
    users: Vec<Uuid>,
    carts: Vec<Option<Uuid>>,
    statuses: Vec<&'static str>,
    currencies: Vec<&'a str>,
    subtotals: Vec<i64>,
    shippings: Vec<i64>,
    taxes: Vec<i64>,
    discounts: Vec<i64>,
    totals: Vec<i64>,
    coupons: Vec<Option<&'a str>>,
    addresses: Vec<serde_json::Value>,
    carriers: Vec<Option<&'a str>>,
    numbers: Vec<Option<&'a str>>,
    due_by: Vec<DateTime<Utc>>,
    created: Vec<DateTime<Utc>>,
    updated: Vec<DateTime<Utc>>,
    // commerce.order_items.
    line_ids: Vec<Uuid>,
    line_orders: Vec<Uuid>,
    line_positions: Vec<i32>,
    line_products: Vec<Uuid>,
    line_skus: Vec<&'a str>,
    line_names: Vec<&'a str>,
    line_options: Vec<serde_json::Value>,
    line_currencies: Vec<&'a str>,
    line_prices: Vec<i64>,
    line_quantities: Vec<i32>,
    line_totals: Vec<i64>,
    // commerce.order_events, in `event_columns!()` order.
    event_ids: Vec<Uuid>,
    event_orders: Vec<Uuid>,
    event_froms: Vec<Option<&'static str>>,
    event_tos: Vec<&'static str>,
    event_actor_kinds: Vec<&'static str>,
    event_actor_ids: Vec<Option<Uuid>>,
    event_notes: Vec<Option<&'a str>>,
    event_ats: Vec<DateTime<Utc>>,
    // commerce.checkout_sagas, in `saga_columns!()` order.
    saga_orders: Vec<Uuid>,
    saga_carts: Vec<Uuid>,
    saga_steps: Vec<&'static str>,
    saga_updated: Vec<DateTime<Utc>>,
    // The reservations, each with its movement, in order.
    reservation_ids: Vec<Uuid>,
    movement_ids: Vec<Uuid>,
    take_skus: Vec<&'a str>,
    /// `None`: the SKU's first warehouse in name order, for the statement to find.
    take_warehouses: Vec<Option<&'a str>>,
    take_quantities: Vec<i64>,
    take_orders: Vec<Uuid>,
    take_positions: Vec<i32>,
    take_actor_kinds: Vec<&'static str>,
    take_actor_ids: Vec<Option<Uuid>>,
    take_ats: Vec<DateTime<Utc>>,
    // The answers to store with the orders that have one.
    answer_scopes: Vec<&'a str>,
    answer_keys: Vec<&'a str>,
    answer_statuses: Vec<i32>,
    answer_bodies: Vec<&'a str>,
    answer_ats: Vec<DateTime<Utc>>,
}

impl<'a> OrderColumns<'a> {
    fn of(orders: &'a [Writing<'a>]) -> Result<Self> {
        let mut c = Self::default();
        for w in orders {
            c.add(w)?;
        }
        Ok(c)
    }

    fn add(&mut self, w: &'a Writing<'a>) -> Result<()> {
        let order = &w.new.order;
        let t = &order.totals;
        self.ids.push(order.id.0);
        self.users.push(order.user_id.0);
        self.carts.push(order.cart_id.map(|c| c.0));
        self.statuses.push(order.status.as_str());
        self.currencies.push(w.currency.as_str());
        self.subtotals.push(t.subtotal.amount_minor);
        self.shippings.push(t.shipping.amount_minor);
        self.taxes.push(t.tax.amount_minor);
        self.discounts.push(t.discount.amount_minor);
        self.totals.push(t.total.amount_minor);
        self.coupons.push(order.coupon_code.as_deref());
        self.addresses
            .push(serde_json::to_value(&order.shipping_address).map_err(Error::unexpected)?);
        self.carriers.push(order.tracking.as_ref().map(|t| t.carrier.as_str()));
        self.numbers.push(order.tracking.as_ref().map(|t| t.number.as_str()));
        self.due_by.push(order.payment_due_by);
        self.created.push(order.created_at);
        self.updated.push(order.updated_at);

        for (position, item) in (0_i32..).zip(&order.items) {
            self.line_ids.push(item.id.0);
            self.line_orders.push(order.id.0);
            self.line_positions.push(position);
            self.line_products.push(item.product_id.0);
            self.line_skus.push(item.sku.as_str());
            self.line_names.push(item.name.as_str());
            self.line_options
                .push(serde_json::to_value(&item.options).map_err(Error::unexpected)?);
            self.line_currencies.push(item.unit_price.currency.as_str());
            self.line_prices.push(item.unit_price.amount_minor);
            self.line_quantities.push(codec::quantity_column(item.quantity)?);
            self.line_totals.push(item.line_total.amount_minor);
        }

        let event = &w.new.event;
        let (actor_kind, actor_id) = actor_columns(&event.actor);
        self.event_ids.push(event.id.0);
        self.event_orders.push(event.order_id.0);
        self.event_froms.push(event.from.map(OrderStatus::as_str));
        self.event_tos.push(event.to.as_str());
        self.event_actor_kinds.push(actor_kind);
        self.event_actor_ids.push(actor_id);
        self.event_notes.push(event.note.as_deref());
        self.event_ats.push(event.at);

        // The saga's order is the order's own id, as the core builds it.
        let saga = &w.new.saga;
        self.saga_orders.push(saga.order_id.0);
        self.saga_carts.push(saga.cart_id.0);
        self.saga_steps.push(saga_step_code(saga.step));
        self.saga_updated.push(saga.updated_at);

        let takes = &w.takes;
        self.reservation_ids.extend(&takes.reservation_ids);
        self.movement_ids.extend(&takes.movement_ids);
        self.take_skus.extend(&takes.skus);
        self.take_warehouses.extend(&takes.warehouses);
        self.take_quantities.extend(&takes.quantities);
        for position in (0_i32..).take(takes.quantities.len()) {
            self.take_orders.push(order.id.0);
            self.take_positions.push(position);
            self.take_actor_kinds.push(actor_kind);
            self.take_actor_ids.push(actor_id);
            self.take_ats.push(order.created_at);
        }

        if let Some(answer) = &w.new.answer {
            self.answer_scopes.push(answer.key.scope.as_str());
            self.answer_keys.push(answer.key.key.as_str());
            self.answer_statuses.push(i32::from(answer.response.status));
            self.answer_bodies.push(answer.response.body.as_str());
            self.answer_ats.push(order.created_at);
        }
        Ok(())
    }
}

/// Writes new orders whole in one statement: each order, its lines, first event and saga row,
/// and its reservations (the levels' conditional increments, the reservations, and a movement
/// each, whose before/after the statement computes from the levels as it locked them), and the
/// answer to its request's idempotency key if it has one. One order is the usual case; several
/// are checkouts that asked at once ([`Checkouts`]), written and committed together.
///
/// The statement inserts the order rows, then locks every level of the orders' SKUs in
/// `(sku, warehouse)` order (the module's lock order: the lock query's one-time filter reads the
/// orders insert's result) before it changes any. A level that cannot give what the takes ask
/// of it, all orders together (without a plan, its first warehouse short of the SKU's units, or
/// no level at all), makes it raise [`RESERVATION_REFUSED`], which undoes the whole statement.
/// Reservations of one level are made in the orders' order, so each movement's before/after
/// follows the one before it. The other inserts run when the statement ends (nothing reads
/// them), and the foreign keys are checked then, when every row is in.
///
/// `planned`: the takes were planned on locked levels (backorders allowed where the level
/// allows them), rather than every line from its first warehouse (which must then hold every
/// unit the orders want of the SKU).
///
/// Returns `false` when a level could not give what was asked (nothing was written).
///
/// # Errors
/// `Conflict { code: "order_exists" }` when an order id exists;
/// `Conflict { code: "idempotency_key_not_claimed" }` when an answer's key is not claimed and
/// unanswered ([`ANSWER_REFUSED`], which undoes the statement too).
async fn write_orders(conn: impl PgExecutor<'_>, orders: &[Writing<'_>], planned: bool) -> Result<bool> {
    let c = OrderColumns::of(orders)?;
    let done = sqlx::query(concat!(
        "WITH placed AS (
             INSERT INTO commerce.orders (",
        order_columns!(),
        ")
             SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::bigint[],
                                  $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[], $11::text[],
                                  $12::jsonb[], $13::text[], $14::text[], $15::timestamptz[],
                                  $16::timestamptz[], $17::timestamptz[])
             RETURNING id
         ), lines AS (
             INSERT INTO commerce.order_items (id, order_id, position, product_id, sku, name, options, currency,
                                               unit_price_minor, quantity, line_total_minor)
             SELECT * FROM UNNEST($18::uuid[], $19::uuid[], $20::integer[], $21::uuid[], $22::text[], $23::text[],
                                  $24::jsonb[], $25::text[], $26::bigint[], $27::integer[], $28::bigint[])
         ), first_events AS (
             INSERT INTO commerce.order_events (",
        event_columns!(),
        ")
             SELECT * FROM UNNEST($29::uuid[], $30::uuid[], $31::text[], $32::text[], $33::text[], $34::uuid[],
                                  $35::text[], $36::timestamptz[])
         ), sagas AS (
             INSERT INTO commerce.checkout_sagas (",
        saga_columns!(),
        ")
             SELECT * FROM UNNEST($37::uuid[], $38::uuid[], $39::text[], $40::timestamptz[])
         ), locked AS (
             SELECT sku, warehouse, on_hand, reserved FROM commerce.stock_levels
              WHERE sku = ANY($43) AND EXISTS (SELECT FROM placed)
              ORDER BY sku, warehouse FOR NO KEY UPDATE
         ), plan AS (
             SELECT w.reservation_id, w.movement_id, w.sku, w.take, w.order_id, w.position, w.actor_kind,
                    w.actor_id, w.at, w.ord,
                    COALESCE(w.warehouse, (SELECT k.warehouse FROM locked AS k WHERE k.sku = w.sku
                                            ORDER BY k.warehouse LIMIT 1)) AS warehouse
               FROM UNNEST($41::uuid[], $42::uuid[], $43::text[], $44::text[], $45::bigint[], $46::uuid[],
                           $47::integer[], $48::text[], $49::uuid[], $50::timestamptz[])
                    WITH ORDINALITY AS w (reservation_id, movement_id, sku, warehouse, take, order_id, position,
                                          actor_kind, actor_id, at, ord)
         ), per_level AS (
             SELECT sku, warehouse, sum(take)::bigint AS take, max(at) AS at FROM plan GROUP BY sku, warehouse
         ), took AS (
             UPDATE commerce.stock_levels AS l SET reserved = l.reserved + p.take, updated_at = p.at
               FROM per_level AS p
              WHERE l.sku = p.sku AND l.warehouse = p.warehouse
                AND (l.on_hand - l.reserved >= p.take OR ($53 AND l.backorder_allowed))
                AND (SELECT count(*) FROM locked) > 0
             RETURNING 1
         ), movements AS (
             INSERT INTO commerce.stock_movements (",
        inventory::movement_columns!(),
        ")
             SELECT p.movement_id, p.sku, p.warehouse, $52, k.on_hand, k.on_hand, k.reserved + p.earlier,
                    k.reserved + p.earlier + p.take, NULL, p.order_id, p.actor_kind, p.actor_id, p.at
               FROM (SELECT *, COALESCE(sum(take) OVER (PARTITION BY sku, warehouse ORDER BY ord
                                                         ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)
                               AS earlier
                       FROM plan) AS p
               JOIN locked AS k ON k.sku = p.sku AND k.warehouse = p.warehouse
              ORDER BY p.ord
         ), reservations AS (
             INSERT INTO commerce.reservations (id, order_id, position, sku, warehouse, quantity, status, created_at)
             SELECT reservation_id, order_id, position, sku, warehouse, take::integer, $51, at FROM plan
         ), answered AS (
             UPDATE commerce.idempotency_keys AS k SET response_status = a.status, response_body = a.body
               FROM UNNEST($54::text[], $55::text[], $56::integer[], $57::text[], $58::timestamptz[])
                    AS a (scope, key, status, body, at)
              WHERE k.scope = a.scope AND k.key = a.key AND k.response_status IS NULL AND k.expires_at > a.at
             RETURNING 1
         )
         SELECT CASE WHEN (SELECT count(*) FROM took) <> (SELECT count(*) FROM per_level)
                     THEN commerce.refuse_reservation()
                     WHEN (SELECT count(*) FROM answered) <> cardinality($54::text[])
                     THEN commerce.refuse_answer()
                     ELSE true END"
    ))
    // The orders ($1 to $17).
    .bind(c.ids)
    .bind(c.users)
    .bind(c.carts)
    .bind(c.statuses)
    .bind(c.currencies)
    .bind(c.subtotals)
    .bind(c.shippings)
    .bind(c.taxes)
    .bind(c.discounts)
    .bind(c.totals)
    .bind(c.coupons)
    .bind(c.addresses)
    .bind(c.carriers)
    .bind(c.numbers)
    .bind(c.due_by)
    .bind(c.created)
    .bind(c.updated)
    // Their lines ($18 to $28).
    .bind(c.line_ids)
    .bind(c.line_orders)
    .bind(c.line_positions)
    .bind(c.line_products)
    .bind(c.line_skus)
    .bind(c.line_names)
    .bind(c.line_options)
    .bind(c.line_currencies)
    .bind(c.line_prices)
    .bind(c.line_quantities)
    .bind(c.line_totals)
    // Their first events ($29 to $36).
    .bind(c.event_ids)
    .bind(c.event_orders)
    .bind(c.event_froms)
    .bind(c.event_tos)
    .bind(c.event_actor_kinds)
    .bind(c.event_actor_ids)
    .bind(c.event_notes)
    .bind(c.event_ats)
    // Their saga rows ($37 to $40).
    .bind(c.saga_orders)
    .bind(c.saga_carts)
    .bind(c.saga_steps)
    .bind(c.saga_updated)
    // The reservations ($41 to $50), then what every reservation and movement shares.
    .bind(c.reservation_ids)
    .bind(c.movement_ids)
    .bind(c.take_skus)
    .bind(c.take_warehouses)
    .bind(c.take_quantities)
    .bind(c.take_orders)
    .bind(c.take_positions)
    .bind(c.take_actor_kinds)
    .bind(c.take_actor_ids)
    .bind(c.take_ats)
    .bind(reservation_status_code(ReservationStatus::Active))
    .bind(movement_kind_code(MovementKind::Reservation))
    .bind(planned)
    // The answers to store with the orders ($54 to $58; empty when none has one).
    .bind(c.answer_scopes)
    .bind(c.answer_keys)
    .bind(c.answer_statuses)
    .bind(c.answer_bodies)
    .bind(c.answer_ats)
    .execute(conn)
    .await;
    match done {
        Ok(_) => Ok(true),
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some(RESERVATION_REFUSED) => Ok(false),
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some(ANSWER_REFUSED) => Err(KeyAnswer::not_claimed()),
        Err(e) => Err(conflict_or_storage(e, ORDER_KEYS)),
    }
}

async fn insert_event(conn: &mut PgConnection, event: &OrderEvent) -> Result<()> {
    bind_event!(
        sqlx::query(concat!(
            "INSERT INTO commerce.order_events (",
            event_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        )),
        event
    )
    .execute(conn)
    .await
    .storage()?;
    Ok(())
}

/// Reserves every line of the order against `locked` (every level of the order's SKUs, in
/// `(sku, warehouse)` order), exactly as the in-memory adapter does: warehouses in name order,
/// spilling over to the next warehouse and, past what is available, onto the first warehouse
/// allowing backorders. A SKU on two lines sees the first line's reservation. The reservations
/// come one per line and warehouse, in line order, then warehouse order.
///
/// # Errors
/// `OutOfStock` naming the first line that cannot be reserved, with what was available for it.
fn plan_reservations(order: &Order, levels: &[StockLevel]) -> Result<Vec<Reservation>> {
    let mut work: BTreeMap<Sku, Vec<StockLevel>> = BTreeMap::new();
    for level in levels {
        work.entry(level.sku.clone()).or_default().push(level.clone());
    }
    let mut reservations = Vec::new();
    for item in &order.items {
        let levels = work.entry(item.sku.clone()).or_default();
        let takes = split_reservation(&item.sku, levels, i64::from(item.quantity.get()))?;
        for (take, level) in takes.into_iter().zip(levels.iter_mut()) {
            if take == 0 {
                continue;
            }
            level.reserved += take;
            reservations.push(Reservation {
                id: ReservationId::new(),
                order_id: order.id,
                sku: item.sku.clone(),
                warehouse: level.warehouse.clone(),
                // At most the line's quantity, so always a valid one.
                quantity: Quantity::new(take).map_err(Error::unexpected)?,
                status: ReservationStatus::Active,
                created_at: order.created_at,
            });
        }
    }
    Ok(reservations)
}

/// The order's SKUs, each once, in byte order.
fn order_skus(order: &Order) -> Vec<&str> {
    let mut skus: Vec<&str> = order.items.iter().map(|i| i.sku.as_str()).collect();
    skus.sort_unstable();
    skus.dedup();
    skus
}

/// Redeems the coupon: one more use, only while under its limit.
///
/// # Errors
/// `Conflict { code: "coupon_exhausted" }`; `NotFound { entity: "coupon" }` (as the in-memory
/// adapter does for an unknown code).
async fn redeem_coupon(conn: &mut PgConnection, code: &str) -> Result<()> {
    // Saturating, as the in-memory adapter's u32 counter.
    let done = sqlx::query(
        "UPDATE commerce.coupons SET times_used = LEAST(times_used + 1, 4294967295)
          WHERE code = $1 AND (usage_limit IS NULL OR times_used < usage_limit)",
    )
    .bind(code)
    .execute(&mut *conn)
    .await
    .storage()?;
    if done.rows_affected() == 1 {
        return Ok(());
    }
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM commerce.coupons WHERE code = $1)")
        .bind(code)
        .fetch_one(conn)
        .await
        .storage()?;
    if exists {
        Err(Error::conflict(
            "coupon_exhausted",
            format!("the coupon {code} has been used up"),
        ))
    } else {
        Err(Error::NotFound { entity: "coupon" })
    }
}

/// Applies a transition's effect on the order's reservations and stock (the order row is locked
/// by the caller, so nothing else moves these reservations meanwhile).
async fn apply_stock_effect(
    conn: &mut PgConnection,
    order: OrderId,
    effect: StockEffect,
    actor: &Actor,
    at: DateTime<Utc>,
) -> Result<()> {
    let Some(change) = effect.reservation_change() else {
        return Ok(());
    };
    let (wanted, kind, next) = (change.from, change.movement, change.to);
    let wanted = reservation_status_code(wanted);
    let held = sqlx::query_as::<_, HeldRow>(
        "SELECT sku, warehouse, quantity FROM commerce.reservations
          WHERE order_id = $1 AND status = $2 ORDER BY position",
    )
    .bind(order.0)
    .bind(wanted)
    .fetch_all(&mut *conn)
    .await
    .storage()?;
    if held.is_empty() {
        return Ok(());
    }
    let mut work: BTreeMap<(String, String), StockLevel> = inventory::lock_levels_of_order(conn, order, wanted)
        .await?
        .into_iter()
        .map(|l| ((l.sku.as_str().to_owned(), l.warehouse.clone()), l))
        .collect();
    let info = MovementContext {
        kind,
        reason: None,
        order_id: Some(order),
        actor,
        at,
    };
    let mut movements = Vec::with_capacity(held.len());
    // (on hand, reserved) change per level.
    let mut deltas: BTreeMap<(String, String), (i64, i64)> = BTreeMap::new();
    for r in held {
        let key = (r.sku, r.warehouse);
        let level = work.get_mut(&key).ok_or_else(|| {
            Error::unexpected_msg(format!(
                "commerce.reservations of order {order}: {} in {} has no stock level",
                key.0, key.1
            ))
        })?;
        let q = i64::from(r.quantity);
        let (on_hand, reserved) = match effect {
            StockEffect::Commit => (-q, -q),
            StockEffect::Release => (0, -q),
            StockEffect::Restock => (q, 0),
            StockEffect::None => (0, 0),
        };
        let before = level.clone();
        level.on_hand += on_hand;
        level.reserved += reserved;
        level.updated_at = at;
        movements.push(StockMovement::between(&before, level, &info));
        let delta = deltas.entry(key).or_insert((0, 0));
        delta.0 += on_hand;
        delta.1 += reserved;
    }
    for ((sku, warehouse), (on_hand, reserved)) in &deltas {
        let done = sqlx::query(
            "UPDATE commerce.stock_levels
                SET on_hand = on_hand + $3, reserved = reserved + $4, updated_at = $5
              WHERE sku = $1 AND warehouse = $2 AND reserved + $4 >= 0",
        )
        .bind(sku)
        .bind(warehouse)
        .bind(on_hand)
        .bind(reserved)
        .bind(at)
        .execute(&mut *conn)
        .await
        .storage()?;
        if done.rows_affected() != 1 {
            return Err(Error::unexpected_msg(format!(
                "commerce.stock_levels {sku}/{warehouse}: reserved below the order's reservations"
            )));
        }
    }
    sqlx::query("UPDATE commerce.reservations SET status = $3 WHERE order_id = $1 AND status = $2")
        .bind(order.0)
        .bind(wanted)
        .bind(reservation_status_code(next))
        .execute(&mut *conn)
        .await
        .storage()?;
    inventory::insert_movements(conn, &movements).await
}

impl<'a> Writing<'a> {
    /// `new` with every line from its SKU's first warehouse (see [`Takes::from_first_warehouses`]).
    fn at_once(new: &'a NewOrder, currency: Currency) -> Self {
        Self {
            new,
            currency,
            takes: Takes::from_first_warehouses(&new.order),
        }
    }
}

/// Checkouts placed at once (every line from its SKU's first warehouse), coalesced: the orders
/// of the checkouts that ask while the running statements run are written by the next
/// statement, together ([`write_orders`]). Most of a checkout's cost to the database is its
/// statement's rather than its rows' (executor start-up for a plan writing eight tables, the
/// round trip, the commit and its WAL flush), so orders sharing a statement share that cost.
/// A statement of several orders that fails (one order short, or its key no longer claimed)
/// has written nothing; each of its orders is then written on its own, which finds out which.
pub(crate) struct Checkouts;

/// An order waiting for a [`Checkouts`] statement (owned: it may wait in the queue).
pub(crate) struct Checkout {
    new: NewOrder,
    currency: Currency,
}

impl Checkout {
    fn of(new: &NewOrder, currency: Currency) -> Self {
        Self {
            new: new.clone(),
            currency,
        }
    }
}

/// What a [`Checkouts`] statement did for one order.
pub(crate) enum Written {
    /// Placed.
    Placed,
    /// Nothing written: a first warehouse could not give what the order asked of it.
    Short,
    /// Nothing written: the statement it shared with other orders failed; it is to be written
    /// on its own.
    Alone,
}

impl Batch for Checkouts {
    type Ask = Checkout;
    type Answer = Result<Written>;
    /// One. On the 2-core dev VM at 32 clients (1,000 products, PostgreSQL on the same VM, three
    /// interleaved rounds): one order a statement 693–983 checkouts a second, the database
    /// spending ~1.7 ms of CPU on each; one shared statement running 1,023–1,078 (~15 orders
    /// each, ~1.0 ms); two running 1,003–1,127 (~1.3 ms: their orders' SKUs overlap, so the
    /// second waits on the first's stock locks).
    const MOST_RUNNING: usize = 1;
    /// Bounds a statement's size and the stock levels it holds locked at once (each order's
    /// SKUs): at 32 clients a statement carries ~15 orders.
    const MOST_ASKS: usize = 64;

    fn queue(store: &PgStore) -> &Queue<Self> {
        &store.queues.checkouts
    }

    fn run<'a>(store: &'a PgStore, asks: &'a [Checkout]) -> BoxFuture<'a, Result<Vec<Self::Answer>, sqlx::Error>> {
        Box::pin(async move {
            let orders: Vec<Writing<'_>> = asks.iter().map(|a| Writing::at_once(&a.new, a.currency)).collect();
            let written = write_orders(store.db(), &orders, false).await;
            Ok(match written {
                Ok(true) => asks.iter().map(|_| Ok(Written::Placed)).collect(),
                Ok(false) if asks.len() == 1 => vec![Ok(Written::Short)],
                Err(e) if asks.len() == 1 => vec![Err(e)],
                Ok(false) | Err(_) => asks.iter().map(|_| Ok(Written::Alone)).collect(),
            })
        })
    }
}

impl PgStore {
    /// One run of `place_order`: at once when it can, else in a transaction (module docs).
    async fn place_order_once(&self, new: &NewOrder, currency: Currency) -> Result<Order> {
        let order = &new.order;
        if new.coupon.is_none() {
            // At once: every line from its SKU's first warehouse, if that warehouse has every
            // unit the order wants of the SKU, in a statement shared with the checkouts asking
            // meanwhile. Otherwise (spread over warehouses, backorders, a shortage to name) or
            // with a coupon to redeem, the transaction below plans on locked levels.
            let shared = coalesce::coalesced::<Checkouts>(self, Checkout::of(new, currency)).await;
            let at_once = match shared.and_then(|written| written) {
                Ok(Written::Placed) => Ok(true),
                Ok(Written::Short) => Ok(false),
                Ok(Written::Alone) => write_orders(self.db(), &[Writing::at_once(new, currency)], false).await,
                Err(e) => Err(e),
            };
            match at_once {
                Ok(true) => return Ok(order.clone()),
                Ok(false) => {}
                // Aborted by the database (a deadlock with an embedder's transaction, a
                // serialization failure on a server defaulting to SERIALIZABLE): the
                // transaction below runs at READ COMMITTED.
                Err(e) if retry::is_retryable(&e) => {}
                Err(e) => return Err(e),
            }
        }
        let mut conn = self.db().lease().await.storage()?;
        let mut tx = retry::begin(&mut conn).await?;
        let locked = lock_levels(&mut tx, &order_skus(order)).await?;
        let reservations = plan_reservations(order, &locked)?;
        let planned = Writing {
            new,
            currency,
            takes: Takes::planned(&reservations),
        };
        if !write_orders(&mut *tx, &[planned], true).await? {
            return Err(Error::unexpected_msg(format!(
                "commerce.stock_levels of order {}: changed while locked",
                order.id
            )));
        }
        if let Some(code) = &new.coupon {
            redeem_coupon(&mut tx, code).await?;
        }
        tx.commit().await.storage()?;
        conn.finish();
        Ok(order.clone())
    }

    /// One run of `transition_order`'s transaction.
    async fn transition_order_once(&self, t: &OrderTransition) -> Result<Order> {
        let at = t.event.at;
        let tracking = t.tracking.as_ref();
        let mut conn = self.db().lease().await.storage()?;
        let mut tx = retry::begin(&mut conn).await?;
        // Compare-and-set: the row lock it takes serializes transitions of this order.
        let row = sqlx::query_as::<_, OrderRow>(concat!(
            "UPDATE commerce.orders
                SET status = $3, updated_at = $4,
                    tracking_carrier = COALESCE($5, tracking_carrier),
                    tracking_number = COALESCE($6, tracking_number)
              WHERE id = $1 AND status = $2
          RETURNING ",
            order_columns!()
        ))
        .bind(t.order_id.0)
        .bind(t.from.as_str())
        .bind(t.to.as_str())
        .bind(at)
        .bind(tracking.map(|t| t.carrier.as_str()))
        .bind(tracking.map(|t| t.number.as_str()))
        .fetch_optional(&mut *tx)
        .await
        .storage()?;
        let Some(row) = row else {
            let current: Option<String> = sqlx::query_scalar("SELECT status FROM commerce.orders WHERE id = $1")
                .bind(t.order_id.0)
                .fetch_optional(&mut *tx)
                .await
                .storage()?;
            return Err(match current {
                None => order_not_found(),
                Some(current) => Error::InvalidTransition {
                    from: order_status(&current, "orders", t.order_id)?.to_string(),
                    to: t.to.to_string(),
                },
            });
        };
        apply_stock_effect(&mut tx, t.order_id, t.stock, &t.event.actor, at).await?;
        insert_event(&mut tx, &t.event).await?;
        if let Some(step) = t.saga_step {
            // As the in-memory adapter: an order without a saga row just has no saga to move.
            sqlx::query("UPDATE commerce.checkout_sagas SET step = $2, updated_at = $3 WHERE order_id = $1")
                .bind(t.order_id.0)
                .bind(saga_step_code(step))
                .bind(at)
                .execute(&mut *tx)
                .await
                .storage()?;
        }
        let order = with_items(&mut *tx, vec![row])
            .await?
            .pop()
            .ok_or_else(|| Error::unexpected_msg("transition_order: the moved order vanished"))?;
        tx.commit().await.storage()?;
        conn.finish();
        Ok(order)
    }
}

#[async_trait]
impl OrderStore for PgStore {
    async fn place_order(&self, new: &NewOrder) -> Result<Order> {
        let currency = order_currency(&new.order)?;
        let placed = retry::retrying(|| self.place_order_once(new, currency)).await;
        // Its reservations changed these SKUs' available units.
        if may_have_written(&placed) {
            self.stock_changed(new.order.items.iter().map(|i| i.sku.as_str())).await;
        }
        placed
    }

    async fn get_order(&self, id: OrderId) -> Result<Order> {
        let row = sqlx::query_as::<_, OrderRow>(concat!(
            "SELECT ",
            order_columns!(),
            " FROM commerce.orders WHERE id = $1"
        ))
        .bind(id.0)
        .fetch_optional(self.db())
        .await
        .storage()?
        .ok_or_else(order_not_found)?;
        with_items(self.db(), vec![row])
            .await?
            .pop()
            .ok_or_else(order_not_found)
    }

    async fn list_user_orders(&self, user: UserId, page: PageRequest) -> Result<Page<Order>> {
        let rows = sqlx::query_as::<_, CountedOrderRow>(concat!(
            "SELECT ",
            order_columns!(),
            ", COUNT(*) OVER () AS total FROM commerce.orders
              WHERE user_id = $1
              ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3"
        ))
        .bind(user.0)
        .bind(i64::from(page.limit()))
        .bind(codec::offset(page.offset())?)
        .fetch_all(self.db())
        .await
        .storage()?;
        let count = async {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM commerce.orders WHERE user_id = $1")
                .bind(user.0)
                .fetch_one(self.db())
                .await
                .storage()
        };
        let total = codec::page_total(rows.first().map(|r| r.total), page.offset(), count).await?;
        let orders = with_items(self.db(), rows.into_iter().map(|r| r.order).collect()).await?;
        Ok(Page::new(orders, total, page))
    }

    async fn list_orders(&self, status: Option<OrderStatus>, page: PageRequest) -> Result<Page<Order>> {
        // Two statements rather than `$3 IS NULL OR status = $3`, so each has its own index.
        let limit = i64::from(page.limit());
        let offset = codec::offset(page.offset())?;
        let rows = match status {
            None => {
                sqlx::query_as::<_, CountedOrderRow>(concat!(
                    "SELECT ",
                    order_columns!(),
                    ", COUNT(*) OVER () AS total FROM commerce.orders
                      ORDER BY created_at DESC, id DESC LIMIT $1 OFFSET $2"
                ))
                .bind(limit)
                .bind(offset)
                .fetch_all(self.db())
                .await
            }
            Some(status) => {
                sqlx::query_as::<_, CountedOrderRow>(concat!(
                    "SELECT ",
                    order_columns!(),
                    ", COUNT(*) OVER () AS total FROM commerce.orders
                      WHERE status = $3
                      ORDER BY created_at DESC, id DESC LIMIT $1 OFFSET $2"
                ))
                .bind(limit)
                .bind(offset)
                .bind(status.as_str())
                .fetch_all(self.db())
                .await
            }
        }
        .storage()?;
        let count = async {
            // Only past the last page: one statement for both cases is enough.
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM commerce.orders WHERE $1::text IS NULL OR status = $1")
                .bind(status.map(OrderStatus::as_str))
                .fetch_one(self.db())
                .await
                .storage()
        };
        let total = codec::page_total(rows.first().map(|r| r.total), page.offset(), count).await?;
        let orders = with_items(self.db(), rows.into_iter().map(|r| r.order).collect()).await?;
        Ok(Page::new(orders, total, page))
    }

    async fn transition_order(&self, transition: &OrderTransition) -> Result<Order> {
        let moved = retry::retrying(|| self.transition_order_once(transition)).await;
        if transition.stock != StockEffect::None {
            match &moved {
                Ok(order) => self.stock_changed(order.items.iter().map(|i| i.sku.as_str())).await,
                Err(_) if may_have_written(&moved) => self.all_stock_changed().await,
                Err(_) => {}
            }
        }
        moved
    }

    async fn order_events(&self, id: OrderId) -> Result<Vec<OrderEvent>> {
        let rows = sqlx::query_as::<_, EventRow>(concat!(
            "SELECT ",
            event_columns!(),
            " FROM commerce.order_events WHERE order_id = $1 ORDER BY at, seq"
        ))
        .bind(id.0)
        .fetch_all(self.db())
        .await
        .storage()?;
        rows.into_iter().map(OrderEvent::try_from).collect()
    }

    async fn set_saga_step(&self, order: OrderId, step: SagaStep, now: DateTime<Utc>) -> Result<()> {
        // Committed asynchronously, as the port allows: the statement turns `synchronous_commit`
        // off for its own (implicit) transaction, so the commit does not wait for the WAL flush.
        // Any later synchronous commit (the next order, payment) flushes it; a crash before that
        // loses at most this step, which `OrderService::recover` redoes.
        let done = sqlx::query(
            "WITH lazy AS (SELECT set_config('synchronous_commit', 'off', true))
             UPDATE commerce.checkout_sagas SET step = $2, updated_at = $3 FROM lazy WHERE order_id = $1",
        )
        .bind(order.0)
        .bind(saga_step_code(step))
        .bind(now)
        .execute(self.db())
        .await
        .storage()?;
        if done.rows_affected() == 0 {
            Err(Error::NotFound { entity: "saga" })
        } else {
            Ok(())
        }
    }

    async fn unfinished_sagas(&self) -> Result<Vec<SagaRecord>> {
        // The condition is the partial index `checkout_sagas_unfinished_idx`'s, word for word.
        let rows = sqlx::query_as::<_, SagaRow>(concat!(
            "SELECT ",
            saga_columns!(),
            " FROM commerce.checkout_sagas
              WHERE step NOT IN ('completed', 'compensated')
              ORDER BY updated_at, order_id"
        ))
        .fetch_all(self.db())
        .await
        .storage()?;
        rows.into_iter().map(SagaRecord::try_from).collect()
    }

    async fn overdue_orders(&self, now: DateTime<Utc>) -> Result<Vec<OrderId>> {
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM commerce.orders WHERE status = 'pending' AND payment_due_by <= $1
              ORDER BY payment_due_by, id",
        )
        .bind(now)
        .fetch_all(self.db())
        .await
        .storage()?;
        Ok(ids.into_iter().map(OrderId).collect())
    }

    async fn has_purchased(&self, user: UserId, product: ProductId) -> Result<bool> {
        sqlx::query_scalar(
            "SELECT EXISTS (
                 SELECT 1 FROM commerce.order_items i JOIN commerce.orders o ON o.id = i.order_id
                  WHERE i.product_id = $2 AND o.user_id = $1 AND o.status IN ('processing', 'shipped', 'delivered'))",
        )
        .bind(user.0)
        .bind(product.0)
        .fetch_one(self.db())
        .await
        .storage()
    }

    async fn count_orders_with_product(&self, product: ProductId) -> Result<u64> {
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(DISTINCT order_id) FROM commerce.order_items WHERE product_id = $1")
                .bind(product.0)
                .fetch_one(self.db())
                .await
                .storage()?;
        u64::try_from(n).map_err(Error::unexpected)
    }

    async fn insert_coupon(&self, coupon: &Coupon) -> Result<()> {
        let (kind, value, currency) = match &coupon.discount {
            Discount::Percentage(bps) => ("percentage", codec::u32_column(*bps), None),
            Discount::Fixed(money) => ("fixed", money.amount_minor, Some(money.currency.as_str())),
        };
        let min_subtotal = coupon.min_subtotal.as_ref();
        sqlx::query(concat!(
            "INSERT INTO commerce.coupons (",
            coupon_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        ))
        .bind(&coupon.code)
        .bind(kind)
        .bind(value)
        .bind(currency)
        .bind(min_subtotal.map(|m| m.amount_minor))
        .bind(min_subtotal.map(|m| m.currency.as_str()))
        .bind(coupon.expires_at)
        .bind(coupon.usage_limit.map(codec::u32_column))
        .bind(coupon.per_customer_limit.map(codec::u32_column))
        .bind(codec::u32_column(coupon.times_used))
        .bind(coupon.active)
        .execute(self.db())
        .await
        .map_err(|e| conflict_or_storage(e, COUPON_KEYS))?;
        Ok(())
    }

    async fn find_coupon(&self, code: &str) -> Result<Option<Coupon>> {
        sqlx::query_as::<_, CouponRow>(concat!(
            "SELECT ",
            coupon_columns!(),
            " FROM commerce.coupons WHERE code = $1"
        ))
        .bind(code)
        .fetch_optional(self.db())
        .await
        .storage()?
        .map(Coupon::try_from)
        .transpose()
    }

    async fn coupon_uses_by(&self, code: &str, user: UserId) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM commerce.orders WHERE coupon_code = $1 AND user_id = $2 AND status <> 'cancelled'",
        )
        .bind(code)
        .bind(user.0)
        .fetch_one(self.db())
        .await
        .storage()?;
        u64::try_from(n).map_err(Error::unexpected)
    }
}

#[cfg(test)]
mod tests {
    use commerce_core::domain::{Attributes, IdempotencyKey, Money, StockChange, StoredResponse};
    use commerce_core::ports::InventoryStore;

    use super::*;
    use crate::coalesce::tests::{starved, until_waiting};
    use commerce_core::conformance::new_customer as customer;

    use crate::testing::fresh_store;

    fn sku(s: &str) -> Sku {
        Sku::parse(s).unwrap()
    }

    fn level(s: &str, warehouse: &str, on_hand: i64, reserved: i64, backorder: bool) -> StockLevel {
        StockLevel {
            sku: sku(s),
            warehouse: warehouse.to_owned(),
            on_hand,
            reserved,
            low_stock_threshold: 0,
            reorder_point: 0,
            backorder_allowed: backorder,
            updated_at: Utc::now(),
        }
    }

    fn order(lines: &[(&str, i64)]) -> Order {
        let usd = |n| Money::new(n, Currency::USD);
        let at = Utc::now();
        Order {
            id: OrderId::new(),
            user_id: UserId::new(),
            cart_id: None,
            status: OrderStatus::Pending,
            items: lines
                .iter()
                .map(|&(s, q)| OrderItem {
                    id: OrderItemId::new(),
                    product_id: ProductId::new(),
                    sku: sku(s),
                    name: s.to_owned(),
                    options: Attributes::new(),
                    unit_price: usd(100),
                    quantity: Quantity::new(q).unwrap(),
                    line_total: usd(100 * q),
                })
                .collect(),
            totals: OrderTotals {
                subtotal: usd(0),
                shipping: usd(0),
                tax: usd(0),
                discount: usd(0),
                total: usd(0),
            },
            coupon_code: None,
            shipping_address: AddressFields::default(),
            tracking: None,
            payment_due_by: at,
            created_at: at,
            updated_at: at,
        }
    }

    fn takes(reservations: &[Reservation]) -> Vec<(&str, &str, i64)> {
        reservations
            .iter()
            .map(|r| (r.sku.as_str(), r.warehouse.as_str(), i64::from(r.quantity.get())))
            .collect()
    }

    #[test]
    fn reservations_fill_warehouses_in_name_order() {
        let locked = vec![level("A", "a-south", 5, 3, false), level("A", "b-north", 5, 0, false)];
        let plan = plan_reservations(&order(&[("A", 4)]), &locked).unwrap();
        assert_eq!(takes(&plan), vec![("A", "a-south", 2), ("A", "b-north", 2)]);
    }

    #[test]
    fn a_sku_on_two_lines_sees_the_first_reservation() {
        let locked = vec![level("A", "main", 5, 0, false)];
        let err = plan_reservations(&order(&[("A", 3), ("A", 3)]), &locked).unwrap_err();
        assert!(
            matches!(&err, Error::OutOfStock { sku, requested: 3, available: 2 } if sku == "A"),
            "{err:?}"
        );
    }

    #[test]
    fn the_first_short_line_in_line_order_is_named() {
        let locked = vec![level("A", "main", 1, 0, false), level("B", "main", 0, 0, false)];
        let err = plan_reservations(&order(&[("B", 1), ("A", 2)]), &locked).unwrap_err();
        assert!(
            matches!(&err, Error::OutOfStock { sku, requested: 1, available: 0 } if sku == "B"),
            "{err:?}"
        );
    }

    #[test]
    fn backorders_go_to_the_first_level_allowing_them() {
        let locked = vec![
            level("A", "a", 2, 0, false),
            level("A", "b", 0, 1, true),
            level("A", "c", 1, 0, true),
        ];
        let plan = plan_reservations(&order(&[("A", 6)]), &locked).unwrap();
        // 2 from a, 1 from c (available), the 3 beyond onto b, the first allowing backorders.
        assert_eq!(takes(&plan), vec![("A", "a", 2), ("A", "b", 3), ("A", "c", 1)]);
    }

    async fn stock(store: &PgStore, s: &str, warehouse: &str, on_hand: i64) {
        let change = StockChange::SetOnHand(on_hand);
        store
            .change_stock(&sku(s), warehouse, &change, &Actor::System, None, Utc::now())
            .await
            .unwrap();
    }

    /// A pending order of `lines` for `user`, with its first event and saga row.
    fn placing(user: UserId, lines: &[(&str, i64)]) -> NewOrder {
        let mut order = order(lines);
        // As PostgreSQL keeps them, so that an order reads back equal.
        let at = chrono::SubsecRound::trunc_subsecs(order.created_at, 6);
        (order.created_at, order.updated_at, order.payment_due_by) = (at, at, at);
        order.user_id = user;
        let cart_id = CartId::new();
        order.cart_id = Some(cart_id);
        NewOrder {
            event: OrderEvent {
                id: OrderEventId::new(),
                order_id: order.id,
                from: None,
                to: OrderStatus::Pending,
                actor: Actor::User(user),
                note: None,
                at: order.created_at,
            },
            saga: SagaRecord {
                order_id: order.id,
                cart_id,
                step: SagaStep::OrderPlaced,
                updated_at: order.created_at,
            },
            coupon: None,
            answer: None,
            order,
        }
    }

    /// Places each order in a task of its own while every connection of the store's pool is
    /// held, so that all but the first [`Checkouts::MOST_RUNNING`] queue; then lets them run.
    /// The results come in the orders' order, with the store the orders were placed through.
    async fn placed_together(store: PgStore, orders: &[NewOrder]) -> (PgStore, Vec<Result<Order>>) {
        let (store, held) = starved(store).await;
        let tasks: Vec<_> = orders
            .iter()
            .map(|new| {
                let (store, new) = (store.clone(), new.clone());
                tokio::spawn(async move { store.place_order(&new).await })
            })
            .collect();
        until_waiting(&store.queues.checkouts, orders.len() - Checkouts::MOST_RUNNING).await;
        drop(held);
        let mut results = Vec::new();
        for task in tasks {
            let placed = tokio::time::timeout(std::time::Duration::from_secs(20), task).await;
            results.push(placed.expect("a queued checkout was never answered").unwrap());
        }
        (store, results)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn checkouts_asking_while_statements_run_are_written_together_in_order() {
        let store = fresh_store().await;
        stock(&store, "SHARED-1", "east", 100).await;
        stock(&store, "SHARED-1", "west", 100).await;
        for i in 0..12 {
            stock(&store, &format!("OWN-{i}"), "main", 5).await;
        }
        let user = customer(&store).await;
        let orders: Vec<NewOrder> = (0..12)
            .map(|i| placing(user, &[("SHARED-1", 2), (&format!("OWN-{i}"), 1)]))
            .collect();
        let (store, results) = placed_together(store, &orders).await;

        for (placed, new) in results.into_iter().zip(&orders) {
            assert_eq!(placed.unwrap(), new.order);
            assert_eq!(store.get_order(new.order.id).await.unwrap(), new.order, "read back");
        }
        let statements = store
            .queues
            .checkouts
            .statements
            .load(std::sync::atomic::Ordering::Relaxed);
        // The running ones, then one for everyone who queued (two if both freed turns take some).
        assert!(
            (Checkouts::MOST_RUNNING + 1..=Checkouts::MOST_RUNNING + 2).contains(&statements),
            "12 checkouts took {statements} statements"
        );
        // Every order's 2 units from the first warehouse, each movement starting where the one
        // before it ended, one per order.
        let levels = store.stock_levels(&sku("SHARED-1")).await.unwrap();
        let reserved: Vec<_> = levels.iter().map(|l| (l.warehouse.as_str(), l.reserved)).collect();
        assert_eq!(reserved, vec![("east", 24), ("west", 0)]);
        let movements = store
            .movements(&sku("SHARED-1"), PageRequest::new(1, 100).unwrap())
            .await
            .unwrap()
            .items;
        let movements: Vec<_> = movements
            .iter()
            .filter(|m| m.kind == MovementKind::Reservation)
            .collect();
        let mut chain: Vec<_> = movements
            .iter()
            .map(|m| (m.reserved_before, m.reserved_after, m.warehouse.as_str()))
            .collect();
        chain.sort_unstable();
        let expected: Vec<_> = (0..12).map(|i| (2 * i, 2 * i + 2, "east")).collect();
        assert_eq!(chain, expected);
        let ordered: std::collections::HashSet<_> = movements.iter().filter_map(|m| m.order_id).collect();
        assert_eq!(ordered.len(), 12, "a movement per order");
        assert!(
            movements.iter().all(|m| m.actor == Actor::User(user)),
            "each by its buyer"
        );
        // Each order's reservations, by position: its shared line, then its own.
        for (i, new) in orders.iter().enumerate() {
            let held: Vec<(i32, String, String, i32)> = sqlx::query_as(
                "SELECT position, sku, warehouse, quantity FROM commerce.reservations WHERE order_id = $1 ORDER BY position",
            )
            .bind(new.order.id.0)
            .fetch_all(store.pool())
            .await
            .unwrap();
            let own = format!("OWN-{i}");
            let want = [(0, "SHARED-1", "east", 2), (1, own.as_str(), "main", 1)];
            let held: Vec<_> = held
                .iter()
                .map(|(p, s, w, q)| (*p, s.as_str(), w.as_str(), *q))
                .collect();
            assert_eq!(held, want, "order {i}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_shared_checkout_statement_writes_at_most_its_bound_of_orders() {
        let store = fresh_store().await;
        stock(&store, "MANY-1", "main", 1_000).await;
        let user = customer(&store).await;
        let n = Checkouts::MOST_ASKS + 6;
        let orders: Vec<NewOrder> = (0..n).map(|_| placing(user, &[("MANY-1", 1)])).collect();
        let (store, results) = placed_together(store, &orders).await;

        assert!(results.into_iter().all(|placed| placed.is_ok()));
        let statements = store
            .queues
            .checkouts
            .statements
            .load(std::sync::atomic::Ordering::Relaxed);
        // The one that found the turn free, then the bound's worth, then the rest.
        assert_eq!(statements, 3, "{n} checkouts");
        let reserved = store.stock_levels(&sku("MANY-1")).await.unwrap()[0].reserved;
        assert_eq!(reserved, n as i64);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_shared_checkout_statement_that_fails_leaves_each_order_its_own_outcome() {
        let store = fresh_store().await;
        stock(&store, "SCARCE-1", "main", 3).await;
        stock(&store, "PLENTY-1", "main", 100).await;
        let user = customer(&store).await;
        let mut orders: Vec<NewOrder> = (0..8).map(|_| placing(user, &[("PLENTY-1", 1)])).collect();
        // More than there is; and an answer for a key nobody claimed.
        orders[3] = placing(user, &[("PLENTY-1", 1), ("SCARCE-1", 4)]);
        orders[5].answer = Some(KeyAnswer {
            key: IdempotencyKey {
                scope: "orders".to_owned(),
                key: "never-claimed".to_owned(),
            },
            response: StoredResponse {
                status: 201,
                body: "{}".to_owned(),
            },
        });
        let (store, results) = placed_together(store, &orders).await;

        for (i, (placed, new)) in results.into_iter().zip(&orders).enumerate() {
            match i {
                3 => assert!(
                    matches!(&placed, Err(Error::OutOfStock { sku, requested: 4, available: 3 }) if sku == "SCARCE-1"),
                    "{placed:?}"
                ),
                5 => assert!(
                    matches!(&placed, Err(Error::Conflict { code, .. }) if *code == "idempotency_key_not_claimed"),
                    "{placed:?}"
                ),
                _ => assert_eq!(placed.unwrap(), new.order, "order {i}"),
            }
        }
        for refused in [&orders[3], &orders[5]] {
            assert!(matches!(
                store.get_order(refused.order.id).await,
                Err(Error::NotFound { .. })
            ));
        }
        let reserved = |s: &'static str| {
            let store = store.clone();
            async move { store.stock_levels(&sku(s)).await.unwrap()[0].reserved }
        };
        assert_eq!((reserved("PLENTY-1").await, reserved("SCARCE-1").await), (6, 0));
    }

    #[test]
    fn mixed_currencies_are_refused() {
        let mut o = order(&[("A", 1)]);
        assert_eq!(order_currency(&o).unwrap(), Currency::USD);
        o.totals.tax = Money::new(1, Currency::EUR);
        assert!(matches!(order_currency(&o), Err(Error::Validation(_))));
    }
}
