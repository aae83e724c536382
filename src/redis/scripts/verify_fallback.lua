-- Fires the shard's workflow fallbacks that are due (src/verify/workflow.rs).
--
-- KEYS: the shard's due set (verification id by due time), the shard's outbox stream.
-- ARGV: base, now, at most this many.
--
-- Derived keys: `base .. 'v:' .. <id>`, each due verification's record, and its workflow
-- `workflow_of(base, <id>)` (both the base's hash tag, so in the slot of KEYS). The workflow is
-- a hash kept beside the record only when there is one: `wf` fallback after (ms), `wi` the
-- current step, `wn` steps, `w<i>` step i as `<channel> <message id> <queued ms or -> <left:
-- failed, timeout or ->`, `b<i>` step i's sealed message until it is reached, `we` the e-mail
-- step's masked address when `to` is a phone number (read by the API only).
--
-- Each due verification leaves the set; one still pending whose current step's message was not
-- delivered (its delivery state in the record) moves to its next step in this same step: the step is
-- marked left (failed when its message failed or was undelivered, else timeout), the next
-- step's message is appended to the outbox, the record's channel becomes the next step's, and
-- the verification is due again while a later step remains. A second sweep of the same due
-- entry finds it gone: a step fires once. Answers `fired` then, per fallback,
-- `<id> <from channel> <to channel> <reason> <account> <number>`.
local base, now_text = ARGV[1], ARGV[2]
local now = tonumber(now_text)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_text, 'LIMIT', 0, ARGV[3])
local out = {'fired'}

local function fire(id)
  local key, flow = base .. 'v:' .. id, workflow_of(base, id)
  local v = load_verification(key)
  if not v or v.s ~= 'p' or now >= v.e then return end
  local f = redis.call('HMGET', flow, 'wi', 'wn', 'wf')
  if not f[1] then return end
  local i, n = tonumber(f[1]), tonumber(f[2])
  if i + 1 >= n then return end
  local ch, msg, queued = string.match(redis.call('HGET', flow, 'w' .. i) or '', '^(%S+) (%S+) (%S+)')
  if not ch then return end
  local message = find_attempt(v, attempt_field(msg))
  local status = message and select(4, struct.unpack(ATTEMPT, message))
  if status == 'delivered' or status == 'read' then return end
  local reason = 'timeout'
  if status == 'failed' or status == 'undelivered' then reason = 'failed' end
  local next_step = 'w' .. (i + 1)
  local to, next_msg = string.match(redis.call('HGET', flow, next_step) or '', '^(%S+) (%S+)')
  local sealed = redis.call('HGET', flow, 'b' .. (i + 1))
  if not to or not sealed then return end
  redis.call('XADD', KEYS[2], '*', 'v', id, 'm', sealed)
  redis.call('HDEL', flow, 'b' .. (i + 1))
  redis.call('HSET', flow, 'w' .. i, ch .. ' ' .. msg .. ' ' .. queued .. ' ' .. reason,
    next_step, to .. ' ' .. next_msg .. ' ' .. now_text .. ' -', 'wi', tostring(i + 1))
  v.channel = to
  redis.call('SET', key, pack_verification(v), 'KEEPTTL')
  if i + 2 < n then redis.call('ZADD', KEYS[1], int(now + tonumber(f[3])), id) end
  out[#out + 1] = words(id, ch, to, reason, v.acct, v.to)
end

for _, id in ipairs(due) do
  redis.call('ZREM', KEYS[1], id)
  fire(id)
end
return table.concat(out, ' ')
