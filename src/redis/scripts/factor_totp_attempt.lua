-- Counts one authenticator-app attempt: a matched step newer than the last used one is
-- accepted (and activates a pending factor when asked); a wrong code counts towards the
-- lockout back-off.
--
-- KEYS: factor, pending. ARGV: now, matched step ('' when the code matched none), activate,
-- the five limits (`limits_from`).
-- Answers `ok`, `replayed`, `wrong <attempts left> <wait ms>`, `locked <retry after ms>`,
-- `not_found` or `not_active`.
local st = redis.call('HGET', KEYS[1], 'st')
if not st then return 'not_found' end
if st == 'pending' and ARGV[3] ~= '1' then return 'not_active' end
local now = tonumber(ARGV[1])
local ex = redis.call('HGET', KEYS[1], 'ex')
if st == 'pending' and ex and tonumber(ex) <= now then return 'not_found' end
local locked = lock_held(KEYS[1], now)
if locked then return locked end
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
return count_wrong(KEYS[1], limits_from(4), now)
