-- Uses an e-mailed link once: disables two-step, or resets the PIN.
--
-- KEYS: link. ARGV: account base, purpose, digest hex, new PIN hash (or ''), now.
--
-- Derived key: the number's record `base .. 'pn:' .. <id>`, named by the link (the caller holds
-- only the link's token); it carries the account's hash tag.
-- Answers `done <id> <e164> <was locked>`, `already_disabled <id>`, `unknown`, `used`,
-- `expired` or `superseded`.
local l = redis.call('HMGET', KEYS[1], 'id', 'p', 'ex', 'u')
if not l[1] or l[2] ~= ARGV[2] then return 'unknown' end
if l[4] ~= '0' then return 'used' end
if tonumber(ARGV[5]) >= tonumber(l[3]) then return 'expired' end
local key = ARGV[1] .. 'pn:' .. l[1]
local slot, expiry = 'td', 'dx'
if ARGV[2] == 'r' then slot, expiry = 'tr', 'rx' end
local v = redis.call('HMGET', key, 'ts', 'e', slot, 'lk')
if not v[1] then
  redis.call('HSET', KEYS[1], 'u', ARGV[5])
  return 'unknown'
end
if v[3] ~= ARGV[3] then return 'superseded' end
redis.call('HSET', KEYS[1], 'u', ARGV[5])
redis.call('HSET', key, slot, '', expiry, '0')
local was_locked = '0'
if v[4] ~= '0' then was_locked = '1' end
if ARGV[2] == 'd' then
  if v[1] ~= '1' then return words('already_disabled', l[1]) end
  redis.call('HINCRBY', key, 'pv', 1)
  redis.call('HDEL', key, 'h')
  redis.call('HSET', key, 'ts', '0', 'n', '0', 'nx', '0', 'lk', '0', 'up', ARGV[5])
else
  redis.call('HINCRBY', key, 'pv', 1)
  redis.call('HSET', key, 'h', ARGV[4], 'ts', '1', 'n', '0', 'nx', '0', 'lk', '0', 'up', ARGV[5])
end
return words('done', l[1], v[2], was_locked)
