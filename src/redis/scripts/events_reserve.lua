-- Reserves room for one more webhook gateway-wide, and lists its account for the sweep.
--
-- KEYS: the webhook count, the accounts with webhooks (both under `{wh}`). ARGV: max webhooks,
-- account id.
-- Answers `reserved` or `full`.
if tonumber(redis.call('GET', KEYS[1]) or '0') >= tonumber(ARGV[1]) then return 'full' end
redis.call('INCR', KEYS[1])
redis.call('SADD', KEYS[2], ARGV[2])
return 'reserved'
