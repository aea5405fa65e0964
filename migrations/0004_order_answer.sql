-- The one-statement checkout (commerce-pg `orders.rs`, `write_order`) stores the answer to the
-- request's idempotency key with the order. Raised when that key is no longer claimed and
-- unanswered: the error undoes the whole statement, so no order is placed without its answer.

CREATE OR REPLACE FUNCTION commerce.refuse_answer() RETURNS boolean
    LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the idempotency key the order answers is no longer claimed'
        USING ERRCODE = 'CM002';
END
$$;
COMMENT ON FUNCTION commerce.refuse_answer() IS
    'Raised by the one-statement checkout when the idempotency key it answers is not claimed; undoes the statement.';
