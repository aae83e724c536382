-- Puts due messages back on the shard's stream, where any worker reads them.
--
-- KEYS: retry set, retry payloads, stream. ARGV: now ms, at most this many.
-- Answers `released <how many>`.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, m in ipairs(due) do
  local f = redis.call('HMGET', KEYS[2], m .. ':v', m .. ':m', m .. ':r', m .. ':x')
  if f[1] and f[2] then
    redis.call('XADD', KEYS[3], '*', 'v', f[1], 'm', f[2], 'r', f[3] or '0', 'x', f[4] or '')
  end
  redis.call('HDEL', KEYS[2], m .. ':v', m .. ':m', m .. ':r', m .. ':x')
  redis.call('ZREM', KEYS[1], m)
end
return words('released', int(#due))
