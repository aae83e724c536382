-- Send then check, wrk variant: each thread alternates a send to a fresh number with a check by
-- number of one it sent LAG sends earlier (long answered by then), always with
-- a wrong code: wrk cannot read codes from the sink. One send per check; loadtest/send_check.js
-- (k6) does the realistic flow with the right code and ~20 % wrong codes first.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

local LAG = 1000
local sent, first, turn

function init(args)
  common.headers()
  first = tonumber(os.getenv("SEND_BASE") or "60000000") + 10000000 * (thread_index or 0)
    + (os.getenv("WRK_WARMUP") and 5000000 or 0)
  sent = 0
  turn = 0
end

function request()
  turn = turn + 1
  if turn % 2 == 1 or sent <= LAG then
    sent = sent + 1
    return wrk.format("POST", "/v1/verifications", nil,
      string.format('{"to":"+49151%08d"}', first + sent))
  end
  return wrk.format("POST", "/v1/verifications/check", nil,
    string.format('{"to":"+49151%08d","code":"000000"}', first + sent - LAG))
end
