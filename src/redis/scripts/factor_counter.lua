-- Advances a security key's signature counter; a counter that did not grow is refused. The
-- assertion's backup state (BS) is stored with an accepted counter.
--
-- KEYS: factor. ARGV: counter, backed up (1 or 0).
-- Answers `ok`, `regressed <stored counter>` or `not_found`.
local stored = redis.call('HGET', KEYS[1], 'sc')
if not stored then return 'not_found' end
stored = tonumber(stored)
local new = tonumber(ARGV[1])
if (stored ~= 0 or new ~= 0) and new <= stored then return words('regressed', tostring(stored)) end
redis.call('HSET', KEYS[1], 'sc', ARGV[1], 'bs', ARGV[2])
return 'ok'
