-- stock_change.lua: an operator's top-up or reduction, on one shard, once.
--
-- KEYS[1]  shard hash   fields: stock, allotted, ver, and "op:<change id>" -> the units this
--                       change added to the shard (negative: removed)
-- ARGV[1]  change id    ARGV[2] units to add (> 0), or units wanted off the shelf (< 0)
--
-- Returns the units added (removed units as a negative number).
--
-- A top-up adds to `stock` and `allotted`; a reduction takes at most what is on the shelf
-- (units sold, or lent to another shard, are never taken back) from both. Either keeps
-- sold = allotted + received - given - stock - lent unchanged. The result is recorded under
-- the change's id in the same step and answered again by any later run, so a change that
-- is resumed after a crash, or run by two instances at once, moves each shard's units once.

local shard, field = KEYS[1], 'op:' .. ARGV[1]
local done = redis.call('HGET', shard, field)
if done then
  return tonumber(done)
end
if redis.call('EXISTS', shard) == 0 then
  return redis.error_reply('no such shard')
end
local delta = tonumber(ARGV[2])
if delta < 0 then
  local stock = tonumber(redis.call('HGET', shard, 'stock') or '0')
  delta = -math.min(-delta, stock)
end
if delta ~= 0 then
  redis.call('HINCRBY', shard, 'stock', delta)
  redis.call('HINCRBY', shard, 'allotted', delta)
  redis.call('HINCRBY', shard, 'ver', 1)
end
redis.call('HSET', shard, field, delta)
return delta
