-- export_buyer.lua: hand a buyer's record over from a shard of a draining layout (a live
-- reshard) to their home in the new one.
--
-- KEYS[1]  buyer hash of the old home shard
-- ARGV[1]  user id
--
-- Returns the buyer's record as it was handed over ("" if they had none).
--
-- The record is replaced by a tombstone: ">" followed by the record. purchase.lua answers
-- "moved" to any purchase that finds a tombstone (or the shard's "!" seal), so once a record
-- is handed over the old shard can never change it again, and the copy the new home imports
-- is final. A second run finds the tombstone and answers the same record: every import of a
-- buyer carries the same text, whoever runs it and however often.

local buyers, user = KEYS[1], ARGV[1]
local record = redis.call('HGET', buyers, user)
if record then
  if string.byte(record, 1) == 62 then
    return string.sub(record, 2)
  end
else
  record = ''
end
redis.call('HSET', buyers, user, '>' .. record)
return record
