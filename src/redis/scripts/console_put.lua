-- Stores one console entry (an invitation, a passkey, a session or a ceremony) within its bounds.
--
-- KEYS: the entry; its owner's set of members; the kind's live index (sorted set, score: expiry
-- in ms). ARGV: member, value, ttl ms (0: none), per-owner max (0: no owner, for ceremonies),
-- total max, now ms, the entries' base (the key of a member is base .. member).
-- Members whose entry is gone (expired, taken) are dropped from the owner's set and the index
-- before counting. Answers `ok`, or `full` when a bound is reached (nothing stored).
local member, value = ARGV[1], ARGV[2]
local ttl, per = tonumber(ARGV[3]), tonumber(ARGV[4])
local total, now = tonumber(ARGV[5]), tonumber(ARGV[6])
local base = ARGV[7]
local owned = per > 0
if owned then
  for _, held in ipairs(redis.call('SMEMBERS', KEYS[2])) do
    if redis.call('EXISTS', base .. held) == 0 then
      redis.call('SREM', KEYS[2], held)
      redis.call('ZREM', KEYS[3], held)
    end
  end
  if redis.call('SCARD', KEYS[2]) >= per then
    return 'full'
  end
end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
if redis.call('ZCARD', KEYS[3]) >= total then
  return 'full'
end
if ttl > 0 then
  redis.call('SET', KEYS[1], value, 'PX', ttl)
  redis.call('ZADD', KEYS[3], now + ttl, member)
else
  redis.call('SET', KEYS[1], value)
  redis.call('ZADD', KEYS[3], '+inf', member)
end
if owned then
  redis.call('SADD', KEYS[2], member)
end
return 'ok'
