//! The lockout back-off, written once: how long a caller waits after wrong attempts (PINs,
//! authenticator codes, recovery codes). Its Lua twin is `backoff` in
//! `src/redis/scripts/prelude.lua`; the two must answer alike, so that the memory and the Redis
//! stores lock out the same way.

/// `first_wait_ms` doubled `doublings` times, at most `max_wait_ms`. Doublings stop at 62, the
/// last shift a u64 holds (the Lua twin stops there too); far before that the wait is capped.
pub fn backoff_ms(first_wait_ms: u64, doublings: u32, max_wait_ms: u64) -> u64 {
    first_wait_ms
        .saturating_mul(1u64 << doublings.min(62))
        .min(max_wait_ms)
}

#[cfg(test)]
mod tests {
    use super::backoff_ms;

    #[test]
    fn the_wait_doubles_up_to_its_cap() {
        assert_eq!(backoff_ms(30_000, 0, 3_600_000), 30_000);
        assert_eq!(backoff_ms(30_000, 3, 3_600_000), 240_000);
        assert_eq!(backoff_ms(30_000, 7, 3_600_000), 3_600_000);
        assert_eq!(backoff_ms(30_000, u32::MAX, 3_600_000), 3_600_000);
        assert_eq!(backoff_ms(0, 100, 3_600_000), 0);
    }
}
