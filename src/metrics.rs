//! Every metric name in one place, and the Prometheus recorder behind `GET /metrics`.
//!
//! The recorder belongs to the `App`, not to the process, so that tests running several servers
//! in one process scrape each server's own figures. Handles are cached after first use: the hot
//! path pays an atomic add, not a registry lookup. Labels have bounded values only: never a
//! phone number, an account or a user.

use std::time::Duration;

use dashmap::DashMap;
use metrics::{Counter, Gauge, Histogram, Key, Label, Level, Metadata, Recorder};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

pub const HTTP_REQUESTS: &str = "otpgate_http_requests_total";
pub const HTTP_DURATION: &str = "otpgate_http_request_duration_seconds";
pub const VERIFICATIONS_STARTED: &str = "otpgate_verifications_started_total";
pub const VERIFICATION_CHECKS: &str = "otpgate_verification_checks_total";
pub const STORE_ERRORS: &str = "otpgate_store_errors_total";
pub const MESSAGES: &str = "otpgate_messages_total";
pub const PROVIDER_DURATION: &str = "otpgate_provider_request_duration_seconds";
pub const DISPATCH_QUEUE_DEPTH: &str = "otpgate_dispatch_queue_depth";
pub const RATE_LIMITED: &str = "otpgate_rate_limited_total";

/// Latency buckets from 100 µs to 5 s: a check served from memory takes tens of microseconds,
/// one through Redis under a millisecond, a provider call up to seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

static METADATA: Metadata<'static> =
    Metadata::new("otpgate", Level::INFO, Some("otpgate::metrics"));

/// (metric, label values…, status): enough to key every series this file defines.
type SeriesKey = (&'static str, &'static str, &'static str, u16);

pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    counters: DashMap<SeriesKey, Counter>,
    histograms: DashMap<SeriesKey, Histogram>,
    queue_depth: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .expect("the bucket list is a non-empty constant")
            .build_recorder();
        let handle = recorder.handle();
        let queue_depth =
            recorder.register_gauge(&Key::from_static_name(DISPATCH_QUEUE_DEPTH), &METADATA);
        Self {
            recorder,
            handle,
            counters: DashMap::new(),
            histograms: DashMap::new(),
            queue_depth,
        }
    }

    /// The Prometheus text exposition of everything recorded so far.
    pub fn render(&self) -> String {
        self.handle.run_upkeep();
        self.handle.render()
    }

    /// Drains histogram buffers; the server calls this every few seconds so memory stays flat
    /// between scrapes.
    pub fn run_upkeep(&self) {
        self.handle.run_upkeep();
    }

    fn counter(&self, key: SeriesKey, labels: [&'static str; 3]) -> Counter {
        if let Some(counter) = self.counters.get(&key) {
            return counter.clone();
        }
        let counter = self
            .recorder
            .register_counter(&series(key, labels), &METADATA);
        self.counters.entry(key).or_insert(counter).clone()
    }

    fn histogram(&self, key: SeriesKey, labels: [&'static str; 3]) -> Histogram {
        if let Some(histogram) = self.histograms.get(&key) {
            return histogram.clone();
        }
        let histogram = self
            .recorder
            .register_histogram(&series(key, labels), &METADATA);
        self.histograms.entry(key).or_insert(histogram).clone()
    }

    pub fn http_request(&self, route: &'static str, status: u16, elapsed: Duration) {
        self.counter((HTTP_REQUESTS, route, "", status), ["route", "", "status"])
            .increment(1);
        self.histogram((HTTP_DURATION, route, "", 0), ["route", "", ""])
            .record(elapsed.as_secs_f64());
    }

    /// `outcome`: created, resent, replayed, max_sends_reached, send_quota_exceeded.
    pub fn verification_started(&self, channel: &'static str, outcome: &'static str) {
        self.counter(
            (VERIFICATIONS_STARTED, channel, outcome, 0),
            ["channel", "outcome", ""],
        )
        .increment(1);
    }

    /// `outcome`: a status (approved, pending, …) or not_found.
    pub fn verification_checked(&self, outcome: &'static str) {
        self.counter((VERIFICATION_CHECKS, outcome, "", 0), ["outcome", "", ""])
            .increment(1);
    }

    pub fn store_error(&self, operation: &'static str) {
        self.counter((STORE_ERRORS, operation, "", 0), ["operation", "", ""])
            .increment(1);
    }

    /// `outcome`: accepted, retried, failed.
    pub fn message(&self, provider: &'static str, outcome: &'static str) {
        self.counter(
            (MESSAGES, provider, outcome, 0),
            ["provider", "outcome", ""],
        )
        .increment(1);
    }

    pub fn provider_latency(&self, provider: &'static str, elapsed: Duration) {
        self.histogram((PROVIDER_DURATION, provider, "", 0), ["provider", "", ""])
            .record(elapsed.as_secs_f64());
    }

    /// `scope`: ip, key, failed_auth.
    pub fn rate_limited(&self, scope: &'static str) {
        self.counter((RATE_LIMITED, scope, "", 0), ["scope", "", ""])
            .increment(1);
    }

    pub fn queue_depth(&self) -> &Gauge {
        &self.queue_depth
    }
}

fn series(
    (name, first, second, status): SeriesKey,
    [first_name, second_name, status_name]: [&'static str; 3],
) -> Key {
    let mut labels = Vec::with_capacity(3);
    if !first_name.is_empty() {
        labels.push(Label::new(first_name, first));
    }
    if !second_name.is_empty() {
        labels.push(Label::new(second_name, second));
    }
    if !status_name.is_empty() {
        labels.push(Label::new(status_name, status.to_string()));
    }
    Key::from_parts(name, labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_with_their_labels() {
        let metrics = Metrics::new();
        metrics.verification_checked("approved");
        metrics.verification_checked("approved");
        metrics.http_request("check_verification", 200, Duration::from_micros(300));
        let text = metrics.render();
        assert!(
            text.contains("otpgate_verification_checks_total{outcome=\"approved\"} 2"),
            "{text}"
        );
        assert!(
            text.contains(
                "otpgate_http_requests_total{route=\"check_verification\",status=\"200\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("otpgate_http_request_duration_seconds_bucket{route=\"check_verification\",le=\"0.0005\"} 1"), "{text}");
    }

    #[test]
    fn two_instances_keep_separate_figures() {
        let first = Metrics::new();
        let second = Metrics::new();
        first.store_error("check");
        assert!(first
            .render()
            .contains("otpgate_store_errors_total{operation=\"check\"} 1"));
        assert!(!second.render().contains("otpgate_store_errors_total"));
    }
}
