-- Cancels a pending verification (one past its expiry becomes expired instead).
--
-- KEYS: the record. ARGV: base, account, now, id.
--
-- Derived key: the number's pointer (`pointer_of`), named by the record's packed number, which
-- the caller (cancelling by id) does not know; it carries the base's hash tag.
local base, acct, now, id = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local key = KEYS[1]
local v = load_verification(key)
if v[1] ~= acct then return 'not_found' end
if v[2] ~= 'p' then return answer('not_pending', id, v) end
v[2] = 'c'
if now >= tonumber(v[5]) then v[2] = 'x' end
redis.call('HSET', key, 's', v[2])
redis.call('HDEL', key, 'm')
release(pointer_of(base, acct, v[6]), id)
if v[2] == 'x' then return answer('not_pending', id, v) end
return answer('canceled', id, v)
