-- Compare-and-set on the registry.
--
-- KEYS: registry. ARGV: the expected holder's value prefix (`<account> <id> `), the new value,
-- or '' to delete. Answers `swapped`, or `kept` when another holds it.
local v = redis.call('GET', KEYS[1])
if not v or string.sub(v, 1, #ARGV[1]) ~= ARGV[1] then return 'kept' end
if ARGV[2] == '' then redis.call('DEL', KEYS[1]) else redis.call('SET', KEYS[1], ARGV[2]) end
return 'swapped'
