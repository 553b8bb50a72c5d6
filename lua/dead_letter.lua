-- dead_letter.lua: move one order from its shard's order stream to the shard's dead letters.
--
-- KEYS[1]  order stream        P:{S:i}:orders, the order's entry
-- KEYS[2]  dead-letter stream  P:{S:i}:dead (same hash tag, so the same cluster slot)
--
-- ARGV[1] the order's entry id in the order stream
-- ARGV[2] why it is a dead letter (the database's words, or why its record is unreadable)
-- ARGV[3] how many times the database refused it
--
-- Returns the dead letter's entry id, or false if the order is no longer in its stream: it
-- became a row (and was acknowledged), or an earlier call moved it already. Either way
-- there is nothing left to do, so running this twice is harmless.
--
-- Why it is atomic: Redis runs the script alone, so the order is in exactly one of the two
-- streams at every moment (invariant P: an accepted order is a row, an entry of its stream,
-- or a dead letter). The dead letter keeps every field of the order's record as it was
-- (even one the gateway cannot read), then `order_entry`, `error` and `attempts`; those
-- come last, so they are the ones a reader sees. Nothing is written before every check is
-- done, and neither write can fail on keys of the right types. The shard's counters are
-- untouched: the units stay sold and not yet acknowledged (`sold - acked` counts them)
-- until the dead letter is retried into a row or dropped.

local orders, dead = KEYS[1], KEYS[2]
local entry_id = ARGV[1]
local entry = redis.call('XRANGE', orders, entry_id, entry_id)[1]
if not entry then
  return false
end
local fields = entry[2]
local args = {'*'}
for i = 1, #fields do
  args[#args + 1] = fields[i]
end
args[#args + 1] = 'order_entry'
args[#args + 1] = entry_id
args[#args + 1] = 'error'
args[#args + 1] = ARGV[2]
args[#args + 1] = 'attempts'
args[#args + 1] = ARGV[3]
local id = redis.call('XADD', dead, unpack(args))
redis.call('XDEL', orders, entry_id)
return id
