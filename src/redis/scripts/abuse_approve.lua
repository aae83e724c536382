-- Counts an approval towards its prefix's and country's conversion, where they are tracked (an
-- approval alone starts no tracking). The twin of `record_approval` in src/memory/abuse.rs.
-- abuse_window.lua is put before this file (`advance`).
--
-- KEYS: the prefix's counters, the country's counters, the tracked index (one account's slot).
-- ARGV: now, the counters' lifetime (ms), the index members of the prefix and of the country.
-- luacheck: read globals advance
local now, ttl = tonumber(ARGV[1]), ARGV[2]
local minute = int(math.floor(now / 60000))
for i, member in ipairs({ARGV[3], ARGV[4]}) do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    local _, _, _, at = advance(KEYS[i], minute)
    redis.call('HINCRBY', KEYS[i], 'a' .. at, 1)
    redis.call('PEXPIRE', KEYS[i], ttl)
    redis.call('ZADD', KEYS[3], 'XX', now, member)
  end
end
return 'ok'
