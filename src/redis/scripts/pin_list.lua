-- One page of an account's phone numbers, in the order of their ids.
--
-- KEYS: the account's numbers by id (sorted set, every score 0).
-- ARGV: the id to start after (empty: from the first), how many, base (the account's), then
-- the record's field names.
-- Derived keys: each number's record `base .. 'pn:' .. <id>`; it carries the account's tag.
-- Answers a list, per number still recorded: its id and its fields (false: absent).
-- A page of records, not the prelude's one string.
local from = '-'
if ARGV[1] ~= '' then from = '(' .. ARGV[1] end
local ids = redis.call('ZRANGE', KEYS[1], from, '+', 'BYLEX', 'LIMIT', 0, tonumber(ARGV[2]))
local names = {}
for i = 4, #ARGV do names[#names + 1] = ARGV[i] end
local out = {}
for _, id in ipairs(ids) do
  local fields = redis.call('HMGET', ARGV[3] .. 'pn:' .. id, unpack(names))
  if fields[1] then
    table.insert(fields, 1, id)
    out[#out + 1] = fields
  end
end
return out
