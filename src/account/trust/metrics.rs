//! The hot path's metric handles, registered once: a lookup or a decision then costs one atomic
//! add. Names live in `crate::metrics`.

use metrics::{Counter, Gauge};

use crate::metrics::{
    Metrics, CACHE_FLUSHES, CACHE_LOOKUPS, DEVICE_CHECKS, INVALIDATION_LINK_UP, LOGIN_DECISIONS,
};

/// Which cache map a lookup went to.
#[derive(Debug, Clone, Copy)]
pub enum CacheKind {
    Policy = 0,
    User = 1,
    Device = 2,
}

#[derive(Debug, Clone, Copy)]
pub enum LookupResult {
    Hit = 0,
    Miss = 1,
    Bypass = 2,
}

pub struct HotPathMetrics {
    lookups: [[Counter; 3]; 3],
    allow_two_factor_off: Counter,
    allow_trusted_device: Counter,
    allow_passkey_verified: Counter,
    challenge: Counter,
    enroll: Counter,
    trusted: Counter,
    untrusted: Counter,
    flushes: Counter,
    link_up: Gauge,
}

impl HotPathMetrics {
    pub fn new(metrics: &Metrics) -> Self {
        let lookup = |cache: &'static str| {
            ["hit", "miss", "bypass"].map(|result| {
                metrics.labelled_counter(CACHE_LOOKUPS, &[("cache", cache), ("result", result)])
            })
        };
        let decision = |decision: &'static str, reason: &'static str| {
            metrics.labelled_counter(
                LOGIN_DECISIONS,
                &[("decision", decision), ("reason", reason)],
            )
        };
        Self {
            lookups: [lookup("policy"), lookup("user"), lookup("device")],
            allow_two_factor_off: decision("allow", "two_factor_off"),
            allow_trusted_device: decision("allow", "trusted_device"),
            allow_passkey_verified: decision("allow", "passkey_verified"),
            challenge: decision("challenge", "second_factor"),
            enroll: decision("enroll", "no_factor"),
            trusted: metrics.labelled_counter(DEVICE_CHECKS, &[("result", "trusted")]),
            untrusted: metrics.labelled_counter(DEVICE_CHECKS, &[("result", "untrusted")]),
            flushes: metrics.labelled_counter(CACHE_FLUSHES, &[]),
            link_up: metrics.labelled_gauge(INVALIDATION_LINK_UP),
        }
    }

    pub fn lookup(&self, cache: CacheKind, result: LookupResult) {
        self.lookups[cache as usize][result as usize].increment(1);
    }

    /// `decision` as `Decision::label`, `trusted_device` for the allow reason.
    pub fn decision(&self, decision: &crate::account::login::Decision) {
        use crate::account::login::{AllowReason, Decision};
        match decision {
            Decision::Allow(AllowReason::TwoFactorOff) => &self.allow_two_factor_off,
            Decision::Allow(AllowReason::TrustedDevice) => &self.allow_trusted_device,
            Decision::Allow(AllowReason::PasskeyVerified) => &self.allow_passkey_verified,
            Decision::Challenge { .. } => &self.challenge,
            Decision::Enroll { .. } => &self.enroll,
        }
        .increment(1);
    }

    pub fn device_check(&self, trusted: bool) {
        if trusted {
            &self.trusted
        } else {
            &self.untrusted
        }
        .increment(1);
    }

    pub fn flushed(&self) {
        self.flushes.increment(1);
    }

    pub fn link(&self, up: bool) {
        self.link_up.set(if up { 1.0 } else { 0.0 });
    }
}
