-- Advances a security key's signature counter; a counter that did not grow is refused.
--
-- KEYS: factor. ARGV: counter.
-- Answers `ok`, `regressed <stored counter>` or `not_found`.
local stored = redis.call('HGET', KEYS[1], 'sc')
if not stored then return 'not_found' end
stored = tonumber(stored)
local new = tonumber(ARGV[1])
if (stored ~= 0 or new ~= 0) and new <= stored then return words('regressed', tostring(stored)) end
redis.call('HSET', KEYS[1], 'sc', ARGV[1])
return 'ok'
