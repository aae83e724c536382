-- The pumping guard's counters of one prefix or country (a hash), shared by abuse_admit.lua and
-- abuse_approve.lua (src/redis/abuse.rs puts this file before each). The twin of `Counters` in
-- src/abuse/guard.rs.
--
-- Fields: `m<minute>` sends and `a<minute>` approvals, kept for the minutes W-59..W; `h<hour>`
-- sends of a whole hour, for the hours H-24..H-1; `S` and `A` the sends and approvals of the
-- minutes W-59..W-1 (the current minute W left out, so that a send or an approval writes one
-- field, its minute's); `B` the sends of the hours H-24..H-1; `W` the minute they are at (H, the
-- hour, is W's); on a country's hash `K`, the end of the latest cool-down started in that country
-- (of the country or of one of its prefixes: admit_send reads the cool-downs only while one may
-- run). An hour's `h` is derived from its minutes when the hash moves past it (its minutes are
-- all still kept then), never written per send. Counts are only ever written at W (after
-- `advance`). A caller's clock behind W (another instance's) counts in W's bucket.
-- luacheck: ignore 211

-- The hash moved to the minute `minute_text` (the caller's, as text: `now` / 60 000; never
-- back), what left the windows deleted. One HMGET when the minute is the same; once a minute,
-- one more HMGET, an HDEL and an HSET. Answers the sends, approvals and baseline there, the
-- minute to count in (as text), whether the hash is `new` (nothing counted yet), `moved` (to a
-- later minute) or the `same`, and `K` (0: none). The same minute is told by comparing texts
-- and the sums are read only as far as they are needed: every `tonumber` is a libc strtod, and
-- they were the largest part of an admission's instructions in Redis (callgrind).
local function advance(key, minute_text)
  local f = redis.call('HMGET', key, 'S', 'A', 'W', 'B', 'K', 'm' .. minute_text, 'a' .. minute_text)
  local blocked = 0
  if f[5] then blocked = tonumber(f[5]) end
  if not f[3] then return 0, 0, 0, minute_text, 'new', blocked end
  local sends, approvals = tonumber(f[1] or '0'), tonumber(f[2] or '0')
  local baseline = tonumber(f[4] or '0')
  if f[3] == minute_text then
    if f[6] then sends = sends + tonumber(f[6]) end
    if f[7] then approvals = approvals + tonumber(f[7]) end
    return sends, approvals, baseline, minute_text, 'same', blocked
  end
  local minute, at = tonumber(minute_text), tonumber(f[3])
  if minute < at then
    local now = redis.call('HMGET', key, 'm' .. int(at), 'a' .. int(at))
    return sends + tonumber(now[1] or '0'), approvals + tonumber(now[2] or '0'), baseline, f[3],
      'same', blocked
  end
  local hour, at_hour = math.floor(minute / 60), math.floor(at / 60)
  -- Every kept minute (at-59..at), and, when the hour moves, the hours that may stay in the
  -- baseline: one read.
  local fields = {}
  for k = at - 59, at do
    fields[#fields + 1] = 'm' .. int(k)
    fields[#fields + 1] = 'a' .. int(k)
  end
  local moved_hour = hour > at_hour
  if moved_hour then
    for k = hour - 24, hour - 1 do fields[#fields + 1] = 'h' .. int(k) end
  end
  local counts = redis.call('HMGET', key, unpack(fields))
  local gone = {}
  sends, approvals = 0, 0
  local hour_sends = 0
  for i = 0, 59 do
    local k = at - 59 + i
    local s, a = tonumber(counts[2 * i + 1] or '0'), tonumber(counts[2 * i + 2] or '0')
    if k <= minute - 60 then
      gone[#gone + 1] = 'm' .. int(k)
      gone[#gone + 1] = 'a' .. int(k)
    else
      sends, approvals = sends + s, approvals + a
    end
    if k >= at_hour * 60 then hour_sends = hour_sends + s end
  end
  local update = {'S', sends, 'A', approvals, 'W', minute_text}
  if moved_hour then
    -- The baseline afresh: the kept hours of H-24..H-1, with the hour just left derived.
    baseline = 0
    for i = 1, 24 do
      local k = hour - 25 + i
      if k == at_hour then
        baseline = baseline + hour_sends
      else
        baseline = baseline + tonumber(counts[120 + i] or '0')
      end
    end
    if at_hour >= hour - 24 and hour_sends > 0 then
      update[#update + 1] = 'h' .. int(at_hour)
      update[#update + 1] = hour_sends
    end
    -- Hours at_hour-24 .. hour-25 leave the baseline.
    for k = at_hour - 24, math.min(hour - 25, at_hour - 1) do gone[#gone + 1] = 'h' .. int(k) end
  end
  update[#update + 1] = 'B'
  update[#update + 1] = baseline
  if #gone > 0 then redis.call('HDEL', key, unpack(gone)) end
  redis.call('HSET', key, unpack(update))
  return sends, approvals, baseline, minute_text, 'moved', blocked
end
