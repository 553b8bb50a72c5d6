-- The order lifecycle after the purchase: a row starts `confirmed` (awaiting payment) and ends
-- `paid`, `cancelled` or `expired`. The transition out of `confirmed` is one compare-and-set
-- (`UPDATE ... WHERE status = 'confirmed'`), so exactly one of pay, cancel and expire wins.
-- A cancelled or expired order owes its units back to the sale until `returned_at_ms` is set
-- (the return outbox); `return_lease_ms` is how long the instance driving that return holds it.
ALTER TABLE orders ADD COLUMN status TEXT NOT NULL DEFAULT 'confirmed'
    CHECK (status IN ('confirmed', 'paid', 'cancelled', 'expired'));
-- When the order left `confirmed` (unix ms, gateway clock).
ALTER TABLE orders ADD COLUMN settled_at_ms INTEGER;
-- When its units were back on the sale's shelves (cancelled and expired orders only).
ALTER TABLE orders ADD COLUMN returned_at_ms INTEGER;
ALTER TABLE orders ADD COLUMN return_lease_ms INTEGER;

-- What the return outbox reads: orders that owe their units back. (The expiry sweeper reads a
-- sale's key range, as every per-sale query here does: no index costs the writer's inserts.)
CREATE INDEX orders_return_due ON orders (order_id)
    WHERE status IN ('cancelled', 'expired') AND returned_at_ms IS NULL;
