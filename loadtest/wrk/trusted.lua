-- Trusted-device check: POST /v1/trusted-devices/check {"user","device_token"}, rotating through
-- the pairs loadtest/run set up through the API (users with phones, a verification each checked
-- to approval, then a device trusted on it). TRUSTED_FILE: one "user token" pair per line. Every
-- answer should be 200 with "trusted":true; wrk counts the non-2xx ones, and loadtest/run counts
-- the untrusted ones from otpgate's own otpgate_trusted_device_checks_total (reading the bodies
-- here would cost the load generator CPU on the same two cores).
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

local bodies, position

function init(args)
  common.headers()
  bodies = {}
  for _, line in ipairs(common.lines(os.getenv("TRUSTED_FILE"))) do
    local user, token = line:match("^(%S+)%s+(%S+)$")
    assert(user and token, "TRUSTED_FILE: expected 'user token', got: " .. line)
    bodies[#bodies + 1] = '{"user":"' .. user .. '","device_token":"' .. token .. '"}'
  end
  -- Threads start at different places so they do not march over the same pairs in step.
  position = math.floor(#bodies * (thread_index or 0) / 2)
end

function request()
  position = position % #bodies + 1
  return wrk.format("POST", "/v1/trusted-devices/check", nil, bodies[position])
end
