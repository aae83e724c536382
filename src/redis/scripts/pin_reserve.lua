-- Reserves one PIN attempt: counts it as a failure until `pin_succeeded` clears it, so that
-- concurrent guesses are counted even if the caller dies before it compares.
--
-- KEYS: number. ARGV: now, free attempts, first wait, max wait, max failures.
-- Answers `go <PIN hash> <attempt> <PIN version>`, `wait <ms>`, `locked`, `disabled` or
-- `not_found`.
local v = redis.call('HMGET', KEYS[1], 'ts', 'h', 'n', 'nx', 'pv')
if not v[1] then return 'not_found' end
if v[1] ~= '1' or not v[2] then return 'disabled' end
local now, free, first = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local max_wait, max_failures = tonumber(ARGV[4]), tonumber(ARGV[5])
local n = tonumber(v[3])
if n >= max_failures then return 'locked' end
local next_at = tonumber(v[4])
if next_at > now then return words('wait', int(next_at - now)) end
n = n + 1
if free < 1 then free = 1 end
local wait = 0
if n >= free then wait = backoff(first, n - free, max_wait) end
next_at = 0
if wait > 0 then next_at = now + wait end
redis.call('HSET', KEYS[1], 'n', int(n), 'nx', int(next_at))
if n >= max_failures then redis.call('HSET', KEYS[1], 'lk', ARGV[1]) end
return words('go', v[2], int(n), v[5])
