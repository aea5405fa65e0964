//! `/api/v1/orders`: checkout and the caller's orders; `/api/v1/admin/orders`: every order,
//! status changes and coupons for staff.

use commerce_core::Commerce;
use commerce_core::domain::{Currency, Discount, Money, Order, OrderId, StoredResponse};
use commerce_core::services::{CheckoutAnswer, CheckoutInput, CouponInput, StatusChange};
use poem::Request;
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};

use super::ApiTags;
use super::catalog_types::MoneyView;
use super::checkout_types::{
    CheckoutRequest, CouponRequest, CouponView, OrderEventList, OrderEventView, OrderPage, OrderView, StatusRequest,
};
use super::types::{page_request, parse_id};
use crate::auth::{BearerAuth, StaffAuth};
use crate::idempotency::ClaimedKey;
use crate::problem::ApiError;
use crate::reply::{EncodedJson, encode};
use crate::{JsonBody, JsonReply};

/// A new order.
#[derive(Debug, ApiResponse)]
pub enum OrderCreated {
    /// Placed: stock reserved, awaiting payment until `paymentDueBy`. A retry with the same
    /// `Idempotency-Key` and body gets this same answer with `Idempotent-Replayed: true`.
    #[oai(status = 201)]
    Created(EncodedJson<OrderView>),
}

/// A new coupon.
#[derive(Debug, ApiResponse)]
pub enum CouponCreated {
    /// Created.
    #[oai(status = 201)]
    Created(Json<CouponView>),
}

fn page_of(p: commerce_core::domain::Page<commerce_core::domain::Order>) -> OrderPage {
    OrderPage {
        items: p.items.into_iter().map(OrderView::from).collect(),
        total: p.total,
        page: p.page,
        limit: p.limit,
    }
}

fn money(m: MoneyView, field: &str) -> Result<Money, ApiError> {
    let currency = Currency::parse(&m.currency)
        .map_err(|e| commerce_core::Error::invalid(format!("{field}.currency"), e.to_string()))?;
    Ok(Money::new(m.amount, currency))
}

/// Checkout and the caller's orders.
pub struct OrdersApi {
    commerce: Commerce,
}

impl OrdersApi {
    /// Over this engine.
    pub fn new(commerce: Commerce) -> Self {
        Self { commerce }
    }
}

#[OpenApi(prefix_path = "/api/v1/orders", tag = "ApiTags::Orders")]
impl OrdersApi {
    /// Check out the caller's cart: every line is re-priced from the catalog, stock is reserved
    /// and the order written in one transaction (out of stock: 409 naming the SKU, nothing
    /// written), then the cart is marked converted. Requires an `Idempotency-Key` header: the
    /// same key and body replay the first answer; the same key with another body is 422; a
    /// retry while the first is still running is 409. Keys are kept 24 hours.
    #[oai(path = "/", method = "post", operation_id = "createOrder")]
    async fn create(
        &self,
        req: &Request,
        auth: BearerAuth,
        /// A unique value per checkout attempt (1-255 printable ASCII characters).
        #[oai(name = "Idempotency-Key")]
        _key: Header<String>,
        body: JsonBody<CheckoutRequest>,
    ) -> Result<OrderCreated, ApiError> {
        let input = CheckoutInput {
            address_id: body.0.address_id,
            coupon_code: body.0.coupon_code,
        };
        // The answer is stored with the order, under the key the idempotency middleware claimed.
        let answer = req.data::<ClaimedKey>().cloned().map(|claimed| CheckoutAnswer {
            key: claimed.key().clone(),
            render: Box::new(move |order: &Order| {
                let body = encode(&OrderView::from(order.clone())).map_err(commerce_core::Error::unexpected)?;
                let body = String::from_utf8(body).map_err(commerce_core::Error::unexpected)?;
                claimed.answering_with_write();
                Ok(StoredResponse { status: 201, body })
            }),
        });
        let (order, stored) = self
            .commerce
            .orders()
            .checkout_answering(&auth.0, input, answer)
            .await?;
        // Served as stored, byte for byte, so that a replay is the very same answer.
        let reply = match stored {
            Some(stored) => EncodedJson::new(stored.body, move || OrderView::from(order)),
            None => {
                let view = OrderView::from(order);
                EncodedJson::new(encode(&view).map_err(commerce_core::Error::unexpected)?, move || view)
            }
        };
        Ok(OrderCreated::Created(reply))
    }

    /// The caller's orders, newest first.
    #[oai(path = "/", method = "get", operation_id = "listOrders")]
    async fn list(
        &self,
        auth: BearerAuth,
        /// Page number, from 1.
        page: Query<Option<u32>>,
        /// Page size, 1 to 100 (default 20).
        limit: Query<Option<u32>>,
    ) -> Result<JsonReply<OrderPage>, ApiError> {
        let page = page_request(page.0, limit.0)?;
        Ok(JsonReply(page_of(
            self.commerce.orders().my_orders(&auth.0, page).await?,
        )))
    }

    /// One of the caller's orders (staff: any order). Someone else's is 404.
    #[oai(path = "/:id", method = "get", operation_id = "getOrder")]
    async fn get(&self, auth: BearerAuth, id: Path<String>) -> Result<JsonReply<OrderView>, ApiError> {
        let id: OrderId = parse_id(&id.0, "id")?;
        Ok(JsonReply(self.commerce.orders().order(&auth.0, id).await?.into()))
    }

    /// An order's history: every status change with who, when, from, to and why.
    #[oai(path = "/:id/events", method = "get", operation_id = "getOrderEvents")]
    async fn events(&self, auth: BearerAuth, id: Path<String>) -> Result<Json<OrderEventList>, ApiError> {
        let id: OrderId = parse_id(&id.0, "id")?;
        let events = self.commerce.orders().events(&auth.0, id).await?;
        Ok(Json(OrderEventList {
            items: events.into_iter().map(OrderEventView::from).collect(),
        }))
    }

    /// Move an order through its life (staff): pending -> processing -> shipped -> delivered,
    /// cancelled (from pending or processing; stock released or restocked), refunded (from
    /// processing, shipped or delivered; `restock` puts units back). Shipping needs `carrier`
    /// and `trackingNumber`. An invalid move is 409 naming both states.
    #[oai(path = "/:id/status", method = "patch", operation_id = "updateOrderStatus")]
    async fn set_status(
        &self,
        auth: StaffAuth,
        id: Path<String>,
        body: JsonBody<StatusRequest>,
    ) -> Result<JsonReply<OrderView>, ApiError> {
        let id: OrderId = parse_id(&id.0, "id")?;
        let r = body.0;
        let change = StatusChange {
            status: r.status,
            note: r.note,
            carrier: r.carrier,
            tracking_number: r.tracking_number,
            restock: r.restock,
        };
        Ok(JsonReply(
            self.commerce.orders().change_status(&auth.0, id, change).await?.into(),
        ))
    }
}

/// Order administration.
pub struct AdminOrdersApi {
    commerce: Commerce,
}

impl AdminOrdersApi {
    /// Over this engine.
    pub fn new(commerce: Commerce) -> Self {
        Self { commerce }
    }
}

#[OpenApi(prefix_path = "/api/v1/admin", tag = "ApiTags::Admin")]
impl AdminOrdersApi {
    /// Every order, newest first, optionally of one status.
    #[oai(path = "/orders", method = "get", operation_id = "adminListOrders")]
    async fn list(
        &self,
        auth: StaffAuth,
        /// Page number, from 1.
        page: Query<Option<u32>>,
        /// Page size, 1 to 100 (default 20).
        limit: Query<Option<u32>>,
        /// Only this status.
        status: Query<Option<String>>,
    ) -> Result<JsonReply<OrderPage>, ApiError> {
        let page = page_request(page.0, limit.0)?;
        Ok(JsonReply(page_of(
            self.commerce
                .orders()
                .all_orders(&auth.0, status.0.as_deref(), page)
                .await?,
        )))
    }

    /// Create a coupon: a percentage (`percentOffBps`) or a fixed amount (`amountOff`) off,
    /// with optional minimum subtotal, expiry, total and per-customer limits (enforced
    /// atomically at checkout).
    #[oai(path = "/coupons", method = "post", operation_id = "adminCreateCoupon")]
    async fn create_coupon(&self, auth: StaffAuth, body: JsonBody<CouponRequest>) -> Result<CouponCreated, ApiError> {
        let r = body.0;
        let discount = match (r.percent_off_bps, r.amount_off) {
            (Some(bps), None) => Discount::Percentage(bps),
            (None, Some(m)) => Discount::Fixed(money(m, "amountOff")?),
            _ => {
                return Err(commerce_core::Error::invalid(
                    "percentOffBps",
                    "give exactly one of percentOffBps and amountOff",
                )
                .into());
            }
        };
        let input = CouponInput {
            code: r.code,
            discount,
            min_subtotal: r.min_subtotal.map(|m| money(m, "minSubtotal")).transpose()?,
            expires_at: r.expires_at,
            usage_limit: r.usage_limit,
            per_customer_limit: r.per_customer_limit,
        };
        Ok(CouponCreated::Created(Json(
            self.commerce.orders().create_coupon(&auth.0, input).await?.into(),
        )))
    }
}
