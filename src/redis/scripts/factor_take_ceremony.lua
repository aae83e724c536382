-- Takes a WebAuthn ceremony's state, once.
--
-- KEYS: ceremony, pending. Answers `taken <state>` (the state read whole: it is JSON) or `none`.
redis.call('ZREM', KEYS[2], KEYS[1])
local state = redis.call('GETDEL', KEYS[1])
if not state then return 'none' end
return words('taken', state)
