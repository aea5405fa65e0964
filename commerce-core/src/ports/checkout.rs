use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::Result;
use crate::domain::{
    Actor, Coupon, IdempotencyClaim, IdempotencyKey, KeyAnswer, MovementKind, Order, OrderEvent, OrderId, OrderStatus,
    Page, PageRequest, Payment, PaymentSeen, PaymentTransaction, ProductId, Quantity, ReservationStatus, SagaRecord,
    SagaStep, Sku, StockChange, StockLevel, StockMovement, StockSet, StoredResponse, Tracking, UserId,
};

/// Stock per SKU per warehouse. Every change is atomic (conditional update or row lock) and
/// logged as a movement with before/after values.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait InventoryStore: Send + Sync {
    /// The SKU's stock in every warehouse it is stocked in (empty when never stocked),
    /// ordered by warehouse.
    async fn stock_levels(&self, sku: &Sku) -> Result<Vec<StockLevel>>;

    /// Total available (`on_hand - reserved`, summed over warehouses) per SKU; SKUs never
    /// stocked are absent.
    async fn available(&self, skus: &[Sku]) -> Result<Vec<(Sku, i64)>>;

    /// Every SKU that can be sold now: total available above zero, or a level that allows
    /// backorders. Used to filter listings by "in stock".
    async fn skus_in_stock(&self) -> Result<Vec<Sku>>;

    /// Applies a change to one level, creating the level at zero when missing, and logs it.
    /// Returns the level as stored.
    ///
    /// # Errors
    /// `Validation` (naming `onHand` for a count set, `delta` for a change) when on hand would
    /// fall below zero or below what is reserved, or rise past `MAX_ON_HAND`.
    async fn change_stock(
        &self,
        sku: &Sku,
        warehouse: &str,
        change: &StockChange,
        actor: &Actor,
        reason: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<StockLevel>;

    /// Sets every level in one transaction, all or nothing: each is created at zero when
    /// missing, gets its new on hand (logged as an adjustment) and its settings. Returns the
    /// levels as stored, in the order given. A SKU and warehouse given twice is set twice, in
    /// order.
    ///
    /// # Errors
    /// `Validation { field: "items[i].onHand" }` (`i` the entry's index) when an entry's on hand
    /// would fall below zero or below what is reserved; nothing is written then.
    async fn set_stock_levels(&self, sets: &[StockSet], actor: &Actor, now: DateTime<Utc>) -> Result<Vec<StockLevel>>;

    /// Moves on-hand units between warehouses in one transaction (two movements logged).
    ///
    /// # Errors
    /// `OutOfStock { sku }` when the source has fewer available units;
    /// `NotFound { entity: "stock level" }` when the source level does not exist;
    /// `Validation { field: "to" }` when `from == to`.
    async fn transfer_stock(
        &self,
        sku: &Sku,
        from: &str,
        to: &str,
        quantity: Quantity,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<(StockLevel, StockLevel)>;

    /// Levels whose available quantity is at or below their low-stock threshold.
    async fn low_stock(&self, page: PageRequest) -> Result<Page<StockLevel>>;

    /// The SKU's movements, newest first.
    async fn movements(&self, sku: &Sku, page: PageRequest) -> Result<Page<StockMovement>>;
}

/// Everything the checkout writes to the transactional store in one go.
#[derive(Debug, Clone, PartialEq)]
pub struct NewOrder {
    /// The order, status `Pending`.
    pub order: Order,
    /// Its creation event.
    pub event: OrderEvent,
    /// The saga row (step `OrderPlaced`).
    pub saga: SagaRecord,
    /// Coupon to redeem atomically, if any.
    pub coupon: Option<String>,
    /// The answer to the placing request's claimed idempotency key, stored with the order: a
    /// retry then replays it even if the request never got to store it afterwards.
    pub answer: Option<KeyAnswer>,
}

/// What a status change does to stock, in the same transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StockEffect {
    /// Nothing.
    None,
    /// Active reservations become sales: on hand and reserved both drop.
    Commit,
    /// Active reservations are given back: reserved drops.
    Release,
    /// Committed units come back on hand (a refund with restock).
    Restock,
}

/// What a stock effect does to each of an order's reservations: those in status `from` move
/// to `to`, logged as movements of kind `movement`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReservationChange {
    /// Reservations in this status are affected.
    pub from: ReservationStatus,
    /// The movement logged per affected stock level.
    pub movement: MovementKind,
    /// Their new status.
    pub to: ReservationStatus,
}

impl StockEffect {
    /// The reservation change every adapter applies for this effect; `None` for no effect.
    pub fn reservation_change(self) -> Option<ReservationChange> {
        let (from, movement, to) = match self {
            Self::None => return None,
            Self::Commit => (
                ReservationStatus::Active,
                MovementKind::Sale,
                ReservationStatus::Committed,
            ),
            Self::Release => (
                ReservationStatus::Active,
                MovementKind::Release,
                ReservationStatus::Released,
            ),
            // Restocked units are given back; marking them so makes a second restock a no-op.
            Self::Restock => (
                ReservationStatus::Committed,
                MovementKind::Return,
                ReservationStatus::Released,
            ),
        };
        Some(ReservationChange { from, movement, to })
    }
}

/// A status change asked of the order store.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderTransition {
    /// The order.
    pub order_id: OrderId,
    /// The status the caller saw; the change applies only if it is still current.
    pub from: OrderStatus,
    /// The new status.
    pub to: OrderStatus,
    /// The audit entry to append.
    pub event: OrderEvent,
    /// Stock consequence.
    pub stock: StockEffect,
    /// Tracking, when shipping.
    pub tracking: Option<Tracking>,
    /// New saga step, if the saga moves with it.
    pub saga_step: Option<SagaStep>,
}

/// Orders, their history, reservations and the saga log.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait OrderStore: Send + Sync {
    /// In ONE transaction: inserts the pending order and its items, reserves stock for every
    /// line with a conditional update (`available >= qty`, warehouses in name order, unless
    /// backorders are allowed), redeems the coupon, appends the event, writes the saga row and
    /// completes the `answer`'s key with its response. Nothing is written when any part fails.
    ///
    /// # Errors
    /// `Conflict { code: "idempotency_key_not_claimed" }` when the `answer`'s key is not
    /// claimed and unanswered (released, expired or answered meanwhile);
    /// `OutOfStock { sku }` naming the first line that cannot be reserved;
    /// `Conflict { code: "coupon_exhausted" }` when the coupon's usage limit is reached;
    /// `Conflict { code: "order_exists" }` when the order id exists.
    async fn place_order(&self, new: &NewOrder) -> Result<Order>;

    /// The order.
    ///
    /// # Errors
    /// `NotFound { entity: "order" }`.
    async fn get_order(&self, id: OrderId) -> Result<Order>;

    /// A user's orders, newest first.
    async fn list_user_orders(&self, user: UserId, page: PageRequest) -> Result<Page<Order>>;

    /// All orders (optionally of one status), newest first.
    async fn list_orders(&self, status: Option<OrderStatus>, page: PageRequest) -> Result<Page<Order>>;

    /// In ONE transaction: moves the order if its status is still `from`, applies the stock
    /// effect, appends the event, stores tracking and advances the saga.
    ///
    /// # Errors
    /// `NotFound { entity: "order" }`; `InvalidTransition { from: <current>, to }` when the status
    /// is no longer `from`.
    async fn transition_order(&self, transition: &OrderTransition) -> Result<Order>;

    /// The order's history, oldest first.
    async fn order_events(&self, id: OrderId) -> Result<Vec<OrderEvent>>;

    /// Advances the saga row. The write may be acknowledged before it is durable (PostgreSQL:
    /// an asynchronous commit): the saga log only tells recovery where to look, and a step a
    /// crash loses is redone by `OrderService::recover`, which decides from the order and cart.
    /// (Steps written with an order's transition, [`OrderTransition::saga_step`], are durable
    /// with it.)
    ///
    /// # Errors
    /// `NotFound { entity: "saga" }`.
    async fn set_saga_step(&self, order: OrderId, step: SagaStep, now: DateTime<Utc>) -> Result<()>;

    /// Saga rows not yet `Completed` or `Compensated`, oldest first.
    async fn unfinished_sagas(&self) -> Result<Vec<SagaRecord>>;

    /// Ids of pending orders whose `payment_due_by` has passed.
    async fn overdue_orders(&self, now: DateTime<Utc>) -> Result<Vec<OrderId>>;

    /// Whether the user has a paid (processing, shipped or delivered) order with this product.
    async fn has_purchased(&self, user: UserId, product: ProductId) -> Result<bool>;

    /// How many orders reference this product.
    async fn count_orders_with_product(&self, product: ProductId) -> Result<u64>;

    /// Stores a coupon.
    ///
    /// # Errors
    /// `Conflict { code: "coupon_exists" }`.
    async fn insert_coupon(&self, coupon: &Coupon) -> Result<()>;

    /// The coupon with this (upper-case) code, if any.
    async fn find_coupon(&self, code: &str) -> Result<Option<Coupon>>;

    /// How many of the user's non-cancelled orders used the coupon.
    async fn coupon_uses_by(&self, code: &str, user: UserId) -> Result<u64>;
}

/// Payments, transactions and processed webhook events.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait PaymentStore: Send + Sync {
    /// Stores a payment.
    ///
    /// # Errors
    /// `Conflict { code: "payment_exists" }` when the order already has a payment.
    async fn insert_payment(&self, payment: &Payment) -> Result<()>;

    /// The order's payment, if any.
    async fn find_payment_by_order(&self, order: OrderId) -> Result<Option<Payment>>;

    /// The payment of this gateway intent, if any.
    async fn find_payment_by_intent(&self, intent_id: &str) -> Result<Option<Payment>>;

    /// Stores the payment if its status and refunded amount are still `seen`'s, and records the
    /// transaction with it, atomically. Returns the payment as stored.
    ///
    /// # Errors
    /// `NotFound { entity: "payment" }`; `InvalidTransition` when the status is no longer
    /// `seen.status`; `Conflict { code: "payment_changed" }` when it is but the refunded amount
    /// moved. Nothing is written then.
    async fn update_payment(
        &self,
        payment: &Payment,
        seen: PaymentSeen,
        transaction: Option<PaymentTransaction>,
    ) -> Result<Payment>;

    /// The payment's transactions, oldest first.
    async fn payment_transactions(&self, payment: &Payment) -> Result<Vec<PaymentTransaction>>;

    /// Records a gateway event id; `true` the first time, `false` for a duplicate.
    async fn record_gateway_event(&self, event_id: &str, kind: &str, now: DateTime<Utc>) -> Result<bool>;
}

/// Idempotency keys.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Claims the key for a request with this fingerprint, atomically. An expired record counts
    /// as absent.
    async fn claim_key(
        &self,
        key: &IdempotencyKey,
        fingerprint: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<IdempotencyClaim>;

    /// Stores the response of a claimed key.
    ///
    /// # Errors
    /// `NotFound { entity: "idempotency key" }` when the key was never claimed.
    async fn complete_key(&self, key: &IdempotencyKey, response: &StoredResponse) -> Result<()>;

    /// Forgets a claimed, unfinished key so the client may retry (the request failed before
    /// any effect).
    async fn release_key(&self, key: &IdempotencyKey) -> Result<()>;

    /// Forgets a key whatever it holds, answered or not, so the client may retry: its
    /// request's effect, stored with its answer, was undone afterwards (a checkout whose order
    /// was placed, then cancelled when its cart could not be converted).
    async fn forget_key(&self, key: &IdempotencyKey) -> Result<()>;
}
