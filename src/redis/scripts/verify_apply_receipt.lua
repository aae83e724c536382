-- Applies a provider's delivery receipt to one message's packed state.
--
-- KEYS: the record. ARGV: the attempt's field, status, error (or ''), now.
-- Keeps the sent flag, creation time, provider and provider id; the error stays unless a new
-- one is given. Answers `applied <previous status> <account> <number> <channel>` (what the
-- receipt's event needs), or `unknown` when the record has no such message.
local value = redis.call('HGET', KEYS[1], ARGV[1])
if not value then return 'unknown' end
local packed = '^(%S+) (%S+) (%S+) (%S+) (%S+) (%S+) ?(.*)$'
local sent, created, _, previous, provider, vendor, err = string.match(value, packed)
if not sent then return 'unknown' end
if ARGV[3] ~= '' then err = ARGV[3] end
redis.call('HSET', KEYS[1], ARGV[1],
  sent .. ' ' .. created .. ' ' .. ARGV[4] .. ' ' .. ARGV[2] .. ' ' .. provider .. ' ' .. vendor .. ' ' .. err)
local record = redis.call('HMGET', KEYS[1], 'a', 'p')
local number, channel = string.match(record[2] or '', '^(%S+) %S+ %S+ (%S+)')
if not record[1] or not number then return 'unknown' end
return 'applied ' .. previous .. ' ' .. record[1] .. ' ' .. number .. ' ' .. channel
