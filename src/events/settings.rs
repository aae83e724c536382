//! `[events]`: webhooks out. Whether events are queued at all, the retry schedule, the delivery
//! timeouts and lease, the bounds, and the operator's two SSRF exceptions. The section is read
//! whole (durations in milliseconds, keys ending `_ms`); an unknown key is refused.

use std::time::Duration;

use serde::Deserialize;

use super::target::TargetRules;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventsSettings {
    /// Off: `Events::emit` accepts nothing and no worker runs.
    pub enabled: bool,
    /// Whether this instance runs the delivery worker. Off (Redis only): an API-only instance
    /// that queues events for the instances that deliver them.
    pub workers: bool,
    /// The wait before the first retry; each further one waits `retry_multiplier` times the
    /// last, at most `max_retry_interval`.
    #[serde(rename = "first_retry_ms", deserialize_with = "millis")]
    pub first_retry: Duration,
    pub retry_multiplier: u32,
    #[serde(rename = "max_retry_interval_ms", deserialize_with = "millis")]
    pub max_retry_interval: Duration,
    /// An event that no attempt delivered within this long of its first attempt is
    /// dead-lettered (the last attempt is the last one due within it).
    #[serde(rename = "give_up_after_ms", deserialize_with = "millis")]
    pub give_up_after: Duration,
    /// The whole request, connection included; a slower receiver is a failed attempt.
    #[serde(rename = "request_timeout_ms", deserialize_with = "millis")]
    pub request_timeout: Duration,
    #[serde(rename = "connect_timeout_ms", deserialize_with = "millis")]
    pub connect_timeout: Duration,
    /// How long one instance holds an endpoint while it delivers to it; another instance takes
    /// the endpoint over after this (the first one died). Longer than `request_timeout`.
    #[serde(rename = "lease_ms", deserialize_with = "millis")]
    pub lease: Duration,
    /// How often the worker looks for due deliveries.
    #[serde(rename = "poll_interval_ms", deserialize_with = "millis")]
    pub poll_interval: Duration,
    /// How often the worker looks at every account with webhooks, whatever the due set says:
    /// what repairs a due signal lost with a crashed instance (Redis).
    #[serde(rename = "sweep_interval_ms", deserialize_with = "millis")]
    pub sweep_interval: Duration,
    /// Accounts whose due endpoints one pass handles.
    pub accounts_per_pass: usize,
    pub max_webhooks_per_account: usize,
    pub max_webhooks_total: usize,
    /// Events waiting per webhook; past it new events for that webhook are dropped (counted).
    pub max_queued_per_webhook: usize,
    /// Events waiting in all, in the embedded store (Redis: `max_queued_per_webhook` per
    /// webhook, times the webhooks).
    pub max_queued_total: usize,
    /// Attempts kept per webhook for `GET /v1/webhooks/{id}/deliveries`.
    pub deliveries_kept: usize,
    /// Dead letters kept per webhook.
    pub dead_letters_kept: usize,
    /// Events `emit` may hold in process before the store took them; past it `emit` refuses.
    pub emit_buffer: usize,
    pub allow_http_loopback: bool,
    pub allow_private_targets: bool,
}

impl Default for EventsSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            workers: true,
            first_retry: Duration::from_secs(5),
            retry_multiplier: 2,
            max_retry_interval: Duration::from_secs(3_600),
            give_up_after: Duration::from_secs(24 * 3_600),
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            lease: Duration::from_secs(60),
            poll_interval: Duration::from_secs(1),
            sweep_interval: Duration::from_secs(60),
            accounts_per_pass: 100,
            max_webhooks_per_account: 10,
            max_webhooks_total: 10_000,
            max_queued_per_webhook: 10_000,
            max_queued_total: 100_000,
            deliveries_kept: 50,
            dead_letters_kept: 100,
            emit_buffer: 10_000,
            allow_http_loopback: false,
            allow_private_targets: false,
        }
    }
}

/// A duration written in milliseconds.
fn millis<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    u64::deserialize(deserializer).map(Duration::from_millis)
}

impl EventsSettings {
    /// The rules on values that parsed; each broken one adds a line to `errors`. `with_redis`:
    /// whether the gateway runs on Redis (an instance without workers needs other instances).
    pub fn validate(&self, with_redis: bool, errors: &mut Vec<String>) {
        if !self.workers && !with_redis {
            errors.push("events.workers: can be false only with Redis (the embedded queue has no other reader)".to_owned());
        }
        let mut refuse = |problem: &str| errors.push(format!("events.{problem}"));
        if self.first_retry.is_zero() {
            refuse("first_retry_ms: must be more than 0");
        }
        if self.retry_multiplier == 0 {
            refuse("retry_multiplier: must be at least 1");
        }
        if self.max_retry_interval < self.first_retry {
            refuse("max_retry_interval_ms: must be at least first_retry_ms");
        }
        if self.give_up_after < self.first_retry {
            refuse("give_up_after_ms: must be at least first_retry_ms");
        }
        if self.request_timeout.is_zero() || self.connect_timeout.is_zero() {
            refuse("request_timeout_ms and connect_timeout_ms: must be more than 0");
        }
        if self.connect_timeout > self.request_timeout {
            refuse("connect_timeout_ms: must be at most request_timeout_ms");
        }
        if self.lease <= self.request_timeout {
            refuse("lease_ms: must be longer than request_timeout_ms (or two instances deliver one endpoint at once)");
        }
        if self.poll_interval.is_zero() || self.sweep_interval < self.poll_interval {
            refuse("poll_interval_ms: must be more than 0, and sweep_interval_ms at least as long");
        }
        for (name, value) in [
            ("accounts_per_pass", self.accounts_per_pass),
            ("max_webhooks_per_account", self.max_webhooks_per_account),
            ("max_webhooks_total", self.max_webhooks_total),
            ("max_queued_per_webhook", self.max_queued_per_webhook),
            ("max_queued_total", self.max_queued_total),
            ("deliveries_kept", self.deliveries_kept),
            ("dead_letters_kept", self.dead_letters_kept),
            ("emit_buffer", self.emit_buffer),
        ] {
            if value == 0 {
                refuse(&format!("{name}: must be at least 1"));
            }
        }
        if self.max_webhooks_per_account > self.max_webhooks_total {
            refuse("max_webhooks_per_account: must be at most max_webhooks_total");
        }
    }

    pub fn target_rules(&self) -> TargetRules {
        TargetRules {
            allow_http_loopback: self.allow_http_loopback,
            allow_private_targets: self.allow_private_targets,
        }
    }

    pub fn retry_schedule(&self) -> RetrySchedule {
        RetrySchedule {
            first: self.first_retry,
            multiplier: self.retry_multiplier,
            max_interval: self.max_retry_interval,
            give_up_after: self.give_up_after,
        }
    }
}

/// When a failed delivery is tried again, and when it is given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetrySchedule {
    pub first: Duration,
    pub multiplier: u32,
    pub max_interval: Duration,
    pub give_up_after: Duration,
}

impl RetrySchedule {
    /// The wait after the `failures`-th failed attempt (1 for the first failure).
    pub fn wait_after(&self, failures: u32) -> Duration {
        let mut wait = self.first;
        for _ in 1..failures {
            wait = wait.saturating_mul(self.multiplier);
            if wait >= self.max_interval {
                return self.max_interval;
            }
        }
        wait.min(self.max_interval)
    }

    /// When to try again after the `failures`-th failure at `now_ms`, of an event first tried
    /// at `first_attempt_ms`; `None`: give up (dead-letter it).
    pub fn next_attempt(&self, failures: u32, first_attempt_ms: u64, now_ms: u64) -> Option<u64> {
        let due = now_ms.saturating_add(self.wait_after(failures).as_millis() as u64);
        let deadline = first_attempt_ms.saturating_add(self.give_up_after.as_millis() as u64);
        (due <= deadline).then_some(due)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_settings_are_valid() {
        let mut errors = Vec::new();
        EventsSettings::default().validate(false, &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
    }

    #[test]
    fn every_broken_setting_is_reported_in_one_run() {
        let settings = EventsSettings {
            first_retry: Duration::ZERO,
            retry_multiplier: 0,
            lease: Duration::from_secs(1),
            max_webhooks_per_account: 0,
            emit_buffer: 0,
            ..EventsSettings::default()
        };
        let mut errors = Vec::new();
        settings.validate(true, &mut errors);
        for expected in [
            "first_retry_ms",
            "retry_multiplier",
            "lease_ms",
            "max_webhooks_per_account",
            "emit_buffer",
        ] {
            assert!(
                errors.iter().any(|e| e.contains(expected)),
                "{expected} in {errors:?}"
            );
        }
    }

    #[test]
    fn retries_start_at_five_seconds_double_and_stop_after_a_day() {
        let schedule = EventsSettings::default().retry_schedule();
        assert_eq!(schedule.wait_after(1), Duration::from_secs(5));
        assert_eq!(schedule.wait_after(2), Duration::from_secs(10));
        assert_eq!(schedule.wait_after(3), Duration::from_secs(20));
        assert_eq!(schedule.wait_after(12), Duration::from_secs(3_600));
        assert_eq!(schedule.wait_after(400), Duration::from_secs(3_600));
        // Walk the schedule: every wait is inside the day, and the attempts end within it.
        let (first, mut now, mut failures) = (1_000, 1_000, 1);
        while let Some(due) = schedule.next_attempt(failures, first, now) {
            assert!(due - first <= 24 * 3_600_000);
            now = due;
            failures += 1;
        }
        assert!((30..40).contains(&failures), "{failures} attempts");
        assert!(now - first > 23 * 3_600_000);
    }
}
