//! Every metric name in one place, and the Prometheus recorder behind `GET /metrics`.
//!
//! The recorder belongs to the `App`, not to the process, so that tests running several servers
//! in one process scrape each server's own figures. Handles are cached after first use: the hot
//! path pays an atomic add, not a registry lookup. Labels have bounded values only: never a
//! phone number, an account or a user.

use std::time::Duration;

use dashmap::mapref::one::Ref;
use dashmap::DashMap;
use foldhash::fast::RandomState;
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
pub const PROVIDER_BREAKER_STATE: &str = "otpgate_provider_breaker_state";
pub const DISPATCH_OLDEST_AGE: &str = "otpgate_dispatch_oldest_message_age_seconds";
pub const DEAD_LETTERS: &str = "otpgate_dead_letters_total";
pub const REDELIVERIES: &str = "otpgate_messages_redelivered_total";
pub const MESSAGE_SEGMENTS: &str = "otpgate_message_segments_total";
pub const RECEIPTS: &str = "otpgate_delivery_receipts_total";
/// How long the dispatcher's outbox reads have been failing (the longest current run over the
/// shards; 0 while every shard reads). Past `dispatch.outbox_unready_after_ms`, `/readyz` is 503.
pub const OUTBOX_READ_FAILING: &str = "otpgate_outbox_read_failing_seconds";
/// Outbox consumer groups created again after Redis answered NOGROUP (it lost its data).
pub const OUTBOX_GROUPS_RECREATED: &str = "otpgate_outbox_groups_recreated_total";
/// Hot-path cache lookups: `cache` (policy, user, device) x `result` (hit, miss, bypass).
pub const CACHE_LOOKUPS: &str = "otpgate_cache_lookups_total";
/// Cache flushes because the invalidation link dropped or came back.
pub const CACHE_FLUSHES: &str = "otpgate_cache_flushes_total";
/// 1 while the invalidation link (Redis pub/sub) is up, else 0 (always 1 on the embedded store).
pub const INVALIDATION_LINK_UP: &str = "otpgate_invalidation_link_up";
/// `POST /v1/logins` answers: `decision` (allow, challenge, enroll) x `reason`.
pub const LOGIN_DECISIONS: &str = "otpgate_login_decisions_total";
/// `POST /v1/trusted-devices/check` answers: `result` (trusted, untrusted).
pub const DEVICE_CHECKS: &str = "otpgate_trusted_device_checks_total";
/// Two-step PIN checks at registration: `outcome` (match, mismatch, wait, locked, changed,
/// disabled: two-step was off and the PIN given became the new one).
pub const PIN_CHECKS: &str = "otpgate_pin_checks_total";
/// Numbers locked by consecutive wrong PINs.
pub const PIN_LOCKS: &str = "otpgate_pin_locks_total";
/// Requests for e-mailed two-step links: `purpose` (disable, reset) x `outcome` (sent,
/// refused, no_email, mail_failed).
pub const TWO_STEP_LINK_REQUESTS: &str = "otpgate_two_step_link_requests_total";
/// Disable requests alone (the same counts as `purpose="disable"` above): `outcome`.
pub const TWO_STEP_DISABLE_REQUESTS: &str = "otpgate_two_step_disable_requests_total";
/// Links opened and support disables: `purpose` (disable, reset, support) x `outcome` (used,
/// replayed, expired, superseded, unknown, already_disabled).
pub const TWO_STEP_LINKS_USED: &str = "otpgate_two_step_links_used_total";
/// Time to hash or verify one PIN (argon2id, on the blocking pool).
pub const PIN_HASH_DURATION: &str = "otpgate_pin_hash_duration_seconds";
/// Second-factor challenges (`POST /v1/users/{user}/challenges`): `type` (totp, webauthn,
/// recovery_code) x `outcome` (accepted, wrong, replayed, locked, not_confirmed, and WebAuthn's
/// refusal reasons: unknown_challenge, wrong_origin, wrong_rp_id, counter_regressed, …).
pub const FACTOR_CHALLENGES: &str = "otpgate_factor_challenges_total";
/// Factor enrolments: `type` (totp, webauthn) x `outcome` (started, confirmed, or a refusal).
pub const FACTOR_ENROLMENTS: &str = "otpgate_factor_enrolments_total";
/// Store clients replaced because they answered nothing while Redis answered (Redis only).
pub const STORE_CLIENT_REBUILDS: &str = "otpgate_store_client_rebuilds_total";
/// Redis Cluster shards whose master does not answer this instance (0 on a single server).
pub const STORE_SHARDS_UNREACHABLE: &str = "otpgate_store_shards_unreachable";

/// Connections closed at accept because a cap was reached: `reason` (process, ip).
pub const CONNECTIONS_REFUSED: &str = "otpgate_connections_refused_total";
/// Connections closed by the server's own deadlines: `reason` (first_request, idle,
/// body_timeout).
pub const CONNECTIONS_TIMED_OUT: &str = "otpgate_connections_timed_out_total";
/// Connections open now (the process cap's numerator).
pub const CONNECTIONS_OPEN: &str = "otpgate_connections_open";
/// Failed `accept` calls (out of file descriptors and the like), each followed by a back-off.
pub const ACCEPT_ERRORS: &str = "otpgate_accept_errors_total";

/// Latency buckets from 100 µs to 5 s: a check served from memory takes tens of microseconds,
/// one through Redis under a millisecond, a provider call up to seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

static METADATA: Metadata<'static> =
    Metadata::new("otpgate", Level::INFO, Some("otpgate::metrics"));

/// (metric, three label values, status): enough to key every series this file defines.
type SeriesKey = (&'static str, &'static str, &'static str, &'static str, u16);

/// The label names that go with a `SeriesKey`'s values; empty names are skipped.
type LabelNames = [&'static str; 4];

pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    counters: DashMap<SeriesKey, Counter, RandomState>,
    histograms: DashMap<SeriesKey, Histogram, RandomState>,
    gauges: DashMap<SeriesKey, Gauge, RandomState>,
    queue_depth: Gauge,
}

/// The handle of a series, registered on first use. A reference into the map rather than a
/// clone: cloning a handle's `Arc` on every request moved its count between the cores.
fn handle<T>(
    map: &DashMap<SeriesKey, T, RandomState>,
    key: SeriesKey,
    register: impl FnOnce() -> T,
) -> Ref<'_, SeriesKey, T> {
    if let Some(handle) = map.get(&key) {
        return handle;
    }
    map.entry(key).or_insert_with(register).downgrade()
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
            counters: DashMap::with_hasher(RandomState::default()),
            histograms: DashMap::with_hasher(RandomState::default()),
            gauges: DashMap::with_hasher(RandomState::default()),
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

    fn counter(&self, key: SeriesKey, labels: LabelNames) -> Ref<'_, SeriesKey, Counter> {
        handle(&self.counters, key, || {
            self.recorder
                .register_counter(&series(key, labels), &METADATA)
        })
    }

    fn gauge(&self, key: SeriesKey, labels: LabelNames) -> Ref<'_, SeriesKey, Gauge> {
        handle(&self.gauges, key, || {
            self.recorder
                .register_gauge(&series(key, labels), &METADATA)
        })
    }

    fn histogram(&self, key: SeriesKey, labels: LabelNames) -> Ref<'_, SeriesKey, Histogram> {
        handle(&self.histograms, key, || {
            self.recorder
                .register_histogram(&series(key, labels), &METADATA)
        })
    }

    pub fn http_request(&self, route: &'static str, status: u16, elapsed: Duration) {
        self.counter(
            (HTTP_REQUESTS, route, "", "", status),
            ["route", "", "", "status"],
        )
        .increment(1);
        self.histogram((HTTP_DURATION, route, "", "", 0), ["route", "", "", ""])
            .record(elapsed.as_secs_f64());
    }

    /// `outcome`: created, resent, replayed, max_sends_reached, send_quota_exceeded.
    pub fn verification_started(&self, channel: &'static str, outcome: &'static str) {
        self.counter(
            (VERIFICATIONS_STARTED, channel, outcome, "", 0),
            ["channel", "outcome", "", ""],
        )
        .increment(1);
    }

    /// `outcome`: the status a check left (approved, pending, …), or not_found, already_final
    /// (nothing counted), replayed (an idempotency key's recorded outcome) or key_reused.
    pub fn verification_checked(&self, outcome: &'static str) {
        self.counter(
            (VERIFICATION_CHECKS, outcome, "", "", 0),
            ["outcome", "", "", ""],
        )
        .increment(1);
    }

    pub fn store_error(&self, operation: &'static str) {
        self.counter(
            (STORE_ERRORS, operation, "", "", 0),
            ["operation", "", "", ""],
        )
        .increment(1);
    }

    /// One provider attempt. `outcome`: accepted, failed (retryable), refused (permanent).
    /// `country`: the calling code of the destination.
    pub fn message(&self, provider: &'static str, country: &'static str, outcome: &'static str) {
        self.counter(
            (MESSAGES, provider, country, outcome, 0),
            ["provider", "country_code", "outcome", ""],
        )
        .increment(1);
    }

    pub fn provider_latency(&self, provider: &'static str, elapsed: Duration) {
        self.histogram(
            (PROVIDER_DURATION, provider, "", "", 0),
            ["provider", "", "", ""],
        )
        .record(elapsed.as_secs_f64());
    }

    /// `scope`: ip, key, failed_auth.
    pub fn rate_limited(&self, scope: &'static str) {
        self.counter((RATE_LIMITED, scope, "", "", 0), ["scope", "", "", ""])
            .increment(1);
    }

    /// A connection closed at accept. `reason`: process, ip.
    pub fn connection_refused(&self, reason: &'static str) {
        self.counter(
            (CONNECTIONS_REFUSED, reason, "", "", 0),
            ["reason", "", "", ""],
        )
        .increment(1);
    }

    /// A connection closed by a deadline. `reason`: first_request, idle, body_timeout.
    pub fn connection_timed_out(&self, reason: &'static str) {
        self.counter(
            (CONNECTIONS_TIMED_OUT, reason, "", "", 0),
            ["reason", "", "", ""],
        )
        .increment(1);
    }

    pub fn connections_open(&self, open: usize) {
        self.gauge((CONNECTIONS_OPEN, "", "", "", 0), ["", "", "", ""])
            .set(open as f64);
    }

    pub fn accept_error(&self) {
        self.counter((ACCEPT_ERRORS, "", "", "", 0), ["", "", "", ""])
            .increment(1);
    }

    /// 0 closed, 1 half-open, 2 open.
    pub fn breaker_state(&self, provider: &'static str, state: f64) {
        self.gauge(
            (PROVIDER_BREAKER_STATE, provider, "", "", 0),
            ["provider", "", "", ""],
        )
        .set(state);
    }

    pub fn oldest_queued_age(&self, age: Duration) {
        self.gauge((DISPATCH_OLDEST_AGE, "", "", "", 0), ["", "", "", ""])
            .set(age.as_secs_f64());
    }

    pub fn dead_letter(&self) {
        self.counter((DEAD_LETTERS, "", "", "", 0), ["", "", "", ""])
            .increment(1);
    }

    pub fn outbox_read_failing(&self, failing_for: Duration) {
        self.gauge((OUTBOX_READ_FAILING, "", "", "", 0), ["", "", "", ""])
            .set(failing_for.as_secs_f64());
    }

    pub fn outbox_group_created(&self) {
        self.counter((OUTBOX_GROUPS_RECREATED, "", "", "", 0), ["", "", "", ""])
            .increment(1);
    }

    /// A message delivered again after its worker died before acknowledging it.
    pub fn redelivered(&self) {
        self.counter((REDELIVERIES, "", "", "", 0), ["", "", "", ""])
            .increment(1);
    }

    /// SMS segments per message, by encoding (gsm7, ucs2).
    pub fn segments(&self, encoding: &'static str, segments: u32) {
        self.counter(
            (MESSAGE_SEGMENTS, encoding, "", "", 0),
            ["encoding", "", "", ""],
        )
        .increment(u64::from(segments));
    }

    /// A delivery receipt from a provider. `status`: the normalized delivery status.
    pub fn receipt(&self, provider: &'static str, status: &'static str) {
        self.counter(
            (RECEIPTS, provider, status, "", 0),
            ["provider", "status", "", ""],
        )
        .increment(1);
    }

    /// `outcome`: match, mismatch, wait, locked, changed, disabled, transferred (issue 14).
    pub fn pin_checked(&self, outcome: &'static str) {
        self.counter((PIN_CHECKS, outcome, "", "", 0), ["outcome", "", "", ""])
            .increment(1);
    }

    pub fn pin_locked(&self) {
        self.counter((PIN_LOCKS, "", "", "", 0), ["", "", "", ""])
            .increment(1);
    }

    /// `purpose`: disable, reset. `outcome`: sent, refused, no_email, mail_failed.
    pub fn two_step_link_request(&self, purpose: &'static str, outcome: &'static str) {
        self.counter(
            (TWO_STEP_LINK_REQUESTS, purpose, outcome, "", 0),
            ["purpose", "outcome", "", ""],
        )
        .increment(1);
        if purpose == "disable" {
            self.counter(
                (TWO_STEP_DISABLE_REQUESTS, outcome, "", "", 0),
                ["outcome", "", "", ""],
            )
            .increment(1);
        }
    }

    /// `purpose`: disable, reset, support. `outcome`: used, replayed, expired, superseded,
    /// unknown, already_disabled.
    pub fn two_step_link_used(&self, purpose: &'static str, outcome: &'static str) {
        self.counter(
            (TWO_STEP_LINKS_USED, purpose, outcome, "", 0),
            ["purpose", "outcome", "", ""],
        )
        .increment(1);
    }

    /// `kind`: totp, webauthn, recovery_code. `outcome`: see `FACTOR_CHALLENGES`.
    pub fn factor_challenge(&self, kind: &'static str, outcome: &'static str) {
        self.counter(
            (FACTOR_CHALLENGES, kind, outcome, "", 0),
            ["type", "outcome", "", ""],
        )
        .increment(1);
    }

    /// `kind`: totp, webauthn. `outcome`: started, confirmed, or a refusal reason.
    pub fn factor_enrolment(&self, kind: &'static str, outcome: &'static str) {
        self.counter(
            (FACTOR_ENROLMENTS, kind, outcome, "", 0),
            ["type", "outcome", "", ""],
        )
        .increment(1);
    }

    pub fn pin_hash_time(&self, elapsed: Duration) {
        self.histogram((PIN_HASH_DURATION, "", "", "", 0), ["", "", "", ""])
            .record(elapsed.as_secs_f64());
    }

    /// A counter handle for a name above and a fixed label set, for modules that keep their
    /// handles (the hot path then pays an atomic add, not a registry lookup).
    pub fn labelled_counter(
        &self,
        name: &'static str,
        labels: &[(&'static str, &'static str)],
    ) -> Counter {
        let labels: Vec<Label> = labels.iter().map(|(k, v)| Label::new(*k, *v)).collect();
        self.recorder
            .register_counter(&Key::from_parts(name, labels), &METADATA)
    }

    pub fn labelled_gauge(&self, name: &'static str) -> Gauge {
        self.recorder
            .register_gauge(&Key::from_static_name(name), &METADATA)
    }

    pub fn queue_depth(&self) -> &Gauge {
        &self.queue_depth
    }
}

fn series(
    (name, first, second, third, status): SeriesKey,
    [first_name, second_name, third_name, status_name]: LabelNames,
) -> Key {
    let mut labels = Vec::with_capacity(4);
    for (label, value) in [
        (first_name, first),
        (second_name, second),
        (third_name, third),
    ] {
        if !label.is_empty() {
            labels.push(Label::new(label, value));
        }
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
