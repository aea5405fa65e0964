//! Inventory: stock per SKU per warehouse, reservations and the movements log.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Actor, MovementId, OrderId, Quantity, ReservationId, Sku};

/// The warehouse used when none is named.
pub const DEFAULT_WAREHOUSE: &str = "main";

/// Stock of one SKU in one warehouse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StockLevel {
    /// The SKU.
    pub sku: Sku,
    /// The warehouse code.
    pub warehouse: String,
    /// Physically present.
    pub on_hand: i64,
    /// Promised to pending orders.
    pub reserved: i64,
    /// Warn when `available` falls to this.
    pub low_stock_threshold: i64,
    /// Reorder when `available` falls to this.
    pub reorder_point: i64,
    /// Sell beyond `available`.
    pub backorder_allowed: bool,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

/// The most units one stock level may hold on hand: what an admin may set, and what an
/// adjustment or a transfer may raise a level to.
pub const MAX_ON_HAND: i64 = 1_000_000_000;

impl StockLevel {
    /// `on_hand - reserved`: what can still be sold.
    pub fn available(&self) -> i64 {
        self.on_hand - self.reserved
    }

    /// Whether `available` is at or below the low-stock threshold.
    pub fn is_low(&self) -> bool {
        self.available() <= self.low_stock_threshold
    }

    /// On hand after `change`, and the kind of movement that logs it. A decrease is checked
    /// against zero and what is reserved, but receiving goods into a backordered level (on hand
    /// below what is reserved, or below zero after backordered sales) must stay possible; an
    /// increase is checked against [`MAX_ON_HAND`]. Every adapter refuses with this one rule.
    ///
    /// # Errors
    /// `Validation` when on hand would fall below zero or below what is reserved, or rise past
    /// [`MAX_ON_HAND`], naming what the client sent: `onHand` for a count, `delta` for a change.
    pub fn on_hand_after(&self, change: &StockChange) -> crate::Result<(i64, MovementKind)> {
        let (on_hand, kind) = match change {
            StockChange::SetOnHand(n) => (Some(*n), MovementKind::Adjustment),
            StockChange::Adjust { delta, kind } => (self.on_hand.checked_add(*delta), *kind),
        };
        // Named as the client sent it: the new count, or the change to it.
        let (field, down, up) = match change {
            StockChange::SetOnHand(_) => ("onHand", "cannot fall", "cannot rise"),
            StockChange::Adjust { .. } => ("delta", "would take on hand", "would take on hand"),
        };
        match on_hand {
            Some(n) if n < 0 && n < self.on_hand => Err(crate::Error::invalid(field, format!("{down} below zero"))),
            Some(n) if n < self.reserved && n < self.on_hand => Err(crate::Error::invalid(
                field,
                format!("{down} below the {} units reserved", self.reserved),
            )),
            Some(n) if n <= MAX_ON_HAND || n <= self.on_hand => Ok((n, kind)),
            _ => Err(crate::Error::invalid(field, format!("{up} past {MAX_ON_HAND} units"))),
        }
    }

    /// This level after `change` (refused as [`Self::on_hand_after`] refuses), stamped `now`,
    /// and the movement that logs it.
    ///
    /// # Errors
    /// As [`Self::on_hand_after`].
    pub fn changed(
        &self,
        change: &StockChange,
        reason: Option<String>,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> crate::Result<(StockLevel, StockMovement)> {
        let (on_hand, kind) = self.on_hand_after(change)?;
        let after = StockLevel {
            on_hand,
            updated_at: now,
            ..self.clone()
        };
        let info = MovementContext {
            kind,
            reason,
            order_id: None,
            actor,
            at: now,
        };
        let movement = StockMovement::between(self, &after, &info);
        Ok((after, movement))
    }
}

/// Why stock moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MovementKind {
    /// Goods received.
    Purchase,
    /// Goods sold (reservation committed).
    Sale,
    /// Goods returned.
    Return,
    /// Count corrected or set by an admin.
    Adjustment,
    /// Goods damaged.
    Damage,
    /// Moved between warehouses.
    Transfer,
    /// Promised to an order.
    Reservation,
    /// Promise withdrawn.
    Release,
}

/// One entry of the movements log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StockMovement {
    /// Id.
    pub id: MovementId,
    /// SKU.
    pub sku: Sku,
    /// Warehouse.
    pub warehouse: String,
    /// Why.
    pub kind: MovementKind,
    /// On hand before.
    pub on_hand_before: i64,
    /// On hand after.
    pub on_hand_after: i64,
    /// Reserved before.
    pub reserved_before: i64,
    /// Reserved after.
    pub reserved_after: i64,
    /// Free text.
    pub reason: Option<String>,
    /// Order concerned.
    pub order_id: Option<OrderId>,
    /// Who.
    pub actor: Actor,
    /// When.
    pub at: DateTime<Utc>,
}

/// Why, for which order, by whom and when a stock level changes: what its movement log entry
/// records besides the before/after values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MovementContext<'a> {
    /// Why.
    pub kind: MovementKind,
    /// Free text.
    pub reason: Option<String>,
    /// The order concerned.
    pub order_id: Option<OrderId>,
    /// Who.
    pub actor: &'a Actor,
    /// When.
    pub at: DateTime<Utc>,
}

impl StockMovement {
    /// The log entry for one level's change from `before` to `after`.
    pub fn between(before: &StockLevel, after: &StockLevel, context: &MovementContext<'_>) -> Self {
        Self {
            id: MovementId::new(),
            sku: after.sku.clone(),
            warehouse: after.warehouse.clone(),
            kind: context.kind,
            on_hand_before: before.on_hand,
            on_hand_after: after.on_hand,
            reserved_before: before.reserved,
            reserved_after: after.reserved,
            reason: context.reason.clone(),
            order_id: context.order_id,
            actor: context.actor.clone(),
            at: context.at,
        }
    }
}

/// One level to set in [`crate::ports::InventoryStore::set_stock_levels`]: its on hand and its
/// settings together, so neither can be written without the other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockSet {
    /// SKU.
    pub sku: Sku,
    /// Warehouse code.
    pub warehouse: String,
    /// New count on hand; `None` keeps it (0 for a level created now).
    pub on_hand: Option<i64>,
    /// Settings to change (`None` fields are kept).
    pub settings: StockSettings,
    /// Why (kept in the movement).
    pub reason: Option<String>,
}

impl StockSet {
    /// An entry that changes only `settings`, keeping on hand.
    pub fn settings_only(sku: Sku, warehouse: &str, settings: StockSettings) -> Self {
        Self {
            sku,
            warehouse: warehouse.to_owned(),
            on_hand: None,
            settings,
            reason: None,
        }
    }

    /// This entry applied to `before` (entry `index` of its batch, which names a refused one):
    /// the level after it and the movement that logs it. Every adapter sets levels with this one
    /// rule.
    ///
    /// # Errors
    /// `Validation { field: "items[index].onHand" }` as [`StockLevel::on_hand_after`].
    pub fn applied_to(
        &self,
        index: usize,
        before: &StockLevel,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> crate::Result<(StockLevel, StockMovement)> {
        let change = StockChange::SetOnHand(self.on_hand.unwrap_or(before.on_hand));
        let (mut after, movement) = before
            .changed(&change, self.reason.clone(), actor, now)
            .map_err(|e| e.map_fields(|f| format!("items[{index}].{f}")))?;
        // Settings are not quantities: the movement logs on hand and reserved only.
        self.settings.apply(&mut after);
        Ok((after, movement))
    }
}

/// Units moved from one warehouse's level of a SKU to another's: both levels after the move and
/// the two `Transfer` movements that log it. Every adapter transfers with this one rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockTransfer {
    /// The source level after the move.
    pub source: StockLevel,
    /// The target level after the move.
    pub target: StockLevel,
    /// The source's movement, then the target's.
    pub movements: [StockMovement; 2],
}

impl StockTransfer {
    /// Refuses a transfer within one warehouse (checked before any level is read).
    ///
    /// # Errors
    /// `Validation { field: "to" }` when `from == to`.
    pub fn check_route(from: &str, to: &str) -> crate::Result<()> {
        if from == to {
            return Err(crate::Error::invalid("to", "must differ from the source warehouse"));
        }
        Ok(())
    }

    /// `quantity` units moved from `source` to `target` (the same SKU's levels in two
    /// warehouses; a target created for the move has nothing on hand), stamped `now`. Only what
    /// is available at the source can move: reserved units are promised to orders there.
    ///
    /// # Errors
    /// As [`Self::check_route`]; `OutOfStock` when the source has fewer units available;
    /// `Validation { field: "quantity" }` when the target would hold more than [`MAX_ON_HAND`].
    pub fn new(
        source: &StockLevel,
        target: &StockLevel,
        quantity: Quantity,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> crate::Result<Self> {
        Self::check_route(&source.warehouse, &target.warehouse)?;
        let requested = i64::from(quantity.get());
        if source.available() < requested {
            return Err(crate::Error::OutOfStock {
                sku: source.sku.to_string(),
                requested,
                available: source.available().max(0),
            });
        }
        let target_on_hand = target
            .on_hand
            .checked_add(requested)
            .filter(|&n| n <= MAX_ON_HAND)
            .ok_or_else(|| {
                crate::Error::invalid("quantity", format!("would take the target past {MAX_ON_HAND} units"))
            })?;
        let source_after = StockLevel {
            on_hand: source.on_hand - requested,
            updated_at: now,
            ..source.clone()
        };
        let target_after = StockLevel {
            on_hand: target_on_hand,
            updated_at: now,
            ..target.clone()
        };
        let logged = |reason: String| MovementContext {
            kind: MovementKind::Transfer,
            reason: Some(reason),
            order_id: None,
            actor,
            at: now,
        };
        let movements = [
            StockMovement::between(
                source,
                &source_after,
                &logged(format!("transfer to {}", target.warehouse)),
            ),
            StockMovement::between(
                target,
                &target_after,
                &logged(format!("transfer from {}", source.warehouse)),
            ),
        ];
        Ok(Self {
            source: source_after,
            target: target_after,
            movements,
        })
    }
}

/// State of a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReservationStatus {
    /// Stock is held.
    Active,
    /// Turned into a sale.
    Committed,
    /// Given back.
    Released,
}

/// Stock held for an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reservation {
    /// Id.
    pub id: ReservationId,
    /// Order.
    pub order_id: OrderId,
    /// SKU.
    pub sku: Sku,
    /// Warehouse.
    pub warehouse: String,
    /// Units.
    pub quantity: Quantity,
    /// State.
    pub status: ReservationStatus,
    /// Created.
    pub created_at: DateTime<Utc>,
}

/// A change an admin makes to one stock level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StockChange {
    /// Set on hand to this absolute value (a count).
    SetOnHand(i64),
    /// Add (or with a negative number remove) this many on hand.
    Adjust {
        /// Units, may be negative.
        delta: i64,
        /// Why (purchase, return, damage, adjustment).
        kind: MovementKind,
    },
}

/// Stock settings that are not quantities.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StockSettings {
    /// New low-stock threshold.
    pub low_stock_threshold: Option<i64>,
    /// New reorder point.
    pub reorder_point: Option<i64>,
    /// Allow backorders.
    pub backorder_allowed: Option<bool>,
}

impl StockSettings {
    /// Writes the given settings into `level`, keeping the others.
    pub fn apply(&self, level: &mut StockLevel) {
        if let Some(n) = self.low_stock_threshold {
            level.low_stock_threshold = n;
        }
        if let Some(n) = self.reorder_point {
            level.reorder_point = n;
        }
        if let Some(b) = self.backorder_allowed {
            level.backorder_allowed = b;
        }
    }
}

/// How a line of `requested` units of `sku` is split over the SKU's stock levels (given in
/// warehouse name order): each level gives what it has available, in order; a shortfall goes to
/// the first level that allows backorders. Every adapter reserves with this one rule.
///
/// # Errors
/// `OutOfStock { sku, requested, available }` when the levels cannot cover the line and none
/// allows backorders.
pub fn split_reservation(sku: &Sku, levels: &[StockLevel], requested: i64) -> crate::Result<Vec<i64>> {
    let available: i64 = levels.iter().map(|l| l.available().max(0)).sum();
    let backorder = levels.iter().position(|l| l.backorder_allowed);
    if available < requested && backorder.is_none() {
        return Err(crate::Error::OutOfStock {
            sku: sku.to_string(),
            requested,
            available,
        });
    }
    let mut takes = vec![0i64; levels.len()];
    let mut remaining = requested;
    for (take, level) in takes.iter_mut().zip(levels) {
        *take = remaining.min(level.available().max(0));
        remaining -= *take;
    }
    if let (Some(at), true) = (backorder, remaining > 0)
        && let Some(take) = takes.get_mut(at)
    {
        *take += remaining;
    }
    Ok(takes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(warehouse: &str, on_hand: i64, reserved: i64, backorder: bool) -> StockLevel {
        StockLevel {
            sku: Sku::parse("S-1").unwrap(),
            warehouse: warehouse.into(),
            on_hand,
            reserved,
            low_stock_threshold: 0,
            reorder_point: 0,
            backorder_allowed: backorder,
            updated_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn splits_in_warehouse_order_and_backorders_the_rest() {
        let sku = Sku::parse("S-1").unwrap();
        let levels = [level("a", 3, 1, false), level("b", 5, 0, false)];
        assert_eq!(split_reservation(&sku, &levels, 4).unwrap(), vec![2, 2]);
        let err = split_reservation(&sku, &levels, 8).unwrap_err();
        assert!(
            matches!(
                err,
                crate::Error::OutOfStock {
                    requested: 8,
                    available: 7,
                    ..
                }
            ),
            "{err:?}"
        );
        let levels = [level("a", 1, 0, false), level("b", 0, 0, true)];
        assert_eq!(split_reservation(&sku, &levels, 5).unwrap(), vec![1, 4]);
        let oversold = [level("a", 0, 2, false)];
        assert!(matches!(
            split_reservation(&sku, &oversold, 1),
            Err(crate::Error::OutOfStock { available: 0, .. })
        ));
    }

    #[test]
    fn stock_changes_refuse_only_decreases_below_zero_or_reserved() {
        let at = |on_hand, reserved| level("main", on_hand, reserved, false);
        let damage = |delta| StockChange::Adjust {
            delta,
            kind: MovementKind::Damage,
        };
        assert_eq!(at(10, 0).on_hand_after(&StockChange::SetOnHand(3)).unwrap().0, 3);
        let below_zero = at(10, 0).on_hand_after(&StockChange::SetOnHand(-1)).unwrap_err();
        assert!(matches!(&below_zero, crate::Error::Validation(e) if e[0].field == "onHand"));
        let below_reserved = at(10, 4).on_hand_after(&damage(-7)).unwrap_err();
        assert!(matches!(&below_reserved, crate::Error::Validation(e) if e[0].field == "delta"));
        assert_eq!(at(10, 4).on_hand_after(&damage(-6)).unwrap().0, 4);
        // A backordered level may receive goods even while still below reserved or zero.
        assert_eq!(at(-3, 2).on_hand_after(&damage(1)).unwrap().0, -2);
        assert_eq!(
            at(1, 5).on_hand_after(&StockChange::SetOnHand(3)).unwrap(),
            (3, MovementKind::Adjustment)
        );
        assert!(at(i64::MAX, 0).on_hand_after(&damage(1)).is_err());
        let purchase = |delta| StockChange::Adjust {
            delta,
            kind: MovementKind::Purchase,
        };
        assert_eq!(
            at(MAX_ON_HAND - 5, 0).on_hand_after(&purchase(5)).unwrap().0,
            MAX_ON_HAND
        );
        let past = at(MAX_ON_HAND - 5, 0).on_hand_after(&purchase(6)).unwrap_err();
        assert!(
            matches!(&past, crate::Error::Validation(e) if e[0].field == "delta"),
            "adjustments stop where setting stops, naming the change sent: {past:?}"
        );
        // A level over the cap (written before it) may still shrink.
        assert_eq!(
            at(MAX_ON_HAND + 9, 0).on_hand_after(&damage(-1)).unwrap().0,
            MAX_ON_HAND + 8
        );
    }

    #[test]
    fn settings_change_only_what_they_name() {
        let mut l = level("main", 1, 0, false);
        StockSettings {
            reorder_point: Some(7),
            ..StockSettings::default()
        }
        .apply(&mut l);
        assert_eq!(
            (l.low_stock_threshold, l.reorder_point, l.backorder_allowed),
            (0, 7, false)
        );
        StockSettings {
            low_stock_threshold: Some(2),
            backorder_allowed: Some(true),
            reorder_point: None,
        }
        .apply(&mut l);
        assert_eq!(
            (l.low_stock_threshold, l.reorder_point, l.backorder_allowed),
            (2, 7, true)
        );
    }

    #[test]
    fn transfers_move_only_available_units_and_log_both_sides() {
        let actor = Actor::System;
        let now = chrono::Utc::now();
        let units = |n| Quantity::new(n).unwrap();
        let (source, target) = (level("main", 10, 4, false), level("east", 1, 1, false));
        let moved = StockTransfer::new(&source, &target, units(6), &actor, now).unwrap();
        assert_eq!(
            (
                moved.source.on_hand,
                moved.source.reserved,
                moved.target.on_hand,
                moved.target.reserved
            ),
            (4, 4, 7, 1),
            "reserved units stay where they are promised"
        );
        let logged: Vec<_> = moved
            .movements
            .iter()
            .map(|m| {
                (
                    m.warehouse.as_str(),
                    m.kind,
                    m.on_hand_before,
                    m.on_hand_after,
                    m.reason.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            logged,
            vec![
                ("main", MovementKind::Transfer, 10, 4, Some("transfer to east")),
                ("east", MovementKind::Transfer, 1, 7, Some("transfer from main")),
            ]
        );
        let short = StockTransfer::new(&source, &target, units(7), &actor, now).unwrap_err();
        assert!(
            matches!(
                short,
                crate::Error::OutOfStock {
                    requested: 7,
                    available: 6,
                    ..
                }
            ),
            "{short:?}"
        );
        let same = StockTransfer::new(&source, &level("main", 0, 0, false), units(1), &actor, now).unwrap_err();
        assert!(
            matches!(&same, crate::Error::Validation(e) if e[0].field == "to"),
            "{same:?}"
        );
        let full = level("east", MAX_ON_HAND, 0, false);
        let overflow = StockTransfer::new(&source, &full, units(1), &actor, now).unwrap_err();
        assert!(
            matches!(&overflow, crate::Error::Validation(e) if e[0].field == "quantity"),
            "{overflow:?}"
        );
    }
}
