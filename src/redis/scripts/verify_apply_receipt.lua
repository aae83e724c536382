-- Applies a provider's delivery receipt to one message's packed state (`ATTEMPT`).
--
-- KEYS: the record. ARGV: the attempt's field, status, error (or ''), now.
-- Keeps the sent flag, creation time, provider and provider id; the error stays unless a new
-- one is given. Answers `applied <previous status> <account> <number> <channel>` (what the
-- receipt's event needs), or `unknown` when the record has no such message.
local v = load_verification(KEYS[1])
if not v then return 'unknown' end
local value = find_attempt(v, ARGV[1])
if not value then return 'unknown' end
local sent, created, _, previous, provider, vendor, rest = struct.unpack(ATTEMPT, value)
local err = string.sub(value, rest)
if ARGV[3] ~= '' then err = ARGV[3] end
local status = string.sub(ARGV[2], 1, 255)
value = struct.pack(ATTEMPT, sent, created, tonumber(ARGV[4]), #status, status, #provider, provider,
  #vendor, vendor) .. err
redis.call('SET', KEYS[1], with_attempt(v, ARGV[1], value), 'KEEPTTL')
return 'applied ' .. previous .. ' ' .. v.acct .. ' ' .. v.to .. ' ' .. v.channel
