-- The prelude: the helpers shared by more than one script, written once. src/redis/script.rs
-- puts before each script the paragraphs (blocks between blank lines) that define a name the
-- script uses, directly or through another paragraph: keep a helper and what it needs of its
-- own in one paragraph, or in paragraphs it names.
--
-- The reply convention: every script answers one string, an outcome word and then its fields,
-- joined by single spaces (no field holds a space, except a last one the caller reads whole).
-- RESP parsing of a dozen bulk strings was about a tenth of the gateway's CPU per check (perf).

-- One reply: the outcome word and its fields, space-joined.
local function words(...)
  return table.concat({...}, ' ')
end

-- An integer as text, without Lua's exponent notation for large numbers.
local function int(x)
  return string.format('%d', x)
end

-- The lockout back-off, the one definition (its Rust twin is src/backoff.rs): `first` doubled
-- `doublings` times, at most `max_wait`. Doublings stop at 62, where the Rust twin's u64 would
-- overflow, so both answer alike.
local function backoff(first, doublings, max_wait)
  if doublings > 62 then doublings = 62 end
  return math.min(first * (2 ^ doublings), max_wait)
end

-- How wrong attempts in a row are limited, the twin of `AttemptLimits` in src/backoff.rs: its
-- five arguments from ARGV[i] (free attempts, attempts per wait, first wait, max wait, lock
-- after: 0 for never); the wait the `n`-th wrong attempt in a row starts (0: none); the wrong
-- attempts left before the next wait; whether `n` wrong attempts lock until the owner acts.
local function limits_from(i)
  return {free = math.max(tonumber(ARGV[i]), 1), per = math.max(tonumber(ARGV[i + 1]), 1),
    first = tonumber(ARGV[i + 2]), max_wait = tonumber(ARGV[i + 3]), lock = tonumber(ARGV[i + 4])}
end
local function wait_after(l, n)
  if n < l.free or (n - l.free) % l.per ~= 0 then return 0 end
  return backoff(l.first, (n - l.free) / l.per, l.max_wait)
end
local function attempts_left(l, n)
  if n < l.free then return l.free - n end
  return l.per - (n - l.free) % l.per
end
local function locks(l, n) return l.lock > 0 and n >= l.lock end

-- Verifications (verify_*.lua): the reply of a verification is
-- `<outcome> <id> <status> <attempts> <max attempts> <expires> <to> <created> <length>
-- <channel> <sends>`. The account is not answered: the caller passed it and the script compared it.
--
-- The record is one string (docs/decisions.md, "One packed record"), little-endian: status
-- (1 byte), attempts (4), the code tag (16; zeros once final), max attempts (4), sends (4),
-- expiry and creation (6 each, ms), code length (1), then channel, account and `to`, each
-- behind its length byte; then the messages' delivery states (below). Status,
-- attempts and tag come first so that a check writes them with one SETRANGE at offset 0.
local RECORD = '<c1I4c16I4I4I6I6BBc0Bc0Bc0'
local function unpack_verification(packed)
  local s, n, tag, M, sends, e, created, len, channel, acct, to, tail = struct.unpack(RECORD, packed)
  return {s = s, n = n, tag = tag, M = M, sends = sends, e = e, created = created, len = len,
    channel = channel, acct = acct, to = to, tail = tail, packed = packed}
end
local function load_verification(key)
  local packed = redis.call('GET', key)
  if not packed then return nil end
  return unpack_verification(packed)
end
local function answer(outcome, id, v)
  return outcome .. ' ' .. id .. ' ' .. v.s .. ' ' .. v.n .. ' ' .. v.M .. ' ' .. int(v.e) .. ' '
    .. v.to .. ' ' .. int(v.created) .. ' ' .. v.len .. ' ' .. v.channel .. ' ' .. v.sends
end

-- The whole record again, its head from `v` and its delivery states as they were.
local function pack_verification(v)
  return struct.pack(RECORD, v.s, v.n, v.tag, v.M, v.sends, v.e, v.created, v.len,
    #v.channel, v.channel, #v.acct, v.acct, #v.to, v.to) .. string.sub(v.packed, v.tail)
end

-- A final record's tag: zeros, as `HDEL m` dropped it from the hash before.
local FINAL_TAG = string.rep('\0', 16)

-- The delivery state of one message, after the head: pairs of field (`attempt_field`; one byte
-- of length) and value (`ATTEMPT`; two bytes of length), in the
-- order they were first recorded. Answers the value and where its pair starts and ends.
local function find_attempt(v, field)
  local packed, pos = v.packed, v.tail
  while pos <= #packed do
    local name, value, after = struct.unpack('<Bc0Hc0', packed, pos)
    if name == field then return value, pos, after end
    pos = after
  end
  return nil
end
-- A message's field, the twin of `attempt_field` in src/redis/verify.rs: `B` and the 16 bytes of
-- a gateway id (`MS` and 32 lowercase hex digits), else `A` and the id.
local function attempt_field(message_id)
  local hex = string.match(message_id, '^MS([0-9a-f]+)$')
  if not hex or #hex ~= 32 then return 'A' .. message_id end
  return 'B' .. string.gsub(hex, '..', function(byte) return string.char(tonumber(byte, 16)) end)
end
-- One message's delivery state (`pack_attempt` in src/redis/verify.rs): sent (1 byte), created
-- and updated (6 each, ms), status, provider and provider id behind a length byte each, then the
-- error to the end.
local ATTEMPT = '<BI6I6Bc0Bc0Bc0'
-- The record with one message's delivery state set to `value`: replaced in place, or appended.
local function with_attempt(v, field, value)
  -- Two bytes of length: a longer value (a provider's error text) keeps its first 65 535.
  if #value > 65535 then value = string.sub(value, 1, 65535) end
  local pair = struct.pack('<Bc0Hc0', #field, field, #value, value)
  local _, from, after = find_attempt(v, field)
  if not from then return v.packed .. pair end
  return string.sub(v.packed, 1, from - 1) .. pair .. string.sub(v.packed, after)
end

-- The number's pointer `base .. 'n:' .. acct .. ':' .. to`: one string, the sends in its quota
-- window (4 bytes), when the window ends (6, ms), then the pending verification's id, if any.
local POINTER = '<I4I6'
local function pointer_of(base, acct, to)
  return base .. 'n:' .. acct .. ':' .. to
end
-- A finished verification leaves its number free: the pointer forgets it, the quota stays.
local function release(pointer, id)
  local p = redis.call('GET', pointer)
  if p and string.sub(p, 11) == id then redis.call('SET', pointer, string.sub(p, 1, 10), 'KEEPTTL') end
end

-- A verification's workflow, when it has one (`verify_fallback.lua` says the fields).
local function workflow_of(base, id)
  return base .. 'w:' .. id
end

-- The audit trail (directory_*.lua): seven arguments per entry, from ARGV[i].
local function audit(key, cap, i)
  redis.call('XADD', key, 'MAXLEN', cap, '*', 'at', ARGV[i], 'k', ARGV[i+1], 'r', ARGV[i+2],
    'u', ARGV[i+3], 'a', ARGV[i+4], 't', ARGV[i+5], 'd', ARGV[i+6])
end
-- A user's device list holds `<digest hex>:<expires>` per device.
local function digest_of(value) return string.match(value, '^([^:]+)') end
-- Forgets every device of a user's list (`user_devices`): each device's record (under `base`,
-- the account's), its place in the account's sorted set (`devices`), and the list itself.
-- Answers how many were listed.
local function forget_devices(user_devices, devices, base)
  local list = redis.call('HVALS', user_devices)
  for _, value in ipairs(list) do
    local digest = digest_of(value)
    if digest then
      redis.call('DEL', base .. 'd:' .. digest)
      redis.call('ZREM', devices, digest)
    end
  end
  redis.call('DEL', user_devices)
  return #list
end

-- Phone numbers (pin_*.lua): the record's fields, in the order replies give them after their
-- outcome word.
local NUMBER_FIELDS = {'e', 'ts', 'n', 'nx', 'lk', 'rg', 'cr', 'up', 'dx', 'rx'}
local function load_number(key) return redis.call('HMGET', key, unpack(NUMBER_FIELDS)) end

-- Factors (factor_*.lua): the wait a factor's or a user's recovery codes' wrong attempts hold
-- at `now` (`lu` in `key`): `locked <retry after ms>`, or nil when none holds.
local function lock_held(key, now)
  local until_ms = tonumber(redis.call('HGET', key, 'lu') or '0')
  if until_ms > now then return words('locked', tostring(until_ms - now)) end
  return nil
end
-- Counts a wrong code in `key` (`nf`), starts the wait the limits `l` give (`lu`), and answers
-- `wrong <attempts left> <wait ms>`.
local function count_wrong(key, l, now)
  local fails = redis.call('HINCRBY', key, 'nf', 1)
  local wait = wait_after(l, fails)
  if wait > 0 then redis.call('HSET', key, 'lu', int(now + wait)) end
  return words('wrong', tostring(attempts_left(l, fails)), int(wait))
end

-- Factors (factor_*.lua): bounds the account's pending entries (issue 13 §8): drops the expired,
-- refuses past the bound, else lists `member` until `expires`. `pend` is the account's `pend`.
local function pending_room(pend, member, now, expires, ttl, max)
  redis.call('ZREMRANGEBYSCORE', pend, '-inf', now)
  if redis.call('ZSCORE', pend, member) == false and redis.call('ZCARD', pend) >= tonumber(max) then
    return false
  end
  redis.call('ZADD', pend, expires, member)
  if redis.call('PTTL', pend) < tonumber(ttl) then redis.call('PEXPIRE', pend, ttl) end
  return true
end
