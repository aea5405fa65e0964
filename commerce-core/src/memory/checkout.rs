//! Checkout: orders, their events and saga rows, coupons, and the inventory they reserve, all
//! under one lock so `place_order` and `transition_order` are atomic with the stock.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{MemoryStore, read, write};
use crate::domain::{
    Actor, Coupon, KeyAnswer, MovementContext, MovementKind, Order, OrderEvent, OrderId, OrderStatus, Page,
    PageRequest, ProductId, Quantity, Reservation, ReservationId, ReservationStatus, SagaRecord, SagaStep, Sku,
    StockChange, StockLevel, StockMovement, StockSet, StockTransfer, UserId, split_reservation,
};
use crate::ports::{InventoryStore, NewOrder, OrderStore, OrderTransition, StockEffect};
use crate::{Error, Result};

/// Orders, saga rows, coupons and inventory.
#[derive(Default)]
pub(super) struct Checkout {
    orders: HashMap<OrderId, Order>,
    /// Each order's history, in append order.
    events: HashMap<OrderId, Vec<OrderEvent>>,
    sagas: HashMap<OrderId, SagaRecord>,
    coupons: HashMap<String, Coupon>,
    /// Stock per SKU, per warehouse in name order.
    levels: BTreeMap<Sku, Levels>,
    /// Each order's reservations.
    reservations: HashMap<OrderId, Vec<Reservation>>,
    /// Each SKU's movements, in append order (oldest first).
    movements: HashMap<Sku, Vec<StockMovement>>,
}

/// One SKU's levels, in warehouse name order, in an allocation of their own size.
///
/// Most SKUs are stocked in one or two warehouses: a map per SKU allocated a node for eleven
/// levels (~1.4 KB), more than half of a seeded demo store's heap.
#[derive(Default)]
struct Levels(Vec<StockLevel>);

impl Levels {
    fn position(&self, warehouse: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|l| l.warehouse.as_str().cmp(warehouse))
    }

    fn get(&self, warehouse: &str) -> Option<&StockLevel> {
        self.position(warehouse).ok().and_then(|i| self.0.get(i))
    }

    /// Stores `level`, replacing the level of its warehouse.
    fn put(&mut self, level: StockLevel) {
        match self.position(&level.warehouse) {
            Ok(i) => self.0[i] = level,
            Err(i) => {
                self.0.reserve_exact(1);
                self.0.insert(i, level);
            }
        }
    }

    fn iter(&self) -> std::slice::Iter<'_, StockLevel> {
        self.0.iter()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A new level at zero.
fn empty_level(sku: &Sku, warehouse: &str, now: DateTime<Utc>) -> StockLevel {
    StockLevel {
        sku: sku.clone(),
        warehouse: warehouse.to_owned(),
        on_hand: 0,
        reserved: 0,
        low_stock_threshold: 0,
        reorder_point: 0,
        backorder_allowed: false,
        updated_at: now,
    }
}

fn quantity(units: i64) -> Result<Quantity> {
    Quantity::new(units).map_err(Error::unexpected)
}

fn newest_first(a: &Order, b: &Order) -> std::cmp::Ordering {
    b.created_at.cmp(&a.created_at).then_with(|| b.id.cmp(&a.id))
}

/// Everything a checkout writes, computed before anything is written.
struct Plan {
    levels: Vec<StockLevel>,
    reservations: Vec<Reservation>,
    movements: Vec<StockMovement>,
}

impl Checkout {
    fn level(&self, sku: &Sku, warehouse: &str) -> Option<&StockLevel> {
        self.levels.get(sku).and_then(|l| l.get(warehouse))
    }

    /// Writes levels and logs their movements.
    fn apply(&mut self, levels: Vec<StockLevel>, movements: Vec<StockMovement>) {
        for level in levels {
            self.levels.entry(level.sku.clone()).or_default().put(level);
        }
        for m in movements {
            // Most SKUs only ever get the movement that stocked them (a default vector would
            // reserve four).
            self.movements
                .entry(m.sku.clone())
                .or_insert_with(|| Vec::with_capacity(1))
                .push(m);
        }
    }

    /// Reserves every line of the order, warehouses in name order, spilling over to the next
    /// warehouse and, past what is available, onto the first warehouse allowing backorders.
    fn plan_reservations(&self, order: &Order, actor: &Actor) -> Result<Plan> {
        // Working copies of the levels touched, so a SKU on two lines sees the first line's
        // reservation.
        let mut work: BTreeMap<Sku, Vec<StockLevel>> = BTreeMap::new();
        let mut reservations = Vec::new();
        let mut movements = Vec::new();
        let info = MovementContext {
            kind: MovementKind::Reservation,
            reason: None,
            order_id: Some(order.id),
            actor,
            at: order.created_at,
        };
        for item in &order.items {
            let levels = work.entry(item.sku.clone()).or_insert_with(|| {
                self.levels
                    .get(&item.sku)
                    .map(|l| l.iter().cloned().collect())
                    .unwrap_or_default()
            });
            let takes = split_reservation(&item.sku, levels, i64::from(item.quantity.get()))?;
            for (take, level) in takes.into_iter().zip(levels.iter_mut()) {
                if take == 0 {
                    continue;
                }
                let before = level.clone();
                level.reserved += take;
                level.updated_at = order.created_at;
                movements.push(StockMovement::between(&before, level, &info));
                reservations.push(Reservation {
                    id: ReservationId::new(),
                    order_id: order.id,
                    sku: item.sku.clone(),
                    warehouse: level.warehouse.clone(),
                    quantity: quantity(take)?,
                    status: ReservationStatus::Active,
                    created_at: order.created_at,
                });
            }
        }
        Ok(Plan {
            levels: work.into_values().flatten().collect(),
            reservations,
            movements,
        })
    }

    /// Applies a status change's effect on the order's reservations and stock.
    fn apply_stock_effect(
        &mut self,
        order: OrderId,
        effect: StockEffect,
        actor: &Actor,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let Some(change) = effect.reservation_change() else {
            return Ok(());
        };
        let (wanted, kind, next) = (change.from, change.movement, change.to);
        let info = MovementContext {
            kind,
            reason: None,
            order_id: Some(order),
            actor,
            at,
        };
        // Compute on copies first: nothing is written if a level is missing.
        let mut work: BTreeMap<(Sku, String), StockLevel> = BTreeMap::new();
        let mut movements = Vec::new();
        let reservations = self.reservations.get(&order).map_or(&[][..], Vec::as_slice);
        for r in reservations.iter().filter(|r| r.status == wanted) {
            let key = (r.sku.clone(), r.warehouse.clone());
            let level = match work.get_mut(&key) {
                Some(level) => level,
                None => {
                    let stored = self.level(&r.sku, &r.warehouse).cloned().ok_or_else(|| {
                        Error::unexpected_msg(format!(
                            "memory store: reservation of {} in {} has no stock level",
                            r.sku, r.warehouse
                        ))
                    })?;
                    work.entry(key).or_insert(stored)
                }
            };
            let q = i64::from(r.quantity.get());
            let before = level.clone();
            match effect {
                StockEffect::Commit => {
                    level.on_hand -= q;
                    level.reserved -= q;
                }
                StockEffect::Release => level.reserved -= q,
                StockEffect::Restock => level.on_hand += q,
                StockEffect::None => {}
            }
            level.updated_at = at;
            movements.push(StockMovement::between(&before, level, &info));
        }
        if let Some(list) = self.reservations.get_mut(&order) {
            for r in list.iter_mut().filter(|r| r.status == wanted) {
                r.status = next;
            }
        }
        self.apply(work.into_values().collect(), movements);
        Ok(())
    }
}

#[async_trait]
impl OrderStore for MemoryStore {
    async fn place_order(&self, new: &NewOrder) -> Result<Order> {
        let order = &new.order;
        // The key's lock first, then the checkout's: the only method taking two (module docs).
        let mut keys = match &new.answer {
            Some(answer) => {
                let keys = write(&self.inner.idempotency)?;
                if !keys.is_claimed(&answer.key, order.created_at) {
                    return Err(KeyAnswer::not_claimed());
                }
                Some(keys)
            }
            None => None,
        };
        let mut checkout = write(&self.inner.checkout)?;
        if checkout.orders.contains_key(&order.id) {
            return Err(Error::conflict("order_exists", "an order with this id exists"));
        }
        let plan = checkout.plan_reservations(order, &new.event.actor)?;
        if let Some(code) = &new.coupon {
            let coupon = checkout.coupons.get(code).ok_or(Error::NotFound { entity: "coupon" })?;
            if coupon.usage_limit.is_some_and(|limit| coupon.times_used >= limit) {
                return Err(Error::conflict(
                    "coupon_exhausted",
                    format!("the coupon {code} has been used up"),
                ));
            }
        }
        // Every check passed: write everything.
        if let Some(coupon) = new.coupon.as_ref().and_then(|c| checkout.coupons.get_mut(c)) {
            coupon.times_used = coupon.times_used.saturating_add(1);
        }
        checkout.apply(plan.levels, plan.movements);
        checkout.reservations.insert(order.id, plan.reservations);
        checkout.events.insert(order.id, vec![new.event.clone()]);
        checkout.sagas.insert(order.id, new.saga.clone());
        checkout.orders.insert(order.id, order.clone());
        if let (Some(keys), Some(answer)) = (keys.as_mut(), &new.answer) {
            keys.answer(&answer.key, &answer.response);
        }
        Ok(order.clone())
    }

    async fn get_order(&self, id: OrderId) -> Result<Order> {
        read(&self.inner.checkout)?
            .orders
            .get(&id)
            .cloned()
            .ok_or(Error::NotFound { entity: "order" })
    }

    async fn list_user_orders(&self, user: UserId, page: PageRequest) -> Result<Page<Order>> {
        let checkout = read(&self.inner.checkout)?;
        let mut list: Vec<&Order> = checkout.orders.values().filter(|o| o.user_id == user).collect();
        list.sort_by(|a, b| newest_first(a, b));
        Ok(Page::slice(list, page).map(Order::clone))
    }

    async fn list_orders(&self, status: Option<OrderStatus>, page: PageRequest) -> Result<Page<Order>> {
        let checkout = read(&self.inner.checkout)?;
        let mut list: Vec<&Order> = checkout
            .orders
            .values()
            .filter(|o| status.is_none_or(|s| o.status == s))
            .collect();
        list.sort_by(|a, b| newest_first(a, b));
        Ok(Page::slice(list, page).map(Order::clone))
    }

    async fn transition_order(&self, t: &OrderTransition) -> Result<Order> {
        let mut checkout = write(&self.inner.checkout)?;
        let current = checkout
            .orders
            .get(&t.order_id)
            .ok_or(Error::NotFound { entity: "order" })?
            .status;
        if current != t.from {
            return Err(Error::InvalidTransition {
                from: current.to_string(),
                to: t.to.to_string(),
            });
        }
        let at = t.event.at;
        checkout.apply_stock_effect(t.order_id, t.stock, &t.event.actor, at)?;
        checkout.events.entry(t.order_id).or_default().push(t.event.clone());
        if let (Some(step), Some(saga)) = (t.saga_step, checkout.sagas.get_mut(&t.order_id)) {
            saga.step = step;
            saga.updated_at = at;
        }
        let order = checkout
            .orders
            .get_mut(&t.order_id)
            .ok_or(Error::NotFound { entity: "order" })?;
        order.status = t.to;
        if let Some(tracking) = &t.tracking {
            order.tracking = Some(tracking.clone());
        }
        order.updated_at = at;
        Ok(order.clone())
    }

    async fn order_events(&self, id: OrderId) -> Result<Vec<OrderEvent>> {
        let mut events = read(&self.inner.checkout)?.events.get(&id).cloned().unwrap_or_default();
        // Stable: events at the same instant stay in append order.
        events.sort_by_key(|e| e.at);
        Ok(events)
    }

    async fn set_saga_step(&self, order: OrderId, step: SagaStep, now: DateTime<Utc>) -> Result<()> {
        let mut checkout = write(&self.inner.checkout)?;
        let saga = checkout
            .sagas
            .get_mut(&order)
            .ok_or(Error::NotFound { entity: "saga" })?;
        saga.step = step;
        saga.updated_at = now;
        Ok(())
    }

    async fn unfinished_sagas(&self) -> Result<Vec<SagaRecord>> {
        let mut list: Vec<SagaRecord> = read(&self.inner.checkout)?
            .sagas
            .values()
            .filter(|s| !matches!(s.step, SagaStep::Completed | SagaStep::Compensated))
            .cloned()
            .collect();
        list.sort_by(|a, b| {
            a.updated_at
                .cmp(&b.updated_at)
                .then_with(|| a.order_id.cmp(&b.order_id))
        });
        Ok(list)
    }

    async fn overdue_orders(&self, now: DateTime<Utc>) -> Result<Vec<OrderId>> {
        let checkout = read(&self.inner.checkout)?;
        let mut list: Vec<&Order> = checkout
            .orders
            .values()
            .filter(|o| o.status == OrderStatus::Pending && o.payment_due_by <= now)
            .collect();
        list.sort_by(|a, b| a.payment_due_by.cmp(&b.payment_due_by).then_with(|| a.id.cmp(&b.id)));
        Ok(list.into_iter().map(|o| o.id).collect())
    }

    async fn has_purchased(&self, user: UserId, product: ProductId) -> Result<bool> {
        Ok(read(&self.inner.checkout)?.orders.values().any(|o| {
            o.user_id == user
                && matches!(
                    o.status,
                    OrderStatus::Processing | OrderStatus::Shipped | OrderStatus::Delivered
                )
                && o.items.iter().any(|i| i.product_id == product)
        }))
    }

    async fn count_orders_with_product(&self, product: ProductId) -> Result<u64> {
        let n = read(&self.inner.checkout)?
            .orders
            .values()
            .filter(|o| o.items.iter().any(|i| i.product_id == product))
            .count();
        Ok(n as u64)
    }

    async fn insert_coupon(&self, coupon: &Coupon) -> Result<()> {
        let mut checkout = write(&self.inner.checkout)?;
        if checkout.coupons.contains_key(&coupon.code) {
            return Err(Error::conflict(
                "coupon_exists",
                format!("the coupon {} exists", coupon.code),
            ));
        }
        checkout.coupons.insert(coupon.code.clone(), coupon.clone());
        Ok(())
    }

    async fn find_coupon(&self, code: &str) -> Result<Option<Coupon>> {
        Ok(read(&self.inner.checkout)?.coupons.get(code).cloned())
    }

    async fn coupon_uses_by(&self, code: &str, user: UserId) -> Result<u64> {
        let n = read(&self.inner.checkout)?
            .orders
            .values()
            .filter(|o| {
                o.user_id == user && o.status != OrderStatus::Cancelled && o.coupon_code.as_deref() == Some(code)
            })
            .count();
        Ok(n as u64)
    }
}

#[async_trait]
impl InventoryStore for MemoryStore {
    async fn stock_levels(&self, sku: &Sku) -> Result<Vec<StockLevel>> {
        Ok(read(&self.inner.checkout)?
            .levels
            .get(sku)
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default())
    }

    async fn available(&self, skus: &[Sku]) -> Result<Vec<(Sku, i64)>> {
        let checkout = read(&self.inner.checkout)?;
        let mut out: Vec<(Sku, i64)> = Vec::new();
        for sku in skus {
            if out.iter().any(|(s, _)| s == sku) {
                continue;
            }
            if let Some(levels) = checkout.levels.get(sku).filter(|l| !l.is_empty()) {
                out.push((sku.clone(), levels.iter().map(StockLevel::available).sum()));
            }
        }
        Ok(out)
    }

    async fn skus_in_stock(&self) -> Result<Vec<Sku>> {
        let checkout = read(&self.inner.checkout)?;
        let skus = checkout
            .levels
            .iter()
            .filter(|(_, levels)| {
                levels.iter().map(StockLevel::available).sum::<i64>() > 0 || levels.iter().any(|l| l.backorder_allowed)
            })
            .map(|(sku, _)| sku.clone())
            .collect();
        Ok(skus)
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
        let mut checkout = write(&self.inner.checkout)?;
        let before = checkout
            .level(sku, warehouse)
            .cloned()
            .unwrap_or_else(|| empty_level(sku, warehouse, now));
        let (after, m) = before.changed(change, reason, actor, now)?;
        checkout.apply(vec![after.clone()], vec![m]);
        Ok(after)
    }

    async fn set_stock_levels(&self, sets: &[StockSet], actor: &Actor, now: DateTime<Utc>) -> Result<Vec<StockLevel>> {
        let mut checkout = write(&self.inner.checkout)?;
        // Everything is computed before anything is written: a refused entry leaves all as it was.
        let mut afters: Vec<StockLevel> = Vec::with_capacity(sets.len());
        let mut movements = Vec::with_capacity(sets.len());
        // Each level's latest entry so far: a level named again starts from it (a map, so a
        // batch of 1,000 is not half a million comparisons under the checkout's lock).
        let mut latest: HashMap<(&Sku, &str), usize> = HashMap::with_capacity(sets.len());
        for (i, set) in sets.iter().enumerate() {
            let key = (&set.sku, set.warehouse.as_str());
            let before = latest
                .get(&key)
                .and_then(|&at| afters.get(at))
                .or_else(|| checkout.level(&set.sku, &set.warehouse))
                .cloned()
                .unwrap_or_else(|| empty_level(&set.sku, &set.warehouse, now));
            let (after, movement) = set.applied_to(i, &before, actor, now)?;
            movements.push(movement);
            latest.insert(key, afters.len());
            afters.push(after);
        }
        checkout.apply(afters.clone(), movements);
        Ok(afters)
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
        let mut checkout = write(&self.inner.checkout)?;
        let source = checkout
            .level(sku, from)
            .ok_or(Error::NotFound { entity: "stock level" })?;
        let target = checkout
            .level(sku, to)
            .cloned()
            .unwrap_or_else(|| empty_level(sku, to, now));
        let StockTransfer {
            source,
            target,
            movements,
        } = StockTransfer::new(source, &target, quantity, actor, now)?;
        checkout.apply(vec![source.clone(), target.clone()], movements.into());
        Ok((source, target))
    }

    async fn low_stock(&self, page: PageRequest) -> Result<Page<StockLevel>> {
        let checkout = read(&self.inner.checkout)?;
        // Ordered by SKU, then warehouse (the map's order).
        let low: Vec<&StockLevel> = checkout
            .levels
            .values()
            .flat_map(Levels::iter)
            .filter(|l| l.is_low())
            .collect();
        Ok(Page::slice(low, page).map(StockLevel::clone))
    }

    async fn movements(&self, sku: &Sku, page: PageRequest) -> Result<Page<StockMovement>> {
        let checkout = read(&self.inner.checkout)?;
        let mut list: Vec<&StockMovement> = checkout
            .movements
            .get(sku)
            .map(|m| m.iter().rev().collect())
            .unwrap_or_default();
        // Stable: at the same instant, the later-logged movement comes first.
        list.sort_by_key(|m| std::cmp::Reverse(m.at));
        Ok(Page::slice(list, page).map(StockMovement::clone))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_stay_in_warehouse_order_and_replace_their_warehouse() {
        let sku = Sku::parse("SKU-1").unwrap();
        let now = Utc::now();
        let mut levels = Levels::default();
        for (on_hand, warehouse) in [(1, "north"), (2, "east"), (3, "south"), (4, "east")] {
            levels.put(StockLevel {
                on_hand,
                ..empty_level(&sku, warehouse, now)
            });
        }
        let order: Vec<&str> = levels.iter().map(|l| l.warehouse.as_str()).collect();
        assert_eq!(order, ["east", "north", "south"]);
        assert_eq!(
            levels.get("east").map(|l| l.on_hand),
            Some(4),
            "the second put replaced the first"
        );
        assert!(levels.get("west").is_none());
        assert_eq!(levels.0.capacity(), 3, "no room kept beyond the levels");
    }
}
