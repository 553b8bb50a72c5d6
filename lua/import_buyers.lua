-- import_buyers.lua: take handed-over buyer records at their new home, unless a record is
-- there already (a purchase imported it first, and may have added to it since).
--
-- KEYS[1]  buyer hash of the new home shard
-- ARGV     pairs: user id, record (non-empty)
--
-- Returns how many records were written now. Running it again writes nothing.

local buyers = KEYS[1]
local written = 0
for i = 1, #ARGV, 2 do
  written = written + redis.call('HSETNX', buyers, ARGV[i], ARGV[i + 1])
end
return written
