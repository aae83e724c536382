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
-- <channel> <sends>`: the last five are the record's packed field `p`, answered as stored.
-- The account is not answered: the caller passed it and the script compared it.
local VERIFICATION_FIELDS = {'a', 's', 'n', 'M', 'e', 'p'}
local function load_verification(key)
  return redis.call('HMGET', key, unpack(VERIFICATION_FIELDS))
end
local function answer(outcome, id, v)
  return outcome .. ' ' .. id .. ' ' .. v[2] .. ' ' .. v[3] .. ' ' .. v[4] .. ' ' .. v[5] .. ' ' .. v[6]
end
-- The number's pointer of a verification: derived from the record (its packed number), which
-- the caller does not know when it names the verification by id.
local function pointer_of(base, acct, p)
  return base .. 'n:' .. acct .. ':' .. string.match(p, '^%S+')
end
-- A finished verification leaves its number free: the pointer forgets it, the quota stays.
local function release(pointer, id)
  if redis.call('HGET', pointer, 'v') == id then redis.call('HDEL', pointer, 'v') end
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
