-- Sets a number's PIN (or enables two-step with it on registration).
--
-- KEYS: number. ARGV: PIN hash, mode (set/register), unlock (1/0), now, the five limits
-- (`limits_from`).
-- Answers `written <was enabled> <was locked> <record fields>`, `locked`, `enabled` or
-- `not_found`.
local v = redis.call('HMGET', KEYS[1], 'ts', 'n')
if not v[1] then return 'not_found' end
local was_enabled = v[1] == '1'
local was_locked = locks(limits_from(5), tonumber(v[2]))
if ARGV[2] == 'set' then
  if was_locked and ARGV[3] ~= '1' then return 'locked' end
else
  if was_enabled then return 'enabled' end
  redis.call('HSET', KEYS[1], 'rg', ARGV[4])
end
redis.call('HINCRBY', KEYS[1], 'pv', 1)
redis.call('HSET', KEYS[1], 'h', ARGV[1], 'ts', '1', 'n', '0', 'nx', '0', 'lk', '0', 'up', ARGV[4])
local e, l = '0', '0'
if was_enabled then e = '1' end
if was_locked then l = '1' end
return words('written', e, l, unpack(load_number(KEYS[1])))
