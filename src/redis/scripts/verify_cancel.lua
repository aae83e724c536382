-- Cancels a pending verification (one past its expiry becomes expired instead).
--
-- KEYS: the record. ARGV: base, account, now, id.
--
-- Derived key: the number's pointer (`pointer_of`), named by the record's number, which the
-- caller (cancelling by id) does not know; it carries the base's hash tag.
local base, acct, now, id = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local key = KEYS[1]
local v = load_verification(key)
if not v or v.acct ~= acct then return 'not_found' end
if v.s ~= 'p' then return answer('not_pending', id, v) end
v.s = 'c'
if now >= v.e then v.s = 'x' end
redis.call('SETRANGE', key, 0, struct.pack('<c1I4', v.s, v.n) .. FINAL_TAG)
release(pointer_of(base, acct, v.to), id)
if v.s == 'x' then return answer('not_pending', id, v) end
return answer('canceled', id, v)
