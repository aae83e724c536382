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
-- resent verification takes the workflow (its first step reached now, due after the fallback
-- time) or, without one, loses any it had; `verify_fallback.lua` says the fields.
--
-- Derived keys: `base .. 'v:' .. <id>`, the pending (or replayed) verification's record, and
-- `workflow_of(base, <id>)`, its workflow. The id is read here, from the pointer or the
-- idempotency key, so the caller cannot pass it; both carry the base's hash tag, so they are in
-- the slot of KEYS.
--
-- The record and the pointer are packed strings (the prelude says their layouts): a send
-- writes each with one SET, its TTL in the same command.
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

-- Replaces the workflow of verification `id` with the request's, or drops it. `fresh`: the
-- verification was just created, so it has no workflow to drop (a send to a new number, the
-- common case, skips a write).
local function set_workflow(id, fresh)
  local key, after = workflow_of(base, id), ARGV[19] or ''
  local n = 0
  if after ~= '' then n = tonumber(ARGV[20]) end
  if not fresh and redis.call('DEL', key) == 1 and n == 0 then redis.call('ZREM', KEYS[5], id) end
  if n == 0 then return end
  redis.call('HSET', key, 'wf', after, 'wi', '0', 'wn', ARGV[20], 'w0', ARGV[21] .. ' ' .. now_text .. ' -')
  for i = 1, n - 1 do
    redis.call('HSET', key, 'w' .. i, ARGV[21 + i] .. ' - -', 'b' .. i, ARGV[20 + n + i])
  end
  local email = ARGV[20 + 2 * n] or ''
  if email ~= '' then redis.call('HSET', key, 'we', email) end
  redis.call('PEXPIRE', key, lifetime)
  redis.call('ZADD', KEYS[5], int(now + tonumber(after)), id)
end

if has_idem then
  local seen = redis.call('GET', KEYS[3])
  if seen then
    local v = load_verification(base .. 'v:' .. seen)
    if v then return answer('replayed', seen, v) end
  end
end

-- The pointer (`POINTER`): sends in the quota window, when the window ends (the caller's
-- clock, like every other time here), the pending verification's id.
local pointer = redis.call('GET', KEYS[1])
local used, pending = 0, nil
if pointer then
  local sent, ends = struct.unpack(POINTER, pointer)
  if now < ends then
    used, window_end = sent, ends
    pointer_ttl = ends - now
    if pointer_ttl < tonumber(ttl) then pointer_ttl = ttl end
  end
  if #pointer > 10 then pending = string.sub(pointer, 11) end
end
local function quota_full()
  return used >= quota_limit
end
local function refuse_quota()
  return 'quota ' .. (tonumber(window_end) - now)
end
-- Counts the send, remembers the id and keeps the pointer as long as either needs it.
local function take(id)
  redis.call('SET', KEYS[1], struct.pack(POINTER, used + 1, tonumber(window_end)) .. id, 'PX', pointer_ttl)
  if has_idem then redis.call('SET', KEYS[3], id, 'PX', lifetime) end
  if outbox ~= '' then redis.call('XADD', KEYS[4], '*', 'v', id, 'm', outbox) end
end

if pending then
  local key = base .. 'v:' .. pending
  local v = load_verification(key)
  if v and v.acct == acct and v.s == 'p' and now < v.e then
    if v.sends >= max_sends then return answer('max_sends', pending, v) end
    if quota_full() then return refuse_quota() end
    v.e, v.channel, v.sends, v.tag = tonumber(expires), channel, v.sends + 1, tag
    redis.call('SET', key, pack_verification(v), 'PX', lifetime)
    set_workflow(pending, false)
    take(pending)
    return answer('resent', pending, v)
  end
end

if quota_full() then return refuse_quota() end
local v = {s = 'p', n = 0, tag = tag, M = tonumber(max_attempts), sends = 1, e = tonumber(expires),
  created = now, len = tonumber(len), channel = channel, acct = acct, to = to, tail = 1, packed = ''}
redis.call('SET', KEYS[2], pack_verification(v), 'PX', lifetime)
set_workflow(new_id, true)
take(new_id)
return answer('created', new_id, v)
