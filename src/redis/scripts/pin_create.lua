-- Writes a new phone number's record in its account (after the registry's claim).
--
-- KEYS: number, index, the account's count, the account's numbers by id. ARGV: id, e164, PIN hash, now, max numbers.
-- Answers `created <record fields>`, `exists <id>`, `id_taken` or `limit`.
local existing = redis.call('GET', KEYS[2])
if existing then return words('exists', existing) end
if redis.call('EXISTS', KEYS[1]) == 1 then return 'id_taken' end
if tonumber(redis.call('GET', KEYS[3]) or '0') >= tonumber(ARGV[5]) then return 'limit' end
redis.call('INCR', KEYS[3])
redis.call('ZADD', KEYS[4], 0, ARGV[1])
redis.call('HSET', KEYS[1], 'e', ARGV[2], 'ts', '1', 'h', ARGV[3], 'pv', '1', 'n', '0',
  'nx', '0', 'lk', '0', 'rg', '0', 'cr', ARGV[4], 'up', ARGV[4], 'dx', '0', 'rx', '0',
  'td', '', 'tr', '')
redis.call('SET', KEYS[2], ARGV[1])
return words('created', unpack(load_number(KEYS[1])))
