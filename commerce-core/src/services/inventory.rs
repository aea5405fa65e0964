//! Inventory: stock per SKU per warehouse, set and adjusted by staff, every change logged.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::Utc;

use super::tokens::Principal;
use crate::domain::{
    Actor, DEFAULT_WAREHOUSE, MAX_ON_HAND, MovementKind, Page, PageRequest, Quantity, Sku, StockChange, StockLevel,
    StockMovement, StockSet, StockSettings,
};
use crate::ports::InventoryStore;
use crate::{Error, Result, Validator};

/// What an admin sends to set a SKU's stock in one warehouse.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StockInput {
    /// Absolute count on hand; absent leaves it as it is.
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

/// Inventory use cases.
#[derive(Clone)]
pub struct InventoryService {
    store: Arc<dyn InventoryStore>,
}

fn sku(raw: &str) -> Result<Sku> {
    Sku::parse(raw).map_err(|e| Error::invalid("sku", e.to_string()))
}

fn warehouse(v: &mut Validator, field: &str, raw: Option<&str>) -> String {
    let w = raw
        .map(str::trim)
        .filter(|w| !w.is_empty())
        .unwrap_or(DEFAULT_WAREHOUSE)
        .to_ascii_lowercase();
    let ok = w.len() <= 32 && w.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    v.ensure(ok, field, "must be 1-32 letters, digits, '-' or '_'");
    w
}

/// Most items [`InventoryService::set_stock_many`] takes at once.
pub const MAX_STOCK_ITEMS: usize = 1_000;

/// One item of [`InventoryService::set_stock_many`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StockItem {
    /// The SKU.
    pub sku: String,
    /// What to set.
    pub input: StockInput,
}

/// Validates `input` (its fields named with `prefix`) into the level to set.
fn stock_set(v: &mut Validator, prefix: &str, sku: Sku, input: StockInput) -> StockSet {
    let warehouse = warehouse(v, &format!("{prefix}warehouse"), input.warehouse.as_deref());
    for (field, value) in [
        ("onHand", input.on_hand),
        ("lowStockThreshold", input.low_stock_threshold),
        ("reorderPoint", input.reorder_point),
    ] {
        v.ensure(
            value.is_none_or(|n| (0..=MAX_ON_HAND).contains(&n)),
            &format!("{prefix}{field}"),
            format!("must be from 0 to {MAX_ON_HAND}"),
        );
    }
    let reason = input
        .reason
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(str::to_owned);
    v.ensure(
        reason.as_deref().is_none_or(|r| r.chars().count() <= 500),
        &format!("{prefix}reason"),
        "must be at most 500 characters",
    );
    StockSet {
        sku,
        warehouse,
        on_hand: input.on_hand,
        settings: StockSettings {
            low_stock_threshold: input.low_stock_threshold,
            reorder_point: input.reorder_point,
            backorder_allowed: input.backorder_allowed,
        },
        reason,
    }
}

impl InventoryService {
    /// Wires the service.
    pub fn new(store: Arc<dyn InventoryStore>) -> Self {
        Self { store }
    }

    /// A SKU's stock in every warehouse (staff only).
    ///
    /// # Errors
    /// `Forbidden`; `Validation { field: "sku" }`.
    pub async fn levels(&self, who: &Principal, raw_sku: &str) -> Result<Vec<StockLevel>> {
        who.require_staff()?;
        self.store.stock_levels(&sku(raw_sku)?).await
    }

    /// Sets a SKU's stock and settings in one warehouse (staff only), together: creates the
    /// level when missing. Returns every warehouse's level for the SKU.
    ///
    /// # Errors
    /// `Forbidden`; `Validation` (negative numbers, on hand below what is reserved).
    pub async fn set_stock(&self, who: &Principal, raw_sku: &str, input: StockInput) -> Result<Vec<StockLevel>> {
        who.require_staff()?;
        let sku = sku(raw_sku)?;
        let mut v = Validator::new();
        let set = stock_set(&mut v, "", sku.clone(), input);
        v.finish()?;
        self.store
            .set_stock_levels(&[set], &Actor::User(who.user_id), Utc::now())
            .await
            .map_err(|e| e.map_fields(|f| f.strip_prefix("items[0].").unwrap_or(f).to_owned()))?;
        self.store.stock_levels(&sku).await
    }

    /// Sets many levels at once (staff only), all or nothing, in one transaction: a catalog
    /// import or a stock count. Each item is as [`Self::set_stock`]'s input; at most
    /// [`MAX_STOCK_ITEMS`]. Returns each item's level as set, in the order given.
    ///
    /// # Errors
    /// `Forbidden`; `Validation { field: "items" }` when empty or too many;
    /// `Validation { field: "items[i].…" }` naming each invalid item's field, or the first
    /// whose on hand would fall below what is reserved; a SKU and warehouse given twice.
    pub async fn set_stock_many(&self, who: &Principal, items: Vec<StockItem>) -> Result<Vec<StockLevel>> {
        who.require_staff()?;
        if !(1..=MAX_STOCK_ITEMS).contains(&items.len()) {
            return Err(Error::invalid(
                "items",
                format!("must hold 1 to {MAX_STOCK_ITEMS} items"),
            ));
        }
        let mut v = Validator::new();
        let mut sets: Vec<StockSet> = Vec::with_capacity(items.len());
        let mut seen: HashSet<(Sku, String)> = HashSet::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            let Some(sku) = v.check(&format!("items[{i}].sku"), Sku::parse(&item.sku)) else {
                continue;
            };
            let set = stock_set(&mut v, &format!("items[{i}]."), sku, item.input);
            v.ensure(
                seen.insert((set.sku.clone(), set.warehouse.clone())),
                &format!("items[{i}].sku"),
                "is already set by an earlier item for the same warehouse",
            );
            sets.push(set);
        }
        v.finish()?;
        self.store
            .set_stock_levels(&sets, &Actor::User(who.user_id), Utc::now())
            .await
    }

    /// Adds or removes units (staff only): purchase, return, damage or adjustment.
    ///
    /// # Errors
    /// `Forbidden`; `Validation` (zero delta, a kind that is not an admin movement; on field
    /// `delta`, stock falling below zero or below what is reserved, or rising past the cap).
    pub async fn adjust(
        &self,
        who: &Principal,
        raw_sku: &str,
        raw_warehouse: Option<&str>,
        delta: i64,
        kind: MovementKind,
        reason: Option<String>,
    ) -> Result<StockLevel> {
        who.require_staff()?;
        let sku = sku(raw_sku)?;
        let mut v = Validator::new();
        let wh = warehouse(&mut v, "warehouse", raw_warehouse);
        v.ensure(
            delta != 0 && delta.abs() <= MAX_ON_HAND,
            "delta",
            "must be a non-zero number of units",
        );
        let admin_kinds = [
            MovementKind::Purchase,
            MovementKind::Return,
            MovementKind::Damage,
            MovementKind::Adjustment,
        ];
        v.ensure(
            admin_kinds.contains(&kind),
            "kind",
            "must be purchase, return, damage or adjustment",
        );
        v.finish()?;
        let change = StockChange::Adjust { delta, kind };
        self.store
            .change_stock(&sku, &wh, &change, &Actor::User(who.user_id), reason, Utc::now())
            .await
    }

    /// Moves units between warehouses (staff only).
    ///
    /// # Errors
    /// `Forbidden`; `Validation`; `OutOfStock`; `NotFound { entity: "stock level" }`.
    pub async fn transfer(
        &self,
        who: &Principal,
        raw_sku: &str,
        from: &str,
        to: &str,
        quantity: i64,
    ) -> Result<(StockLevel, StockLevel)> {
        who.require_staff()?;
        let sku = sku(raw_sku)?;
        let mut v = Validator::new();
        let from = warehouse(&mut v, "from", Some(from));
        let to = warehouse(&mut v, "to", Some(to));
        let quantity = v.check("quantity", Quantity::new(quantity));
        v.finish()?;
        let quantity = quantity.ok_or_else(|| Error::unexpected_msg("validator passed without a quantity"))?;
        self.store
            .transfer_stock(&sku, &from, &to, quantity, &Actor::User(who.user_id), Utc::now())
            .await
    }

    /// Levels at or below their low-stock threshold (staff only).
    ///
    /// # Errors
    /// `Forbidden`.
    pub async fn low_stock(&self, who: &Principal, page: PageRequest) -> Result<Page<StockLevel>> {
        who.require_staff()?;
        self.store.low_stock(page).await
    }

    /// A SKU's movements, newest first (staff only).
    ///
    /// # Errors
    /// `Forbidden`; `Validation { field: "sku" }`.
    pub async fn movements(&self, who: &Principal, raw_sku: &str, page: PageRequest) -> Result<Page<StockMovement>> {
        who.require_staff()?;
        self.store.movements(&sku(raw_sku)?, page).await
    }
}
