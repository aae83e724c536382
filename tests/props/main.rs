//! Property tests of the parsers that read attacker input: no input panics, every rejection is a
//! clean error, and formats with a round trip survive it.
