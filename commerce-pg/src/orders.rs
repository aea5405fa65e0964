//! The order port on PostgreSQL: orders and their items, the append-only event history, the
//! checkout saga log, coupons, and the stock reservations a checkout takes (tables from
//! `migrations/0002_checkout.sql`).
//!
//! **No oversell.** `place_order` writes the whole order in one statement (`write_order`): the
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
//!   only while that statement and its commit run).
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

use crate::codec::{
    self, actor_columns, actor_from, bad_value, movement_kind_code, order_status, reservation_status_code,
    saga_step_code, saga_step_from,
};
use crate::error::{StorageResult, UniqueKey, conflict_or_storage};
use crate::inventory::{self, level_columns};
use crate::{PgStore, retry};

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

/// The order's lines as column arrays, for one `UNNEST ... WITH ORDINALITY` (the ordinality
/// gives each line its `position`).
struct ItemColumns<'a> {
    ids: Vec<Uuid>,
    products: Vec<Uuid>,
    skus: Vec<&'a str>,
    names: Vec<&'a str>,
    options: Vec<serde_json::Value>,
    currencies: Vec<&'a str>,
    prices: Vec<i64>,
    quantities: Vec<i32>,
    totals: Vec<i64>,
}

impl<'a> ItemColumns<'a> {
    fn of(order: &'a Order) -> Result<Self> {
        let n = order.items.len();
        let mut c = Self {
            ids: Vec::with_capacity(n),
            products: Vec::with_capacity(n),
            skus: Vec::with_capacity(n),
            names: Vec::with_capacity(n),
            options: Vec::with_capacity(n),
            currencies: Vec::with_capacity(n),
            prices: Vec::with_capacity(n),
            quantities: Vec::with_capacity(n),
            totals: Vec::with_capacity(n),
        };
        for item in &order.items {
            c.ids.push(item.id.0);
            c.products.push(item.product_id.0);
            c.skus.push(item.sku.as_str());
            c.names.push(item.name.as_str());
            c.options
                .push(serde_json::to_value(&item.options).map_err(Error::unexpected)?);
            c.currencies.push(item.unit_price.currency.as_str());
            c.prices.push(item.unit_price.amount_minor);
            c.quantities.push(codec::quantity_column(item.quantity)?);
            c.totals.push(item.line_total.amount_minor);
        }
        Ok(c)
    }
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

/// The reservations `write_order` is to make, one row each, in order (reservation position).
struct Takes<'a> {
    reservation_ids: Vec<Uuid>,
    movement_ids: Vec<Uuid>,
    skus: Vec<&'a str>,
    /// `None`: the SKU's first warehouse in name order, for the statement to find.
    warehouses: Vec<Option<&'a str>>,
    quantities: Vec<i64>,
    /// Planned on locked levels (backorders allowed where the level allows them), rather than
    /// every line from its first warehouse (which must then hold every unit of the SKU).
    planned: bool,
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
            planned: false,
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
            planned: true,
        }
    }
}

/// Writes a new order whole in one statement: the order, its lines, first event and saga row,
/// and its reservations (the levels' conditional increments, the reservations, and a movement
/// each, whose before/after the statement computes from the levels as it locked them), and the
/// answer to its request's idempotency key if it has one.
///
/// The statement inserts the order row, then locks every level of the order's SKUs in
/// `(sku, warehouse)` order (the module's lock order: the lock query's one-time filter reads the
/// order insert's result) before it changes any. A level that cannot give what `takes` asks of
/// it (without a plan, its first warehouse short of the SKU's units, or no level at all) makes
/// it raise [`RESERVATION_REFUSED`], which undoes the whole statement. The other inserts run
/// when the statement ends (nothing reads them), and the foreign keys are checked then, when
/// every row is in.
///
/// Returns `false` when a level could not give what was asked (nothing was written).
///
/// # Errors
/// `Conflict { code: "order_exists" }` when the order id exists;
/// `Conflict { code: "idempotency_key_not_claimed" }` when the answer's key is not claimed and
/// unanswered ([`ANSWER_REFUSED`], which undoes the statement too).
async fn write_order(conn: impl PgExecutor<'_>, new: &NewOrder, currency: Currency, takes: Takes<'_>) -> Result<bool> {
    let order = &new.order;
    let t = &order.totals;
    let address = serde_json::to_value(&order.shipping_address).map_err(Error::unexpected)?;
    let tracking = order.tracking.as_ref();
    let items = ItemColumns::of(order)?;
    let (actor_kind, actor_id) = actor_columns(&new.event.actor);
    let answer = new.answer.as_ref();
    let query = sqlx::query(concat!(
        "WITH placed AS (
             INSERT INTO commerce.orders (",
        order_columns!(),
        ")
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
             RETURNING id
         ), lines AS (
             INSERT INTO commerce.order_items (id, order_id, position, product_id, sku, name, options, currency,
                                               unit_price_minor, quantity, line_total_minor)
             SELECT id, $1, (ord - 1)::integer, product_id, sku, name, options, currency, unit_price_minor,
                    quantity, line_total_minor
               FROM UNNEST($18::uuid[], $19::uuid[], $20::text[], $21::text[], $22::jsonb[], $23::text[],
                           $24::bigint[], $25::integer[], $26::bigint[])
                    WITH ORDINALITY AS i (id, product_id, sku, name, options, currency, unit_price_minor,
                                          quantity, line_total_minor, ord)
         ), first_event AS (
             INSERT INTO commerce.order_events (",
        event_columns!(),
        ")
             VALUES ($27, $28, $29, $30, $31, $32, $33, $34)
         ), saga AS (
             INSERT INTO commerce.checkout_sagas (",
        saga_columns!(),
        ")
             VALUES ($38, $35, $36, $37)
         ), locked AS (
             SELECT sku, warehouse, on_hand, reserved FROM commerce.stock_levels
              WHERE sku = ANY($41) AND EXISTS (SELECT FROM placed)
              ORDER BY sku, warehouse FOR NO KEY UPDATE
         ), plan AS (
             SELECT w.reservation_id, w.movement_id, w.sku, w.take, w.ord,
                    COALESCE(w.warehouse, (SELECT k.warehouse FROM locked AS k WHERE k.sku = w.sku
                                            ORDER BY k.warehouse LIMIT 1)) AS warehouse
               FROM UNNEST($39::uuid[], $40::uuid[], $41::text[], $42::text[], $43::bigint[])
                    WITH ORDINALITY AS w (reservation_id, movement_id, sku, warehouse, take, ord)
         ), per_level AS (
             SELECT sku, warehouse, sum(take)::bigint AS take FROM plan GROUP BY sku, warehouse
         ), took AS (
             UPDATE commerce.stock_levels AS l SET reserved = l.reserved + p.take, updated_at = $45
               FROM per_level AS p
              WHERE l.sku = p.sku AND l.warehouse = p.warehouse
                AND (l.on_hand - l.reserved >= p.take OR ($49 AND l.backorder_allowed))
                AND (SELECT count(*) FROM locked) > 0
             RETURNING 1
         ), movements AS (
             INSERT INTO commerce.stock_movements (",
        inventory::movement_columns!(),
        ")
             SELECT p.movement_id, p.sku, p.warehouse, $46, k.on_hand, k.on_hand, k.reserved + p.earlier,
                    k.reserved + p.earlier + p.take, NULL, $1, $47, $48, $45
               FROM (SELECT *, COALESCE(sum(take) OVER (PARTITION BY sku, warehouse ORDER BY ord
                                                         ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)
                               AS earlier
                       FROM plan) AS p
               JOIN locked AS k ON k.sku = p.sku AND k.warehouse = p.warehouse
              ORDER BY p.ord
         ), reservations AS (
             INSERT INTO commerce.reservations (id, order_id, position, sku, warehouse, quantity, status, created_at)
             SELECT reservation_id, $1, (ord - 1)::integer, sku, warehouse, take::integer, $44, $45 FROM plan
         ), answered AS (
             UPDATE commerce.idempotency_keys SET response_status = $52, response_body = $53
              WHERE scope = $50 AND key = $51 AND response_status IS NULL AND expires_at > $16
             RETURNING 1
         )
         SELECT CASE WHEN (SELECT count(*) FROM took) <> (SELECT count(*) FROM per_level)
                     THEN commerce.refuse_reservation()
                     WHEN $50::text IS NOT NULL AND NOT EXISTS (SELECT FROM answered)
                     THEN commerce.refuse_answer()
                     ELSE true END"
    ))
    // The order ($1 to $17).
    .bind(order.id.0)
    .bind(order.user_id.0)
    .bind(order.cart_id.map(|c| c.0))
    .bind(order.status.as_str())
    .bind(currency.as_str())
    .bind(t.subtotal.amount_minor)
    .bind(t.shipping.amount_minor)
    .bind(t.tax.amount_minor)
    .bind(t.discount.amount_minor)
    .bind(t.total.amount_minor)
    .bind(order.coupon_code.as_deref())
    .bind(address)
    .bind(tracking.map(|t| t.carrier.as_str()))
    .bind(tracking.map(|t| t.number.as_str()))
    .bind(order.payment_due_by)
    .bind(order.created_at)
    .bind(order.updated_at)
    // Its lines ($18 to $26).
    .bind(items.ids)
    .bind(items.products)
    .bind(items.skus)
    .bind(items.names)
    .bind(items.options)
    .bind(items.currencies)
    .bind(items.prices)
    .bind(items.quantities)
    .bind(items.totals);
    // Its first event ($27 to $34).
    let done = bind_event!(query, &new.event)
        // Its saga row ($35 to $38; the saga's order is the order's own id, as the core builds it).
        .bind(new.saga.cart_id.0)
        .bind(saga_step_code(new.saga.step))
        .bind(new.saga.updated_at)
        .bind(new.saga.order_id.0)
        // The reservations ($39 to $43), then what every reservation and movement shares.
        .bind(takes.reservation_ids)
        .bind(takes.movement_ids)
        .bind(takes.skus)
        .bind(takes.warehouses)
        .bind(takes.quantities)
        .bind(reservation_status_code(ReservationStatus::Active))
        .bind(order.created_at)
        .bind(movement_kind_code(MovementKind::Reservation))
        .bind(actor_kind)
        .bind(actor_id)
        .bind(takes.planned)
        // The answer to store with the order ($50 to $53; all NULL without one).
        .bind(answer.map(|a| a.key.scope.as_str()))
        .bind(answer.map(|a| a.key.key.as_str()))
        .bind(answer.map(|a| i32::from(a.response.status)))
        .bind(answer.map(|a| a.response.body.as_str()))
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

impl PgStore {
    /// One run of `place_order`: at once when it can, else in a transaction (module docs).
    async fn place_order_once(&self, new: &NewOrder, currency: Currency) -> Result<Order> {
        let order = &new.order;
        if new.coupon.is_none() {
            // At once: every line from its SKU's first warehouse, if that warehouse has every
            // unit the order wants of the SKU. Otherwise (spread over warehouses, backorders, a
            // shortage to name) or with a coupon to redeem, the transaction below plans on
            // locked levels.
            match write_order(self.db(), new, currency, Takes::from_first_warehouses(order)).await {
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
        if !write_order(&mut *tx, new, currency, Takes::planned(&reservations)).await? {
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
    use commerce_core::domain::{Attributes, Money};

    use super::*;

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

    #[test]
    fn mixed_currencies_are_refused() {
        let mut o = order(&[("A", 1)]);
        assert_eq!(order_currency(&o).unwrap(), Currency::USD);
        o.totals.tax = Money::new(1, Currency::EUR);
        assert!(matches!(order_currency(&o), Err(Error::Validation(_))));
    }
}
