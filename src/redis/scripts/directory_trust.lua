-- Trusts a device for a user, spending the proof; drops the user's expired devices and, past
-- the user's bound, the one expiring first.
--
-- KEYS: user, device record, user's devices, proof, audit, account's devices.
-- ARGV (`TrustArgs` in src/redis/directory.rs): device id, user id, created (now), expires,
-- digest hex, proof ttl, max devices, base, cap, channel, audit (7), max devices of the
-- account (18).
--
-- Derived keys: each dropped device's record `base .. 'd:' .. <digest>`, listed in the user's
-- devices (KEYS[3]) and so only known here; it carries the account's hash tag.
-- Answers `ok <epoch>`, `no_user`, `proof_used` or `too_many_devices`.
local ep = redis.call('HGET', KEYS[1], 'ep')
if not ep then return 'no_user' end
if redis.call('EXISTS', KEYS[4]) == 1 then return 'proof_used' end
redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', ARGV[3])
if redis.call('ZCARD', KEYS[6]) >= tonumber(ARGV[18]) then return 'too_many_devices' end
redis.call('SET', KEYS[4], '1', 'PX', ARGV[6])
local now, expires = tonumber(ARGV[3]), tonumber(ARGV[4])
local list = redis.call('HGETALL', KEYS[3])
local live = {}
for i = 1, #list, 2 do
  local digest, until_ms = string.match(list[i + 1], '^([^:]+):(%d+)$')
  if (not until_ms) or tonumber(until_ms) <= now then
    redis.call('HDEL', KEYS[3], list[i])
    if digest then
      redis.call('DEL', ARGV[8] .. 'd:' .. digest)
      redis.call('ZREM', KEYS[6], digest)
    end
  else
    live[#live + 1] = {list[i], digest, tonumber(until_ms)}
  end
end
table.sort(live, function(a, b) return a[3] < b[3] end)
for i = 1, #live - tonumber(ARGV[7]) + 1 do
  redis.call('HDEL', KEYS[3], live[i][1])
  redis.call('DEL', ARGV[8] .. 'd:' .. live[i][2])
  redis.call('ZREM', KEYS[6], live[i][2])
  redis.call('PUBLISH', ARGV[10], 'd|' .. live[i][2])
end
redis.call('HSET', KEYS[2], 'id', ARGV[1], 'u', ARGV[2], 'cr', ARGV[3], 'ex', ARGV[4], 'ep', ep)
redis.call('PEXPIRE', KEYS[2], expires - now)
redis.call('HSET', KEYS[3], ARGV[1], ARGV[5] .. ':' .. ARGV[4])
if redis.call('PTTL', KEYS[3]) < expires - now then redis.call('PEXPIRE', KEYS[3], expires - now) end
redis.call('ZADD', KEYS[6], ARGV[4], ARGV[5])
if redis.call('PTTL', KEYS[6]) < expires - now then redis.call('PEXPIRE', KEYS[6], expires - now) end
audit(KEYS[5], ARGV[9], 11)
return words('ok', ep)
