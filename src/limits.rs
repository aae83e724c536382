//! In-process flood guards (governor) per client IP and per API key.
//!
//! These protect one instance from a flood; they are not the security limits. Quotas that must
//! hold across instances (sends per number, check attempts) are counted in the store.

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};

use crate::account::KeyDigest;
use crate::config::LimitSettings;

type Keyed<K> = RateLimiter<K, DashMapStateStore<K>, DefaultClock>;

pub struct Limits {
    per_ip: Keyed<IpAddr>,
    per_key: Keyed<KeyDigest>,
    failed_auth: Keyed<IpAddr>,
    clock: DefaultClock,
}

/// Refused: come back after this long (rounded up to whole seconds for `Retry-After`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub Duration);

impl RetryAfter {
    pub fn seconds(self) -> u64 {
        self.0.as_millis().div_ceil(1000).max(1) as u64
    }
}

fn quota(per_second: u32) -> Quota {
    // Config validation holds every rate above zero; a burst of one second's worth.
    Quota::per_second(NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN))
}

impl Limits {
    pub fn new(settings: &LimitSettings) -> Self {
        Self {
            per_ip: RateLimiter::dashmap(quota(settings.per_ip_per_second)),
            per_key: RateLimiter::dashmap(quota(settings.per_key_per_second)),
            failed_auth: RateLimiter::dashmap(quota(settings.failed_auth_per_ip_per_second)),
            clock: DefaultClock::default(),
        }
    }

    pub fn check_ip(&self, ip: IpAddr) -> Result<(), RetryAfter> {
        self.check(&self.per_ip, &ip)
    }

    /// Keyed by the key's digest: a fixed-size copy, no allocation per request.
    pub fn check_key(&self, key: &KeyDigest) -> Result<(), RetryAfter> {
        self.check(&self.per_key, key)
    }

    /// Counts a request with a missing or wrong key against its IP.
    pub fn check_failed_auth(&self, ip: IpAddr) -> Result<(), RetryAfter> {
        self.check(&self.failed_auth, &ip)
    }

    fn check<K: Hash + Eq + Clone>(&self, limiter: &Keyed<K>, key: &K) -> Result<(), RetryAfter> {
        limiter
            .check_key(key)
            .map_err(|not_until| RetryAfter(not_until.wait_time_from(self.clock.now())))
    }

    /// Forgets keys whose quota has fully replenished. The quotas refill within a second, so after a
    /// sweep the maps hold only keys seen in the last second: memory (about 100 bytes a key) stays
    /// bounded by the request rate, even under a flood of distinct addresses.
    pub fn sweep(&self) {
        sweep(&self.per_ip);
        sweep(&self.per_key);
        sweep(&self.failed_auth);
    }
}

fn sweep<K: Hash + Eq + Clone>(limiter: &Keyed<K>) {
    limiter.retain_recent();
    limiter.shrink_to_fit();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(per_second: u32) -> LimitSettings {
        LimitSettings {
            send_per_number: 5,
            send_per_number_window: Duration::from_secs(600),
            per_ip_per_second: per_second,
            per_key_per_second: per_second,
            failed_auth_per_ip_per_second: per_second,
        }
    }

    #[test]
    fn an_ip_over_its_rate_is_refused_with_a_retry_after() {
        let limits = Limits::new(&settings(3));
        let ip: IpAddr = [10, 0, 0, 1].into();
        for _ in 0..3 {
            limits.check_ip(ip).unwrap();
        }
        let refused = limits.check_ip(ip).unwrap_err();
        assert_eq!(refused.seconds(), 1);
        limits
            .check_ip([10, 0, 0, 2].into())
            .expect("another IP has its own quota");
    }

    #[test]
    fn keys_are_limited_independently() {
        let limits = Limits::new(&settings(1));
        limits.check_key(&[1; 32]).unwrap();
        assert!(limits.check_key(&[1; 32]).is_err());
        limits.check_key(&[2; 32]).unwrap();
    }
}
