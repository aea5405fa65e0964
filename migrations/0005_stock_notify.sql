-- Every change to stock levels is announced on the channel `commerce_stock`, so that hosts
-- keeping SKUs' available units between reads (commerce-pg `stock_cache.rs`) drop what changed.
-- One notification per statement: the changed SKUs, comma-separated, or `*` when they would not
-- fit a notification's payload. Delivered at commit, so an undone change announces nothing.
--
-- The store's own sessions set `commerce.announce = off` and announce after their transaction
-- instead, in a statement of its own: a transaction that notifies holds PostgreSQL's one
-- notification lock from its commit's start to its end, WAL flush included, so checkouts
-- notifying as they commit would flush one at a time (measured: 30 % fewer checkouts a second).
-- Anyone else (a script, psql) is announced by these triggers.

CREATE OR REPLACE FUNCTION commerce.announce_stock_change() RETURNS trigger
    LANGUAGE plpgsql AS $$
DECLARE
    skus text;
BEGIN
    IF current_setting('commerce.announce', true) = 'off' THEN
        RETURN NULL;
    END IF;
    SELECT string_agg(DISTINCT sku, ',') INTO skus FROM changed;
    IF skus IS NOT NULL THEN
        PERFORM pg_notify('commerce_stock', CASE WHEN length(skus) > 7000 THEN '*' ELSE skus END);
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION commerce.announce_stock_change() IS
    'Notifies commerce_stock of the SKUs a statement changed in stock_levels (* for too many to list), unless the session set commerce.announce = off.';

-- Transition tables allow one event per trigger, hence three.
CREATE TRIGGER stock_levels_inserted AFTER INSERT ON commerce.stock_levels
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION commerce.announce_stock_change();
CREATE TRIGGER stock_levels_updated AFTER UPDATE ON commerce.stock_levels
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION commerce.announce_stock_change();
CREATE TRIGGER stock_levels_deleted AFTER DELETE ON commerce.stock_levels
    REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION commerce.announce_stock_change();
