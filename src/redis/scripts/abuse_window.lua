-- The pumping guard's counters of one prefix or country (a hash), shared by abuse_admit.lua and
-- abuse_approve.lua (src/redis/abuse.rs puts this file before each). The twin of `Counters` in
-- src/abuse/guard.rs.
--
-- Buckets: `m<minute>` sends and `a<minute>` approvals, `h<hour>` sends. Running sums, so that a
-- send reads five fields rather than the whole hash: `S` and `A` the sends and approvals of the
-- minutes W-59..W, `B` the sends of the hours H-24..H-1, `W` and `H` the minute and hour they are
-- at. Counts are only ever written at W and H (after `advance`), so no bucket outside those
-- windows holds anything but what `advance` deletes as it moves. A caller's clock behind W (another
-- instance's) counts in W's bucket.
-- luacheck: ignore 211

-- The sums moved to `minute` and `hour` (never back), the buckets that left them deleted.
-- Answers the sends, approvals and baseline there, the minute and hour to count in, and whether
-- the hash is `new` (nothing counted yet), `moved` (to a later minute) or the `same`.
local function advance(key, minute, hour)
  local f = redis.call('HMGET', key, 'S', 'A', 'W', 'B', 'H')
  if not f[3] then return 0, 0, 0, minute, hour, 'new' end
  local sends, approvals, at = tonumber(f[1] or '0'), tonumber(f[2] or '0'), tonumber(f[3])
  local baseline, at_hour = tonumber(f[4] or '0'), tonumber(f[5])
  if minute <= at and hour <= at_hour then return sends, approvals, baseline, at, at_hour, 'same' end
  minute, hour = math.max(minute, at), math.max(hour, at_hour)
  local gone = {}
  -- Minutes at-59 .. minute-60 leave the window.
  for k = at - 59, math.min(minute - 60, at) do
    gone[#gone + 1] = 'm' .. int(k)
    gone[#gone + 1] = 'a' .. int(k)
  end
  local minutes = #gone
  -- Hours at_hour-24 .. hour-25 leave the baseline; at_hour enters it, or leaves too.
  for k = at_hour - 24, math.min(hour - 25, at_hour - 1) do gone[#gone + 1] = 'h' .. int(k) end
  if hour > at_hour then gone[#gone + 1] = 'h' .. int(at_hour) end
  if #gone > 0 then
    local counts = redis.call('HMGET', key, unpack(gone))
    for i = 1, minutes, 2 do
      sends = sends - tonumber(counts[i] or '0')
      approvals = approvals - tonumber(counts[i + 1] or '0')
    end
    local last = #gone
    if hour > at_hour then
      last = last - 1
      if at_hour >= hour - 24 then
        baseline = baseline + tonumber(counts[#gone] or '0')
        gone[#gone] = nil
      end
    end
    for i = minutes + 1, last do baseline = baseline - tonumber(counts[i] or '0') end
    if #gone > 0 then redis.call('HDEL', key, unpack(gone)) end
  end
  redis.call('HSET', key, 'S', sends, 'A', approvals, 'W', int(minute), 'B', baseline, 'H', int(hour))
  return sends, approvals, baseline, minute, hour, 'moved'
end
