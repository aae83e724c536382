//! The lockout back-off, written once: how wrong attempts in a row are limited (PINs,
//! authenticator codes, recovery codes) and how long a caller then waits. Its Lua twins are
//! `backoff`, `wait_after`, `attempts_left` and `locks` in `src/redis/scripts/prelude.lua`; the
//! two must answer alike, so that the memory and the Redis stores lock out the same way.

/// How wrong attempts in a row are limited, in milliseconds. The first `free_attempts` wrong
/// ones are answered without a wait; the one that uses them up starts a wait of
/// `first_wait_ms`, and from then on every `attempts_per_wait`-th further one starts a wait
/// twice as long as the last, at most `max_wait_ms`. PINs allow one attempt per wait once the
/// free ones are spent; authenticator and recovery codes allow a fresh round of
/// `free_attempts` after each wait ([`AttemptLimits::in_rounds`]). `lock_after` wrong attempts
/// in a row lock until the owner acts (PINs); without it the waits go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptLimits {
    pub free_attempts: u32,
    pub attempts_per_wait: u32,
    pub first_wait_ms: u64,
    pub max_wait_ms: u64,
    pub lock_after: Option<u32>,
}

impl AttemptLimits {
    /// Rounds of `per_round` wrong attempts, a wait after each (doubling), never a lock.
    pub fn in_rounds(per_round: u32, first_wait_ms: u64, max_wait_ms: u64) -> Self {
        Self {
            free_attempts: per_round,
            attempts_per_wait: per_round,
            first_wait_ms,
            max_wait_ms,
            lock_after: None,
        }
    }

    /// The wait the `failures`-th wrong attempt in a row starts (0: none).
    pub fn wait_after(&self, failures: u32) -> u64 {
        let (free, per) = self.counts();
        if failures < free || !(failures - free).is_multiple_of(per) {
            return 0;
        }
        backoff_ms(
            self.first_wait_ms,
            (failures - free) / per,
            self.max_wait_ms,
        )
    }

    /// The wrong attempts left before the next wait, after `failures` in a row (after one that
    /// started a wait: the attempts that wait lets through).
    pub fn attempts_left(&self, failures: u32) -> u32 {
        let (free, per) = self.counts();
        if failures < free {
            free - failures
        } else {
            per - (failures - free) % per
        }
    }

    /// Whether `failures` wrong attempts in a row lock until the owner acts.
    pub fn locks(&self, failures: u32) -> bool {
        self.lock_after.is_some_and(|max| failures >= max)
    }

    /// The free attempts and the attempts per wait, at least one each.
    fn counts(&self) -> (u32, u32) {
        (self.free_attempts.max(1), self.attempts_per_wait.max(1))
    }
}

/// `first_wait_ms` doubled `doublings` times, at most `max_wait_ms`. Doublings stop at 62, the
/// last shift a u64 holds (the Lua twin stops there too); far before that the wait is capped.
pub fn backoff_ms(first_wait_ms: u64, doublings: u32, max_wait_ms: u64) -> u64 {
    first_wait_ms
        .saturating_mul(1u64 << doublings.min(62))
        .min(max_wait_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_doubles_up_to_its_cap() {
        assert_eq!(backoff_ms(30_000, 0, 3_600_000), 30_000);
        assert_eq!(backoff_ms(30_000, 3, 3_600_000), 240_000);
        assert_eq!(backoff_ms(30_000, 7, 3_600_000), 3_600_000);
        assert_eq!(backoff_ms(30_000, u32::MAX, 3_600_000), 3_600_000);
        assert_eq!(backoff_ms(0, 100, 3_600_000), 0);
    }

    #[test]
    fn rounds_wait_after_each_and_double_up_to_the_cap() {
        let limits = AttemptLimits::in_rounds(5, 30_000, 100_000);
        let after = |failures| (limits.attempts_left(failures), limits.wait_after(failures));
        assert_eq!(after(1), (4, 0));
        assert_eq!(after(4), (1, 0));
        assert_eq!(after(5), (5, 30_000));
        assert_eq!(after(6), (4, 0));
        assert_eq!(after(10), (5, 60_000));
        assert_eq!(after(15), (5, 100_000));
        assert_eq!(after(500), (5, 100_000));
        assert!(!limits.locks(500));
    }

    #[test]
    fn one_attempt_per_wait_waits_after_every_failure_past_the_free_ones() {
        let limits = AttemptLimits {
            free_attempts: 3,
            attempts_per_wait: 1,
            first_wait_ms: 30_000,
            max_wait_ms: 3_600_000,
            lock_after: Some(10),
        };
        let waits: Vec<u64> = (0..=10).map(|f| limits.wait_after(f) / 1000).collect();
        assert_eq!(waits, [0, 0, 0, 30, 60, 120, 240, 480, 960, 1920, 3600]);
        assert!(!limits.locks(9));
        assert!(limits.locks(10));
    }
}
