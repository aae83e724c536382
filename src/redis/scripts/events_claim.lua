-- Leases the next due webhook of the account: its schedule time becomes the lease's end, so no
-- other claim returns it before then, and a lease whose holder died ends by itself. A due
-- webhook with nothing queued (or removed) leaves the schedule.
--
-- KEYS: the account's webhooks (`whr`), its schedule (`whz`). Each webhook's queue and state
-- are derived from KEYS[1]: the account's base (KEYS[1] without `whr`) and `whq:<id>`,
-- `whs:<id>` (`o` lease holder, `n` failures of the head, `f` its first attempt ms).
-- ARGV: owner, now ms, lease end ms.
-- Answers `claimed <id> <failures> <first attempt ms or -> <url> <secret> <queue entry>` (the
-- entry, `<event id> <type> <created ms> <body>`, is read whole), or `none <next due ms or ->`.
local base = string.sub(KEYS[1], 1, -4)
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[2], 'LIMIT', 0, 32)
for _, id in ipairs(due) do
  local registration = redis.call('HGET', KEYS[1], id)
  local head = registration and redis.call('LINDEX', base .. 'whq:' .. id, 0)
  if not head then
    redis.call('ZREM', KEYS[2], id)
  else
    local state = base .. 'whs:' .. id
    redis.call('HSET', state, 'o', ARGV[1])
    redis.call('ZADD', KEYS[2], ARGV[3], id)
    local counts = redis.call('HMGET', state, 'n', 'f')
    local secret, url = string.match(registration, '^%S+ (%S+) (%S+)')
    return words('claimed', id, counts[1] or '0', counts[2] or '-', url, secret, head)
  end
end
local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
return words('none', first[2] or '-')
