-- issue_token.lua: spend a challenge on issuing one purchase token, within the issuance cap.
--
-- KEYS[1]  spent challenge  string marking the challenge as answered (expires after it)
-- KEYS[2]  issued tokens    sorted set: token id scored by its expiry (used only while capped)
--
-- ARGV[1] now (unix ms)          ARGV[2] challenge expiry (unix ms)
-- ARGV[3] token id               ARGV[4] token expiry (unix ms)
-- ARGV[5] cap: most unexpired tokens issued for the sale (0 = no cap)
-- ARGV[6] retention margin (ms) kept past an expiry, for instances whose clocks run late
--
-- Returns one of:
--   {"ok"}                  the challenge is now spent; the token may be handed out
--   {"used"}                the challenge was answered before
--   {"capped", wait ms}     the cap is reached; the oldest issued token expires in wait ms
--
-- Both keys carry the sale's hash tag (one cluster slot). Checks run before writes, so a
-- refusal writes nothing and the challenge stays answerable.

local spent, issued = KEYS[1], KEYS[2]
local now, challenge_expiry = tonumber(ARGV[1]), tonumber(ARGV[2])
local token, token_expiry = ARGV[3], tonumber(ARGV[4])
local cap, margin = tonumber(ARGV[5]), tonumber(ARGV[6])

if redis.call('EXISTS', spent) == 1 then
  return {'used'}
end

if cap > 0 then
  redis.call('ZREMRANGEBYSCORE', issued, '-inf', now)
  if redis.call('ZCARD', issued) >= cap then
    local oldest = redis.call('ZRANGE', issued, 0, 0, 'WITHSCORES')
    return {'capped', math.max(1, tonumber(oldest[2]) - now)}
  end
  redis.call('ZADD', issued, token_expiry, token)
  redis.call('PEXPIRE', issued, math.max(1, token_expiry - now + margin))
end

redis.call('SET', spent, '1', 'PX', math.max(1, challenge_expiry - now + margin))
return {'ok'}
