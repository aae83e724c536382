-- Makes an account due (at the given time, or earlier if it already is) and moves its
-- generation, so that a worker that read it before parks nothing over this signal.
--
-- KEYS: the due accounts, their generations (both under `{wh}`). ARGV: account, due ms.
-- Answers `signalled`.
redis.call('ZADD', KEYS[1], 'LT', ARGV[2], ARGV[1])
redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
return 'signalled'
