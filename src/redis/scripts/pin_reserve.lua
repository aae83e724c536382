-- Reserves one PIN attempt: counts it as a failure until `pin_succeeded` clears it, so that
-- concurrent guesses are counted even if the caller dies before it compares.
--
-- KEYS: number. ARGV: now, the five limits (`limits_from`).
-- Answers `go <PIN hash> <attempt> <PIN version>`, `wait <ms>`, `locked`, `disabled` or
-- `not_found`.
local v = redis.call('HMGET', KEYS[1], 'ts', 'h', 'n', 'nx', 'pv')
if not v[1] then return 'not_found' end
if v[1] ~= '1' or not v[2] then return 'disabled' end
local now, l = tonumber(ARGV[1]), limits_from(2)
local n = tonumber(v[3])
if locks(l, n) then return 'locked' end
local next_at = tonumber(v[4])
if next_at > now then return words('wait', int(next_at - now)) end
n = n + 1
local wait = wait_after(l, n)
next_at = 0
if wait > 0 then next_at = now + wait end
redis.call('HSET', KEYS[1], 'n', int(n), 'nx', int(next_at))
if locks(l, n) then redis.call('HSET', KEYS[1], 'lk', ARGV[1]) end
return words('go', v[2], int(n), v[5])
