-- Marks a key revoking, unless it is the account's last live owner key. The caller then
-- deletes the key's record (accounts_drop_key.lua) and forgets the entry
-- (accounts_forget_key.lua); a retry after a failure in between finds it revoking and goes on.
--
-- KEYS: the account's key ids (sorted set), key entries (hash), live owner keys (counter).
-- ARGV: id.
-- Answers `ok <role> <created> <digest hex>`, `not_found` or `last_owner`.
local entry = redis.call('HGET', KEYS[2], ARGV[1])
if not entry then return 'not_found' end
local role, created, digest, state = string.match(entry, '^(%S+) (%S+) (%S+) (%S+)$')
if not state then return redis.error_reply('corrupt key entry') end
if state == 'live' then
  if role == 'owner' then
    if tonumber(redis.call('GET', KEYS[3]) or '0') <= 1 then return 'last_owner' end
    redis.call('DECR', KEYS[3])
  end
  redis.call('HSET', KEYS[2], ARGV[1], words(role, created, digest, 'revoking'))
end
return words('ok', role, created, digest)
