-- Check-heavy: POST /v1/verifications/check with a wrong code, rotating through the seeded ids.
-- IDS_FILE: one verification id per line. With max_check_attempts set very high every request runs
-- the whole check script (compare, count, reply) and the verification stays pending.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

local ids, position

function init(args)
  common.headers()
  ids = common.lines(os.getenv("IDS_FILE"))
  -- Threads start at different places so they do not march over the same ids in step.
  position = math.floor(#ids * (thread_index or 0) / 2)
end

function request()
  position = position % #ids + 1
  return wrk.format("POST", "/v1/verifications/check", nil,
    '{"id":"' .. ids[position] .. '","code":"000000"}')
end
