-- export_buyer.lua: hand buyers' records over from a shard of a draining layout (a live
-- reshard) to their homes in the new one.
--
-- KEYS[1]  buyer hash of the old home shard
-- ARGV     user ids (one or more)
--
-- Returns the records as they were handed over, one per user in order ("" for a user who
-- had none).
--
-- Each record is replaced by a tombstone: ">" followed by the record. purchase.lua answers
-- "moved" to any purchase that finds a tombstone (or the shard's "!" seal), so once a record
-- is handed over the old shard can never change it again, and the copy the new home imports
-- is final. A second run finds the tombstone and answers the same record: every import of a
-- buyer carries the same text, whoever runs it and however often. The reshard's driver hands
-- a page of buyers over in one call; a purchase that meets its buyer not handed over yet
-- hands over that one buyer.

local buyers = KEYS[1]
local records = redis.call('HMGET', buyers, unpack(ARGV))
local tombstones = {}
for i, user in ipairs(ARGV) do
  local record = records[i]
  if record and string.byte(record, 1) == 62 then
    records[i] = string.sub(record, 2)
  else
    record = record or ''
    records[i] = record
    tombstones[#tombstones + 1] = user
    tombstones[#tombstones + 1] = '>' .. record
  end
end
if #tombstones > 0 then
  redis.call('HSET', buyers, unpack(tombstones))
end
return records
