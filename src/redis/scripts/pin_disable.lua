-- Turns two-step off for a number.
--
-- KEYS: number. ARGV: now.
-- Answers `disabled <e164> <was locked>`, `already_disabled` or `not_found`.
local v = redis.call('HMGET', KEYS[1], 'ts', 'e', 'lk')
if not v[1] then return 'not_found' end
if v[1] ~= '1' then return 'already_disabled' end
redis.call('HINCRBY', KEYS[1], 'pv', 1)
redis.call('HDEL', KEYS[1], 'h')
redis.call('HSET', KEYS[1], 'ts', '0', 'n', '0', 'nx', '0', 'lk', '0', 'up', ARGV[1],
  'td', '', 'dx', '0')
local was_locked = '0'
if v[3] ~= '0' then was_locked = '1' end
return words('disabled', v[2], was_locked)
