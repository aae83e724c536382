-- Removes a transferred number from its former account.
--
-- KEYS: number, index, the account's count, the account's numbers by id. ARGV: id. Answers `removed`.
if redis.call('DEL', KEYS[1]) == 1 then
  if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
  if tonumber(redis.call('GET', KEYS[3]) or '0') > 0 then redis.call('DECR', KEYS[3]) end
  redis.call('ZREM', KEYS[4], ARGV[1])
end
return 'removed'
