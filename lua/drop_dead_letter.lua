-- drop_dead_letter.lua: forget a dead letter on an operator's word, without a row.
--
-- KEYS[1]  shard hash          fields: acked, dropped (and the rest, untouched)
-- KEYS[2]  dead-letter stream  P:{S:i}:dead (same hash tag, so the same cluster slot)
--
-- ARGV[1] the dead letter's entry id
--
-- Returns the units dropped (the record's `quantity`; 0 if it cannot be read as a whole
-- number), or -1 if there is no such dead letter (dropped or retried before).
--
-- The order's units stay sold: the stock does not return to the shelf (the buyer was told
-- their order was accepted, and the operator decided it will not be a row). They leave
-- "not yet acknowledged" (`acked += units`, so `sold - acked` no longer counts them) and
-- are counted in `dropped`, which reconciliation reports beside rows, pending orders and
-- dead letters. Idempotent: the XDEL of the entry is the first write, and a second call
-- finds no entry and changes nothing.

local shard, dead = KEYS[1], KEYS[2]
local entry = redis.call('XRANGE', dead, ARGV[1], ARGV[1])[1]
if not entry then
  return -1
end
local fields = entry[2]
local units = 0
for i = 1, #fields - 1, 2 do
  if fields[i] == 'quantity' then
    local n = tonumber(fields[i + 1])
    if n and n >= 0 and n == math.floor(n) then
      units = n
    end
    break
  end
end
redis.call('XDEL', dead, ARGV[1])
if units > 0 then
  local text = string.format('%d', units)
  redis.call('HINCRBY', shard, 'acked', text)
  redis.call('HINCRBY', shard, 'dropped', text)
end
return units
