-- credit.lua: credit a stock loan to its recipient shard, at most once.
--
-- KEYS[1]  recipient shard hash  fields: stock, received, ver
-- KEYS[2]  credited set          ids of loans already credited to this shard
--
-- ARGV[1] loan id   ARGV[2] units
--
-- Returns 1 if the loan was credited now, 0 if it had been credited before.
--
-- Used by the recovery worker for loans whose borrower died before its purchase call
-- (purchase.lua credits loans the same way on the normal path). The set makes it idempotent.

if redis.call('SADD', KEYS[2], ARGV[1]) == 0 then
  return 0
end
redis.call('HINCRBY', KEYS[1], 'stock', tonumber(ARGV[2]))
redis.call('HINCRBY', KEYS[1], 'received', tonumber(ARGV[2]))
redis.call('HINCRBY', KEYS[1], 'ver', 1)
return 1
