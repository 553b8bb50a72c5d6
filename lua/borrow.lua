-- borrow.lua: lend up to N units of a donor shard's stock to another shard of the same sale.
--
-- KEYS[1]  donor shard hash  fields: stock, lent, ver
-- KEYS[2]  donor loans hash  loan id -> "<recipient shard>|<units>|<created ms>"
-- KEYS[3]  loan marker       string "<units lent>|<stock left>|<units out on loan>": this
--                            call's reply, kept for ARGV[5] ms (it outlives the loan record)
--
-- ARGV[1] loan id (unique)   ARGV[2] units wanted (>= 1)
-- ARGV[3] recipient shard    ARGV[4] now (unix ms)
-- ARGV[5] how long the marker is kept (ms): longer than any re-send of this call can arrive
--
-- Returns {units lent, stock left, units out on loan}; a second run with the same loan id
-- returns the first run's reply and changes nothing.
--
-- Why it is atomic and loses nothing: the units leave `stock` and enter `lent` in one step,
-- together with a loan record, so at every moment each unit is counted in some shard's
-- `stock` or `lent`. The recipient credits the loan by id (purchase.lua or credit.lua, which
-- deduplicate), and only then is the loan settled (settle.lua). A gateway that dies between
-- the two leaves the loan record behind, and the recovery worker finishes the transfer.
--
-- Why it is safe to run twice: a client re-sends a command whose reply was lost. Without the
-- marker a re-run would take units again and overwrite the loan record with the second take,
-- leaving the first in `lent` with no record for recovery to find. The marker is written in
-- the same atomic step as the take, and is checked first; the loan record cannot serve,
-- since settle.lua deletes it (possibly before the re-send arrives).

local shard, loans, marker = KEYS[1], KEYS[2], KEYS[3]
local recorded = redis.call('GET', marker)
if recorded then
  local taken, left, out = string.match(recorded, '^(%-?%d+)|(%-?%d+)|(%-?%d+)$')
  return {tonumber(taken), tonumber(left), tonumber(out)}
end

local want, keep_ms = tonumber(ARGV[2]), tonumber(ARGV[5])
local stock = tonumber(redis.call('HGET', shard, 'stock') or '0')
local lent = tonumber(redis.call('HGET', shard, 'lent') or '0')
local take = math.max(0, math.min(want, stock))
if take > 0 then
  redis.call('HINCRBY', shard, 'stock', -take)
  redis.call('HINCRBY', shard, 'lent', take)
  redis.call('HINCRBY', shard, 'ver', 1)
  redis.call('HSET', loans, ARGV[1], ARGV[3] .. '|' .. take .. '|' .. ARGV[4])
end
local reply = {take, stock - take, lent + take}
redis.call('SET', marker, table.concat(reply, '|'), 'PX', keep_ms)
return reply
