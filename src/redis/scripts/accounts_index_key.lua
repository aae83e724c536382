-- Lists a new key in its account's index (before its record is written, so that a key that
-- works is always listed and revocable).
--
-- KEYS: the account's key ids (sorted set), key entries (hash), live owner keys (counter).
-- ARGV: id, role, created ms, digest hex.
-- An entry is `<role> <created> <digest hex> <state>`, state `live` or `revoking`.
-- Answers `ok`.
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 then
  redis.call('HSET', KEYS[2], ARGV[1], words(ARGV[2], ARGV[3], ARGV[4], 'live'))
  redis.call('ZADD', KEYS[1], 0, ARGV[1])
  if ARGV[2] == 'owner' then redis.call('INCR', KEYS[3]) end
end
return 'ok'
