-- One page of an account's keys, in the order of their ids.
--
-- KEYS: the account's key ids (sorted set, every score 0), key entries (hash).
-- ARGV: the id to start after (empty: from the first), how many.
-- Answers `ok` then, per key, its id and its entry's four fields.
local from = '-'
if ARGV[1] ~= '' then from = '(' .. ARGV[1] end
local ids = redis.call('ZRANGE', KEYS[1], from, '+', 'BYLEX', 'LIMIT', 0, tonumber(ARGV[2]))
local out = {'ok'}
for _, id in ipairs(ids) do
  local entry = redis.call('HGET', KEYS[2], id)
  if entry then
    out[#out + 1] = id
    out[#out + 1] = entry
  end
end
return table.concat(out, ' ')
