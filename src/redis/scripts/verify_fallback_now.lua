-- Brings a workflow's fallback forward: the message ARGV[2] failed (no provider took it, or its
-- provider reported it undelivered), so when it is the current step's message and the step is
-- waiting for its timeout, the step is due now (src/verify/workflow.rs).
--
-- KEYS: the verification's workflow hash (`P:{sNN}:w:<id>`), the shard's due set.
-- ARGV: the verification id, the message id, now.
-- Answers `due` when it moved the step, else `unchanged`.
local current = redis.call('HGET', KEYS[1], 'wi')
if not current then return 'unchanged' end
local step = redis.call('HGET', KEYS[1], 'w' .. current) or ''
if string.match(step, '^%S+ (%S+)') ~= ARGV[2] then return 'unchanged' end
local due = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not due or tonumber(due) <= tonumber(ARGV[3]) then return 'unchanged' end
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return 'due'
