-- Moves a read entry to the shard's retry set until it is due; its delivery ends here
-- (acknowledged), so that no other worker reclaims it while it waits.
--
-- KEYS: stream, retry set, retry payloads. ARGV: group, entry id, message id, due ms,
-- verification id, sealed, round, refused providers.
-- Answers `deferred`.
local m = ARGV[3]
redis.call('HSET', KEYS[3], m .. ':v', ARGV[5], m .. ':m', ARGV[6], m .. ':r', ARGV[7], m .. ':x', ARGV[8])
redis.call('ZADD', KEYS[2], ARGV[4], m)
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
return 'deferred'
