-- Keeps a WebAuthn ceremony's state until it is taken or expires.
--
-- KEYS: ceremony, pending. ARGV: ttl ms, now, max pending, state.
-- Answers `stored`, or `full` at the account's bound of pending entries.
local ttl = tonumber(ARGV[1])
if not pending_room(KEYS[2], KEYS[1], ARGV[2], ARGV[2] + ttl, ttl, ARGV[3]) then return 'full' end
redis.call('SET', KEYS[1], ARGV[4], 'PX', ttl)
return 'stored'
