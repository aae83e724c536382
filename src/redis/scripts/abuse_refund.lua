-- Gives back sends that an admission counted ahead and no request used (src/abuse/reserve.rs):
-- from the minute's bucket of the prefix's and the country's counters while that minute is still
-- theirs (`W`; once it has moved on, the sums hold the bucket and the sends stay counted, erring
-- towards caution), and from the day's count of the country.
--
-- KEYS (one account's slot): the prefix's counters, the country's counters, the day's counts.
-- ARGV: the minute (text, as abuse_admit.lua counts it), how many, the country, guarded (1/0:
-- a safe-listed send was counted in the day only).
local minute, count, country = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local function give_back(key, field)
  local held = tonumber(redis.call('HGET', key, field) or '0')
  if held >= count then redis.call('HINCRBY', key, field, -count) end
end
if ARGV[4] == '1' then
  for i = 1, 2 do
    if redis.call('HGET', KEYS[i], 'W') == minute then give_back(KEYS[i], 'm' .. minute) end
  end
end
give_back(KEYS[3], country)
return 'ok'
