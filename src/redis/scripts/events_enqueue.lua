-- Queues one event at the tail of every webhook of the account whose filter takes it (or of
-- one webhook, whatever its filter), and makes each due now unless it is already scheduled (a
-- webhook waiting for a retry or leased keeps its time: its head goes first).
--
-- KEYS: the account's webhooks (`whr`), its schedule (`whz`). Each webhook's queue is derived
-- from KEYS[1]: the account's base (KEYS[1] without `whr`) and `whq:<id>`. ARGV: event id,
-- type, created ms, body, now ms, max queued per webhook, the one webhook's id or ''.
-- Answers `queued <webhooks> <dropped>` (dropped: webhooks whose queue was full).
local base = string.sub(KEYS[1], 1, -4)
local entry = ARGV[1] .. ' ' .. ARGV[2] .. ' ' .. ARGV[3] .. ' ' .. ARGV[4]
local max = tonumber(ARGV[6])
local queued, dropped = 0, 0
local function push(id)
  local queue = base .. 'whq:' .. id
  if redis.call('LLEN', queue) >= max then
    dropped = dropped + 1
    return
  end
  redis.call('RPUSH', queue, entry)
  redis.call('ZADD', KEYS[2], 'NX', ARGV[5], id)
  queued = queued + 1
end
if ARGV[7] ~= '' then
  if redis.call('HEXISTS', KEYS[1], ARGV[7]) == 1 then push(ARGV[7]) end
else
  local all = redis.call('HGETALL', KEYS[1])
  for i = 1, #all, 2 do
    local filter = string.match(all[i + 1], '^%S+ %S+ %S+ (.*)$') or ''
    if filter == '*' or string.find(' ' .. filter .. ' ', ' ' .. ARGV[2] .. ' ', 1, true) then
      push(all[i])
    end
  end
end
return words('queued', queued, dropped)
