-- Ends a message's delivery: a provider accepted it (its attempt, recorded first, says so).
--
-- KEYS: stream. ARGV: group, entry id.
-- Answers `acked`.
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
return 'acked'
