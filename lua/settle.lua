-- settle.lua: close a stock loan on its donor shard once the recipient holds the units.
--
-- KEYS[1]  donor shard hash  fields: lent, given, ver
-- KEYS[2]  donor loans hash  loan id -> "<recipient shard>|<units>|<created ms>"
--
-- ARGV[1] loan id
--
-- Returns 1 if the loan was settled now, 0 if it was already settled.
--
-- Must run only after the loan was credited: between credit and settle the units are
-- counted twice (recipient stock and donor lent), which errs towards "not sold out";
-- settling first would make them invisible. Deleting the record first makes it idempotent.

local rec = redis.call('HGET', KEYS[2], ARGV[1])
if not rec then
  return 0
end
local units = tonumber(string.match(rec, '^[^|]*|([^|]*)|'))
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HINCRBY', KEYS[1], 'lent', -units)
redis.call('HINCRBY', KEYS[1], 'given', units)
redis.call('HINCRBY', KEYS[1], 'ver', 1)
return 1
