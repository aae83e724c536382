-- Registers a webhook in its account, within the account's bound (the gateway-wide bound was
-- reserved before, by events_reserve.lua).
--
-- KEYS: the account's webhooks (`whr`). ARGV: id, registration (`<created> <secret> <url>
-- <filter>`), max per account.
-- Answers `created`, `exists` or `full`.
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 'exists' end
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then return 'full' end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 'created'
