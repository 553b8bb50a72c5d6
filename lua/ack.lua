-- ack.lua: forget orders that are now database rows.
--
-- KEYS[1]  shard hash    field pending_units
-- KEYS[2]  order stream
--
-- ARGV: pairs of stream entry id, quantity
--
-- Returns the number of orders that were still in the stream.
--
-- Must run only after the rows are committed. Idempotent: XDEL says whether the entry was
-- still there, and only those entries count, so pending_units drops once per order even
-- when the writer and the recovery worker both persist it.

local shard, stream = KEYS[1], KEYS[2]
local forgotten, units = 0, 0
for i = 1, #ARGV, 2 do
  if redis.call('XDEL', stream, ARGV[i]) == 1 then
    forgotten = forgotten + 1
    units = units + tonumber(ARGV[i + 1])
  end
end
if units > 0 then
  redis.call('HINCRBY', shard, 'pending_units', -units)
end
return forgotten
