-- Keeps a WebAuthn ceremony's state until it is taken or expires.
--
-- KEYS: ceremony, pending. ARGV: state, ttl ms, now, max pending.
-- Answers `stored`, or `full` at the account's bound of pending entries.
local ttl = tonumber(ARGV[2])
if not pending_room(KEYS[2], KEYS[1], ARGV[3], ARGV[3] + ttl, ttl, ARGV[4]) then return 'full' end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
return 'stored'
