-- Creates or replaces a user, decided on the user's and the policy's versions.
--
-- KEYS: user, policy, users, users without phone, audit, user's devices, account's devices,
-- users with an e-mail address, users by id (the list's index).
-- ARGV (`UserArgs` in src/redis/directory.rs): create, expected user version, expected policy
-- version, id, role, phone, override, set by, factors, created, updated, revoke, cap, channel,
-- message, audit count, base, max users, audits (7 each) from 19, then the e-mail address.
--
-- Derived keys: with revoke, each device's record `base .. 'd:' .. <digest>`, listed in the
-- user's devices (KEYS[6]) and so only known here; it carries the account's hash tag.
-- Answers `ok <version> <device epoch>`, `stale`, `exists`, `not_found` or `too_many_users`.
local pv = tonumber(redis.call('HGET', KEYS[2], 'v') or '0')
if pv ~= tonumber(ARGV[3]) then return 'stale' end
local exists = redis.call('EXISTS', KEYS[1]) == 1
local uv = 0
if ARGV[1] == '1' then
  if exists then return 'exists' end
  if redis.call('SCARD', KEYS[3]) >= tonumber(ARGV[18]) then return 'too_many_users' end
else
  if not exists then return 'not_found' end
  uv = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
  if uv ~= tonumber(ARGV[2]) then return 'stale' end
end
local ep = tonumber(redis.call('HGET', KEYS[1], 'ep') or '0')
if ARGV[12] == '1' then
  ep = ep + 1
  forget_devices(KEYS[6], KEYS[7], ARGV[17])
end
local email = ARGV[19 + tonumber(ARGV[16]) * 7]
redis.call('HSET', KEYS[1], 'ro', ARGV[5], 'ph', ARGV[6], 'ov', ARGV[7], 'ob', ARGV[8],
  'fa', ARGV[9], 'cr', ARGV[10], 'up', ARGV[11], 'v', uv + 1, 'ep', ep, 'em', email)
redis.call('SADD', KEYS[3], ARGV[4])
redis.call('ZADD', KEYS[9], 0, ARGV[4])
if ARGV[6] == '' then redis.call('SADD', KEYS[4], ARGV[4]) else redis.call('SREM', KEYS[4], ARGV[4]) end
if email == '' then redis.call('SREM', KEYS[8], ARGV[4]) else redis.call('SADD', KEYS[8], ARGV[4]) end
for n = 0, tonumber(ARGV[16]) - 1 do audit(KEYS[5], ARGV[13], 19 + n * 7) end
redis.call('PUBLISH', ARGV[14], ARGV[15])
return words('ok', tostring(uv + 1), tostring(ep))
