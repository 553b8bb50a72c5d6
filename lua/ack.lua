-- ack.lua: forget orders that are now database rows, on one or more shards.
--
-- KEYS: pairs of (shard hash, order stream), one pair per shard: KEYS[2k-1], KEYS[2k]
--       (several pairs only on a single Redis node: in a cluster each call is one shard,
--       whose keys share a slot). The stream may also be the shard's dead-letter stream
--       (P:{S:i}:dead): a dead letter retried into a row is forgotten the same way, by its
--       dead-letter entry id.
--
-- ARGV[k] for k = 1..#KEYS/2: the number g_k of quantity groups of shard k; then, shard
--         after shard, its g_k groups, each: quantity q, count m, then the m stream entry
--         ids of the shard's acknowledged orders of q units
--
-- Returns the number of orders that were still in their streams.
--
-- Must run only after the rows are committed. Idempotent: XDEL answers how many of its ids
-- were still there, and only those count, so each order adds its units to the shard's
-- `acked` once, even when the writer and the recovery worker both persist it. Orders are
-- grouped by quantity so that one XDEL forgets a whole group and its count alone says how
-- many units left (count x q): one command per group instead of one per order, the same
-- total. (Units pending = sold - acked: the units of the entries still in the stream.)

local shards = #KEYS / 2
local at = shards + 1
local forgotten = 0
for k = 1, shards do
  local shard, stream = KEYS[2 * k - 1], KEYS[2 * k]
  local units = 0
  for _ = 1, tonumber(ARGV[k]) do
    local quantity, count = tonumber(ARGV[at]), tonumber(ARGV[at + 1])
    local gone = redis.call('XDEL', stream, unpack(ARGV, at + 2, at + 1 + count))
    forgotten = forgotten + gone
    units = units + gone * quantity
    at = at + 2 + count
  end
  if units > 0 then
    redis.call('HINCRBY', shard, 'acked', units)
  end
end
return forgotten
