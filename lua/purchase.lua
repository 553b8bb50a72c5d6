-- purchase.lua: take stock for one order from one shard, and record the order durably.
--
-- KEYS[1]  shard hash    fields: stock, lent, sold, pending_units, ver
-- KEYS[2]  held hash     user -> units the buyer holds in this sale (kept on the buyer's home shard)
-- KEYS[3]  idem hash     "<user>:<idempotency key>" -> "<order id>|<quantity>|<fingerprint>"
-- KEYS[4]  order stream  durable order records, one entry per accepted order
-- KEYS[5]  pending hash  order id -> "<user>|<quantity>|<created ms>", until the order is persisted
-- KEYS[6]  credited set  ids of stock loans already credited to this shard
--
-- ARGV[1] user          ARGV[2] quantity (>= 1)       ARGV[3] per-user limit
-- ARGV[4] idem field    ARGV[5] request fingerprint   ARGV[6] new order id
-- ARGV[7] now (unix ms) ARGV[8] sale id               ARGV[9] shard index
-- ARGV[10] consumer group of the order writers   ARGV[11] this gateway's consumer name
-- ARGV[12] number of loan credits c, followed by c pairs: loan id, units
--
-- Returns one of:
--   {"ok", order id, stock left, stream entry id}
--                                  accepted: stock taken, order appended to the stream and
--                                  delivered to this gateway's consumer (its pending list)
--   {"replay", order id, quantity} the same idempotency key and body were accepted before
--   {"conflict"}                   the same idempotency key came with another body
--   {"limit", units held}          the buyer would go over the per-user limit
--   {"short", stock}               this shard holds fewer units than asked for
--
-- Why it is atomic: Redis runs a script alone, and every key carries the shard's hash tag,
-- so one cluster slot holds them all. Loan credits are applied first: each is a complete,
-- correct transfer on its own (deduplicated by loan id), so it stands whatever the purchase
-- checks decide. Every purchase check runs before the first purchase write, so a refused
-- purchase writes nothing, and an accepted one writes stock, limit, key and record together.
-- The entry is delivered to this gateway at once (XREADGROUP inside the script), so it sits
-- in the group's pending list from its first instant: if the gateway dies before persisting
-- it, another instance (or its own restart) claims it there with XAUTOCLAIM.

local shard, held, idem, stream, pending, credited = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local user = ARGV[1]
local qty = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local idem_field, fingerprint, order_id = ARGV[4], ARGV[5], ARGV[6]

local credits = tonumber(ARGV[12])
for i = 0, credits - 1 do
  local loan, units = ARGV[13 + 2 * i], tonumber(ARGV[14 + 2 * i])
  if redis.call('SADD', credited, loan) == 1 then
    redis.call('HINCRBY', shard, 'stock', units)
    redis.call('HINCRBY', shard, 'ver', 1)
  end
end

local seen = redis.call('HGET', idem, idem_field)
if seen then
  local prev_order, prev_qty, prev_fp = string.match(seen, '^([^|]*)|([^|]*)|(.*)$')
  if prev_fp == fingerprint then
    return {'replay', prev_order, tonumber(prev_qty)}
  end
  return {'conflict'}
end

local holds = tonumber(redis.call('HGET', held, user) or '0')
if holds + qty > limit then
  return {'limit', holds}
end

local stock = tonumber(redis.call('HGET', shard, 'stock') or '0')
if stock < qty then
  return {'short', stock}
end

redis.call('HINCRBY', shard, 'stock', -qty)
redis.call('HINCRBY', shard, 'sold', qty)
redis.call('HINCRBY', shard, 'pending_units', qty)
redis.call('HINCRBY', shard, 'ver', 1)
redis.call('HINCRBY', held, user, qty)
redis.call('HSET', idem, idem_field, order_id .. '|' .. qty .. '|' .. fingerprint)
redis.call('HSET', pending, order_id, user .. '|' .. qty .. '|' .. ARGV[7])
local entry = redis.call('XADD', stream, '*',
  'order_id', order_id, 'sale_id', ARGV[8], 'shard', ARGV[9],
  'user_id', user, 'quantity', qty, 'created_ms', ARGV[7])
-- Every XADD is followed by this read, so the new entry is the only undelivered one.
-- pcall: a missing group must not fail the script after its writes; recovery then finds
-- the entry undelivered and creates the group.
redis.pcall('XREADGROUP', 'GROUP', ARGV[10], ARGV[11], 'COUNT', 1, 'STREAMS', stream, '>')
return {'ok', order_id, stock - qty, entry}
