-- Clears a reserved attempt that matched, if the PIN is still the one it was reserved on.
--
-- KEYS: number. ARGV: PIN version reserved at, now. Answers `cleared` or `stale`.
if redis.call('HGET', KEYS[1], 'pv') ~= ARGV[1] then return 'stale' end
redis.call('HSET', KEYS[1], 'n', '0', 'nx', '0', 'lk', '0', 'rg', ARGV[2], 'up', ARGV[2])
return 'cleared'
