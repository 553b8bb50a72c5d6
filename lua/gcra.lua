-- gcra.lua: one request against a GCRA rate limit kept in Redis, shared by every instance.
--
-- KEYS[1]  state   string: the theoretical arrival time (TAT), microseconds of Redis's clock
--
-- ARGV[1] emission interval T (microseconds per request, i.e. 1e6 / rate)
-- ARGV[2] burst (requests allowed at once, >= 1)
--
-- Returns {allowed (1|0), wait (microseconds until the next request would conform; 0 if
-- allowed), remaining (requests that would still conform right now)}.
--
-- The clock is Redis's own (TIME), so instances with skewed clocks share one timeline. A
-- request conforms when TAT + T - burst * T <= now; it then moves TAT to max(TAT, now) + T.
-- The key expires once TAT is in the past, when it carries no information.

local key = KEYS[1]
local interval, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])

local tat = tonumber(redis.call('GET', key) or now)
if tat < now then
  tat = now
end
local new_tat = tat + interval
local allow_at = new_tat - burst * interval
if now < allow_at then
  return {0, allow_at - now, 0}
end
redis.call('SET', key, string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {1, 0, math.floor((now - allow_at) / interval)}
