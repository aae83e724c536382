-- The accounts due by now, each with its generation.
--
-- KEYS: the due accounts, their generations (both under `{wh}`). ARGV: now ms, limit.
-- Answers `due <account> <generation> <account> <generation> …`.
local accounts = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local reply = {'due'}
for _, account in ipairs(accounts) do
  reply[#reply + 1] = account
  reply[#reply + 1] = redis.call('HGET', KEYS[2], account) or '0'
end
return words(unpack(reply))
