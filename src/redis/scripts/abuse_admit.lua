-- Admits one send or refuses it: the daily caps, the cool-downs, then the pumping guard's rules
-- with this send counted; an admitted send is counted. The twin of `admit_send` in
-- src/memory/abuse.rs and of the rules in src/abuse/guard.rs (same buckets, same arithmetic).
--
-- KEYS (one account's slot): the prefix's counters, the country's counters, the tracked index,
-- the cool-downs, today's counts.
-- ARGV (`admit_arguments` in src/redis/abuse.rs): now (ms), guarded (1/0) followed by how many
-- sends to count ahead (none: nothing follows; src/abuse/reserve.rs), country, prefix, the
-- minute (now / 60 000), the fewest sends at which the prefix's rules can trip and the same for
-- the country's, the daily caps `<overall> <per country>` (0: none), and the account's settings
-- as one text: the prefix's rules (min sends, min conversion percent, surge factor, surge min
-- sends, cool-down ms), the country's (the same five), entries tracked per account, the
-- counters' lifetime (ms), today's counts' lifetime (ms: until an hour after tomorrow ends), the
-- base of the account's abuse keys.
--
-- Why so packed: every argument costs Redis a parse, an object and a Lua string (a script
-- call with the 25 keys and arguments of the unpacked admission cost ~32 000 instructions more
-- than one with none, ~4 000 more than with these 14), and each `tonumber` is a libc strtod; the
-- steady state (the same minute, no cool-down running, no cap, fewer sends than the floors)
-- reads only texts and small counts, and the settings are split and read only by the branches
-- that need them (callgrind; loadtest/instructions).
--
-- Counters: a hash per prefix or country (abuse_window.lua, put before this file). The tracked
-- index (sorted set, members `p:<prefix>` and `c:<country>` by last count) bounds the entries per
-- account: past the bound the least recently counted is deleted (its key is `base .. member`).
-- Cool-downs: a hash `<member>` -> `<until> <country>`, read only while the country's counters
-- say one may run (`K`).
-- Today's counts: a hash `<country>` (the day's total is their sum), and `!*`/`!<country>` once a
-- cap refused.
--
-- luacheck: read globals advance
--
-- Sends counted ahead (`want`, at most): as many as the caps and the rules admit with every
-- count as it stands. Each rule only tightens as sends grow within the minute (approvals only
-- grow, the baseline holds), so the rule is judged once, at the last send counted ahead
-- (`room`), and a send counted ahead is one this script would have admitted then. None while a
-- cool-down runs in the country.
--
-- Replies: `admitted`, `admitted <sends counted ahead>`, or `refused <cap|pumping>
-- <account|country|prefix> <retry after ms> <started 1/0>`.
-- A refill (`1+<n>`: the flag, `+`, how many) counts only sends ahead, for a send that was
-- counted ahead already: it never refuses, and grants what the rules leave room for.
local guarded, country, prefix, minute_text = string.byte(ARGV[2]) == 49, ARGV[3], ARGV[4], ARGV[5]
local want, itself = 0, 1
if #ARGV[2] > 1 then
  if string.byte(ARGV[2], 2) == 43 then
    itself = 0
    want = tonumber(string.sub(ARGV[2], 3))
  else
    want = tonumber(string.sub(ARGV[2], 2))
  end
end
local prefix_key, country_key, index, blocks, today = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local now_cache = nil
local function clock()
  if not now_cache then now_cache = tonumber(ARGV[1]) end
  return now_cache
end
local settings = nil
-- The `i`-th word of the settings (ARGV[9]), as text.
local function setting(i)
  if not settings then
    settings = {}
    for word in string.gmatch(ARGV[9], '%S+') do settings[#settings + 1] = word end
  end
  return settings[i]
end
local PREFIX_RULES, COUNTRY_RULES, MAX_TRACKED, TTL, DAY_TTL, BASE = 1, 6, 11, 12, 13, 14
-- The minute each counters hash counts this send in (`advance` may hold it at its own),
-- and its state (`advance`'s last answer).
local country_at, prefix_at = minute_text, minute_text
local country_state, prefix_state = 'new', 'new'

-- The daily caps (read only when the account has one): the first refusal of a cap in a day
-- reports that it started.
local function capped(field, count, cap, scope)
  if cap > 0 and count >= cap then
    -- A refill at a cap: no more sends ahead.
    if itself == 0 then
      want = 0
      return nil
    end
    local started = redis.call('HSETNX', today, '!' .. field, '1')
    local retry_tomorrow = int((math.floor(clock() / 86400000) + 1) * 86400000 - clock())
    return words('refused', 'cap', scope, retry_tomorrow, started)
  end
end
if ARGV[8] ~= '0 0' then
  local total_text, country_text = string.match(ARGV[8], '^(%d+) (%d+)$')
  local cap_total, cap_country = tonumber(total_text), tonumber(country_text)
  local all = redis.call('HGETALL', today)
  local total, in_country = 0, 0
  for i = 1, #all, 2 do
    if string.sub(all[i], 1, 1) ~= '!' then
      local count = tonumber(all[i + 1])
      total = total + count
      if all[i] == country then in_country = count end
    end
  end
  local refusal = capped('*', total, cap_total, 'account')
    or capped(country, in_country, cap_country, 'country')
  if refusal then return refusal end
  if cap_total > 0 then want = math.min(want, cap_total - total - itself) end
  if cap_country > 0 then want = math.min(want, cap_country - in_country - itself) end
end

-- `src/abuse/guard.rs` `Thresholds::trips`, on the rules at settings `at .. at + 3`, with this
-- send counted in `sends`.
-- `floor`: the fewest sends at which either rule can trip (the steady state stops there).
local function trips(at, floor, sends, approvals, baseline)
  if itself == 0 then return false end
  sends = sends + 1
  if sends < tonumber(floor) then return false end
  local min_sends, min_conversion = tonumber(setting(at)), tonumber(setting(at + 1))
  local surge_factor, surge_min_sends = tonumber(setting(at + 2)), tonumber(setting(at + 3))
  return (sends >= min_sends and approvals * 100 < min_conversion * sends)
    or (sends >= surge_min_sends and sends * 24 > surge_factor * baseline)
end

-- How many of `want` sends after this one the rules at `at` admit, with this send counted in
-- `sends`: the most sends a rule leaves room for, less `sends` (each rule only tightens as sends
-- grow, so judging it at the last one judges them all).
local function room(at, floor, sends, approvals, baseline)
  sends = sends + itself
  if sends + want < tonumber(floor) then return want end
  local min_sends, min_conversion = tonumber(setting(at)), tonumber(setting(at + 1))
  local surge_factor, surge_min_sends = tonumber(setting(at + 2)), tonumber(setting(at + 3))
  local most = sends + want
  if min_conversion > 0 then most = math.max(min_sends - 1, math.floor(approvals * 100 / min_conversion)) end
  most = math.min(most, math.max(surge_min_sends - 1, math.floor(surge_factor * baseline / 24)))
  return math.max(0, math.min(want, most - sends))
end

-- Starts a cool-down of `member`; past the bound, finished ones go, then the one ending first.
-- The country's counters learn that one may run (`K`).
local function block(member, scope, cooldown, running_until)
  local now = clock()
  local max_tracked, ttl = tonumber(setting(MAX_TRACKED)), setting(TTL)
  local ends = now + cooldown
  redis.call('HSET', blocks, member, int(ends) .. ' ' .. country)
  if redis.call('HLEN', blocks) > max_tracked then
    local all = redis.call('HGETALL', blocks)
    local first, first_until, finished = nil, nil, {}
    for i = 1, #all, 2 do
      local until_ms = tonumber(string.match(all[i + 1], '^%d+'))
      if until_ms <= now then finished[#finished + 1] = all[i]
      elseif first_until == nil or until_ms < first_until then first, first_until = all[i], until_ms end
    end
    if #finished > 0 then redis.call('HDEL', blocks, unpack(finished))
    elseif first then redis.call('HDEL', blocks, first) end
  end
  redis.call('PEXPIRE', blocks, ttl)
  if ends > running_until then
    redis.call('HSET', country_key, 'K', int(ends))
    redis.call('PEXPIRE', country_key, ttl)
  end
  return words('refused', 'pumping', scope, int(cooldown), '1')
end

if guarded then
  local sends, approvals, baseline, running_until
  sends, approvals, baseline, country_at, country_state, running_until =
    advance(country_key, minute_text)
  if running_until > 0 and running_until > clock() then
    want = 0
    local now = clock()
    local running = redis.call('HMGET', blocks, 'c:' .. country, 'p:' .. prefix)
    for i, scope in ipairs({'country', 'prefix'}) do
      local ends = running[i] and tonumber(string.match(running[i], '^%d+'))
      if ends and ends > now then
        if itself == 0 then break end
        return words('refused', 'pumping', scope, int(ends - now), '0')
      end
    end
  end
  if trips(COUNTRY_RULES, ARGV[7], sends, approvals, baseline) then
    return block('c:' .. country, 'country', tonumber(setting(COUNTRY_RULES + 4)), running_until)
  end
  if want > 0 then want = room(COUNTRY_RULES, ARGV[7], sends, approvals, baseline) end
  sends, approvals, baseline, prefix_at, prefix_state = advance(prefix_key, minute_text)
  if trips(PREFIX_RULES, ARGV[6], sends, approvals, baseline) then
    return block('p:' .. prefix, 'prefix', tonumber(setting(PREFIX_RULES + 4)), running_until)
  end
  if want > 0 then want = room(PREFIX_RULES, ARGV[6], sends, approvals, baseline) end
end

local counted = itself + want
if counted == 0 then return 'admitted' end
if redis.call('HINCRBY', today, country, counted) == counted then
  redis.call('PEXPIRE', today, setting(DAY_TTL))
end
if guarded then
  -- Counts the send in `key`'s minute `at`. Once a minute (or when new) it also tracks `member`
  -- (bounded; recency to the minute) and renews the key's lifetime.
  local function count(key, member, at, state)
    redis.call('HINCRBY', key, 'm' .. at, counted)
    if state == 'same' then return end
    local now, max_tracked, ttl = clock(), tonumber(setting(MAX_TRACKED)), setting(TTL)
    if state == 'new' then redis.call('HSET', key, 'W', at) end
    redis.call('PEXPIRE', key, ttl)
    if redis.call('ZADD', index, ARGV[1], member) == 1 and redis.call('ZCARD', index) > max_tracked then
      redis.call('ZREMRANGEBYSCORE', index, '-inf', now - tonumber(ttl))
      while redis.call('ZCARD', index) > max_tracked do
        local oldest = redis.call('ZRANGE', index, 0, 1)
        local evicted = oldest[1]
        if evicted == member then evicted = oldest[2] end
        redis.call('ZREM', index, evicted)
        redis.call('DEL', setting(BASE) .. evicted)
      end
    end
    redis.call('PEXPIRE', index, ttl)
  end
  count(country_key, 'c:' .. country, country_at, country_state)
  count(prefix_key, 'p:' .. prefix, prefix_at, prefix_state)
end
if want > 0 then return 'admitted ' .. int(want) end
return 'admitted'
