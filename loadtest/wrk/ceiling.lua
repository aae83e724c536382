-- The ceilings (bare server, EVALSHA server): the same POST a check sends, with a static body.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

wrk.method = "POST"
wrk.path = "/v1/verifications/check"
wrk.body = '{"id":"VE00000000000000000000000000000000","code":"000000"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer ogk_ceiling_runs_ignore_this_key_0000000000000"
