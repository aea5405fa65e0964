-- The checkout written in one statement (commerce-pg `orders.rs`, `write_order`): having locked
-- the order's stock levels, the statement raises this when a level cannot give what it asks
-- (without a plan: every line from its SKU's first warehouse). The error undoes the whole
-- statement (order, lines, reservations), and the adapter then plans on locked levels.

CREATE OR REPLACE FUNCTION commerce.refuse_reservation() RETURNS boolean
    LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the stock levels cannot give what the checkout asks of them'
        USING ERRCODE = 'CM001';
END
$$;
COMMENT ON FUNCTION commerce.refuse_reservation() IS
    'Raised by the one-statement checkout when a stock level cannot give what it asks; undoes the statement.';
