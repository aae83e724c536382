-- Counts one authenticator-app attempt: a matched step newer than the last used one is
-- accepted (and activates a pending factor when asked); a wrong code counts towards the
-- lockout back-off.
--
-- KEYS: factor, pending. ARGV: now, matched step ('' when the code matched none), activate,
-- max failures, first wait, max wait.
-- Answers `ok`, `replayed`, `wrong <attempts left> <wait ms>`, `locked <retry after ms>`,
-- `not_found` or `not_active`.
local st = redis.call('HGET', KEYS[1], 'st')
if not st then return 'not_found' end
if st == 'pending' and ARGV[3] ~= '1' then return 'not_active' end
local now = tonumber(ARGV[1])
local ex = redis.call('HGET', KEYS[1], 'ex')
if st == 'pending' and ex and tonumber(ex) <= now then return 'not_found' end
local until_ms = tonumber(redis.call('HGET', KEYS[1], 'lu') or '0')
if until_ms > now then return words('locked', tostring(until_ms - now)) end
if ARGV[2] ~= '' then
  local last = redis.call('HGET', KEYS[1], 'ls')
  if (not last) or tonumber(ARGV[2]) > tonumber(last) then
    redis.call('HSET', KEYS[1], 'ls', ARGV[2], 'nf', 0, 'lu', 0)
    if ARGV[3] == '1' and st == 'pending' then
      redis.call('HSET', KEYS[1], 'st', 'active')
      redis.call('HDEL', KEYS[1], 'ex')
      redis.call('PERSIST', KEYS[1])
      redis.call('ZREM', KEYS[2], KEYS[1])
    end
    return 'ok'
  end
  return 'replayed'
end
local max = tonumber(ARGV[4])
local fails = tonumber(redis.call('HGET', KEYS[1], 'nf') or '0') + 1
local wait = 0
if fails % max == 0 then
  wait = backoff(tonumber(ARGV[5]), fails / max - 1, tonumber(ARGV[6]))
  redis.call('HSET', KEYS[1], 'lu', int(now + wait))
end
redis.call('HSET', KEYS[1], 'nf', fails)
local left = max - fails % max
if wait > 0 then left = max end
return words('wrong', tostring(left), int(wait))
