-- purchase.lua: take stock for orders, each from one shard, and record each order durably.
--
-- One call carries n purchases (n >= 1), run one after the other exactly as n calls would
-- be; purchase i uses KEYS[4i-3 .. 4i]:
--   KEYS[4i-3]  shard hash    fields: stock, lent, ver, allotted, received, given, acked
--   KEYS[4i-2]  buyer hash    the records of the buyers whose home is this shard:
--                               "<user>" -> the buyer's record: the units they hold in this
--                                           sale, then one line per accepted order:
--                                           "<held>" ("\n<idempotency key> <order id>
--                                           <quantity> <fingerprint>" [" #<token id>"])*
--                                           or, once handed over to the buyer's home in a
--                                           new layout (a live reshard), ">" and the record
--                               "!"      -> present once the shard is sealed: it belongs to
--                                           a layout being drained and sells nothing more
--                               "?"      -> present once every record of the draining layout
--                                           was handed over to its new home
--                             (idempotency keys are visible ASCII, so neither a space nor a
--                             newline ever occurs inside one, and "\n<key> " finds exactly
--                             the line of that key; only a token follows " #")
--   KEYS[4i-1]  order stream  one entry per accepted order that is not yet a database row
--   KEYS[4i]    credited set  ids of stock loans already credited to this shard
--
-- ARGV[1] n, then each purchase's arguments in turn (11 + 2c of them):
--   user, quantity (>= 1), per-user limit, idempotency key, request fingerprint (no spaces,
--   no newlines), now (unix ms),
--   sale id, shard index, the purchase token's id ("" = no token),
--   import: "" when the sale's layout is settled (no record here means a new buyer);
--     "?" while a reshard drains the previous layout and the buyer's record there has not
--     been asked for; "=<record>" with the record export_buyer.lua handed over (maybe empty),
--   number of loan credits c, then c pairs: loan id, units
--   A per-user limit of 0 (with no token and no credits) makes a purchase a replay lookup:
--   it can only answer "replay", "conflict" or "limit", and writes nothing.
--
-- Returns one string: n lines joined by "\n", the i-th the reply to purchase i, each one of
--   "ok <entry id> <stock left>"   accepted: stock taken, order appended to the stream; the
--                                  order id is "<sale>.<shard>.<entry id>"
--   "replay <order id> <quantity>" the same idempotency key and body were accepted before
--   "conflict"                     the same idempotency key came with another body
--   "used"                         the purchase token was spent on an earlier purchase
--   "limit <units held>"           the buyer would go over the per-user limit
--   "short <stock>"                this shard holds fewer units than asked for
--   "moved"                        this shard is sealed, or the buyer's record was handed
--                                  over: the sale has a new layout
--   "import"                       import was "?", the buyer has no record here, and not every
--                                  record was handed over yet: fetch theirs from their
--                                  previous home (export_buyer.lua) and retry
--   "error <message>"              a Redis command of this purchase failed (e.g. out of
--                                  memory); the other purchases of the call stand (line
--                                  breaks in the message become spaces)
-- (One string, not an array of arrays: a client parses one bulk reply per call instead of
-- four values per purchase, and Redis writes one. Numbers are integers below 2^53, which
-- Lua prints exactly. No field holds a space or a line break: entry and order ids,
-- quantities and counts never do.)
--
-- Why each purchase is atomic: Redis runs a script alone. In a Redis Cluster a call carries
-- one purchase, and every key carries the shard's hash tag, so one cluster slot holds them
-- all; on a single node one call may carry purchases on many shards (the gateway batches
-- them, docs/DESIGN.md §3), and running them in sequence inside one script is the same as
-- running them as consecutive calls. Loan credits are applied first: each is a complete,
-- correct transfer on its own (deduplicated by loan id), so it stands whatever the purchase
-- checks decide. The purchase checks the buyer's record, then takes the units with one
-- HINCRBY and puts them back if that went below zero, so a refused purchase leaves every
-- key as it found it; an accepted one writes stock, order, record and token together: a
-- token is spent exactly when its purchase is accepted. The idempotency check
-- comes first, so a retry of an accepted request is answered with its order, not "used".
--
-- The shard keeps no `sold` counter: stock + lent + sold = allotted + received - given
-- holds by construction, so sold is derived when read, and a purchase touches one field.
-- Nor does it bump `ver`: `ver` marks moves of units between shards (loans), and a
-- purchase only removes units (docs/DESIGN.md §4). Four calls in the common case, each
-- touching one hash field: this is the hottest path of all. (One field per buyer, not one
-- for the units held and one per idempotency key: in a sale of a million buyers the buyer
-- hashes are large, and every field looked up or added there costs cache misses; halving
-- them took a fifth off this script's time.)

-- KEYS and ARGV as locals: globals are looked up by name at every use.
local KEYS, ARGV = KEYS, ARGV

-- Numbers go to Redis as the text the gateway sent (the quantity) or as '%d' (the units
-- held, when the buyer held some before): a Lua number given to redis.call is printed with
-- '%.17g', whose floating-point formatting was ~10 % of this script's time.

-- Purchase whose keys start after KEYS[k] and whose arguments start after ARGV[a].
local function purchase(k, a)
  local shard, buyers, stream, credited = KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4]
  local user, idem_key, fingerprint = ARGV[a + 1], ARGV[a + 4], ARGV[a + 5]
  local qty_text = ARGV[a + 2]
  local qty, limit = tonumber(qty_text), tonumber(ARGV[a + 3])
  local token, import = ARGV[a + 9], ARGV[a + 10]

  local credits = tonumber(ARGV[a + 11])
  for i = 0, credits - 1 do
    local loan, units = ARGV[a + 12 + 2 * i], tonumber(ARGV[a + 13 + 2 * i])
    if redis.call('SADD', credited, loan) == 1 then
      redis.call('HINCRBY', shard, 'stock', units)
      redis.call('HINCRBY', shard, 'received', units)
      redis.call('HINCRBY', shard, 'ver', 1)
    end
  end

  -- One read for the buyer's record and the shard's seal.
  local fields = redis.call('HMGET', buyers, user, '!')
  local record = fields[1]
  if fields[2] or (record and string.byte(record, 1) == 62) then
    return 'moved'
  end
  if not record and import ~= '' then
    -- "?" on a home means every record of the draining layout was handed over: a buyer
    -- with no record here has none anywhere.
    if import == '?' and redis.call('HEXISTS', buyers, '?') == 0 then
      return 'import'
    end
    record = string.sub(import, 2)
    if record == '' then
      record = nil
    end
  end
  local held_text, orders = '0', ''
  if record then
    local line = string.find(record, '\n' .. idem_key .. ' ', 1, true)
    if line then
      local prev_order, prev_qty, prev_fp =
        string.match(record, '^([^ ]*) ([^ ]*) ([^ \n]*)', line + #idem_key + 2)
      if prev_fp == fingerprint then
        return 'replay ' .. prev_order .. ' ' .. prev_qty
      end
      return 'conflict'
    end
    if token ~= '' and string.find(record, ' #' .. token, 1, true) then
      return 'used'
    end
    held_text, orders = string.match(record, '^(%d+)(.*)$')
  end

  local holds = tonumber(held_text)
  if holds + qty > limit then
    return 'limit ' .. holds
  end

  local left = redis.call('HINCRBY', shard, 'stock', '-' .. qty_text)
  if left < 0 then
    redis.call('HINCRBY', shard, 'stock', qty_text)
    if redis.call('HLEN', shard) == 1 then
      -- The shard did not exist (its sale was deleted meanwhile): leave no key behind.
      redis.call('DEL', shard)
    end
    return 'short ' .. (left + qty)
  end

  local entry = redis.call('XADD', stream, '*',
    'user_id', user, 'quantity', qty_text, 'created_ms', ARGV[a + 6])
  -- A new buyer holds what they bought: the text the gateway sent, not string.format,
  -- which was ~4 % of this script's time.
  local held = holds == 0 and qty_text or string.format('%d', holds + qty)
  record = held .. orders .. '\n' .. idem_key .. ' '
    .. ARGV[a + 7] .. '.' .. ARGV[a + 8] .. '.' .. entry .. ' ' .. qty_text .. ' ' .. fingerprint
  if token ~= '' then
    record = record .. ' #' .. token
  end
  redis.call('HSET', buyers, user, record)
  return 'ok ' .. entry .. ' ' .. left
end

local n = tonumber(ARGV[1])
local replies = {}
local a = 1
for i = 1, n do
  local ok, reply = pcall(purchase, 4 * (i - 1), a)
  if ok then
    replies[i] = reply
  else
    -- A failed Redis command raises a table with an `err` field, anything else a string.
    -- (Not an error reply: a client library may fail the whole call on one such element.)
    local message = type(reply) == 'table' and reply.err or tostring(reply)
    replies[i] = 'error ' .. string.gsub(message, '[\r\n]', ' ')
  end
  a = a + 11 + 2 * tonumber(ARGV[a + 11])
end
return table.concat(replies, '\n')
