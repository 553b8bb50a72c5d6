-- The benchmark peers' whole purchase (benches/peer-axum, benches/openresty): take one unit
-- from the string KEYS[1] if one is left. Returns 1 if taken, 0 if none was left.
local left = tonumber(redis.call('GET', KEYS[1]) or '0')
if left < 1 then return 0 end
redis.call('DECRBY', KEYS[1], 1)
return 1
