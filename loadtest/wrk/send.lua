-- Send (enqueue only): POST /v1/verifications to German mobile numbers (+49151 and 8 digits).
-- Default: every request a number not used before in this run (SEND_BASE, default 20000000, plus
-- 10 000 000 per thread, plus 5 000 000 in the warm-up run), so each one creates a verification.
-- At most 4 threads keep the numbers within 8 digits. NUMBERS_FILE: rotate through these numbers
-- instead (the soak does this: resends to a bounded set keep Redis memory bounded).
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

local numbers, position, next_number

function init(args)
  common.headers()
  local file = os.getenv("NUMBERS_FILE")
  if file and #file > 0 then
    numbers = common.lines(file)
    position = math.floor(#numbers * (thread_index or 0) / 2)
  else
    next_number = tonumber(os.getenv("SEND_BASE") or "20000000") + 10000000 * (thread_index or 0)
    + (os.getenv("WRK_WARMUP") and 5000000 or 0)
  end
end

function request()
  local to
  if numbers then
    position = position % #numbers + 1
    to = numbers[position]
  else
    next_number = next_number + 1
    to = string.format("+49151%08d", next_number)
  end
  return wrk.format("POST", "/v1/verifications", nil, '{"to":"' .. to .. '"}')
end
