-- One page of an account's users, in the order of their ids.
--
-- KEYS: users by id (sorted set, every score 0), users (set).
-- ARGV: the id to start after (empty: from the first), how many, base (the account's).
--
-- Users written before the sorted set existed are only in the set: the first listing that
-- finds the set larger copies it over (once; bounded by the account's users).
-- Derived keys: each user's record `base .. 'u:' .. <id>`; it carries the account's hash tag.
-- Answers a list, per user: its id and its fields ro ph ov ob fa cr up v ep em (false: absent).
-- A page of records, not the prelude's one string: fields may be empty.
if redis.call('ZCARD', KEYS[1]) < redis.call('SCARD', KEYS[2]) then
  for _, id in ipairs(redis.call('SMEMBERS', KEYS[2])) do
    redis.call('ZADD', KEYS[1], 0, id)
  end
end
local from = '-'
if ARGV[1] ~= '' then from = '(' .. ARGV[1] end
local ids = redis.call('ZRANGE', KEYS[1], from, '+', 'BYLEX', 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, id in ipairs(ids) do
  local fields = redis.call('HMGET', ARGV[3] .. 'u:' .. id,
    'ro', 'ph', 'ov', 'ob', 'fa', 'cr', 'up', 'v', 'ep', 'em')
  table.insert(fields, 1, id)
  out[#out + 1] = fields
end
return out
