-- gcra.lua: one request against a GCRA rate limit kept in Redis, shared by every instance.
--
-- KEYS[1]  state     string: the theoretical arrival time (TAT), microseconds of Redis's clock
-- KEYS[2]  admitted  sorted set: ids of the requests admitted recently, scored by the Redis
--                    time (microseconds) they were admitted
--
-- ARGV[1] emission interval T (microseconds per request, i.e. 1e6 / rate)
-- ARGV[2] burst (requests allowed at once, >= 1)
-- ARGV[3] request id (unique per request)
-- ARGV[4] how long an admitted id is remembered (ms): longer than any re-send can arrive
--
-- Returns {allowed (1|0), wait (microseconds until the next request would conform; 0 if
-- allowed)}.
--
-- The clock is Redis's own (TIME), so instances with skewed clocks share one timeline. A
-- request conforms when TAT + T - burst * T <= now; it then moves TAT to max(TAT, now) + T.
-- The state key expires once TAT is in the past, when it carries no information.
--
-- Safe to run twice: a client re-sends a command whose reply was lost, and a re-sent
-- admitted request must not take a second slot. So the id of every admitted request is
-- recorded, in the same atomic step as the TAT move, and looked up first: a re-run of an
-- admitted request answers {1, 0} again and changes nothing. A refused request wrote nothing,
-- so its re-run is simply the same check made a moment later; whichever answer arrives, the
-- request takes at most one slot. Ids older than ARGV[4] are dropped on each call, so the set
-- holds at most the requests admitted within that window (burst + rate x window).

local key, admitted = KEYS[1], KEYS[2]
local interval, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local request, keep_us = ARGV[3], tonumber(ARGV[4]) * 1000
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])

if redis.call('ZSCORE', admitted, request) then
  return {1, 0}
end

local tat = tonumber(redis.call('GET', key) or now)
if tat < now then
  tat = now
end
local new_tat = tat + interval
local allow_at = new_tat - burst * interval
if now < allow_at then
  return {0, allow_at - now}
end
redis.call('SET', key, string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
redis.call('ZREMRANGEBYSCORE', admitted, '-inf', string.format('%d', now - keep_us))
redis.call('ZADD', admitted, string.format('%d', now), request)
redis.call('PEXPIRE', admitted, tonumber(ARGV[4]))
return {1, 0}
