-- Revokes one trusted device of a user.
--
-- KEYS: user's devices, audit, account's devices. ARGV: device id, base, cap, channel, audit (7).
--
-- Derived key: the device's record `base .. 'd:' .. <digest>`, read from the user's devices
-- (the caller knows the device's id, not its digest); it carries the account's hash tag.
-- Answers `ok <digest hex>` or `not_found`.
local value = redis.call('HGET', KEYS[1], ARGV[1])
if not value then return 'not_found' end
local digest = digest_of(value)
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('DEL', ARGV[2] .. 'd:' .. digest)
redis.call('ZREM', KEYS[3], digest)
audit(KEYS[2], ARGV[3], 5)
redis.call('PUBLISH', ARGV[4], 'd|' .. digest)
return words('ok', digest)
