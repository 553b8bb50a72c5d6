-- change_sale.lua: an operator's change of a sale's record (pause, resume, end), applied
-- only to the record it was computed from.
--
-- KEYS[1]: the sale hash P:sale:{S} (`def`, `paused`, `epoch`)
-- ARGV[1]: the epoch the change was computed from
-- ARGV[2..]: field, value pairs to set (`paused` "0"/"1", `def` the definition's JSON)
--
-- Returns the new epoch; 0 if the sale does not exist; -1 if its epoch is no longer
-- ARGV[1] (another change came first: the caller reads the record again and recomputes).
--
-- Atomic: the check and the writes are one script, so a change never overwrites one it did
-- not see, and every instance polling `epoch` sees the new record as a whole. Checks come
-- before any write. Safe to run twice: a re-sent call finds the epoch it bumped and
-- answers -1; the caller re-reads and finds its change already there (a no-op).

if redis.call('HEXISTS', KEYS[1], 'def') == 0 then
  return 0
end
local epoch = tonumber(redis.call('HGET', KEYS[1], 'epoch') or '0')
if epoch ~= tonumber(ARGV[1]) then
  return -1
end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
return redis.call('HINCRBY', KEYS[1], 'epoch', 1)
