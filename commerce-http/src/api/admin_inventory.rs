//! `/api/v1/admin/inventory`: stock per SKU and warehouse, every change logged.

use commerce_core::Commerce;
use commerce_core::domain::MovementKind;
use commerce_core::services::StockItem;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};

use super::ApiTags;
use super::checkout_types::{
    AdjustRequest, InventoryView, MovementPage, MovementView, StockBulkRequest, StockBulkResult, StockLevelPage,
    StockLevelView, StockRequest, TransferRequest,
};
use super::types::page_request;
use crate::JsonBody;
use crate::auth::StaffAuth;
use crate::problem::ApiError;

/// Both sides of a transfer.
#[derive(Debug, Object)]
pub struct TransferResult {
    /// The source warehouse after the move.
    pub from: StockLevelView,
    /// The destination warehouse after the move.
    pub to: StockLevelView,
}

/// Inventory administration.
pub struct AdminInventoryApi {
    commerce: Commerce,
}

impl AdminInventoryApi {
    /// Over this engine.
    pub fn new(commerce: Commerce) -> Self {
        Self { commerce }
    }
}

fn kind(raw: &str) -> Result<MovementKind, ApiError> {
    match raw.trim() {
        "purchase" => Ok(MovementKind::Purchase),
        "return" => Ok(MovementKind::Return),
        "damage" => Ok(MovementKind::Damage),
        "adjustment" => Ok(MovementKind::Adjustment),
        _ => Err(commerce_core::Error::invalid("kind", "must be purchase, return, damage or adjustment").into()),
    }
}

#[OpenApi(prefix_path = "/api/v1/admin/inventory", tag = "ApiTags::Admin")]
impl AdminInventoryApi {
    /// Levels at or below their low-stock threshold.
    #[oai(path = "/low-stock", method = "get", operation_id = "adminLowStock")]
    async fn low_stock(
        &self,
        auth: StaffAuth,
        /// Page number, from 1.
        page: Query<Option<u32>>,
        /// Page size, 1 to 100 (default 20).
        limit: Query<Option<u32>>,
    ) -> Result<Json<StockLevelPage>, ApiError> {
        let p = self
            .commerce
            .inventory()
            .low_stock(&auth.0, page_request(page.0, limit.0)?)
            .await?;
        Ok(Json(StockLevelPage {
            items: p.items.into_iter().map(StockLevelView::from).collect(),
            total: p.total,
            page: p.page,
            limit: p.limit,
        }))
    }

    /// A SKU's stock in every warehouse, with totals.
    #[oai(path = "/:sku", method = "get", operation_id = "adminGetInventory")]
    async fn get(&self, auth: StaffAuth, sku: Path<String>) -> Result<Json<InventoryView>, ApiError> {
        let levels = self.commerce.inventory().levels(&auth.0, &sku.0).await?;
        Ok(Json(InventoryView::new(sku.0.trim().to_ascii_uppercase(), levels)))
    }

    /// Set a SKU's stock in one warehouse (`main` by default): `{"onHand": 50,
    /// "warehouse": "main"}`, plus thresholds and the backorder flag. On hand cannot go below
    /// what pending orders hold.
    #[oai(path = "/:sku", method = "put", operation_id = "adminSetInventory")]
    async fn set(
        &self,
        auth: StaffAuth,
        sku: Path<String>,
        body: JsonBody<StockRequest>,
    ) -> Result<Json<InventoryView>, ApiError> {
        let levels = self
            .commerce
            .inventory()
            .set_stock(&auth.0, &sku.0, body.0.into())
            .await?;
        Ok(Json(InventoryView::new(sku.0.trim().to_ascii_uppercase(), levels)))
    }

    /// Set many levels at once, all or nothing, in one transaction (an import or a stock
    /// count): `{"items": [{"sku": "TEE-M", "onHand": 50}, {"sku": "TEE-L", "onHand": 20,
    /// "warehouse": "east"}]}`, each item as for one SKU. An invalid item is named by its index
    /// (`items[1].onHand`) and nothing is written.
    #[oai(path = "/", method = "put", operation_id = "adminSetInventoryBulk")]
    async fn set_many(
        &self,
        auth: StaffAuth,
        body: JsonBody<StockBulkRequest>,
    ) -> Result<Json<StockBulkResult>, ApiError> {
        let items = body
            .0
            .items
            .into_iter()
            .map(|i| StockItem {
                sku: i.sku,
                input: i.stock.into(),
            })
            .collect();
        let levels = self.commerce.inventory().set_stock_many(&auth.0, items).await?;
        Ok(Json(StockBulkResult {
            items: levels.into_iter().map(StockLevelView::from).collect(),
        }))
    }

    /// Add or remove units: a purchase, return, damage or adjustment.
    #[oai(path = "/:sku/adjust", method = "post", operation_id = "adminAdjustInventory")]
    async fn adjust(
        &self,
        auth: StaffAuth,
        sku: Path<String>,
        body: JsonBody<AdjustRequest>,
    ) -> Result<Json<StockLevelView>, ApiError> {
        let r = body.0;
        let level = self
            .commerce
            .inventory()
            .adjust(
                &auth.0,
                &sku.0,
                r.warehouse.as_deref(),
                r.delta,
                kind(&r.kind)?,
                r.reason,
            )
            .await?;
        Ok(Json(level.into()))
    }

    /// Move units between warehouses in one transaction.
    #[oai(path = "/:sku/transfer", method = "post", operation_id = "adminTransferInventory")]
    async fn transfer(
        &self,
        auth: StaffAuth,
        sku: Path<String>,
        body: JsonBody<TransferRequest>,
    ) -> Result<Json<TransferResult>, ApiError> {
        let r = body.0;
        let (from, to) = self
            .commerce
            .inventory()
            .transfer(&auth.0, &sku.0, &r.from, &r.to, r.quantity)
            .await?;
        Ok(Json(TransferResult {
            from: from.into(),
            to: to.into(),
        }))
    }

    /// A SKU's movements, newest first: every change with before/after, reason and actor.
    #[oai(path = "/:sku/movements", method = "get", operation_id = "adminInventoryMovements")]
    async fn movements(
        &self,
        auth: StaffAuth,
        sku: Path<String>,
        /// Page number, from 1.
        page: Query<Option<u32>>,
        /// Page size, 1 to 100 (default 20).
        limit: Query<Option<u32>>,
    ) -> Result<Json<MovementPage>, ApiError> {
        let p = self
            .commerce
            .inventory()
            .movements(&auth.0, &sku.0, page_request(page.0, limit.0)?)
            .await?;
        Ok(Json(MovementPage {
            items: p.items.into_iter().map(MovementView::from).collect(),
            total: p.total,
            page: p.page,
            limit: p.limit,
        }))
    }
}
