-- Deletes a key's record, so that no instance finds it, and tells every instance's cache.
--
-- KEYS: the key's record. ARGV: the invalidation channel, the invalidation message.
-- Answers `ok`.
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 'ok'
