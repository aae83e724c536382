-- Removes a webhook with its queue, state and logs.
--
-- KEYS: the account's webhooks (`whr`), its schedule (`whz`). The webhook's own keys are
-- derived from KEYS[1]: the account's base (KEYS[1] without `whr`) and `whq:`, `whs:`, `whl:`,
-- `whx:` with the id. ARGV: id.
-- Answers `removed` or `missing`.
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 'missing' end
local base = string.sub(KEYS[1], 1, -4)
for _, name in ipairs({'whq:', 'whs:', 'whl:', 'whx:'}) do
  redis.call('DEL', base .. name .. ARGV[1])
end
redis.call('ZREM', KEYS[2], ARGV[1])
return 'removed'
