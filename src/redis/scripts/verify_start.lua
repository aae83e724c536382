-- Starts a verification, or resends the pending one of the same account and number.
--
-- KEYS: the number's pointer (with its quota), the new record, idempotency (or the pointer again
-- when there is none), the shard's outbox stream, the shard's due set of workflows.
-- ARGV (`StartArgs` in src/redis/verify.rs): base, account, to, channel, tag, code length, now,
-- ttl, expiry (now + ttl), the record's lifetime (ttl + retention), max attempts, max sends,
-- quota limit, a new quota window's end (now + window), the pointer's lifetime with a new window
-- (the longer of window and ttl), new id, has idempotency key, sealed message (or ''); then the
-- workflow (src/verify/workflow.rs): fallback after ms ('' for none), its step count n, n
-- steps as `<channel> <message id>`, the sealed messages of steps 2 to n, and the e-mail
-- step's masked address ('' for none; field `we`). The created or
-- resent record takes the workflow (its first step reached now, due after the fallback time)
-- or, without one, loses any it had; `verify_fallback.lua` says the fields.
--
-- Derived keys: `base .. 'v:' .. <id>`, the pending (or replayed) verification's record. Its id
-- is read here, from the pointer or the idempotency key, so the caller cannot pass it; it
-- carries the base's hash tag, so it is in the slot of KEYS.
--
-- The sums come from the caller as text: Redis 7.0 formats every Lua number it writes with
-- `snprintf("%.17g")`, and the seven it formatted here were an eighth of a send's instructions
-- in Redis (callgrind). Numbers are computed here only for a window still open.
local base, acct, to, channel, tag, len = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local now_text, ttl, expires, lifetime = ARGV[7], ARGV[8], ARGV[9], ARGV[10]
local max_attempts, max_sends, quota_limit = ARGV[11], tonumber(ARGV[12]), tonumber(ARGV[13])
local window_end, pointer_ttl, new_id, has_idem = ARGV[14], ARGV[15], ARGV[16], ARGV[17] == '1'
local outbox = ARGV[18]
local now = tonumber(now_text)

-- Replaces the workflow of the record `key` (verification `id`) with the request's, or drops it.
-- `fresh`: the record was just created, so it has no workflow to read or drop (a send to a new
-- number, the common case, skips a read).
local function set_workflow(key, id, fresh)
  local after, old = ARGV[19] or '', 0
  if not fresh then old = tonumber(redis.call('HGET', key, 'wn') or '0') end
  local n = 0
  if after ~= '' then n = tonumber(ARGV[20]) end
  for i = n, old - 1 do redis.call('HDEL', key, 'w' .. i, 'b' .. i) end
  if n == 0 then
    if old > 0 then
      redis.call('HDEL', key, 'wf', 'wi', 'wn', 'we')
      redis.call('ZREM', KEYS[5], id)
    end
    return
  end
  redis.call('HSET', key, 'wf', after, 'wi', '0', 'wn', ARGV[20], 'w0', ARGV[21] .. ' ' .. now_text .. ' -')
  for i = 1, n - 1 do
    redis.call('HSET', key, 'w' .. i, ARGV[21 + i] .. ' - -', 'b' .. i, ARGV[20 + n + i])
  end
  local email = ARGV[20 + 2 * n] or ''
  if email ~= '' then redis.call('HSET', key, 'we', email) elseif not fresh then redis.call('HDEL', key, 'we') end
  redis.call('ZADD', KEYS[5], int(now + tonumber(after)), id)
end

if has_idem then
  local seen = redis.call('GET', KEYS[3])
  if seen then
    local v = load_verification(base .. 'v:' .. seen)
    if v[1] then return answer('replayed', seen, v) end
  end
end

-- The pointer hash: v = the pending verification's id, q = sends in the quota window,
-- w = when the window ends (the caller's clock, like every other time here).
local ptr = redis.call('HMGET', KEYS[1], 'v', 'q', 'w')
local used = 0
if ptr[3] and now < tonumber(ptr[3]) then
  used, window_end = tonumber(ptr[2]), ptr[3]
  pointer_ttl = tonumber(window_end) - now
  if pointer_ttl < tonumber(ttl) then pointer_ttl = ttl end
end
local function quota_full()
  return used >= quota_limit
end
local function refuse_quota()
  return 'quota ' .. (tonumber(window_end) - now)
end
-- Counts the send, remembers the id and keeps the pointer as long as either needs it.
local function take(id)
  local count = '1'
  if used > 0 then count = used + 1 end
  redis.call('HSET', KEYS[1], 'v', id, 'q', count, 'w', window_end)
  redis.call('PEXPIRE', KEYS[1], pointer_ttl)
  if has_idem then redis.call('SET', KEYS[3], id, 'PX', lifetime) end
  if outbox ~= '' then redis.call('XADD', KEYS[4], '*', 'v', id, 'm', outbox) end
end

local pending = ptr[1]
if pending then
  local key = base .. 'v:' .. pending
  local v = load_verification(key)
  if v[1] == acct and v[2] == 'p' and now < tonumber(v[5]) then
    local number, created, length, _, sends = string.match(v[6], '^(%S+) (%S+) (%S+) (%S+) (%S+)$')
    sends = tonumber(sends)
    if sends >= max_sends then return answer('max_sends', pending, v) end
    if quota_full() then return refuse_quota() end
    v[5] = expires
    v[6] = number .. ' ' .. created .. ' ' .. length .. ' ' .. channel .. ' ' .. (sends + 1)
    redis.call('HSET', key, 'm', tag, 'e', v[5], 'p', v[6])
    redis.call('PEXPIRE', key, lifetime)
    set_workflow(key, pending, false)
    take(pending)
    return answer('resent', pending, v)
  end
end

if quota_full() then return refuse_quota() end
local v = {acct, 'p', '0', max_attempts, expires, to .. ' ' .. now_text .. ' ' .. len .. ' ' .. channel .. ' 1'}
redis.call('HSET', KEYS[2], 'a', acct, 's', 'p', 'n', '0', 'M', max_attempts, 'e', expires, 'p', v[6], 'm', tag)
redis.call('PEXPIRE', KEYS[2], lifetime)
set_workflow(KEYS[2], new_id, true)
take(new_id)
return answer('created', new_id, v)
