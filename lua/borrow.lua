-- borrow.lua: lend up to N units of a donor shard's stock to another shard of the same sale.
--
-- KEYS[1]  donor shard hash  fields: stock, lent, ver
-- KEYS[2]  donor loans hash  loan id -> "<recipient shard>|<units>|<created ms>"
--
-- ARGV[1] loan id (unique)   ARGV[2] units wanted (>= 1)
-- ARGV[3] recipient shard    ARGV[4] now (unix ms)
--
-- Returns {units lent, stock left, units out on loan}.
--
-- Why it is atomic and loses nothing: the units leave `stock` and enter `lent` in one step,
-- together with a loan record, so at every moment each unit is counted in some shard's
-- `stock` or `lent`. The recipient credits the loan by id (purchase.lua or credit.lua, which
-- deduplicate), and only then is the loan settled (settle.lua). A gateway that dies between
-- the two leaves the loan record behind, and the recovery worker finishes the transfer.

local shard, loans = KEYS[1], KEYS[2]
local want = tonumber(ARGV[2])
local stock = tonumber(redis.call('HGET', shard, 'stock') or '0')
local lent = tonumber(redis.call('HGET', shard, 'lent') or '0')
local take = math.min(want, stock)
if take <= 0 then
  return {0, stock, lent}
end
redis.call('HINCRBY', shard, 'stock', -take)
redis.call('HINCRBY', shard, 'lent', take)
redis.call('HINCRBY', shard, 'ver', 1)
redis.call('HSET', loans, ARGV[1], ARGV[3] .. '|' .. take .. '|' .. ARGV[4])
return {take, stock - take, lent + take}
