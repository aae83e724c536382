-- Sets when an account is next due, from what claiming found, unless it was signalled since
-- the worker read it (its generation moved): then it stays due. The generation is never
-- deleted, so it only grows.
--
-- KEYS: the due accounts, their generations (both under `{wh}`). ARGV: account, generation
-- read, next due ms or `-` (nothing queued).
-- Answers `parked` or `signalled`.
if (redis.call('HGET', KEYS[2], ARGV[1]) or '0') ~= ARGV[2] then return 'signalled' end
if ARGV[3] == '-' then
  redis.call('ZREM', KEYS[1], ARGV[1])
else
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
end
return 'parked'
