-- init_shard.lua: create a shard holding its first units, unless it exists already.
--
-- KEYS[1]  shard hash   fields: stock, lent, ver, allotted, received, given, acked
-- ARGV[1]  units the shard starts with
--
-- Returns 1 if the shard was created now, 0 if it existed (and then nothing changed).
--
-- Safe to run again after a crash, or by a second instance resuming the same change: a
-- shard that exists may already have sold or lent units, and must not be reset.

if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
local units = ARGV[1]
redis.call('HSET', KEYS[1], 'stock', units, 'lent', 0, 'allotted', units,
  'received', 0, 'given', 0, 'acked', 0, 'ver', 1)
return 1
