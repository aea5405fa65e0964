-- The rules on single columns of the tables every checkout writes move from CHECK constraints
-- into domains (the values they allow are unchanged).
--
-- Why: PostgreSQL re-reads a table's CHECK constraints from their stored text, plans them and
-- compiles them for every statement that inserts or updates a row of it, whichever columns the
-- statement sets, and the one-statement checkout (0003) writes eight tables holding 22 of them:
-- reading and planning them was ~9 % of PostgreSQL's CPU during checkouts. A domain's rules are
-- read once per session (the type cache) and checked only where a value of it is written, so
-- reserving stock, which sets `reserved`, no longer runs the SKU's regular expression.
--
-- The constraints that relate two columns stay CHECK constraints. A violation now names the
-- domain's constraint (`<domain>_check`), e.g. `reserved_units_check`, not the table's.
-- Re-runnable, as 0002: a domain that exists is kept, a constraint already gone is skipped.

DO $$
BEGIN
    CREATE DOMAIN commerce.order_status AS text CONSTRAINT order_status_check
        CHECK (VALUE IN ('pending', 'processing', 'shipped', 'delivered', 'cancelled', 'refunded'));
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;
COMMENT ON DOMAIN commerce.order_status IS 'OrderStatus::as_str.';

DO $$
BEGIN
    CREATE DOMAIN commerce.currency_code AS char(3) CONSTRAINT currency_code_check
        CHECK (VALUE ~ '^[A-Z]{3}$');
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;
COMMENT ON DOMAIN commerce.currency_code IS 'An ISO 4217 code, upper case.';

DO $$
BEGIN
    CREATE DOMAIN commerce.json_object AS jsonb CONSTRAINT json_object_check
        CHECK (jsonb_typeof(VALUE) = 'object');
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;
COMMENT ON DOMAIN commerce.json_object IS 'A JSON object (not an array, a string or a number).';

DO $$
BEGIN
    CREATE DOMAIN commerce.line_quantity AS integer CONSTRAINT line_quantity_check
        CHECK (VALUE BETWEEN 1 AND 1000000);
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;
COMMENT ON DOMAIN commerce.line_quantity IS 'Units of an order line.';

DO $$
BEGIN
    CREATE DOMAIN commerce.actor_kind AS text CONSTRAINT actor_kind_check
        CHECK (VALUE IN ('user', 'gateway', 'system'));
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;
COMMENT ON DOMAIN commerce.actor_kind IS 'Who acted: a user (with an actor_id), the payment gateway or the engine.';

DO $$
BEGIN
    CREATE DOMAIN commerce.saga_step AS text CONSTRAINT saga_step_check
        CHECK (VALUE IN ('order_placed', 'cart_converted', 'awaiting_payment', 'completed', 'compensated'));
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;
COMMENT ON DOMAIN commerce.saga_step IS 'SagaStep: where a checkout stands.';

DO $$
BEGIN
    CREATE DOMAIN commerce.stock_sku AS text CONSTRAINT stock_sku_check
        CHECK (VALUE ~ '^[A-Z0-9._-]{1,64}$');
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;
COMMENT ON DOMAIN commerce.stock_sku IS 'A SKU as the core normalizes it (columns of it are COLLATE "C").';

DO $$
BEGIN
    CREATE DOMAIN commerce.reserved_units AS bigint CONSTRAINT reserved_units_check CHECK (VALUE >= 0);
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;
COMMENT ON DOMAIN commerce.reserved_units IS 'Units promised to pending orders: never below zero.';

DO $$
BEGIN
    CREATE DOMAIN commerce.reserved_quantity AS integer CONSTRAINT reserved_quantity_check CHECK (VALUE > 0);
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;
COMMENT ON DOMAIN commerce.reserved_quantity IS 'Units one reservation holds.';

DO $$
BEGIN
    CREATE DOMAIN commerce.reservation_status AS text CONSTRAINT reservation_status_check
        CHECK (VALUE IN ('active', 'committed', 'released'));
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;
COMMENT ON DOMAIN commerce.reservation_status IS 'ReservationStatus.';

DO $$
BEGIN
    CREATE DOMAIN commerce.movement_kind AS text CONSTRAINT movement_kind_check
        CHECK (VALUE IN ('purchase', 'sale', 'return', 'adjustment', 'damage', 'transfer', 'reservation', 'release'));
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;
COMMENT ON DOMAIN commerce.movement_kind IS 'MovementKind.';

DO $$
BEGIN
    CREATE DOMAIN commerce.http_status AS integer CONSTRAINT http_status_check CHECK (VALUE BETWEEN 0 AND 65535);
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;
COMMENT ON DOMAIN commerce.http_status IS 'A stored response''s HTTP status.';

-- Each column's type changes without rewriting its table (a domain over the column's own type);
-- its rows are checked against the domain once, here. SKU columns keep their "C" collation.
ALTER TABLE commerce.orders
    DROP CONSTRAINT IF EXISTS orders_status_check,
    DROP CONSTRAINT IF EXISTS orders_currency_check,
    DROP CONSTRAINT IF EXISTS orders_shipping_address_check,
    ALTER COLUMN status TYPE commerce.order_status,
    ALTER COLUMN currency TYPE commerce.currency_code,
    ALTER COLUMN shipping_address TYPE commerce.json_object;

ALTER TABLE commerce.order_items
    DROP CONSTRAINT IF EXISTS order_items_options_check,
    DROP CONSTRAINT IF EXISTS order_items_currency_check,
    DROP CONSTRAINT IF EXISTS order_items_quantity_check,
    ALTER COLUMN options TYPE commerce.json_object,
    ALTER COLUMN currency TYPE commerce.currency_code,
    ALTER COLUMN quantity TYPE commerce.line_quantity;

ALTER TABLE commerce.order_events
    DROP CONSTRAINT IF EXISTS order_events_from_status_check,
    DROP CONSTRAINT IF EXISTS order_events_to_status_check,
    DROP CONSTRAINT IF EXISTS order_events_actor_kind_check,
    ALTER COLUMN from_status TYPE commerce.order_status,
    ALTER COLUMN to_status TYPE commerce.order_status,
    ALTER COLUMN actor_kind TYPE commerce.actor_kind;

ALTER TABLE commerce.checkout_sagas
    DROP CONSTRAINT IF EXISTS checkout_sagas_step_check,
    ALTER COLUMN step TYPE commerce.saga_step;

ALTER TABLE commerce.stock_levels
    DROP CONSTRAINT IF EXISTS stock_levels_sku_check,
    DROP CONSTRAINT IF EXISTS stock_levels_reserved_check,
    ALTER COLUMN sku TYPE commerce.stock_sku COLLATE "C",
    ALTER COLUMN reserved TYPE commerce.reserved_units;

ALTER TABLE commerce.reservations
    DROP CONSTRAINT IF EXISTS reservations_quantity_check,
    DROP CONSTRAINT IF EXISTS reservations_status_check,
    ALTER COLUMN quantity TYPE commerce.reserved_quantity,
    ALTER COLUMN status TYPE commerce.reservation_status;

ALTER TABLE commerce.stock_movements
    DROP CONSTRAINT IF EXISTS stock_movements_kind_check,
    DROP CONSTRAINT IF EXISTS stock_movements_actor_kind_check,
    ALTER COLUMN kind TYPE commerce.movement_kind,
    ALTER COLUMN actor_kind TYPE commerce.actor_kind;

ALTER TABLE commerce.idempotency_keys
    DROP CONSTRAINT IF EXISTS idempotency_keys_response_status_check,
    ALTER COLUMN response_status TYPE commerce.http_status;
