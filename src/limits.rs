//! In-process flood guards: request rates (governor) per client IP and per API key, and the caps
//! on open connections per process and per client IP.
//!
//! These protect one instance from a flood; they are not the security limits. Quotas that must
//! hold across instances (sends per number, check attempts) are counted in the store.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use foldhash::fast::RandomState;

use governor::clock::{Clock as _, DefaultClock};
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};

use crate::account::KeyDigest;

type Keyed<K> = RateLimiter<K, DashMapStateStore<K>, DefaultClock>;

/// `[limits]`: request rates per number, client address and key.
#[derive(Debug, Clone)]
pub struct LimitSettings {
    pub send_per_number: u32,
    pub send_per_number_window: Duration,
    pub per_ip_per_second: u32,
    pub per_key_per_second: u32,
    pub failed_auth_per_ip_per_second: u32,
}

pub struct Limits {
    per_ip: Keyed<IpAddr>,
    per_key: Keyed<KeyDigest>,
    failed_auth: Keyed<IpAddr>,
    /// Addresses the failed-authentication limiter refused, until its quota refills: checked
    /// before a key is looked up, so that a flood of wrong keys costs no store read once limited.
    failed_auth_blocked: DashMap<IpAddr, Instant, RandomState>,
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
            failed_auth_blocked: DashMap::with_hasher(RandomState::default()),
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
        let refused = self.check(&self.failed_auth, &ip);
        if let Err(retry) = refused {
            self.failed_auth_blocked
                .insert(ip, Instant::now() + retry.0);
        }
        refused
    }

    /// Whether `ip` is still refused for failed authentications: read before any key lookup, and
    /// counts nothing (a limited address does not dig itself deeper by waiting).
    pub fn failed_auth_limited(&self, ip: IpAddr) -> Result<(), RetryAfter> {
        let Some(until) = self.failed_auth_blocked.get(&ip).map(|until| *until) else {
            return Ok(());
        };
        match until.checked_duration_since(Instant::now()) {
            Some(left) if !left.is_zero() => Err(RetryAfter(left)),
            _ => {
                self.failed_auth_blocked
                    .remove_if(&ip, |_, until| *until <= Instant::now());
                Ok(())
            }
        }
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
        let now = Instant::now();
        self.failed_auth_blocked.retain(|_, until| *until > now);
        self.failed_auth_blocked.shrink_to_fit();
    }
}

/// The caps on open connections: one count per process and one per client address. A slot is
/// taken at accept, before any byte is read, and given back when the connection's task ends.
pub struct ConnectionLimits {
    max_total: usize,
    max_per_ip: usize,
    open: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize, RandomState>>,
}

/// Which cap refused a connection (the metric's `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionRefused {
    Process,
    Ip,
}

impl ConnectionRefused {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionRefused::Process => "process",
            ConnectionRefused::Ip => "ip",
        }
    }
}

/// One admitted connection; dropping it frees its place under both caps.
pub struct ConnectionSlot {
    limits: Arc<ConnectionLimits>,
    ip: IpAddr,
}

impl ConnectionLimits {
    pub fn new(max_total: usize, max_per_ip: usize) -> Arc<Self> {
        Arc::new(Self {
            max_total,
            max_per_ip,
            open: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::with_hasher(RandomState::default())),
        })
    }

    pub fn max_total(&self) -> usize {
        self.max_total
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Takes a place for a connection from `ip`, or says which cap is full.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionSlot, ConnectionRefused> {
        // Only the accept loop admits, so the process count cannot overshoot between the load
        // and the add; the per-address map is under its lock.
        if self.open.load(Ordering::Relaxed) >= self.max_total {
            return Err(ConnectionRefused::Process);
        }
        {
            let mut per_ip = self.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
            let count = per_ip.entry(ip).or_insert(0);
            if *count >= self.max_per_ip {
                return Err(ConnectionRefused::Ip);
            }
            *count += 1;
        }
        self.open.fetch_add(1, Ordering::Relaxed);
        Ok(ConnectionSlot {
            limits: Arc::clone(self),
            ip,
        })
    }
}

impl ConnectionSlot {
    /// Gives the place back: how many connections are open after.
    pub fn release(self) -> usize {
        let limits = Arc::clone(&self.limits);
        drop(self);
        limits.open()
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.limits.open.fetch_sub(1, Ordering::Relaxed);
        let mut per_ip = self
            .limits
            .per_ip
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = per_ip.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                // Forget the address: the map holds only addresses with open connections.
                per_ip.remove(&self.ip);
            }
        }
    }
}

/// The process's connection cap: `configured` when set, else derived from the soft limit on open
/// file descriptors, leaving an eighth of it (at least 64, at most 1024) for Redis connections,
/// provider and mail clients, log files and the listener itself.
pub fn connection_cap(configured: usize) -> usize {
    if configured > 0 {
        return configured;
    }
    match open_file_limit() {
        Some(limit) => cap_for_fd_limit(limit),
        // Not knowable here (not Unix): a cap well above any single-host load test.
        None => 16_384,
    }
}

fn cap_for_fd_limit(limit: u64) -> usize {
    let headroom = (limit / 8).clamp(64, 1024);
    // An unlimited soft limit still gets a finite cap: memory runs out long before.
    usize::try_from(limit.saturating_sub(headroom).clamp(1, 1_000_000)).unwrap_or(1_000_000)
}

/// The soft `RLIMIT_NOFILE`: how many descriptors this process may hold open.
#[cfg(unix)]
fn open_file_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one plain struct that we own and reads nothing else.
    let status = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    // rlim_t is u64 on Linux and macOS, signed on some BSDs (where a negative value is no
    // limit, which the cap then treats as unknown).
    #[allow(clippy::useless_conversion)]
    let soft = u64::try_from(limit.rlim_cur).ok();
    soft.filter(|_| status == 0)
}

#[cfg(not(unix))]
fn open_file_limit() -> Option<u64> {
    None
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
    fn an_address_refused_for_failed_authentications_stays_limited_until_its_quota_refills() {
        let limits = Limits::new(&settings(2));
        let ip: IpAddr = [10, 0, 0, 9].into();
        limits.failed_auth_limited(ip).expect("not limited yet");
        limits.check_failed_auth(ip).unwrap();
        limits.check_failed_auth(ip).unwrap();
        limits
            .failed_auth_limited(ip)
            .expect("two failures are within the rate");
        assert!(limits.check_failed_auth(ip).is_err());
        let left = limits.failed_auth_limited(ip).unwrap_err();
        assert!(left.0 <= Duration::from_secs(1), "{left:?}");
        limits
            .failed_auth_limited([10, 0, 0, 10].into())
            .expect("another address is not limited");
    }

    #[test]
    fn connection_caps_hold_per_address_and_per_process_and_free_on_drop() {
        let limits = ConnectionLimits::new(3, 2);
        let (a, b): (IpAddr, IpAddr) = ([10, 0, 0, 1].into(), [10, 0, 0, 2].into());
        let first = limits.admit(a).unwrap();
        let _second = limits.admit(a).unwrap();
        assert_eq!(limits.admit(a).err(), Some(ConnectionRefused::Ip));
        let _third = limits.admit(b).unwrap();
        assert_eq!(limits.admit(b).err(), Some(ConnectionRefused::Process));
        drop(first);
        assert_eq!(limits.open(), 2);
        limits
            .admit(a)
            .expect("a closed connection frees its place");
    }

    #[test]
    fn the_derived_cap_leaves_headroom_below_the_descriptor_limit() {
        assert_eq!(cap_for_fd_limit(1024), 1024 - 128);
        assert_eq!(cap_for_fd_limit(256), 256 - 64);
        assert_eq!(cap_for_fd_limit(65_536), 65_536 - 1024);
        assert_eq!(cap_for_fd_limit(u64::MAX), 1_000_000);
        assert_eq!(connection_cap(10), 10);
        assert!(connection_cap(0) > 0);
    }

    #[test]
    fn keys_are_limited_independently() {
        let limits = Limits::new(&settings(1));
        limits.check_key(&[1; 32]).unwrap();
        assert!(limits.check_key(&[1; 32]).is_err());
        limits.check_key(&[2; 32]).unwrap();
    }
}
