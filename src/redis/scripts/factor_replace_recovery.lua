-- Replaces a user's recovery codes.
--
-- KEYS: codes. ARGV: digests. Answers `replaced`.
redis.call('DEL', KEYS[1])
if #ARGV > 0 then redis.call('SADD', KEYS[1], unpack(ARGV)) end
return 'replaced'
