-- Checkout: inventory (stock levels, reservations, the movements log), orders (items, the
-- append-only event history, the checkout saga log, coupons), payments (transactions, processed
-- gateway events) and idempotency keys.
--
-- Conventions (as in 0001):
-- - Constraint names are spelled out: the adapter maps some of them to domain errors
--   (e.g. orders_pkey -> Conflict "order_exists"), so they are part of its contract.
-- - Money is integer minor units (bigint `*_minor`) with an ISO 4217 `currency` char(3).
-- - Enum-like columns hold the core's wire names, fenced by CHECK constraints.
-- - SKUs and warehouse codes are `COLLATE "C"`: byte order, the order the core (and the
--   in-memory adapter) sorts them in, whatever the database's default collation. The adapter
--   also locks stock levels in this order, which is what keeps concurrent checkouts deadlock-free.
-- - Orders and the logs are never deleted, so foreign keys have no ON DELETE action.
-- - Written to be re-runnable (IF NOT EXISTS, DROP ... IF EXISTS before CREATE TRIGGER), although
--   the migrator applies it once.

-- Inventory ---------------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS commerce.stock_levels (
    sku                 text COLLATE "C" NOT NULL
                        CONSTRAINT stock_levels_sku_check CHECK (sku ~ '^[A-Z0-9._-]{1,64}$'),
    warehouse           text COLLATE "C" NOT NULL,
    on_hand             bigint NOT NULL,
    reserved            bigint NOT NULL CONSTRAINT stock_levels_reserved_check CHECK (reserved >= 0),
    low_stock_threshold bigint NOT NULL DEFAULT 0,
    reorder_point       bigint NOT NULL DEFAULT 0,
    backorder_allowed   boolean NOT NULL DEFAULT false,
    updated_at          timestamptz NOT NULL,
    CONSTRAINT stock_levels_pkey PRIMARY KEY (sku, warehouse)
);
COMMENT ON TABLE commerce.stock_levels IS
    'Stock of one SKU in one warehouse. available = on_hand - reserved. Reservations are taken with '
    'conditional updates under row locks acquired in (sku, warehouse) order; available never goes '
    'below zero except on a level that allows backorders.';
COMMENT ON COLUMN commerce.stock_levels.on_hand IS
    'Units physically present. Not fenced at zero: committing backordered reservations may take it '
    'below zero (the in-memory reference adapter allows the same); the port refuses manual changes '
    'that lower it below zero or below reserved.';
COMMENT ON COLUMN commerce.stock_levels.reserved IS 'Units promised to pending orders (active reservations).';
COMMENT ON COLUMN commerce.stock_levels.low_stock_threshold IS 'The level is low when available <= this.';
COMMENT ON COLUMN commerce.stock_levels.reorder_point IS 'Reorder when available falls to this.';
COMMENT ON COLUMN commerce.stock_levels.backorder_allowed IS 'Orders may reserve beyond what is available.';
-- The low-stock report (admin): only the levels that are low, in report order. (Indexing an
-- expression of on_hand/reserved costs HOT updates on this table; it is small, and the report
-- would otherwise scan every level.)
CREATE INDEX IF NOT EXISTS stock_levels_low_idx ON commerce.stock_levels (sku, warehouse)
    WHERE on_hand - reserved <= low_stock_threshold;

-- Orders first: the movements log and reservations reference them.

CREATE TABLE IF NOT EXISTS commerce.orders (
    id               uuid CONSTRAINT orders_pkey PRIMARY KEY,
    user_id          uuid NOT NULL CONSTRAINT orders_user_id_fkey REFERENCES commerce.users (id),
    -- Carts live in MongoDB: no foreign key.
    cart_id          uuid,
    -- OrderStatus::as_str.
    status           text NOT NULL CONSTRAINT orders_status_check
                     CHECK (status IN ('pending', 'processing', 'shipped', 'delivered', 'cancelled', 'refunded')),
    currency         char(3) NOT NULL CONSTRAINT orders_currency_check CHECK (currency ~ '^[A-Z]{3}$'),
    subtotal_minor   bigint NOT NULL,
    shipping_minor   bigint NOT NULL,
    tax_minor        bigint NOT NULL,
    discount_minor   bigint NOT NULL,
    total_minor      bigint NOT NULL,
    coupon_code      text,
    shipping_address jsonb NOT NULL
                     CONSTRAINT orders_shipping_address_check CHECK (jsonb_typeof(shipping_address) = 'object'),
    tracking_carrier text,
    tracking_number  text,
    payment_due_by   timestamptz NOT NULL,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    CONSTRAINT orders_tracking_check CHECK ((tracking_carrier IS NULL) = (tracking_number IS NULL))
);
COMMENT ON TABLE commerce.orders IS
    'Orders. Status moves only by compare-and-set (UPDATE ... WHERE status = <seen>), each move '
    'appending to order_events in the same transaction.';
COMMENT ON COLUMN commerce.orders.currency IS 'The currency of every amount of the order.';
COMMENT ON COLUMN commerce.orders.total_minor IS 'subtotal + shipping + tax - discount, computed by the core.';
COMMENT ON COLUMN commerce.orders.coupon_code IS 'The coupon applied (coupons.code; counted by coupon_uses_by).';
COMMENT ON COLUMN commerce.orders.shipping_address IS 'Snapshot of the address (AddressFields, camelCase JSON).';
COMMENT ON COLUMN commerce.orders.payment_due_by IS 'A pending order expires unpaid at this time.';
-- A user's orders, newest first.
CREATE INDEX IF NOT EXISTS orders_user_created_idx ON commerce.orders (user_id, created_at DESC, id DESC);
-- Every order, newest first; and of one status.
CREATE INDEX IF NOT EXISTS orders_created_idx ON commerce.orders (created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS orders_status_created_idx ON commerce.orders (status, created_at DESC, id DESC);
-- Pending orders past their payment deadline (the expiry task).
CREATE INDEX IF NOT EXISTS orders_pending_due_idx ON commerce.orders (payment_due_by, id) WHERE status = 'pending';
-- A customer's uses of a coupon.
CREATE INDEX IF NOT EXISTS orders_coupon_user_idx ON commerce.orders (coupon_code, user_id)
    WHERE coupon_code IS NOT NULL;

CREATE TABLE IF NOT EXISTS commerce.order_items (
    id               uuid CONSTRAINT order_items_pkey PRIMARY KEY,
    order_id         uuid NOT NULL CONSTRAINT order_items_order_id_fkey REFERENCES commerce.orders (id),
    -- The line's place in the order (0-based).
    position         integer NOT NULL,
    -- Products live in MongoDB: no foreign key.
    product_id       uuid NOT NULL,
    sku              text COLLATE "C" NOT NULL,
    name             text NOT NULL,
    options          jsonb NOT NULL CONSTRAINT order_items_options_check CHECK (jsonb_typeof(options) = 'object'),
    currency         char(3) NOT NULL CONSTRAINT order_items_currency_check CHECK (currency ~ '^[A-Z]{3}$'),
    unit_price_minor bigint NOT NULL,
    quantity         integer NOT NULL CONSTRAINT order_items_quantity_check CHECK (quantity BETWEEN 1 AND 1000000),
    line_total_minor bigint NOT NULL,
    CONSTRAINT order_items_position_key UNIQUE (order_id, position)
);
COMMENT ON TABLE commerce.order_items IS
    'Order lines: a snapshot of the product, variant and price at the time of the order.';
-- has_purchased (joined to orders) and count_orders_with_product.
CREATE INDEX IF NOT EXISTS order_items_product_idx ON commerce.order_items (product_id, order_id);

CREATE TABLE IF NOT EXISTS commerce.order_events (
    id          uuid CONSTRAINT order_events_pkey PRIMARY KEY,
    -- Append order, which breaks ties between events at the same instant.
    seq         bigint GENERATED ALWAYS AS IDENTITY,
    order_id    uuid NOT NULL CONSTRAINT order_events_order_id_fkey REFERENCES commerce.orders (id),
    from_status text CONSTRAINT order_events_from_status_check
                CHECK (from_status IN ('pending', 'processing', 'shipped', 'delivered', 'cancelled', 'refunded')),
    to_status   text NOT NULL CONSTRAINT order_events_to_status_check
                CHECK (to_status IN ('pending', 'processing', 'shipped', 'delivered', 'cancelled', 'refunded')),
    -- Actor: a user (actor_id, not a foreign key: staff and system users may be external), the
    -- payment gateway or the engine itself.
    actor_kind  text NOT NULL CONSTRAINT order_events_actor_kind_check
                CHECK (actor_kind IN ('user', 'gateway', 'system')),
    actor_id    uuid,
    note        text,
    at          timestamptz NOT NULL,
    CONSTRAINT order_events_actor_check CHECK ((actor_kind = 'user') = (actor_id IS NOT NULL))
);
COMMENT ON TABLE commerce.order_events IS
    'Append-only audit trail of every order: who moved it from which status to which, when and why.';
CREATE INDEX IF NOT EXISTS order_events_order_idx ON commerce.order_events (order_id, at, seq);

CREATE TABLE IF NOT EXISTS commerce.checkout_sagas (
    order_id   uuid CONSTRAINT checkout_sagas_pkey PRIMARY KEY
               CONSTRAINT checkout_sagas_order_id_fkey REFERENCES commerce.orders (id),
    cart_id    uuid NOT NULL,
    step       text NOT NULL CONSTRAINT checkout_sagas_step_check
               CHECK (step IN ('order_placed', 'cart_converted', 'awaiting_payment', 'completed', 'compensated')),
    updated_at timestamptz NOT NULL
);
COMMENT ON TABLE commerce.checkout_sagas IS
    'One row per checkout (cart in MongoDB -> order here -> payment): where it stands, so the recovery '
    'task can finish or compensate checkouts left mid-way.';
-- The recovery task: unfinished sagas, oldest first.
CREATE INDEX IF NOT EXISTS checkout_sagas_unfinished_idx ON commerce.checkout_sagas (updated_at, order_id)
    WHERE step NOT IN ('completed', 'compensated');

CREATE TABLE IF NOT EXISTS commerce.coupons (
    -- Upper case (the core normalises codes).
    code                  text CONSTRAINT coupons_pkey PRIMARY KEY,
    discount_kind         text NOT NULL CONSTRAINT coupons_discount_kind_check
                          CHECK (discount_kind IN ('percentage', 'fixed')),
    -- Basis points off the subtotal (percentage), or minor units off (fixed).
    discount_value        bigint NOT NULL,
    -- The fixed discount's currency; NULL for a percentage.
    discount_currency     char(3),
    min_subtotal_minor    bigint,
    min_subtotal_currency char(3),
    expires_at            timestamptz,
    usage_limit           bigint CONSTRAINT coupons_usage_limit_check CHECK (usage_limit BETWEEN 0 AND 4294967295),
    per_customer_limit    bigint
                          CONSTRAINT coupons_per_customer_limit_check CHECK (per_customer_limit BETWEEN 0 AND 4294967295),
    -- Redemptions so far: raised only by a conditional UPDATE (times_used < usage_limit) in the
    -- order's transaction.
    times_used            bigint NOT NULL CONSTRAINT coupons_times_used_check CHECK (times_used BETWEEN 0 AND 4294967295),
    active                boolean NOT NULL,
    CONSTRAINT coupons_discount_check CHECK (
        CASE discount_kind
            WHEN 'percentage' THEN discount_currency IS NULL AND discount_value BETWEEN 0 AND 4294967295
            ELSE discount_currency ~ '^[A-Z]{3}$'
        END),
    CONSTRAINT coupons_min_subtotal_check CHECK (
        (min_subtotal_minor IS NULL AND min_subtotal_currency IS NULL)
        OR (min_subtotal_minor IS NOT NULL AND min_subtotal_currency ~ '^[A-Z]{3}$'))
);
COMMENT ON TABLE commerce.coupons IS
    'Coupon codes. Per-customer use is counted from orders.coupon_code (non-cancelled orders).';

CREATE TABLE IF NOT EXISTS commerce.reservations (
    id         uuid CONSTRAINT reservations_pkey PRIMARY KEY,
    order_id   uuid NOT NULL CONSTRAINT reservations_order_id_fkey REFERENCES commerce.orders (id),
    -- Order in which the checkout took them (line order, then warehouse order).
    position   integer NOT NULL,
    sku        text COLLATE "C" NOT NULL,
    warehouse  text COLLATE "C" NOT NULL,
    quantity   integer NOT NULL CONSTRAINT reservations_quantity_check CHECK (quantity > 0),
    -- ReservationStatus: held, turned into a sale, or given back (also after a restock).
    status     text NOT NULL CONSTRAINT reservations_status_check CHECK (status IN ('active', 'committed', 'released')),
    created_at timestamptz NOT NULL,
    CONSTRAINT reservations_position_key UNIQUE (order_id, position),
    CONSTRAINT reservations_level_fkey FOREIGN KEY (sku, warehouse) REFERENCES commerce.stock_levels (sku, warehouse)
);
COMMENT ON TABLE commerce.reservations IS
    'Stock held for an order, per SKU and warehouse; committed (sold) or released with the order.';

CREATE TABLE IF NOT EXISTS commerce.stock_movements (
    id              uuid CONSTRAINT stock_movements_pkey PRIMARY KEY,
    -- Append order, which breaks ties between movements at the same instant.
    seq             bigint GENERATED ALWAYS AS IDENTITY,
    sku             text COLLATE "C" NOT NULL,
    warehouse       text COLLATE "C" NOT NULL,
    -- MovementKind.
    kind            text NOT NULL CONSTRAINT stock_movements_kind_check CHECK (kind IN (
                        'purchase', 'sale', 'return', 'adjustment', 'damage', 'transfer', 'reservation', 'release')),
    on_hand_before  bigint NOT NULL,
    on_hand_after   bigint NOT NULL,
    reserved_before bigint NOT NULL,
    reserved_after  bigint NOT NULL,
    reason          text,
    order_id        uuid CONSTRAINT stock_movements_order_id_fkey REFERENCES commerce.orders (id),
    actor_kind      text NOT NULL CONSTRAINT stock_movements_actor_kind_check
                    CHECK (actor_kind IN ('user', 'gateway', 'system')),
    actor_id        uuid,
    at              timestamptz NOT NULL,
    CONSTRAINT stock_movements_level_fkey FOREIGN KEY (sku, warehouse)
        REFERENCES commerce.stock_levels (sku, warehouse),
    CONSTRAINT stock_movements_actor_check CHECK ((actor_kind = 'user') = (actor_id IS NOT NULL))
);
COMMENT ON TABLE commerce.stock_movements IS
    'Append-only log of every stock change, with on hand and reserved before and after.';
-- A SKU's movements, newest first.
CREATE INDEX IF NOT EXISTS stock_movements_sku_idx ON commerce.stock_movements (sku, at DESC, seq DESC);

-- Payments ----------------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS commerce.payments (
    id                    uuid CONSTRAINT payments_pkey PRIMARY KEY,
    -- One payment per order.
    order_id              uuid NOT NULL CONSTRAINT payments_order_id_key UNIQUE
                          CONSTRAINT payments_order_id_fkey REFERENCES commerce.orders (id),
    gateway               text NOT NULL,
    intent_id             text NOT NULL CONSTRAINT payments_intent_id_key UNIQUE,
    client_secret         text NOT NULL,
    currency              char(3) NOT NULL CONSTRAINT payments_currency_check CHECK (currency ~ '^[A-Z]{3}$'),
    amount_minor          bigint NOT NULL,
    amount_refunded_minor bigint NOT NULL,
    -- PaymentStatus.
    status                text NOT NULL CONSTRAINT payments_status_check CHECK (status IN (
                              'requires_payment', 'succeeded', 'failed', 'canceled', 'partially_refunded', 'refunded')),
    -- No card data beyond brand and last four digits.
    card_brand            text,
    card_last4            text,
    created_at            timestamptz NOT NULL,
    updated_at            timestamptz NOT NULL
);
COMMENT ON TABLE commerce.payments IS
    'Payments through a gateway, one per order; status moves by compare-and-set.';

CREATE TABLE IF NOT EXISTS commerce.payment_transactions (
    id                uuid CONSTRAINT payment_transactions_pkey PRIMARY KEY,
    -- Record order, which breaks ties between transactions at the same instant.
    seq               bigint GENERATED ALWAYS AS IDENTITY,
    payment_id        uuid NOT NULL CONSTRAINT payment_transactions_payment_id_fkey REFERENCES commerce.payments (id),
    kind              text NOT NULL CONSTRAINT payment_transactions_kind_check
                      CHECK (kind IN ('charge', 'refund', 'partial_refund')),
    currency          char(3) NOT NULL CONSTRAINT payment_transactions_currency_check CHECK (currency ~ '^[A-Z]{3}$'),
    amount_minor      bigint NOT NULL,
    gateway_reference text,
    created_at        timestamptz NOT NULL
);
COMMENT ON TABLE commerce.payment_transactions IS 'Money movements of a payment (charges, refunds).';
CREATE INDEX IF NOT EXISTS payment_transactions_payment_idx
    ON commerce.payment_transactions (payment_id, created_at, seq);

CREATE TABLE IF NOT EXISTS commerce.gateway_events (
    event_id    text CONSTRAINT gateway_events_pkey PRIMARY KEY,
    kind        text NOT NULL,
    received_at timestamptz NOT NULL
);
COMMENT ON TABLE commerce.gateway_events IS
    'Webhook events already processed, by the gateway''s event id: a redelivery is recognised and skipped.';

-- Idempotency keys --------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS commerce.idempotency_keys (
    -- Who sent it and for which operation, so two clients' keys never collide.
    scope           text NOT NULL,
    key             text NOT NULL,
    -- SHA-256 (hex) of the request; the same key with another request is refused.
    fingerprint     text NOT NULL,
    -- The response, once the request completed; both NULL while it runs.
    response_status integer CONSTRAINT idempotency_keys_response_status_check
                    CHECK (response_status BETWEEN 0 AND 65535),
    response_body   text,
    created_at      timestamptz NOT NULL,
    -- A record past this counts as absent; a new claim replaces it.
    expires_at      timestamptz NOT NULL,
    CONSTRAINT idempotency_keys_pkey PRIMARY KEY (scope, key),
    CONSTRAINT idempotency_keys_response_check CHECK ((response_status IS NULL) = (response_body IS NULL))
);
COMMENT ON TABLE commerce.idempotency_keys IS
    'Idempotency-Key records: one key, one effect; replays get the stored response.';

-- Append-only logs --------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION commerce.refuse_log_change() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'commerce.% is append-only', TG_TABLE_NAME USING ERRCODE = 'restrict_violation';
END
$$;
COMMENT ON FUNCTION commerce.refuse_log_change() IS 'Trigger function refusing UPDATE and DELETE on append-only logs.';

DROP TRIGGER IF EXISTS order_events_append_only ON commerce.order_events;
CREATE TRIGGER order_events_append_only BEFORE UPDATE OR DELETE ON commerce.order_events
    FOR EACH ROW EXECUTE FUNCTION commerce.refuse_log_change();

DROP TRIGGER IF EXISTS stock_movements_append_only ON commerce.stock_movements;
CREATE TRIGGER stock_movements_append_only BEFORE UPDATE OR DELETE ON commerce.stock_movements
    FOR EACH ROW EXECUTE FUNCTION commerce.refuse_log_change();
