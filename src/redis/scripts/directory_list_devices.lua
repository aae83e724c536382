-- A user's trusted devices as stored (bounded per user by `max_devices`).
--
-- KEYS: the user's devices (hash: device id -> `<digest hex>:<expires>`). ARGV: base.
-- Derived keys: each device's record `base .. 'd:' .. <digest>`; it carries the account's tag.
-- Answers a list, per device still recorded: id, user, created, expires, epoch.
-- A page of records, not the prelude's one string.
local out = {}
for _, value in ipairs(redis.call('HVALS', KEYS[1])) do
  local record = redis.call('HMGET', ARGV[1] .. 'd:' .. digest_of(value), 'id', 'u', 'cr', 'ex', 'ep')
  if record[1] then out[#out + 1] = record end
end
return out
