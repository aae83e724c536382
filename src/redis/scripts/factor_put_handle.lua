-- Records which user a passkey user handle names, within the account's bound of entries.
--
-- KEYS: handles. ARGV: handle (hex), user, max entries.
-- Answers `stored` (also when the handle was known), or `full` at the bound.
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0
    and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then
    return 'full'
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 'stored'
