-- purchase.lua: take stock for one order from one shard, and record the order durably.
--
-- KEYS[1]  shard hash    fields: stock, lent, ver, allotted, received, given, acked
-- KEYS[2]  buyer hash    the records of the buyers whose home is this shard:
--                          "=<user>"                  -> units the buyer holds in this sale
--                          "<user>:<idempotency key>" -> "<order id>|<quantity>|<fingerprint>"
--                          "#<token id>"              -> "1" for every purchase token spent here
--                        (user ids are [A-Za-z0-9_-], so the three kinds of field never meet)
-- KEYS[3]  order stream  one entry per accepted order that is not yet a database row
-- KEYS[4]  credited set  ids of stock loans already credited to this shard
--
-- ARGV[1] user          ARGV[2] quantity (>= 1)       ARGV[3] per-user limit
-- ARGV[4] idem field    ARGV[5] request fingerprint   ARGV[6] now (unix ms)
-- ARGV[7] sale id       ARGV[8] shard index
-- ARGV[9] the purchase token's field in the buyer hash ("#<token id>"; "" = no token)
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
-- checks decide. The purchase checks the buyer's records, then takes the units with one
-- HINCRBY and puts them back if that went below zero, so a refused purchase leaves every
-- key as it found it; an accepted one writes stock, record, key, holding and token
-- together: a token is spent exactly when its purchase is accepted. The idempotency check
-- comes first, so a retry of an accepted request is answered with its order, not "used".
--
-- The shard keeps no `sold` counter: stock + lent + sold = allotted + received - given
-- holds by construction, so sold is derived when read, and a purchase touches one field.
-- Nor does it bump `ver`: `ver` marks moves of units between shards (loans), and a
-- purchase only removes units (docs/DESIGN.md §4). Four calls in the common case: this
-- script runs once per purchase, the hottest path of all.

local shard, buyers, stream, credited = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local user, idem_field, fingerprint = ARGV[1], ARGV[4], ARGV[5]
local qty, limit = tonumber(ARGV[2]), tonumber(ARGV[3])
local token_field = ARGV[9]
local held_field = '=' .. user

local credits = tonumber(ARGV[10])
for i = 0, credits - 1 do
  local loan, units = ARGV[11 + 2 * i], tonumber(ARGV[12 + 2 * i])
  if redis.call('SADD', credited, loan) == 1 then
    redis.call('HINCRBY', shard, 'stock', units)
    redis.call('HINCRBY', shard, 'received', units)
    redis.call('HINCRBY', shard, 'ver', 1)
  end
end

-- One read for all the buyer's records: the idempotency record, the units held, and
-- whether the token was spent.
local seen, holds, spent
if token_field == '' then
  local fields = redis.call('HMGET', buyers, idem_field, held_field)
  seen, holds = fields[1], fields[2]
else
  local fields = redis.call('HMGET', buyers, idem_field, held_field, token_field)
  seen, holds, spent = fields[1], fields[2], fields[3]
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

holds = tonumber(holds or '0')
if holds + qty > limit then
  return {'limit', holds}
end

local left = redis.call('HINCRBY', shard, 'stock', -qty)
if left < 0 then
  redis.call('HINCRBY', shard, 'stock', qty)
  if redis.call('HLEN', shard) == 1 then
    -- The shard did not exist (its sale was deleted meanwhile): leave no key behind.
    redis.call('DEL', shard)
  end
  return {'short', left + qty}
end

local entry = redis.call('XADD', stream, '*',
  'user_id', user, 'quantity', qty, 'created_ms', ARGV[6])
local record = ARGV[7] .. '.' .. ARGV[8] .. '.' .. entry .. '|' .. qty .. '|' .. fingerprint
if token_field == '' then
  redis.call('HSET', buyers, idem_field, record, held_field, holds + qty)
else
  redis.call('HSET', buyers, idem_field, record, held_field, holds + qty, token_field, '1')
end
return {'ok', entry, left}
