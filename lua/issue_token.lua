-- issue_token.lua: spend a challenge on issuing one purchase token, within the issuance cap.
--
-- KEYS[1]  spent challenge  string: the id of the token issued for the challenge (expires
--                           after the challenge)
-- KEYS[2]  issued tokens    sorted set: token id scored by its expiry (used only while capped)
--
-- ARGV[1] now (unix ms)          ARGV[2] challenge expiry (unix ms)
-- ARGV[3] token id               ARGV[4] token expiry (unix ms)
-- ARGV[5] cap: most unexpired tokens issued for the sale (0 = no cap)
-- ARGV[6] retention margin (ms) kept past an expiry, for instances whose clocks run late
--
-- Returns one of:
--   {"ok"}                  the challenge is spent on this token; the token may be handed out
--   {"used"}                the challenge was spent on another token before
--   {"capped", wait ms}     the cap is reached; the oldest issued token expires in wait ms
--
-- Both keys carry the sale's hash tag (one cluster slot). Checks run before writes, so a
-- refusal writes nothing and the challenge stays answerable.
--
-- Safe to run twice: the spent marker names the token the challenge was spent on, so a
-- re-send of the same issuance (same challenge, same token id) finds its own token there and
-- answers "ok" again, before the cap is looked at: the token is neither refused as "used"
-- nor counted a second time (and ZADD of a member already there would not add one). A run
-- the cap refused wrote nothing but the removal of tokens expired by ARGV[1], which a re-run
-- with the same ARGV[1] finds already done.

local spent, issued = KEYS[1], KEYS[2]
local now, challenge_expiry = tonumber(ARGV[1]), tonumber(ARGV[2])
local token, token_expiry = ARGV[3], tonumber(ARGV[4])
local cap, margin = tonumber(ARGV[5]), tonumber(ARGV[6])

local spent_on = redis.call('GET', spent)
if spent_on == token then
  return {'ok'}
elseif spent_on then
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

redis.call('SET', spent, token, 'PX', math.max(1, challenge_expiry - now + margin))
return {'ok'}
