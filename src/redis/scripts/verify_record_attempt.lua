-- Records one message's delivery state in its verification's record.
--
-- KEYS: the record. ARGV: the attempt's field, its packed value (see `pack_attempt`).
-- A record already gone (retention over) takes no attempt: answers `gone`, else `recorded`.
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  return 'recorded'
end
return 'gone'
