-- luacheck settings for the Redis scripts (src/redis/scripts/), run by scripts/test.
-- Redis runs scripts on Lua 5.1 with these globals.
std = "lua51"
read_globals = { "KEYS", "ARGV", "redis", "cjson", "cmsgpack", "struct", "bit" }
max_line_length = 120

-- src/redis/script.rs prepends prelude.lua to every script: the other files see its locals.
files["src/redis/scripts"] = {
  read_globals = {
    "words", "int", "backoff", "limits_from", "wait_after", "attempts_left", "locks",
    "RECORD", "FINAL_TAG", "unpack_verification", "load_verification", "pack_verification",
    "answer", "find_attempt", "attempt_field", "ATTEMPT", "with_attempt", "POINTER", "pointer_of",
    "release", "workflow_of",
    "audit", "digest_of", "forget_devices",
    "NUMBER_FIELDS", "load_number",
    "lock_held", "count_wrong", "pending_room",
  },
}
-- Each script uses some of the prelude's helpers, none uses all.
files["src/redis/scripts/prelude.lua"] = { ignore = { "211" } }
