-- Writes a factor's record whole; a pending one (with a ttl) counts against the account's
-- bound of pending entries.
--
-- KEYS: factor, pending. ARGV: ttl ms (0: none), now, max pending, then field/value pairs.
-- Answers `stored`, or `full` when the account is at its bound of pending entries.
local ttl = tonumber(ARGV[1])
if ttl > 0 and not pending_room(KEYS[2], KEYS[1], ARGV[2], ARGV[2] + ttl, ttl, ARGV[3]) then
  return 'full'
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
return 'stored'
