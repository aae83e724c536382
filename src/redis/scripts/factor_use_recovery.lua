-- Spends one recovery code; a wrong one counts towards the lockout back-off.
--
-- KEYS: codes, lock. ARGV: digest, now, max failures, first wait, max wait.
-- Answers `ok <codes left>`, `wrong <attempts left> <wait ms>` or `locked <retry after ms>`.
local now = tonumber(ARGV[2])
local until_ms = tonumber(redis.call('HGET', KEYS[2], 'lu') or '0')
if until_ms > now then return words('locked', tostring(until_ms - now)) end
if redis.call('SREM', KEYS[1], ARGV[1]) == 1 then
  redis.call('DEL', KEYS[2])
  return words('ok', tostring(redis.call('SCARD', KEYS[1])))
end
local max = tonumber(ARGV[3])
local fails = redis.call('HINCRBY', KEYS[2], 'nf', 1)
local wait = 0
if fails % max == 0 then
  wait = backoff(tonumber(ARGV[4]), fails / max - 1, tonumber(ARGV[5]))
  redis.call('HSET', KEYS[2], 'lu', int(now + wait))
end
local left = max - fails % max
if wait > 0 then left = max end
return words('wrong', tostring(left), int(wait))
