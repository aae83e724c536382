//! Property tests of the parsers that read attacker input: no input panics, every rejection is a
//! clean error, and formats with a round trip survive it. The fuzz targets in `fuzz/` run the
//! same parsers for minutes; these run in the normal suite, and `regressions` keeps every input
//! the fuzzers found.

mod http;
mod phone;
mod receipts;
mod regressions;
mod router;
mod sealed;
mod tokens;
mod webauthn;
