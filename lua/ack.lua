-- ack.lua: forget orders that are now database rows.
--
-- KEYS[1]  shard hash    field pending_units
-- KEYS[2]  pending hash  order id -> "<user>|<quantity>|<created ms>"
-- KEYS[3]  order stream
--
-- ARGV[1] consumer group, then pairs: stream entry id, order id
--
-- Returns the number of orders that were still pending.
--
-- Must run only after the rows are committed. Idempotent: an order already forgotten (by
-- another writer or by recovery) is skipped, so pending_units is decremented once per order.
-- The entry is acknowledged and deleted, so the stream only holds unpersisted orders.

local shard, pending, stream, group = KEYS[1], KEYS[2], KEYS[3], ARGV[1]
local forgotten = 0
for i = 2, #ARGV, 2 do
  local entry, order_id = ARGV[i], ARGV[i + 1]
  local rec = redis.call('HGET', pending, order_id)
  if rec then
    local qty = tonumber(string.match(rec, '^[^|]*|([^|]*)|'))
    redis.call('HDEL', pending, order_id)
    redis.call('HINCRBY', shard, 'pending_units', -qty)
    forgotten = forgotten + 1
  end
  redis.call('XACK', stream, group, entry)
  redis.call('XDEL', stream, entry)
end
return forgotten
