-- Ends every console session of one person ("Sign out everywhere").
--
-- KEYS: the person's set of session digests; the sessions' live index. ARGV: the session base
-- (key of a digest: base .. digest).
-- Answers `ok <how many ended>`.
local ended = 0
for _, digest in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  ended = ended + redis.call('DEL', ARGV[1] .. digest)
  redis.call('ZREM', KEYS[2], digest)
end
redis.call('DEL', KEYS[1])
return 'ok ' .. ended
