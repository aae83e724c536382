-- Claims a number nobody holds in the gateway-wide registry.
--
-- KEYS: registry. ARGV: value (`<account> <id> <claimed at ms>`).
-- Answers `claimed`, or `held <the holder's value>` (read whole: it holds spaces).
local v = redis.call('GET', KEYS[1])
if v then return words('held', v) end
redis.call('SET', KEYS[1], ARGV[1])
return 'claimed'
