-- ack.lua: forget orders that are now database rows, on one or more shards.
--
-- KEYS: pairs of (shard hash, order stream), one pair per shard: KEYS[2k-1], KEYS[2k]
--       (several pairs only on a single Redis node: in a cluster each call is one shard,
--       whose keys share a slot)
--
-- ARGV[k] for k = 1..#KEYS/2: the number n_k of orders acknowledged on shard k; then, shard
--         after shard, n_k pairs of stream entry id, quantity
--
-- Returns the number of orders that were still in their streams.
--
-- Must run only after the rows are committed. Idempotent: XDEL says whether the entry was
-- still there, and only those entries count, so each order adds its units to the shard's
-- `acked` once, even when the writer and the recovery worker both persist it. (Units
-- pending = sold - acked: the units of the entries still in the stream.)

local shards = #KEYS / 2
local at = shards + 1
local forgotten = 0
for k = 1, shards do
  local shard, stream = KEYS[2 * k - 1], KEYS[2 * k]
  local units = 0
  for _ = 1, tonumber(ARGV[k]) do
    if redis.call('XDEL', stream, ARGV[at]) == 1 then
      forgotten = forgotten + 1
      units = units + tonumber(ARGV[at + 1])
    end
    at = at + 2
  end
  if units > 0 then
    redis.call('HINCRBY', shard, 'acked', units)
  end
end
return forgotten
