-- Forgets a revoked key's entry (marked revoking by accounts_revoke_key.lua).
--
-- KEYS: the account's key ids (sorted set), key entries (hash). ARGV: id.
-- Answers `ok`.
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return 'ok'
