-- The checkout written in one statement (commerce-pg `orders.rs`, `write_order`): it plans its
-- stock reservations from levels read before the statement, and the statement, having locked
-- those levels, raises this when one is no longer as read. The error undoes the whole statement
-- (order, lines, reservations), and the adapter then plans again on locked levels.

CREATE OR REPLACE FUNCTION commerce.refuse_stale_plan() RETURNS boolean
    LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'stock levels changed since the checkout planned its reservations'
        USING ERRCODE = 'CM001';
END
$$;
COMMENT ON FUNCTION commerce.refuse_stale_plan() IS
    'Raised by the one-statement checkout when a stock level changed after it was read; undoes the statement.';
