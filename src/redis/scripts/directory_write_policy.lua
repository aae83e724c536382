-- Replaces the account's policy if it is still at the version the caller decided on.
--
-- KEYS: policy, users without phone, audit.
-- ARGV (`PolicyArgs` in src/redis/directory.rs): expected version, r, c, f, t, sms active,
-- listed, cap, channel, message, audit (7), ab (the abuse protection's JSON; empty: none), wf
-- (the default workflow; empty: none).
-- Answers `ok <version>`, `stale`, or `missing <count> <user>…` (at most `listed`, sorted).
local v = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if v ~= tonumber(ARGV[1]) then return 'stale' end
if ARGV[6] == '1' then
  local count = redis.call('SCARD', KEYS[2])
  if count > 0 then
    local ids = redis.call('SMEMBERS', KEYS[2])
    table.sort(ids)
    local out = {'missing', tostring(count)}
    for i = 1, math.min(#ids, tonumber(ARGV[7])) do out[#out + 1] = ids[i] end
    return words(unpack(out))
  end
end
redis.call('HSET', KEYS[1], 'r', ARGV[2], 'c', ARGV[3], 'f', ARGV[4], 't', ARGV[5], 'ab', ARGV[18], 'wf', ARGV[19],
  'v', v + 1)
audit(KEYS[3], ARGV[8], 11)
redis.call('PUBLISH', ARGV[9], ARGV[10])
return words('ok', tostring(v + 1))
