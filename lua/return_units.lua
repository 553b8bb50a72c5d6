-- return_units.lua: give a cancelled or expired order's units back to its sale, once.
--
-- KEYS[1]  shard hash   of the buyer's home shard (fields: stock, received, returned, ...)
-- KEYS[2]  buyer hash   of the same shard: "<user>" -> the buyer's record (lua/purchase.lua)
-- ARGV[1]  user
-- ARGV[2]  order id ("<sale>.<shard>.<entry>", as the record names it)
-- ARGV[3]  quantity (the order's units)
--
-- Returns one of:
--   {"returned", stock}  the units are back on this shard's shelf (stock is its new level),
--                        the buyer holds that many fewer, and the order's line in their record
--                        ends with " ~"
--   {"already"}          the order's line already ends with " ~": an earlier run returned it
--   {"moved"}            the shard is sealed (a live reshard) or the buyer's record was handed
--                        over to a newer layout: ask their current home
--   {"absent"}           the buyer has no record here
--   {"unknown"}          the buyer's record names no such order (with this quantity)
--
-- Why it is exactly once: the marker " ~" lives in the buyer's record, which this script
-- checks and rewrites in the same atomic step as it puts the units back, so a second run with
-- the same order (an outbox re-drive, a client library re-sending the call) finds the marker
-- and writes nothing. The record travels with the buyer when a reshard hands it over
-- (export_buyer.lua copies it whole), and so does the marker.
--
-- The units go back as `received` (as a loan credit would bring them), so the shard's
-- conserved total still derives `sold` as every unit ever sold from it; `returned` counts the
-- units given back to this shard, which reconciliation subtracts; `ver` is bumped as by every
-- arrival of units, so a sold-out snapshot that overlaps the return is not consistent
-- (stock/verdict.rs). Every check comes before the first write.

local shard, buyers = KEYS[1], KEYS[2]
local user, order_id, qty_text = ARGV[1], ARGV[2], ARGV[3]

local fields = redis.call('HMGET', buyers, user, '!')
local record = fields[1]
if fields[2] or (record and string.byte(record, 1) == 62) then
  return {'moved'}
end
if not record then
  return {'absent'}
end

-- " <order id> <quantity> " is the order's line: keys start a line, order ids are unique.
local at = string.find(record, ' ' .. order_id .. ' ' .. qty_text .. ' ', 1, true)
if not at then
  return {'unknown'}
end
local line_end = string.find(record, '\n', at, true) or (#record + 1)
if string.sub(record, line_end - 2, line_end - 1) == ' ~' then
  return {'already'}
end

local held_text, rest = string.match(record, '^(%d+)(.*)$')
local held = tonumber(held_text) - tonumber(qty_text)
if held < 0 then
  return {'unknown'}
end
-- `rest` starts at the record's first "\n"; `line_end` counts from the record's start.
local cut = line_end - #held_text
record = string.format('%d', held) .. string.sub(rest, 1, cut - 1) .. ' ~' .. string.sub(rest, cut)

redis.call('HSET', buyers, user, record)
local stock = redis.call('HINCRBY', shard, 'stock', qty_text)
redis.call('HINCRBY', shard, 'received', qty_text)
redis.call('HINCRBY', shard, 'returned', qty_text)
redis.call('HINCRBY', shard, 'ver', 1)
return {'returned', stock}
