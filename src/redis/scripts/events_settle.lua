-- Settles one attempt on a leased webhook, if the lease is still the caller's and the head is
-- still its event: delivered and dead-lettered heads leave the queue (a dead letter is kept
-- with its last attempt), a retried head stays, due at its next attempt. The attempt is logged.
--
-- KEYS: the account's webhooks (`whr`), its schedule (`whz`). The webhook's keys are derived
-- from KEYS[1]: the account's base (KEYS[1] without `whr`) and `whq:`, `whs:`, `whl:`, `whx:`
-- with the id. ARGV: id, owner, event id, outcome (`delivered`, `retry`, `dead`), now ms, due ms
-- (retry), attempt ms, log entry, attempts kept, dead letters kept.
-- Answers `settled <next due ms of the account or ->` or `lost`.
local base = string.sub(KEYS[1], 1, -4)
local id = ARGV[1]
local state = base .. 'whs:' .. id
local queue = base .. 'whq:' .. id
local head = redis.call('LINDEX', queue, 0)
if redis.call('HGET', state, 'o') ~= ARGV[2] or not head or string.match(head, '^%S+') ~= ARGV[3] then
  return 'lost'
end
redis.call('HDEL', state, 'o')
if ARGV[4] == 'retry' then
  redis.call('HINCRBY', state, 'n', 1)
  redis.call('HSETNX', state, 'f', ARGV[7])
  redis.call('ZADD', KEYS[2], ARGV[6], id)
else
  redis.call('LPOP', queue)
  redis.call('HDEL', state, 'n', 'f')
  if ARGV[4] == 'dead' then
    local dead = base .. 'whx:' .. id
    redis.call('LPUSH', dead, ARGV[8] .. ' ' .. head)
    redis.call('LTRIM', dead, 0, tonumber(ARGV[10]) - 1)
  end
  if redis.call('LLEN', queue) > 0 then
    redis.call('ZADD', KEYS[2], ARGV[5], id)
  else
    redis.call('ZREM', KEYS[2], id)
  end
end
local log = base .. 'whl:' .. id
redis.call('LPUSH', log, ARGV[8])
redis.call('LTRIM', log, 0, tonumber(ARGV[9]) - 1)
local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
return words('settled', first[2] or '-')
