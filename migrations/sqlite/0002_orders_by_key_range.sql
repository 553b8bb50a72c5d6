-- The (sale_id, shard) index cost a second B-tree insert per order on the writer's hot path
-- and served only per-sale listings and reconciliation. The primary key already keeps a
-- sale's rows together (order ids are "<sale>.<shard>.<entry>"), so those queries now read
-- the key range of the sale instead.
DROP INDEX IF EXISTS orders_by_sale_shard;
