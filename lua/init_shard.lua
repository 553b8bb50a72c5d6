-- init_shard.lua: create a shard holding its first units, unless it exists already.
--
-- KEYS[1]  shard hash   fields: stock, lent, ver, allotted, received, given, acked
-- KEYS[2]  buyer hash   created with one field, "*" (never a user id), whose value ARGV[2] is
--                       longer than Redis's hash-max-listpack-value: Redis then keeps the hash
--                       a hash table from its first buyer on. Left to itself it would start
--                       the hash as a listpack, which every HMGET scans and every HSET
--                       reallocates, until its 129th buyer: a buyer record without a token
--                       is under 64 bytes, and then a shard's first 128 buyers, the head of a
--                       sale's spike, cost Redis about twice as much as the ones after them.
-- ARGV[1]  units the shard starts with
-- ARGV[2]  the value of the buyer hash's "*" field
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
redis.call('HSET', KEYS[2], '*', ARGV[2])
return 1
