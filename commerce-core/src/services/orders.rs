//! Checkout and orders: the cross-store saga from cart to order, the order state machine, and
//! the recovery that finishes or undoes sagas a crash left half-way.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::carts::{CartService, LineIssue, Shopper};
use super::tokens::Principal;
use crate::domain::{
    Actor, AddressFields, AddressId, CartId, CartStatus, Coupon, Currency, Discount, IdempotencyKey, KeyAnswer, Money,
    Order, OrderEvent, OrderEventId, OrderId, OrderItem, OrderItemId, OrderStatus, OrderTotals, Page, PageRequest,
    SagaRecord, SagaStep, StoredResponse, Tracking,
};
use crate::ports::{AddressStore, CartStore, NewOrder, OrderStore, OrderTransition, ProductStore, StockEffect};
use crate::{Error, Result, Validator};

/// Prices shipping for an order.
pub trait ShippingPolicy: Send + Sync {
    /// The charge for shipping goods worth `subtotal` (after discount) to `address`.
    fn quote(&self, subtotal: Money, address: &AddressFields) -> Money;
}

/// Prices tax for an order.
pub trait TaxPolicy: Send + Sync {
    /// The tax on `taxable` (subtotal after discount) shipped to `address`.
    fn tax(&self, taxable: Money, address: &AddressFields) -> Money;
}

/// A flat fee, free from a threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlatRateShipping {
    /// Fee in minor units.
    pub fee: i64,
    /// Orders from this amount (minor units) ship free.
    pub free_from: Option<i64>,
}

impl Default for FlatRateShipping {
    /// 5.99, free from 50.00.
    fn default() -> Self {
        Self {
            fee: 599,
            free_from: Some(5_000),
        }
    }
}

impl ShippingPolicy for FlatRateShipping {
    fn quote(&self, subtotal: Money, _address: &AddressFields) -> Money {
        if self.free_from.is_some_and(|f| subtotal.amount_minor >= f) {
            Money::zero(subtotal.currency)
        } else {
            Money::new(self.fee, subtotal.currency)
        }
    }
}

/// One rate for every destination, in basis points (0 by default: prices include tax).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PercentageTax {
    /// 825 = 8.25 %.
    pub basis_points: i64,
}

impl TaxPolicy for PercentageTax {
    fn tax(&self, taxable: Money, _address: &AddressFields) -> Money {
        taxable
            .checked_bps(self.basis_points)
            .unwrap_or(Money::zero(taxable.currency))
    }
}

/// Checkout rules.
#[derive(Clone)]
pub struct CheckoutPolicy {
    /// The store's currency.
    pub currency: Currency,
    /// How long a pending order waits for payment before it expires and releases its stock.
    pub payment_window: Duration,
    /// Shipping charge.
    pub shipping: Arc<dyn ShippingPolicy>,
    /// Tax.
    pub tax: Arc<dyn TaxPolicy>,
}

impl Default for CheckoutPolicy {
    fn default() -> Self {
        Self {
            currency: Currency::USD,
            payment_window: Duration::from_secs(30 * 60),
            shipping: Arc::new(FlatRateShipping::default()),
            tax: Arc::new(PercentageTax::default()),
        }
    }
}

impl std::fmt::Debug for CheckoutPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckoutPolicy")
            .field("currency", &self.currency)
            .field("payment_window", &self.payment_window)
            .finish_non_exhaustive()
    }
}

/// What a customer sends to check out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckoutInput {
    /// A saved address id; the default address when absent.
    pub address_id: Option<String>,
    /// A coupon code.
    pub coupon_code: Option<String>,
}

/// Renders a request's answer for the order it is about to place.
pub type RenderAnswer<'a> = Box<dyn FnOnce(&Order) -> Result<StoredResponse> + Send + 'a>;

/// The answer a checkout stores with its order under the request's claimed idempotency key
/// ([`OrderService::checkout_answering`]).
pub struct CheckoutAnswer<'a> {
    /// The request's claimed key.
    pub key: IdempotencyKey,
    /// The request's answer for the order about to be placed.
    pub render: RenderAnswer<'a>,
}

impl std::fmt::Debug for CheckoutAnswer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckoutAnswer")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// A status change asked by staff.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusChange {
    /// The new status (wire name).
    pub status: String,
    /// Why.
    pub note: Option<String>,
    /// Carrier, required when shipping.
    pub carrier: Option<String>,
    /// Tracking number, required when shipping.
    pub tracking_number: Option<String>,
    /// On a refund: put the units back on hand.
    pub restock: bool,
}

/// A coupon as staff create it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CouponInput {
    /// Code (letters, digits, '-', '_'); stored upper-case.
    pub code: String,
    /// The discount.
    pub discount: Discount,
    /// Minimum subtotal.
    pub min_subtotal: Option<Money>,
    /// Last moment it is accepted.
    pub expires_at: Option<DateTime<Utc>>,
    /// Uses in all.
    pub usage_limit: Option<u32>,
    /// Uses per customer.
    pub per_customer_limit: Option<u32>,
}

/// What a recovery pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Sagas moved forward (cart converted after a crash).
    pub resumed: usize,
    /// Sagas whose checkout converted the cart, recorded (the usual case: a checkout leaves
    /// that step to the payment or to recovery).
    pub confirmed: usize,
    /// Sagas undone (order cancelled, stock released, cart reactivated).
    pub compensated: usize,
    /// Sagas closed because their order was paid or finished.
    pub completed: usize,
    /// Pending orders cancelled for want of payment.
    pub expired: usize,
}

/// Checkout and order use cases.
#[derive(Clone)]
pub struct OrderService {
    orders: Arc<dyn OrderStore>,
    carts: Arc<dyn CartStore>,
    addresses: Arc<dyn AddressStore>,
    products: Arc<dyn ProductStore>,
    cart_service: CartService,
    policy: CheckoutPolicy,
}

fn event(order: OrderId, from: Option<OrderStatus>, to: OrderStatus, actor: Actor, note: Option<String>) -> OrderEvent {
    OrderEvent {
        id: OrderEventId::new(),
        order_id: order,
        from,
        to,
        actor,
        note,
        at: Utc::now(),
    }
}

fn coupon_code(raw: &str) -> Result<String> {
    let code = raw.trim().to_ascii_uppercase();
    let ok = (1..=40).contains(&code.len()) && code.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(code)
    } else {
        Err(Error::invalid("couponCode", "must be 1-40 letters, digits, '-' or '_'"))
    }
}

impl OrderService {
    /// Wires the service.
    pub fn new(
        orders: Arc<dyn OrderStore>,
        carts: Arc<dyn CartStore>,
        addresses: Arc<dyn AddressStore>,
        products: Arc<dyn ProductStore>,
        cart_service: CartService,
        policy: CheckoutPolicy,
    ) -> Self {
        Self {
            orders,
            carts,
            addresses,
            products,
            cart_service,
            policy,
        }
    }

    async fn shipping_address(&self, who: &Principal, raw: Option<&str>) -> Result<AddressFields> {
        match raw.map(str::trim).filter(|s| !s.is_empty()) {
            Some(raw) => {
                let id: AddressId = raw
                    .parse()
                    .map_err(|_| Error::invalid("addressId", "is not a valid id"))?;
                match self.addresses.get_address(who.user_id, id).await {
                    Ok(a) => Ok(a.fields),
                    Err(Error::NotFound { .. }) => Err(Error::invalid("addressId", "no such address")),
                    Err(e) => Err(e),
                }
            }
            None => self
                .addresses
                .list_addresses(who.user_id)
                .await?
                .into_iter()
                .find(|a| a.is_default)
                .map(|a| a.fields)
                .ok_or_else(|| Error::invalid("addressId", "add a shipping address first, or name one")),
        }
    }

    async fn discount(&self, who: &Principal, raw: Option<&str>, subtotal: Money) -> Result<(Option<String>, Money)> {
        let zero = Money::zero(subtotal.currency);
        let Some(raw) = raw.filter(|c| !c.trim().is_empty()) else {
            return Ok((None, zero));
        };
        let code = coupon_code(raw)?;
        let coupon = self
            .orders
            .find_coupon(&code)
            .await?
            .ok_or_else(|| Error::invalid("couponCode", "no such coupon"))?;
        if !coupon.active || coupon.expires_at.is_some_and(|at| at <= Utc::now()) {
            return Err(Error::invalid("couponCode", "this coupon has expired"));
        }
        if let Some(min) = coupon.min_subtotal
            && (min.currency != subtotal.currency || subtotal.amount_minor < min.amount_minor)
        {
            return Err(Error::invalid(
                "couponCode",
                format!("needs a subtotal of at least {min}"),
            ));
        }
        if let Some(limit) = coupon.per_customer_limit
            && self.orders.coupon_uses_by(&code, who.user_id).await? >= u64::from(limit)
        {
            return Err(Error::invalid("couponCode", "you have already used this coupon"));
        }
        let off = match coupon.discount {
            Discount::Percentage(bps) => subtotal.checked_bps(i64::from(bps)).map_err(Error::unexpected)?,
            Discount::Fixed(m) if m.currency == subtotal.currency => m,
            Discount::Fixed(_) => return Err(Error::invalid("couponCode", "is for another currency")),
        };
        let off = Money::new(off.amount_minor.clamp(0, subtotal.amount_minor), subtotal.currency);
        Ok((Some(code), off))
    }

    /// Turns the caller's cart into a pending order: re-prices every line from the catalog,
    /// reserves stock and writes the order in one transaction, then marks the cart converted.
    /// A failure after the order was written undoes it (stock released, order cancelled);
    /// a crash in between is repaired by [`Self::recover`].
    ///
    /// # Errors
    /// `Validation` (empty cart, unavailable items, bad address or coupon);
    /// `OutOfStock { sku }`; `Conflict { code: "coupon_exhausted" }`.
    pub async fn checkout(&self, who: &Principal, input: CheckoutInput) -> Result<Order> {
        Ok(self.checkout_answering(who, input, None).await?.0)
    }

    /// [`Self::checkout`] for a request holding a claimed idempotency key: the request's answer,
    /// rendered from the order about to be placed, is stored with the order in the same write
    /// (`NewOrder::answer`), so no crash or abandoned request can leave the order placed and
    /// its key unanswered for a retry to place it again. Returns the order and that answer.
    ///
    /// A failure after the order was written (the cart could not be converted) cancels the
    /// order, and the stored answer with it is then wrong: the caller must replace it (a
    /// client error's answer) or forget the key (a server error).
    ///
    /// # Errors
    /// As [`Self::checkout`]; whatever `render` returns;
    /// `Conflict { code: "idempotency_key_not_claimed" }` when the key is no longer claimed.
    pub async fn checkout_answering(
        &self,
        who: &Principal,
        input: CheckoutInput,
        answer: Option<CheckoutAnswer<'_>>,
    ) -> Result<(Order, Option<StoredResponse>)> {
        // Priced without reading stock: the reservation below decides shortages. The cart and
        // the address live in different stores (MongoDB and PostgreSQL in the reference set-up):
        // read both at once; a cart error still comes first.
        let shopper = Shopper::User(*who);
        let (priced, address) = tokio::join!(
            self.cart_service.cart_for_checkout(&shopper),
            self.shipping_address(who, input.address_id.as_deref()),
        );
        let priced = priced?;
        let Some(cart) = priced.cart.clone().filter(|c| !c.items.is_empty()) else {
            return Err(Error::invalid("cart", "is empty"));
        };
        let mut v = Validator::new();
        let mut items = Vec::with_capacity(priced.lines.len());
        let mut subtotal = Money::zero(self.policy.currency);
        for (i, line) in priced.lines.iter().enumerate() {
            match (line.issue, &line.product, line.unit_price, line.line_total) {
                (Some(LineIssue::Unavailable), ..) | (_, None, ..) => {
                    v.push(
                        format!("items[{i}]"),
                        format!("{} is no longer available; remove it", line.item.sku),
                    );
                }
                (Some(LineIssue::CurrencyMismatch), ..) => {
                    v.push(
                        format!("items[{i}]"),
                        format!("{} is not sold in {}", line.item.sku, self.policy.currency),
                    );
                }
                // A shortage is decided by the reservation itself (backorders, concurrent buyers).
                (None | Some(LineIssue::InsufficientStock), Some(product), Some(unit_price), Some(line_total)) => {
                    let options = product
                        .variant(&line.item.sku)
                        .map(|v| v.options.clone())
                        .unwrap_or_default();
                    subtotal = subtotal.checked_add(line_total).map_err(Error::unexpected)?;
                    items.push(OrderItem {
                        id: OrderItemId::new(),
                        product_id: product.id,
                        sku: line.item.sku.clone(),
                        name: product.name.clone(),
                        options,
                        unit_price,
                        quantity: line.item.quantity,
                        line_total,
                    });
                }
                _ => v.push(format!("items[{i}]"), "cannot be priced"),
            }
        }
        v.finish()?;
        let address = address?;
        let (coupon, discount) = self.discount(who, input.coupon_code.as_deref(), subtotal).await?;
        let taxable = subtotal.checked_sub(discount).map_err(Error::unexpected)?;
        let shipping = self.policy.shipping.quote(taxable, &address);
        let tax = self.policy.tax.tax(taxable, &address);
        let total = taxable
            .checked_add(shipping)
            .and_then(|t| t.checked_add(tax))
            .map_err(Error::unexpected)?;
        let now = Utc::now();
        let window = chrono::Duration::from_std(self.policy.payment_window).map_err(Error::unexpected)?;
        let order = Order {
            id: OrderId::new(),
            user_id: who.user_id,
            cart_id: Some(cart.id),
            status: OrderStatus::Pending,
            items,
            totals: OrderTotals {
                subtotal,
                shipping,
                tax,
                discount,
                total,
            },
            coupon_code: coupon.clone(),
            shipping_address: address,
            tracking: None,
            payment_due_by: now + window,
            created_at: now,
            updated_at: now,
        };
        let new = NewOrder {
            event: event(
                order.id,
                None,
                OrderStatus::Pending,
                Actor::User(who.user_id),
                Some("placed".to_owned()),
            ),
            saga: SagaRecord {
                order_id: order.id,
                cart_id: cart.id,
                step: SagaStep::OrderPlaced,
                updated_at: now,
            },
            answer: match answer {
                Some(a) => Some(KeyAnswer {
                    response: (a.render)(&order)?,
                    key: a.key,
                }),
                None => None,
            },
            coupon,
            order,
        };
        let order = self.orders.place_order(&new).await?;
        if let Err(e) = self
            .carts
            .set_cart_status(cart.id, CartStatus::Active, CartStatus::Converted(order.id), Utc::now())
            .await
        {
            if let Err(undo) = self
                .compensate(&order, "checkout failed before the cart was converted")
                .await
            {
                tracing::error!(order = %order.id, error = %undo, "compensation failed; recovery will retry");
            }
            return Err(e);
        }
        // The saga row stays at `OrderPlaced`: the cart itself records its conversion, and the
        // next step (payment, or `recover` reading the cart) moves the row on. Writing the step
        // here cost every checkout a statement more.
        Ok((order, new.answer.map(|a| a.response)))
    }

    /// Moves an order on the gateway's word (compare-and-set on `from`).
    pub(crate) async fn gateway_transition(
        &self,
        order: OrderId,
        from: OrderStatus,
        to: OrderStatus,
        stock: StockEffect,
        saga_step: Option<SagaStep>,
        note: &str,
    ) -> Result<Order> {
        let updated = self
            .orders
            .transition_order(&OrderTransition {
                order_id: order,
                from,
                to,
                event: event(order, Some(from), to, Actor::Gateway, Some(note.to_owned())),
                stock,
                tracking: None,
                saga_step,
            })
            .await?;
        if stock == StockEffect::Commit {
            self.count_sales(&updated).await;
        }
        Ok(updated)
    }

    /// Cancels an unpaid order (payment failed or cancelled): stock released, cart back.
    pub(crate) async fn cancel_unpaid(&self, order: &Order, why: &str) -> Result<()> {
        self.compensate(order, why).await
    }

    async fn count_sales(&self, order: &Order) {
        for item in &order.items {
            if let Err(e) = self
                .products
                .add_sales(item.product_id, u64::from(item.quantity.get()))
                .await
            {
                tracing::warn!(product = %item.product_id, error = %e, "sales count not updated");
            }
        }
    }

    /// Cancels a pending order, releases its stock and reactivates its cart.
    async fn compensate(&self, order: &Order, why: &str) -> Result<()> {
        let result = self
            .orders
            .transition_order(&OrderTransition {
                order_id: order.id,
                from: OrderStatus::Pending,
                to: OrderStatus::Cancelled,
                event: event(
                    order.id,
                    Some(OrderStatus::Pending),
                    OrderStatus::Cancelled,
                    Actor::System,
                    Some(why.to_owned()),
                ),
                stock: StockEffect::Release,
                tracking: None,
                saga_step: Some(SagaStep::Compensated),
            })
            .await;
        match result {
            Ok(_) => {}
            // Someone else moved it first (paid or cancelled): nothing to undo here.
            Err(Error::InvalidTransition { .. }) => return Ok(()),
            Err(e) => return Err(e),
        }
        if let Some(cart) = order.cart_id {
            match self
                .carts
                .set_cart_status(cart, CartStatus::Converted(order.id), CartStatus::Active, Utc::now())
                .await
            {
                Ok(_) | Err(Error::Conflict { .. } | Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Finishes or undoes every saga a crash left half-way, and expires unpaid orders. Safe to
    /// run at any time and concurrently with checkouts (every step is compare-and-set).
    ///
    /// # Errors
    /// Storage failures (the pass stops; the next one carries on).
    pub async fn recover(&self) -> Result<RecoveryReport> {
        let mut report = RecoveryReport::default();
        let now = Utc::now();
        for saga in self.orders.unfinished_sagas().await? {
            let order = match self.orders.get_order(saga.order_id).await {
                Ok(o) => o,
                Err(Error::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            match order.status {
                OrderStatus::Pending => {}
                OrderStatus::Processing | OrderStatus::Shipped | OrderStatus::Delivered => {
                    self.orders.set_saga_step(order.id, SagaStep::Completed, now).await?;
                    report.completed += 1;
                    continue;
                }
                OrderStatus::Cancelled | OrderStatus::Refunded => {
                    self.orders.set_saga_step(order.id, SagaStep::Compensated, now).await?;
                    report.completed += 1;
                    continue;
                }
            }
            if saga.step == SagaStep::OrderPlaced {
                // A checkout converts its cart and leaves this step for the payment or this pass
                // to record; a cart still active means the checkout stopped in between.
                let cart = match self.carts.get_cart(saga.cart_id).await {
                    Ok(cart) => Some(cart),
                    Err(Error::NotFound { .. }) => None,
                    Err(e) => return Err(e),
                };
                let converted = if cart.is_some_and(|c| c.status == CartStatus::Converted(order.id)) {
                    report.confirmed += 1;
                    Ok(())
                } else {
                    match self
                        .carts
                        .set_cart_status(saga.cart_id, CartStatus::Active, CartStatus::Converted(order.id), now)
                        .await
                    {
                        Ok(_) if self.gave_cart_back(&order, saga.cart_id, now).await? => continue,
                        Ok(_) => {
                            report.resumed += 1;
                            Ok(())
                        }
                        Err(e) => Err(e),
                    }
                };
                match converted {
                    Ok(()) => {
                        self.orders
                            .set_saga_step(order.id, SagaStep::CartConverted, now)
                            .await?;
                    }
                    // The cart moved on (merged, converted elsewhere, expired): undo the order.
                    Err(Error::Conflict { .. } | Error::NotFound { .. }) => {
                        self.compensate(&order, "recovered: the cart could not be converted")
                            .await?;
                        report.compensated += 1;
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            }
            if order.payment_due_by <= now {
                self.compensate(&order, "payment window expired").await?;
                report.expired += 1;
            }
        }
        Ok(report)
    }

    /// Gives back the cart recovery just converted for `order` if the order is no longer pending:
    /// cancelled since it was read, its cart handed back by the cancellation, then taken again
    /// by the conversion. Returns whether it did.
    async fn gave_cart_back(&self, order: &Order, cart: CartId, now: DateTime<Utc>) -> Result<bool> {
        if self.orders.get_order(order.id).await?.status == OrderStatus::Pending {
            return Ok(false);
        }
        match self
            .carts
            .set_cart_status(cart, CartStatus::Converted(order.id), CartStatus::Active, now)
            .await
        {
            Ok(_) | Err(Error::Conflict { .. } | Error::NotFound { .. }) => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// The caller's orders, newest first.
    ///
    /// # Errors
    /// Storage failures only.
    pub async fn my_orders(&self, who: &Principal, page: PageRequest) -> Result<Page<Order>> {
        self.orders.list_user_orders(who.user_id, page).await
    }

    /// All orders, optionally of one status (staff only).
    ///
    /// # Errors
    /// `Forbidden`; `Validation { field: "status" }`.
    pub async fn all_orders(&self, who: &Principal, status: Option<&str>, page: PageRequest) -> Result<Page<Order>> {
        who.require_staff()?;
        let status = status
            .map(|s| OrderStatus::parse(s).ok_or_else(|| Error::invalid("status", "is not an order status")))
            .transpose()?;
        self.orders.list_orders(status, page).await
    }

    /// One order: the caller's own, or any for staff. Someone else's is `NotFound`.
    ///
    /// # Errors
    /// `NotFound { entity: "order" }`.
    pub async fn order(&self, who: &Principal, id: OrderId) -> Result<Order> {
        let order = self.orders.get_order(id).await?;
        if order.user_id != who.user_id && !who.role.is_staff() {
            return Err(Error::NotFound { entity: "order" });
        }
        Ok(order)
    }

    /// An order's history, oldest first (owner or staff).
    ///
    /// # Errors
    /// `NotFound { entity: "order" }`.
    pub async fn events(&self, who: &Principal, id: OrderId) -> Result<Vec<OrderEvent>> {
        self.order(who, id).await?;
        self.orders.order_events(id).await
    }

    /// Moves an order through the state machine (staff only). Shipping needs a carrier and
    /// tracking number; cancelling releases (or, once paid, restocks) the units; a refund
    /// restocks when asked; paying commits the reservations.
    ///
    /// # Errors
    /// `Forbidden`; `NotFound { entity: "order" }`; `Validation`;
    /// `InvalidTransition { from, to }` naming both states.
    pub async fn change_status(&self, who: &Principal, id: OrderId, change: StatusChange) -> Result<Order> {
        who.require_staff()?;
        let to = OrderStatus::parse(change.status.trim()).ok_or_else(|| {
            Error::invalid(
                "status",
                "must be pending, processing, shipped, delivered, cancelled or refunded",
            )
        })?;
        let order = self.orders.get_order(id).await?;
        let from = order.status;
        if !from.can_become(to) {
            return Err(Error::InvalidTransition {
                from: from.to_string(),
                to: to.to_string(),
            });
        }
        let mut v = Validator::new();
        let note = change
            .note
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_owned);
        v.ensure(
            note.as_deref().is_none_or(|n| n.chars().count() <= 1000),
            "note",
            "must be at most 1000 characters",
        );
        let tracking = if to == OrderStatus::Shipped {
            let carrier = change.carrier.as_deref().map(str::trim).unwrap_or_default();
            let number = change.tracking_number.as_deref().map(str::trim).unwrap_or_default();
            v.ensure(
                !carrier.is_empty() && carrier.len() <= 100,
                "carrier",
                "is required when shipping",
            );
            v.ensure(
                !number.is_empty() && number.len() <= 100,
                "trackingNumber",
                "is required when shipping",
            );
            Some(Tracking {
                carrier: carrier.to_owned(),
                number: number.to_owned(),
            })
        } else {
            None
        };
        v.finish()?;
        let (stock, saga_step) = match (from, to) {
            (OrderStatus::Pending, OrderStatus::Processing) => (StockEffect::Commit, Some(SagaStep::Completed)),
            (OrderStatus::Pending, OrderStatus::Cancelled) => (StockEffect::Release, Some(SagaStep::Compensated)),
            (OrderStatus::Processing, OrderStatus::Cancelled) => (StockEffect::Restock, None),
            (_, OrderStatus::Refunded) if change.restock => (StockEffect::Restock, None),
            _ => (StockEffect::None, None),
        };
        let updated = self
            .orders
            .transition_order(&OrderTransition {
                order_id: id,
                from,
                to,
                event: event(id, Some(from), to, Actor::User(who.user_id), note),
                stock,
                tracking,
                saga_step,
            })
            .await?;
        if stock == StockEffect::Commit {
            for item in &updated.items {
                if let Err(e) = self
                    .products
                    .add_sales(item.product_id, u64::from(item.quantity.get()))
                    .await
                {
                    tracing::warn!(product = %item.product_id, error = %e, "sales count not updated");
                }
            }
        }
        Ok(updated)
    }

    /// Creates a coupon (staff only).
    ///
    /// # Errors
    /// `Forbidden`; `Validation`; `Conflict { code: "coupon_exists" }`.
    pub async fn create_coupon(&self, who: &Principal, input: CouponInput) -> Result<Coupon> {
        who.require_staff()?;
        let code =
            coupon_code(&input.code).map_err(|_| Error::invalid("code", "must be 1-40 letters, digits, '-' or '_'"))?;
        let mut v = Validator::new();
        match input.discount {
            Discount::Percentage(bps) => v.ensure(
                (1..=10_000).contains(&bps),
                "discount.value",
                "must be 1 to 10000 basis points",
            ),
            Discount::Fixed(m) => v.ensure(m.amount_minor > 0, "discount.value", "must be above zero"),
        }
        v.ensure(
            input.min_subtotal.is_none_or(|m| m.amount_minor >= 0),
            "minSubtotal",
            "must be zero or more",
        );
        v.ensure(
            input.usage_limit.is_none_or(|n| n > 0),
            "usageLimit",
            "must be at least 1",
        );
        v.ensure(
            input.per_customer_limit.is_none_or(|n| n > 0),
            "perCustomerLimit",
            "must be at least 1",
        );
        v.finish()?;
        let coupon = Coupon {
            code,
            discount: input.discount,
            min_subtotal: input.min_subtotal,
            expires_at: input.expires_at,
            usage_limit: input.usage_limit,
            per_customer_limit: input.per_customer_limit,
            times_used: 0,
            active: true,
        };
        self.orders.insert_coupon(&coupon).await?;
        Ok(coupon)
    }
}
