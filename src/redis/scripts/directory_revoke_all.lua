-- Revokes every trusted device of a user and bumps the user's device epoch.
--
-- KEYS: user, user's devices, audit, account's devices. ARGV: base, cap, channel, message,
-- audit (7).
--
-- Derived keys: each device's record `base .. 'd:' .. <digest>`, listed in the user's devices
-- (KEYS[2]) and so only known here; it carries the account's hash tag.
-- Answers `ok <how many were listed>` or `no_user`.
if redis.call('EXISTS', KEYS[1]) == 0 then return 'no_user' end
redis.call('HINCRBY', KEYS[1], 'ep', 1)
local listed = forget_devices(KEYS[2], KEYS[4], ARGV[1])
audit(KEYS[3], ARGV[2], 5)
redis.call('PUBLISH', ARGV[3], ARGV[4])
return words('ok', tostring(listed))
