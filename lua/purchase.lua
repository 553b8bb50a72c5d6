-- purchase.lua: take stock for one order from one shard, and record the order durably.
--
-- KEYS[1]  shard hash    fields: stock, lent, sold, pending_units, ver
-- KEYS[2]  held hash     user -> units the buyer holds in this sale (kept on the buyer's home shard)
-- KEYS[3]  idem hash     "<user>:<idempotency key>" -> "<order id>|<quantity>|<fingerprint>",
--                        and "#<token id>" -> "1" for every purchase token spent here
-- KEYS[4]  order stream  one entry per accepted order that is not yet a database row
-- KEYS[5]  credited set  ids of stock loans already credited to this shard
--
-- ARGV[1] user          ARGV[2] quantity (>= 1)       ARGV[3] per-user limit
-- ARGV[4] idem field    ARGV[5] request fingerprint   ARGV[6] now (unix ms)
-- ARGV[7] sale id       ARGV[8] shard index
-- ARGV[9] the purchase token's field in the idem hash ("#<token id>"; "" = no token)
-- ARGV[10] number of loan credits c, followed by c pairs: loan id, units
--
-- Returns one of:
--   {"ok", entry id, stock left}   accepted: stock taken, order appended to the stream; the
--                                  order id is "<sale>.<shard>.<entry id>"
--   {"replay", order id, quantity} the same idempotency key and body were accepted before
--   {"conflict"}                   the same idempotency key came with another body
--   {"used"}                       the purchase token was spent on an earlier purchase
--   {"limit", units held}          the buyer would go over the per-user limit
--   {"short", stock}               this shard holds fewer units than asked for
--
-- Why it is atomic: Redis runs a script alone, and every key carries the shard's hash tag,
-- so one cluster slot holds them all. Loan credits are applied first: each is a complete,
-- correct transfer on its own (deduplicated by loan id), so it stands whatever the purchase
-- checks decide. Every purchase check runs before the first purchase write, so a refused
-- purchase writes nothing, and an accepted one writes stock, limit, key, token and record
-- together: a token is spent exactly when its purchase is accepted. The idempotency check
-- comes first, so a retry of an accepted request is answered with its order, not "used".
-- Few calls on purpose: this script runs once per purchase, the hottest path of all.

local shard, held, idem, stream, credited = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local user, idem_field, fingerprint = ARGV[1], ARGV[4], ARGV[5]
local qty, limit = tonumber(ARGV[2]), tonumber(ARGV[3])
local token_field = ARGV[9]

local credits = tonumber(ARGV[10])
for i = 0, credits - 1 do
  local loan, units = ARGV[11 + 2 * i], tonumber(ARGV[12 + 2 * i])
  if redis.call('SADD', credited, loan) == 1 then
    redis.call('HINCRBY', shard, 'stock', units)
    redis.call('HINCRBY', shard, 'ver', 1)
  end
end

-- One read for both: the idempotency record, and whether the token was spent. (Token
-- fields start with '#', which no user id contains, so they never meet a key's field.)
local seen, spent
if token_field == '' then
  seen = redis.call('HGET', idem, idem_field)
else
  local fields = redis.call('HMGET', idem, idem_field, token_field)
  seen, spent = fields[1], fields[2]
end
if seen then
  local prev_order, prev_qty, prev_fp = string.match(seen, '^([^|]*)|([^|]*)|(.*)$')
  if prev_fp == fingerprint then
    return {'replay', prev_order, tonumber(prev_qty)}
  end
  return {'conflict'}
end

if spent then
  return {'used'}
end

local holds = tonumber(redis.call('HGET', held, user) or '0')
if holds + qty > limit then
  return {'limit', holds}
end

local c = redis.call('HMGET', shard, 'stock', 'sold', 'pending_units', 'ver')
local stock = tonumber(c[1] or '0')
if stock < qty then
  return {'short', stock}
end

local entry = redis.call('XADD', stream, '*',
  'user_id', user, 'quantity', qty, 'created_ms', ARGV[6])
redis.call('HSET', shard,
  'stock', stock - qty,
  'sold', tonumber(c[2] or '0') + qty,
  'pending_units', tonumber(c[3] or '0') + qty,
  'ver', tonumber(c[4] or '0') + 1)
redis.call('HSET', held, user, holds + qty)
local record = ARGV[7] .. '.' .. ARGV[8] .. '.' .. entry .. '|' .. qty .. '|' .. fingerprint
if token_field == '' then
  redis.call('HSET', idem, idem_field, record)
else
  redis.call('HSET', idem, idem_field, record, token_field, '1')
end
return {'ok', entry, stock - qty}
