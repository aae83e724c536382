-- Spends one recovery code; a wrong one counts towards the lockout back-off.
--
-- KEYS: codes, lock. ARGV: digest, now, the five limits (`limits_from`).
-- Answers `ok <codes left>`, `wrong <attempts left> <wait ms>` or `locked <retry after ms>`.
local now = tonumber(ARGV[2])
local locked = lock_held(KEYS[2], now)
if locked then return locked end
if redis.call('SREM', KEYS[1], ARGV[1]) == 1 then
  redis.call('DEL', KEYS[2])
  return words('ok', tostring(redis.call('SCARD', KEYS[1])))
end
return count_wrong(KEYS[2], limits_from(3), now)
