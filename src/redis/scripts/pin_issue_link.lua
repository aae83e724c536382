-- Issues an e-mailed disable or reset link; the number keeps the newest one only.
--
-- KEYS: number, link. ARGV: purpose, digest hex, now, ttl, retention, number id.
-- Answers `issued <e164>`, `already_disabled` or `not_found`.
local v = redis.call('HMGET', KEYS[1], 'ts', 'e')
if not v[1] then return 'not_found' end
if ARGV[1] == 'd' and v[1] ~= '1' then return 'already_disabled' end
local slot, expiry = 'td', 'dx'
if ARGV[1] == 'r' then slot, expiry = 'tr', 'rx' end
local expires = tonumber(ARGV[3]) + tonumber(ARGV[4])
redis.call('HSET', KEYS[2], 'id', ARGV[6], 'p', ARGV[1], 'ex', int(expires), 'u', '0')
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[4]) + tonumber(ARGV[5]))
redis.call('HSET', KEYS[1], slot, ARGV[2], expiry, int(expires))
return words('issued', v[2])
