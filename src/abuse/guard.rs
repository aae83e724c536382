//! The pumping guard's counters and rules, as pure values: the embedded store keeps
//! [`Counters`] per prefix and per country, and `src/redis/scripts/abuse_admit.lua` is their
//! twin (same buckets, same arithmetic, same integer comparisons).
//!
//! A send is refused, and a cool-down starts, when counting it would make the prefix (or the
//! country) match either rule of its [`Thresholds`]:
//! - conversion: at least `min_sends` sends in the last hour and approvals / sends under
//!   `min_conversion_percent`;
//! - surge: at least `surge_min_sends` sends in the last hour, and more than `surge_factor`
//!   times the hourly average of the 24 whole hours before the current one.

use std::collections::VecDeque;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub const MINUTE_MS: u64 = 60_000;
pub const HOUR_MS: u64 = 3_600_000;
pub const DAY_MS: u64 = 86_400_000;
/// Minute buckets in the short window (the last hour, the current minute included).
pub const WINDOW_MINUTES: u64 = 60;
/// Whole hours the baseline averages (before the current hour).
pub const BASELINE_HOURS: u64 = 24;

/// Sends and approvals of one prefix or country, in minute buckets for the last hour and hourly
/// buckets (sends only) for the current hour and the 24 before it. Only buckets that counted
/// something are kept, oldest first: at most 60 + 25.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    /// `(minute since the epoch, sends, approvals)`.
    minutes: VecDeque<(u64, u64, u64)>,
    /// `(hour since the epoch, sends)`.
    hours: VecDeque<(u64, u64)>,
}

/// What the rules look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Window {
    /// Sends in the last 60 minute buckets.
    pub sends: u64,
    /// Approvals in the last 60 minute buckets.
    pub approvals: u64,
    /// Sends in the 24 whole hours before the current hour.
    pub baseline: u64,
}

impl Counters {
    /// The window at `now_ms`, stale buckets dropped.
    pub fn window(&mut self, now_ms: u64) -> Window {
        self.prune(now_ms);
        let hour = now_ms / HOUR_MS;
        Window {
            sends: self.minutes.iter().map(|(_, sends, _)| sends).sum(),
            approvals: self.minutes.iter().map(|(_, _, approvals)| approvals).sum(),
            baseline: self
                .hours
                .iter()
                .filter(|(at, _)| *at < hour)
                .map(|(_, sends)| sends)
                .sum(),
        }
    }

    pub fn count_send(&mut self, now_ms: u64) {
        self.prune(now_ms);
        self.minute(now_ms).1 += 1;
        let hour = now_ms / HOUR_MS;
        match self.hours.back_mut() {
            Some((at, sends)) if *at == hour => *sends += 1,
            _ => self.hours.push_back((hour, 1)),
        }
    }

    pub fn count_approval(&mut self, now_ms: u64) {
        self.prune(now_ms);
        self.minute(now_ms).2 += 1;
    }

    /// Nothing counted in the last 25 hours: the entry may be forgotten.
    pub fn is_empty(&mut self, now_ms: u64) -> bool {
        self.prune(now_ms);
        self.minutes.is_empty() && self.hours.is_empty()
    }

    fn minute(&mut self, now_ms: u64) -> &mut (u64, u64, u64) {
        let minute = now_ms / MINUTE_MS;
        if self.minutes.back().is_none_or(|(at, _, _)| *at != minute) {
            self.minutes.push_back((minute, 0, 0));
        }
        // Just pushed or found: the deque is not empty.
        let last = self.minutes.len() - 1;
        &mut self.minutes[last]
    }

    fn prune(&mut self, now_ms: u64) {
        let first_minute = (now_ms / MINUTE_MS).saturating_sub(WINDOW_MINUTES - 1);
        while self
            .minutes
            .front()
            .is_some_and(|(at, _, _)| *at < first_minute)
        {
            self.minutes.pop_front();
        }
        let first_hour = (now_ms / HOUR_MS).saturating_sub(BASELINE_HOURS);
        while self.hours.front().is_some_and(|(at, _)| *at < first_hour) {
            self.hours.pop_front();
        }
    }
}

/// The guard's thresholds for one scope (prefixes, or countries); all configurable per account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    /// Sends in the last hour before conversion is judged.
    pub min_sends: u64,
    /// Approvals per 100 sends below which the scope is throttled.
    pub min_conversion_percent: u64,
    /// How many times its 24-hour hourly average a scope may send in the last hour.
    pub surge_factor: u64,
    /// Sends in the last hour before a surge is judged.
    pub surge_min_sends: u64,
    /// How long sends to a throttled scope are refused.
    #[serde(rename = "cooldown_seconds", with = "seconds")]
    pub cooldown: Duration,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            min_sends: 50,
            min_conversion_percent: 20,
            surge_factor: 10,
            surge_min_sends: 100,
            cooldown: Duration::from_secs(3600),
        }
    }
}

impl Thresholds {
    /// The shipped rules per country. A country gathers every prefix's traffic, so the volumes
    /// are higher than a prefix's: a pumping burst on one prefix, blocked at its 50th send,
    /// must not take the country's legitimate traffic down with it; a spread attack (many
    /// prefixes, none reaching 50) is caught here once 200 sends in an hour convert under 20 %.
    /// The surge minimum is 1 000 so that an account's first busy hour in a country (no
    /// baseline yet) is judged by conversion, not volume.
    pub fn country_default() -> Self {
        Self {
            min_sends: 200,
            surge_min_sends: 1_000,
            ..Self::default()
        }
    }

    /// Whether `window`, with the send being decided already counted in `window.sends`,
    /// matches a rule.
    pub fn trips(&self, window: &Window) -> bool {
        let low_conversion = window.sends >= self.min_sends
            && window.approvals.saturating_mul(100)
                < self.min_conversion_percent.saturating_mul(window.sends);
        let surge = window.sends >= self.surge_min_sends
            && window.sends.saturating_mul(BASELINE_HOURS)
                > self.surge_factor.saturating_mul(window.baseline);
        low_conversion || surge
    }

    /// The rules on values that parsed; each broken one adds a line to `errors`, named under
    /// `path`.
    pub fn validate(&self, path: &str, errors: &mut Vec<String>) {
        if self.min_sends == 0 {
            errors.push(format!("{path}.min_sends: must be at least 1"));
        }
        if self.min_conversion_percent > 100 {
            errors.push(format!(
                "{path}.min_conversion_percent: must be between 0 and 100"
            ));
        }
        if self.surge_factor == 0 {
            errors.push(format!("{path}.surge_factor: must be at least 1"));
        }
        if self.surge_min_sends == 0 {
            errors.push(format!("{path}.surge_min_sends: must be at least 1"));
        }
        if !(Duration::from_secs(60)..=Duration::from_secs(86_400)).contains(&self.cooldown) {
            errors.push(format!(
                "{path}.cooldown_seconds: must be between 60 and 86400"
            ));
        }
    }
}

/// A `Duration` as whole seconds on the wire.
mod seconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(value.as_secs())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        u64::deserialize(deserializer).map(Duration::from_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};

    const START: u64 = 1_764_000_000_000;

    /// Sends one at a time, each checked first as the stores do; answers how many went out
    /// before the rule tripped (None: all of them).
    fn sends_until_throttled(
        counters: &mut Counters,
        clock: &ManualClock,
        rules: &Thresholds,
        count: u64,
        every: Duration,
    ) -> Option<u64> {
        for sent in 0..count {
            let mut window = counters.window(clock.now_ms());
            window.sends += 1;
            if rules.trips(&window) {
                return Some(sent);
            }
            counters.count_send(clock.now_ms());
            clock.advance(every);
        }
        None
    }

    #[test]
    fn three_hundred_sends_in_ten_minutes_without_approvals_are_throttled_at_the_fiftieth() {
        let clock = ManualClock::new(START);
        let mut counters = Counters::default();
        let sent = sends_until_throttled(
            &mut counters,
            &clock,
            &Thresholds::default(),
            300,
            Duration::from_millis(2_000),
        );
        assert_eq!(sent, Some(49));
    }

    #[test]
    fn a_prefix_with_normal_conversion_is_not_throttled() {
        let clock = ManualClock::new(START);
        let mut counters = Counters::default();
        let rules = Thresholds::default();
        // 99 sends over the hour, four in five approved: under the surge minimum, converting.
        for sent in 0..99 {
            let mut window = counters.window(clock.now_ms());
            window.sends += 1;
            assert!(!rules.trips(&window), "send {sent}");
            counters.count_send(clock.now_ms());
            if sent % 5 != 0 {
                counters.count_approval(clock.now_ms());
            }
            clock.advance(Duration::from_secs(36));
        }
    }

    #[test]
    fn a_surge_over_ten_times_the_daily_average_is_throttled_even_when_it_converts() {
        let clock = ManualClock::new(START - START % HOUR_MS);
        let mut counters = Counters::default();
        let rules = Thresholds::default();
        // A day at 10 sends an hour (in each hour's first half), all approved.
        for _ in 0..24 {
            for _ in 0..10 {
                counters.count_send(clock.now_ms());
                counters.count_approval(clock.now_ms());
                clock.advance(Duration::from_secs(180));
            }
            clock.advance(Duration::from_secs(1800));
        }
        // Half an hour later (the last hour holds none of that day), every send approved but
        // 150 in ten minutes: ten times the hourly average is 100.
        clock.advance(Duration::from_secs(1800));
        let mut throttled_at = None;
        for sent in 0..150 {
            let mut window = counters.window(clock.now_ms());
            window.sends += 1;
            if rules.trips(&window) {
                throttled_at = Some(sent);
                break;
            }
            counters.count_send(clock.now_ms());
            counters.count_approval(clock.now_ms());
            clock.advance(Duration::from_secs(4));
        }
        assert_eq!(throttled_at, Some(100));
    }

    #[test]
    fn a_steady_big_sender_is_not_a_surge() {
        let clock = ManualClock::new(START - START % HOUR_MS);
        let mut counters = Counters::default();
        let rules = Thresholds::default();
        for sent in 0..26 * 200 {
            let mut window = counters.window(clock.now_ms());
            window.sends += 1;
            if sent > 24 * 200 {
                assert!(!rules.trips(&window), "send {sent}");
            }
            counters.count_send(clock.now_ms());
            counters.count_approval(clock.now_ms());
            clock.advance(Duration::from_secs(18));
        }
    }

    #[test]
    fn buckets_older_than_their_windows_are_forgotten() {
        let clock = ManualClock::new(START);
        let mut counters = Counters::default();
        counters.count_send(clock.now_ms());
        counters.count_approval(clock.now_ms());
        clock.advance(Duration::from_secs(3600));
        let window = counters.window(clock.now_ms());
        assert_eq!((window.sends, window.approvals), (0, 0));
        assert_eq!(window.baseline, 1);
        clock.advance(Duration::from_secs(25 * 3600));
        assert!(counters.is_empty(clock.now_ms()));
    }

    #[test]
    fn thresholds_out_of_range_are_reported_each() {
        let mut errors = Vec::new();
        Thresholds {
            min_sends: 0,
            min_conversion_percent: 101,
            surge_factor: 0,
            surge_min_sends: 0,
            cooldown: Duration::from_secs(1),
        }
        .validate("abuse.prefix", &mut errors);
        assert_eq!(errors.len(), 5, "{errors:?}");
        assert!(errors[0].starts_with("abuse.prefix.min_sends"));
        let mut none = Vec::new();
        Thresholds::default().validate("abuse.prefix", &mut none);
        assert!(none.is_empty());
    }
}
