-- Compares the tag, counts the attempt and consumes the code on success.
--
-- KEYS: the record (by id) or the number's pointer (by number).
-- ARGV: account, tag, now, id (or '' by number), then by number the base (or '' by id), then
-- the idempotency key when there is one.
--
-- Derived keys, each in the slot of KEYS[1] (they share its hash tag):
-- * by number, the record `base .. 'v:' .. <id>`: the id is read from the pointer here;
-- * the idempotency record `<base>c:<account>:<e164>:<key>`: by id the number is read from the
--   record here, and by number it is the pointer's last part;
-- * a finishing check's pointer (`pointer_of`): the record names the number;
-- * by id, the base is the record's key without `v:<id>`, derived only when needed.
-- Passing them would cost the hot call (a check by id, no key) more arguments: every argument
-- costs Redis a Lua string on every call, so that call carries four.
--
-- By number, only a pending verification is found (as in the memory store); by id, a finished
-- one answers `final` and counts nothing.
--
-- One read (GET of the packed record) and one write: a check writes status, attempts and, once
-- final, the wiped tag with one SETRANGE at offset 0 (the head's first 5 or 21 bytes).
--
-- With an idempotency key, the reply of the check that counted is kept under
-- `c:<account>:<e164>:<key>` as long as the record lives, and answered again, as
-- `replayed <reply>`, to every later check with the key (by id: of the same verification,
-- else `key_reused`).
local acct, tag, now, id = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local key, base, idem = KEYS[1], ARGV[5], ARGV[6]
local by_number = id == ''
-- With an idempotency key: where the reply of the check that counted is kept.
local seen_key
if by_number then
  -- The key first: the pointer forgets a verification once it is final.
  if idem then
    seen_key = base .. 'c:' .. acct .. ':' .. string.match(key, '[^:]+$') .. ':' .. idem
    local seen = redis.call('GET', seen_key)
    if seen then return 'replayed ' .. seen end
  end
  local pointer = redis.call('GET', key)
  if not pointer or #pointer <= 10 then return 'not_found' end
  id = string.sub(pointer, 11)
  key = base .. 'v:' .. id
end
local v = load_verification(key)
if not v or v.acct ~= acct then return 'not_found' end
if not by_number then
  base = nil
  if idem then
    base = string.sub(key, 1, #key - #id - 2)
    seen_key = base .. 'c:' .. acct .. ':' .. v.to .. ':' .. idem
    local seen = redis.call('GET', seen_key)
    if seen then
      if string.match(seen, '^%S+ (%S+)') ~= id then return 'key_reused' end
      return 'replayed ' .. seen
    end
  end
end
if v.s ~= 'p' then
  if by_number then return 'not_found' end
  return answer('final', id, v)
end
local function finish(status)
  v.s = status
  redis.call('SETRANGE', key, 0, struct.pack('<c1I4', status, v.n) .. FINAL_TAG)
  if not base then base = string.sub(key, 1, #key - #id - 2) end
  release(pointer_of(base, acct, v.to), id)
end
local outcome = 'checked'
if now >= v.e then
  if by_number then return 'not_found' end
  finish('x')
else
  v.n = v.n + 1
  -- A plain comparison: the tags are MACs under the server's key, so how long it takes tells a
  -- caller nothing it could steer (see docs/decisions.md, "The code MAC").
  if v.tag == tag then
    finish('a')
    outcome = 'valid'
  elseif v.n >= v.M then
    finish('m')
  else
    redis.call('SETRANGE', key, 0, struct.pack('<c1I4', 'p', v.n))
  end
end
local reply = answer(outcome, id, v)
-- A check that counted: its reply is kept under the idempotency key as long as the record.
if seen_key then
  local ttl = redis.call('PTTL', key)
  if ttl > 0 then redis.call('SET', seen_key, reply, 'PX', ttl) end
end
return reply
