//! The inventory port on PostgreSQL: stock levels per SKU per warehouse and the movements log
//! (tables from `migrations/0002_checkout.sql`), plus the level locking and movement logging the
//! order store shares.
//!
//! **Locking.** A transaction that changes stock locks the levels it changes (`FOR NO KEY
//! UPDATE`) before computing anything from them, and a transaction locking more than one level
//! locks them in `(sku, warehouse)` byte order, in one statement (a checkout's first statement
//! in `orders.rs`, [`lock_levels_of_order`]) or as a pair in warehouse order (`transfer_stock`).
//! The columns are `COLLATE "C"`, so that order is the same everywhere. With the order row (locked first by
//! the order store) and coupons (locked last) this gives every transaction the same lock order,
//! so concurrent checkouts, transitions, transfers and stock changes queue but never deadlock.
//! The writes themselves are conditional, relative (`reserved = reserved + $n WHERE
//! on_hand - reserved >= $n`) or compare-and-set on the count read under the lock
//! ([`write_on_hand`]), a second fence should a lock ever be missing.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use commerce_core::domain::{
    Actor, MovementId, OrderId, Page, PageRequest, Quantity, Sku, StockChange, StockLevel, StockMovement, StockSet,
    StockTransfer,
};
use commerce_core::ports::InventoryStore;
use commerce_core::{Error, Result};
use futures::future::BoxFuture;
use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::{PgConnection, PgExecutor, Postgres};
use uuid::Uuid;

use crate::coalesce::{self, Batch, Queue};
use crate::codec::{self, actor_columns, actor_from, movement_kind_code, movement_kind_from};
use crate::error::StorageResult;
use crate::stock_cache::{Lookup, may_have_written};
use crate::{PgStore, retry};

// Column lists shared by the queries below (macros, so `concat!` can build `&'static str` SQL).
macro_rules! level_columns {
    () => {
        "sku, warehouse, on_hand, reserved, low_stock_threshold, reorder_point, backorder_allowed, updated_at"
    };
}
pub(crate) use level_columns;

macro_rules! movement_columns {
    () => {
        "id, sku, warehouse, kind, on_hand_before, on_hand_after, reserved_before, reserved_after, reason, \
         order_id, actor_kind, actor_id, at"
    };
}
pub(crate) use movement_columns;

fn level_not_found() -> Error {
    Error::NotFound { entity: "stock level" }
}

/// A `commerce.stock_levels` row.
#[derive(sqlx::FromRow)]
pub(crate) struct LevelRow {
    sku: String,
    warehouse: String,
    on_hand: i64,
    reserved: i64,
    low_stock_threshold: i64,
    reorder_point: i64,
    backorder_allowed: bool,
    updated_at: DateTime<Utc>,
}

impl TryFrom<LevelRow> for StockLevel {
    type Error = Error;

    fn try_from(row: LevelRow) -> Result<Self> {
        let sku = codec::sku(&row.sku, "stock_levels", format_args!("{}/{}", row.sku, row.warehouse))?;
        Ok(Self {
            sku,
            warehouse: row.warehouse,
            on_hand: row.on_hand,
            reserved: row.reserved,
            low_stock_threshold: row.low_stock_threshold,
            reorder_point: row.reorder_point,
            backorder_allowed: row.backorder_allowed,
            updated_at: row.updated_at,
        })
    }
}

/// A level row of a paged list, with the number of rows matching.
#[derive(sqlx::FromRow)]
struct CountedLevelRow {
    #[sqlx(flatten)]
    level: LevelRow,
    total: i64,
}

/// A `commerce.stock_movements` row (without `seq`).
#[derive(sqlx::FromRow)]
struct MovementRow {
    id: Uuid,
    sku: String,
    warehouse: String,
    kind: String,
    on_hand_before: i64,
    on_hand_after: i64,
    reserved_before: i64,
    reserved_after: i64,
    reason: Option<String>,
    order_id: Option<Uuid>,
    actor_kind: String,
    actor_id: Option<Uuid>,
    at: DateTime<Utc>,
}

impl TryFrom<MovementRow> for StockMovement {
    type Error = Error;

    fn try_from(row: MovementRow) -> Result<Self> {
        const TABLE: &str = "stock_movements";
        Ok(Self {
            id: MovementId(row.id),
            sku: codec::sku(&row.sku, TABLE, row.id)?,
            warehouse: row.warehouse,
            kind: codec::decode(movement_kind_from, &row.kind, TABLE, row.id, "kind")?,
            on_hand_before: row.on_hand_before,
            on_hand_after: row.on_hand_after,
            reserved_before: row.reserved_before,
            reserved_after: row.reserved_after,
            reason: row.reason,
            order_id: row.order_id.map(OrderId),
            actor: actor_from(&row.actor_kind, row.actor_id, TABLE, row.id)?,
            at: row.at,
        })
    }
}

/// A movement row of a paged list, with the number of rows matching.
#[derive(sqlx::FromRow)]
struct CountedMovementRow {
    #[sqlx(flatten)]
    movement: MovementRow,
    total: i64,
}

pub(crate) fn levels_from(rows: Vec<LevelRow>) -> Result<Vec<StockLevel>> {
    rows.into_iter().map(StockLevel::try_from).collect()
}

/// Locks the levels holding the order's reservations in state `status`, in `(sku, warehouse)`
/// order, and returns them in that order.
pub(crate) async fn lock_levels_of_order(
    conn: &mut PgConnection,
    order: OrderId,
    status: &str,
) -> Result<Vec<StockLevel>> {
    let rows = sqlx::query_as::<_, LevelRow>(concat!(
        "SELECT ",
        level_columns!(),
        " FROM commerce.stock_levels
          WHERE (sku, warehouse) IN
                (SELECT sku, warehouse FROM commerce.reservations WHERE order_id = $1 AND status = $2)
          ORDER BY sku, warehouse
            FOR NO KEY UPDATE"
    ))
    .bind(order.0)
    .bind(status)
    .fetch_all(conn)
    .await
    .storage()?;
    levels_from(rows)
}

/// Appends the movements bound as `$1` to `$13` (see [`MovementColumns`]) to the log, in their
/// order (which `seq` records).
macro_rules! insert_movements_sql {
    () => {
        concat!(
            "INSERT INTO commerce.stock_movements (",
            $crate::inventory::movement_columns!(),
            ")
             SELECT id, sku, warehouse, kind, on_hand_before, on_hand_after, reserved_before, reserved_after, reason,
                    order_id, actor_kind, actor_id, at
               FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], $7::bigint[],
                           $8::bigint[], $9::text[], $10::uuid[], $11::text[], $12::uuid[], $13::timestamptz[])
                    WITH ORDINALITY AS m (id, sku, warehouse, kind, on_hand_before, on_hand_after, reserved_before,
                                          reserved_after, reason, order_id, actor_kind, actor_id, at, ord)
              ORDER BY ord"
        )
    };
}

/// Movements as column arrays, bound as `$1` to `$13` of [`insert_movements_sql`].
pub(crate) struct MovementColumns<'a> {
    ids: Vec<Uuid>,
    skus: Vec<&'a str>,
    warehouses: Vec<&'a str>,
    kinds: Vec<&'static str>,
    on_hand_before: Vec<i64>,
    on_hand_after: Vec<i64>,
    reserved_before: Vec<i64>,
    reserved_after: Vec<i64>,
    reasons: Vec<Option<&'a str>>,
    orders: Vec<Option<Uuid>>,
    actor_kinds: Vec<&'static str>,
    actor_ids: Vec<Option<Uuid>>,
    ats: Vec<DateTime<Utc>>,
}

impl<'a> MovementColumns<'a> {
    pub(crate) fn of(movements: &'a [StockMovement]) -> Self {
        let n = movements.len();
        let mut c = Self {
            ids: Vec::with_capacity(n),
            skus: Vec::with_capacity(n),
            warehouses: Vec::with_capacity(n),
            kinds: Vec::with_capacity(n),
            on_hand_before: Vec::with_capacity(n),
            on_hand_after: Vec::with_capacity(n),
            reserved_before: Vec::with_capacity(n),
            reserved_after: Vec::with_capacity(n),
            reasons: Vec::with_capacity(n),
            orders: Vec::with_capacity(n),
            actor_kinds: Vec::with_capacity(n),
            actor_ids: Vec::with_capacity(n),
            ats: Vec::with_capacity(n),
        };
        for m in movements {
            let (actor_kind, actor_id) = actor_columns(&m.actor);
            c.ids.push(m.id.0);
            c.skus.push(m.sku.as_str());
            c.warehouses.push(m.warehouse.as_str());
            c.kinds.push(movement_kind_code(m.kind));
            c.on_hand_before.push(m.on_hand_before);
            c.on_hand_after.push(m.on_hand_after);
            c.reserved_before.push(m.reserved_before);
            c.reserved_after.push(m.reserved_after);
            c.reasons.push(m.reason.as_deref());
            c.orders.push(m.order_id.map(|o| o.0));
            c.actor_kinds.push(actor_kind);
            c.actor_ids.push(actor_id);
            c.ats.push(m.at);
        }
        c
    }

    /// Binds the columns as the query's first thirteen parameters.
    pub(crate) fn bind<'q>(self, query: Query<'q, Postgres, PgArguments>) -> Query<'q, Postgres, PgArguments>
    where
        'a: 'q,
    {
        query
            .bind(self.ids)
            .bind(self.skus)
            .bind(self.warehouses)
            .bind(self.kinds)
            .bind(self.on_hand_before)
            .bind(self.on_hand_after)
            .bind(self.reserved_before)
            .bind(self.reserved_after)
            .bind(self.reasons)
            .bind(self.orders)
            .bind(self.actor_kinds)
            .bind(self.actor_ids)
            .bind(self.ats)
    }
}

/// Appends movements to the log, in the given order (which `seq` records).
pub(crate) async fn insert_movements(conn: &mut PgConnection, movements: &[StockMovement]) -> Result<()> {
    if movements.is_empty() {
        return Ok(());
    }
    MovementColumns::of(movements)
        .bind(sqlx::query(insert_movements_sql!()))
        .execute(conn)
        .await
        .storage()?;
    Ok(())
}

/// Creates the level at zero unless it exists. In a transaction that may yet be refused, the
/// rollback removes it again.
async fn ensure_level(conn: &mut PgConnection, sku: &Sku, warehouse: &str, now: DateTime<Utc>) -> Result<()> {
    sqlx::query(
        "INSERT INTO commerce.stock_levels (sku, warehouse, on_hand, reserved, updated_at) VALUES ($1, $2, 0, 0, $3)
         ON CONFLICT (sku, warehouse) DO NOTHING",
    )
    .bind(sku.as_str())
    .bind(warehouse)
    .bind(now)
    .execute(conn)
    .await
    .storage()?;
    Ok(())
}

/// Locks the one level and returns it, if stocked.
async fn lock_level(conn: impl PgExecutor<'_>, sku: &Sku, warehouse: &str) -> Result<Option<StockLevel>> {
    sqlx::query_as::<_, LevelRow>(concat!(
        "SELECT ",
        level_columns!(),
        " FROM commerce.stock_levels WHERE sku = $1 AND warehouse = $2 FOR NO KEY UPDATE"
    ))
    .bind(sku.as_str())
    .bind(warehouse)
    .fetch_optional(conn)
    .await
    .storage()?
    .map(StockLevel::try_from)
    .transpose()
}

impl PgStore {
    /// One run of `change_stock`'s transaction.
    async fn change_stock_once(
        &self,
        sku: &Sku,
        warehouse: &str,
        change: &StockChange,
        actor: &Actor,
        reason: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<StockLevel> {
        let mut conn = self.db().lease().await.storage()?;
        let mut tx = retry::begin(&mut conn).await?;
        ensure_level(&mut tx, sku, warehouse, now).await?;
        let before = lock_level(&mut *tx, sku, warehouse).await?.ok_or_else(|| {
            Error::unexpected_msg(format!(
                "commerce.stock_levels {sku}/{warehouse}: missing right after its upsert"
            ))
        })?;
        let (changed, movement) = before.changed(change, reason.map(str::to_owned), actor, now)?;
        // The movement is the domain's; the level is the row as stored (timestamps to the µs).
        let after = write_on_hand(&mut tx, &before, changed.on_hand, now).await?;
        insert_movements(&mut tx, &[movement]).await?;
        tx.commit().await.storage()?;
        conn.finish();
        Ok(after)
    }

    /// One run of `set_stock_levels`' transaction: five statements whatever the number of
    /// levels (create the missing, lock all in key order, set them, log the movements, commit),
    /// so a bulk import costs one commit rather than several per SKU.
    async fn set_stock_levels_once(
        &self,
        sets: &[StockSet],
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<Vec<StockLevel>> {
        // Distinct levels in key order: concurrent imports create and lock rows in the same
        // order, so they queue instead of deadlocking.
        let mut keys: Vec<(&str, &str)> = sets.iter().map(|s| (s.sku.as_str(), s.warehouse.as_str())).collect();
        keys.sort_unstable();
        keys.dedup();
        let (skus, warehouses): (Vec<&str>, Vec<&str>) = keys.into_iter().unzip();
        let mut conn = self.db().lease().await.storage()?;
        let mut tx = retry::begin(&mut conn).await?;
        sqlx::query(
            "INSERT INTO commerce.stock_levels (sku, warehouse, on_hand, reserved, updated_at)
             SELECT sku, warehouse, 0, 0, $3 FROM UNNEST($1::text[], $2::text[]) AS k(sku, warehouse)
             ON CONFLICT (sku, warehouse) DO NOTHING",
        )
        .bind(&skus)
        .bind(&warehouses)
        .bind(now)
        .execute(&mut *tx)
        .await
        .storage()?;
        let locked = sqlx::query_as::<_, LevelRow>(concat!(
            "SELECT ",
            level_columns!(),
            " FROM commerce.stock_levels
              WHERE (sku, warehouse) IN (SELECT * FROM UNNEST($1::text[], $2::text[]))
              ORDER BY sku, warehouse
                FOR NO KEY UPDATE"
        ))
        .bind(&skus)
        .bind(&warehouses)
        .fetch_all(&mut *tx)
        .await
        .storage()?;
        let mut current: HashMap<(Sku, String), StockLevel> = levels_from(locked)?
            .into_iter()
            .map(|l| ((l.sku.clone(), l.warehouse.clone()), l))
            .collect();
        let mut afters = Vec::with_capacity(sets.len());
        let mut movements = Vec::with_capacity(sets.len());
        for (i, set) in sets.iter().enumerate() {
            let key = (set.sku.clone(), set.warehouse.clone());
            let before = current.get(&key).cloned().ok_or_else(|| {
                Error::unexpected_msg(format!(
                    "commerce.stock_levels {}/{}: missing right after its upsert",
                    set.sku, set.warehouse
                ))
            })?;
            let (after, movement) = set.applied_to(i, &before, actor, now)?;
            movements.push(movement);
            current.insert(key, after.clone());
            afters.push(after);
        }
        // Each level's last state, once (the rows are locked: nothing else changed them).
        let finals: Vec<&StockLevel> = current.values().collect();
        sqlx::query(
            "UPDATE commerce.stock_levels AS l
                SET on_hand = u.on_hand, low_stock_threshold = u.low_stock_threshold,
                    reorder_point = u.reorder_point, backorder_allowed = u.backorder_allowed, updated_at = $7
               FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bool[])
                    AS u(sku, warehouse, on_hand, low_stock_threshold, reorder_point, backorder_allowed)
              WHERE l.sku = u.sku AND l.warehouse = u.warehouse",
        )
        .bind(finals.iter().map(|l| l.sku.as_str()).collect::<Vec<_>>())
        .bind(finals.iter().map(|l| l.warehouse.as_str()).collect::<Vec<_>>())
        .bind(finals.iter().map(|l| l.on_hand).collect::<Vec<_>>())
        .bind(finals.iter().map(|l| l.low_stock_threshold).collect::<Vec<_>>())
        .bind(finals.iter().map(|l| l.reorder_point).collect::<Vec<_>>())
        .bind(finals.iter().map(|l| l.backorder_allowed).collect::<Vec<_>>())
        .bind(now)
        .execute(&mut *tx)
        .await
        .storage()?;
        insert_movements(&mut tx, &movements).await?;
        tx.commit().await.storage()?;
        conn.finish();
        Ok(afters)
    }

    /// One run of `transfer_stock`'s transaction.
    async fn transfer_stock_once(
        &self,
        sku: &Sku,
        from: &str,
        to: &str,
        quantity: Quantity,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<(StockLevel, StockLevel)> {
        let mut conn = self.db().lease().await.storage()?;
        let mut tx = retry::begin(&mut conn).await?;
        // The target first (a new row is only visible to this transaction, so nobody queues on
        // it holding another level), then both levels locked in warehouse order in one statement.
        ensure_level(&mut tx, sku, to, now).await?;
        let locked = sqlx::query_as::<_, LevelRow>(concat!(
            "SELECT ",
            level_columns!(),
            " FROM commerce.stock_levels WHERE sku = $1 AND warehouse IN ($2, $3) ORDER BY warehouse
               FOR NO KEY UPDATE"
        ))
        .bind(sku.as_str())
        .bind(from)
        .bind(to)
        .fetch_all(&mut *tx)
        .await
        .storage()?;
        let mut source = None;
        let mut target = None;
        for level in levels_from(locked)? {
            if level.warehouse == from {
                source = Some(level);
            } else {
                target = Some(level);
            }
        }
        let source = source.ok_or_else(level_not_found)?;
        let target = target.ok_or_else(|| {
            Error::unexpected_msg(format!(
                "commerce.stock_levels {sku}/{to}: missing right after its upsert"
            ))
        })?;
        let transfer = StockTransfer::new(&source, &target, quantity, actor, now)?;
        let source_after = write_on_hand(&mut tx, &source, transfer.source.on_hand, now).await?;
        let target_after = write_on_hand(&mut tx, &target, transfer.target.on_hand, now).await?;
        insert_movements(&mut tx, &transfer.movements).await?;
        tx.commit().await.storage()?;
        conn.finish();
        Ok((source_after, target_after))
    }
}

/// Sets a locked level's on hand, computed from `before` (the level as locked), and returns the
/// row as stored. Compare-and-set on the count read under the lock: a second fence should a
/// lock ever be missing.
async fn write_on_hand(
    conn: &mut PgConnection,
    before: &StockLevel,
    on_hand: i64,
    now: DateTime<Utc>,
) -> Result<StockLevel> {
    sqlx::query_as::<_, LevelRow>(concat!(
        "UPDATE commerce.stock_levels SET on_hand = $3, updated_at = $4
          WHERE sku = $1 AND warehouse = $2 AND on_hand = $5
      RETURNING ",
        level_columns!()
    ))
    .bind(before.sku.as_str())
    .bind(&before.warehouse)
    .bind(on_hand)
    .bind(now)
    .bind(before.on_hand)
    .fetch_optional(conn)
    .await
    .storage()?
    .ok_or_else(|| {
        Error::unexpected_msg(format!(
            "commerce.stock_levels {}/{}: changed while locked",
            before.sku, before.warehouse
        ))
    })?
    .try_into()
}

/// Available-stock reads (every add to cart), coalesced: one statement reads the SKUs of
/// everyone who asked while the running ones ran.
pub(crate) struct StockReads;

impl Batch for StockReads {
    /// The SKUs one caller asks about.
    type Ask = Vec<String>;
    /// Available units per SKU of the whole statement (SKUs without a level absent).
    type Answer = Arc<HashMap<String, i64>>;
    /// On the 2-core dev VM at 32 clients, adds to cart a second (two runs each): one running
    /// statement 16,088–21,338, two 17,015–19,095, four 15,709–16,376. Two, so one slow
    /// statement does not hold up every reader.
    const MOST_RUNNING: usize = 2;

    fn queue(store: &PgStore) -> &Queue<Self> {
        &store.queues.stock_reads
    }

    fn run<'a>(store: &'a PgStore, asks: &'a [Vec<String>]) -> BoxFuture<'a, Result<Vec<Self::Answer>, sqlx::Error>> {
        Box::pin(async move {
            let mut skus: Vec<&str> = asks.iter().flatten().map(String::as_str).collect();
            skus.sort_unstable();
            skus.dedup();
            let rows: Vec<(String, i64)> = sqlx::query_as(
                "SELECT sku, SUM(on_hand - reserved)::bigint FROM commerce.stock_levels WHERE sku = ANY($1) GROUP BY sku",
            )
            .bind(skus)
            .fetch_all(store.db())
            .await?;
            let totals = Arc::new(rows.into_iter().collect::<HashMap<_, _>>());
            Ok(vec![totals; asks.len()])
        })
    }
}

#[async_trait]
impl InventoryStore for PgStore {
    async fn stock_levels(&self, sku: &Sku) -> Result<Vec<StockLevel>> {
        let rows = sqlx::query_as::<_, LevelRow>(concat!(
            "SELECT ",
            level_columns!(),
            " FROM commerce.stock_levels WHERE sku = $1 ORDER BY warehouse"
        ))
        .bind(sku.as_str())
        .fetch_all(self.db())
        .await
        .storage()?;
        levels_from(rows)
    }

    async fn available(&self, skus: &[Sku]) -> Result<Vec<(Sku, i64)>> {
        if skus.is_empty() {
            return Ok(Vec::new());
        }
        let cache = self.stock_cache();
        let Lookup {
            mut known,
            missing,
            generation,
        } = cache.lookup(skus);
        if !missing.is_empty() {
            let totals = coalesce::coalesced::<StockReads>(self, missing.clone()).await?;
            let fetched: Vec<(String, Option<i64>)> = missing
                .into_iter()
                .map(|sku| {
                    let units = totals.get(&sku).copied();
                    (sku, units)
                })
                .collect();
            if let Some(generation) = generation {
                cache.fill(generation, fetched.iter().cloned());
            }
            known.extend(fetched);
        }
        // In the order asked, each SKU once; never-stocked SKUs absent.
        let mut seen = HashSet::with_capacity(skus.len());
        Ok(skus
            .iter()
            .filter(|sku| seen.insert(sku.as_str()))
            .filter_map(|sku| {
                known
                    .get(sku.as_str())
                    .copied()
                    .flatten()
                    .map(|units| (sku.clone(), units))
            })
            .collect())
    }

    async fn skus_in_stock(&self) -> Result<Vec<Sku>> {
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT sku FROM commerce.stock_levels
              GROUP BY sku
             HAVING SUM(on_hand - reserved) > 0 OR bool_or(backorder_allowed)
              ORDER BY sku",
        )
        .fetch_all(self.db())
        .await
        .storage()?;
        rows.iter().map(|raw| codec::sku(raw, "stock_levels", raw)).collect()
    }

    async fn change_stock(
        &self,
        sku: &Sku,
        warehouse: &str,
        change: &StockChange,
        actor: &Actor,
        reason: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<StockLevel> {
        let changed =
            retry::retrying(|| self.change_stock_once(sku, warehouse, change, actor, reason.as_deref(), now)).await;
        if may_have_written(&changed) {
            self.stock_changed([sku.as_str()]).await;
        }
        changed
    }

    async fn set_stock_levels(&self, sets: &[StockSet], actor: &Actor, now: DateTime<Utc>) -> Result<Vec<StockLevel>> {
        if sets.is_empty() {
            return Ok(Vec::new());
        }
        let set = retry::retrying(|| self.set_stock_levels_once(sets, actor, now)).await;
        if may_have_written(&set) {
            self.stock_changed(sets.iter().map(|s| s.sku.as_str())).await;
        }
        set
    }

    async fn transfer_stock(
        &self,
        sku: &Sku,
        from: &str,
        to: &str,
        quantity: Quantity,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<(StockLevel, StockLevel)> {
        StockTransfer::check_route(from, to)?;
        let moved = retry::retrying(|| self.transfer_stock_once(sku, from, to, quantity, actor, now)).await;
        if may_have_written(&moved) {
            self.stock_changed([sku.as_str()]).await;
        }
        moved
    }

    async fn low_stock(&self, page: PageRequest) -> Result<Page<StockLevel>> {
        // The condition is the partial index `stock_levels_low_idx`'s, word for word.
        let rows = sqlx::query_as::<_, CountedLevelRow>(concat!(
            "SELECT ",
            level_columns!(),
            ", COUNT(*) OVER () AS total FROM commerce.stock_levels
              WHERE on_hand - reserved <= low_stock_threshold
              ORDER BY sku, warehouse LIMIT $1 OFFSET $2"
        ))
        .bind(i64::from(page.limit()))
        .bind(codec::offset(page.offset())?)
        .fetch_all(self.db())
        .await
        .storage()?;
        let count = async {
            sqlx::query_scalar::<_, i64>(
                "SELECT COUNT(*) FROM commerce.stock_levels WHERE on_hand - reserved <= low_stock_threshold",
            )
            .fetch_one(self.db())
            .await
            .storage()
        };
        let total = codec::page_total(rows.first().map(|r| r.total), page.offset(), count).await?;
        let levels = levels_from(rows.into_iter().map(|r| r.level).collect())?;
        Ok(Page::new(levels, total, page))
    }

    async fn movements(&self, sku: &Sku, page: PageRequest) -> Result<Page<StockMovement>> {
        let rows = sqlx::query_as::<_, CountedMovementRow>(concat!(
            "SELECT ",
            movement_columns!(),
            ", COUNT(*) OVER () AS total FROM commerce.stock_movements
              WHERE sku = $1
              ORDER BY at DESC, seq DESC LIMIT $2 OFFSET $3"
        ))
        .bind(sku.as_str())
        .bind(i64::from(page.limit()))
        .bind(codec::offset(page.offset())?)
        .fetch_all(self.db())
        .await
        .storage()?;
        let count = async {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM commerce.stock_movements WHERE sku = $1")
                .bind(sku.as_str())
                .fetch_one(self.db())
                .await
                .storage()
        };
        let total = codec::page_total(rows.first().map(|r| r.total), page.offset(), count).await?;
        let movements = rows
            .into_iter()
            .map(|r| StockMovement::try_from(r.movement))
            .collect::<Result<Vec<_>>>()?;
        Ok(Page::new(movements, total, page))
    }
}
