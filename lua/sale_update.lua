-- sale_update.lua: change a sale's record in one atomic step, if it is as the caller saw it.
--
-- KEYS[1]  sale hash   fields: def (JSON definition), paused ("0"|"1"), epoch, generation,
--                      layout (JSON), op (JSON of the operator change in progress), op_id
--
-- ARGV[1]  expected epoch: "0" for "no such sale yet", else the epoch the caller read
-- ARGV[2]  n, then n field/value pairs to set; then the fields to delete
--
-- Returns the new epoch (bumped by one), or false when the record was not as expected (and
-- then nothing changed).
--
-- Why one script: every instance re-reads a sale whose epoch changed, so the fields of one
-- change (a new definition with its layout, or the end of a reshard) must appear together
-- with the new epoch, never one without the others; and two operators changing one sale
-- at once must not both win. The check and the writes run as one step, so of two changes
-- made from the same epoch exactly one is applied.

local meta = KEYS[1]
if ARGV[1] ~= (redis.call('HGET', meta, 'epoch') or '0') then
  return false
end
local n = tonumber(ARGV[2])
if n > 0 then
  local pairs = {}
  for i = 3, 2 + 2 * n do
    pairs[#pairs + 1] = ARGV[i]
  end
  redis.call('HSET', meta, unpack(pairs))
end
if #ARGV > 2 + 2 * n then
  local dels = {}
  for i = 3 + 2 * n, #ARGV do
    dels[#dels + 1] = ARGV[i]
  end
  redis.call('HDEL', meta, unpack(dels))
end
return redis.call('HINCRBY', meta, 'epoch', 1)
