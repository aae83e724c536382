-- Records one message's delivery state in its verification's record (`find_attempt`).
--
-- KEYS: the record. ARGV: the attempt's field, its packed value (see `pack_attempt`).
-- A record already gone (retention over) takes no attempt: answers `gone`, else `recorded`.
-- One write either way: SET of the record with the pair replaced or appended, keeping its TTL.
local v = load_verification(KEYS[1])
if not v then return 'gone' end
redis.call('SET', KEYS[1], with_attempt(v, ARGV[1], ARGV[2]), 'KEEPTTL')
return 'recorded'
