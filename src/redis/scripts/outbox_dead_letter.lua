-- Gives up on a message: it moves, with its reasons, to the shard's dead-letter stream.
--
-- KEYS: stream, dead-letter stream. ARGV: group, entry id, verification id, sealed, reasons,
-- deliveries.
-- Answers `dead`.
redis.call('XADD', KEYS[2], 'MAXLEN', '~', '100000', '*',
  'v', ARGV[3], 'm', ARGV[4], 'reasons', ARGV[5], 'deliveries', ARGV[6])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
return 'dead'
