//! Every metric name in one place, and the Prometheus recorder behind `GET /metrics`.
//!
//! The recorder belongs to the `App`, not to the process, so that tests running several servers
//! in one process scrape each server's own figures. Handles are cached after first use: the hot
//! path pays an atomic add, not a registry lookup. Labels have bounded values only: never a
//! phone number, an account or a user.

use std::time::Duration;

use crate::phone::Region;
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
/// SMPP sessions bound now (1) or not (0): `provider` x `role` (transceiver, transmitter,
/// receiver).
pub const SMPP_SESSIONS_BOUND: &str = "otpgate_smpp_sessions_bound";
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

/// Sends abuse protection admitted, by destination: `country_code` (ISO 3166-1 alpha-2, or
/// `other` for numbers of no country). With the approvals below, conversion per country.
pub const SENDS_ADMITTED: &str = "otpgate_sends_admitted_total";
/// Approved verifications by destination: `country_code` (as above).
pub const APPROVALS: &str = "otpgate_verification_approvals_total";
/// Workflow steps left for the next channel, by `from` and `to` channel and `reason` (failed,
/// timeout).
pub const FALLBACKS: &str = "otpgate_verification_fallbacks_total";
/// Blocks abuse protection started (a pumping cool-down of a prefix or country, a daily cap
/// reached): `country` (as `country_code` above) x `rule` (suspected-pumping,
/// daily-message-cap). Counted once per block, by the refusal that started it; every refusal
/// is also counted in `otpgate_verifications_started_total` with the rule as its outcome.
pub const ABUSE_BLOCKS: &str = "otpgate_abuse_blocks_total";

/// Connections closed at accept because a cap was reached: `reason` (process, ip).
pub const CONNECTIONS_REFUSED: &str = "otpgate_connections_refused_total";
/// Connections closed by the server's own deadlines: `reason` (first_request, idle,
/// body_timeout).
pub const CONNECTIONS_TIMED_OUT: &str = "otpgate_connections_timed_out_total";
/// Connections open now (the process cap's numerator).
pub const CONNECTIONS_OPEN: &str = "otpgate_connections_open";
/// Failed `accept` calls (out of file descriptors and the like), each followed by a back-off.
pub const ACCEPT_ERRORS: &str = "otpgate_accept_errors_total";

/// Events out (webhooks): `outcome` emitted (handed to the queue's buffer) or dropped (the
/// buffer or a webhook's queue was full, or the store did not take it). Accounts without webhooks
/// emit nothing and count nothing.
pub const EVENTS: &str = "otpgate_events_total";
/// Webhook delivery attempts: `outcome` delivered, failed (retried later), dead_lettered.
pub const WEBHOOK_DELIVERIES: &str = "otpgate_webhook_deliveries_total";
/// Time of one webhook delivery attempt (the receiver's answer, or the failure).
pub const WEBHOOK_DURATION: &str = "otpgate_webhook_delivery_duration_seconds";

/// Latency buckets from 100 µs to 5 s: a check served from memory takes tens of microseconds,
/// one through Redis under a millisecond, a provider call up to seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// A country label: the region's ISO code (about 250 values), `other` for the non-geographic
/// codes and unknown regions.
fn country_label(country: Region) -> &'static str {
    match country {
        Region::NON_GEOGRAPHIC | Region::UNKNOWN => "other",
        region => region.as_str(),
    }
}

static METADATA: Metadata<'static> =
    Metadata::new("otpgate", Level::INFO, Some("otpgate::metrics"));

/// (metric, four label values, status): enough to key every series this file defines.
///
/// Hashed and compared by where the strings are (address and length), not by their text: a
/// request's counters then hash seven integers instead of five strings (the check's series
/// lookups, about 1 000 instructions each by their text; `loadtest/instructions`). Every name and
/// value is a `&'static str`, and a text at one place is always the same text; the same text at
/// two places (a literal repeated in another codegen unit) only makes two entries whose handles
/// count into one series, which the recorder keys by the text.
#[derive(Clone, Copy)]
struct SeriesKey(&'static str, [&'static str; 4], u16);

/// Where a static text is: its address and length (a shorter text may start where a longer one
/// does).
fn place(text: &'static str) -> (usize, usize) {
    (text.as_ptr() as usize, text.len())
}

impl SeriesKey {
    fn places(&self) -> [(usize, usize); 5] {
        let [a, b, c, d] = self.1;
        [place(self.0), place(a), place(b), place(c), place(d)]
    }
}

impl PartialEq for SeriesKey {
    fn eq(&self, other: &Self) -> bool {
        self.2 == other.2 && self.places() == other.places()
    }
}

impl Eq for SeriesKey {}

impl std::hash::Hash for SeriesKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.places().hash(state);
        self.2.hash(state);
    }
}

/// The label names that go with a `SeriesKey`'s values; empty names are skipped.
type LabelNames = [&'static str; 4];

pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    counters: DashMap<SeriesKey, Counter, RandomState>,
    histograms: DashMap<SeriesKey, Histogram, RandomState>,
    gauges: DashMap<SeriesKey, Gauge, RandomState>,
    /// Every request's two series (its count by route and status, its duration by route) in one
    /// entry, found by the route name's address and the status: two integers to hash instead of
    /// the name's text, one lookup instead of two. The same name at another address (a literal
    /// repeated in another codegen unit) only adds an entry whose handles count into the same
    /// series, which the recorder keys by name and labels.
    requests: DashMap<((usize, usize), u16), (Counter, Histogram), RandomState>,
    queue_depth: Gauge,
}

/// The handle of a series, registered on first use. A reference into the map rather than a
/// clone: cloning a handle's `Arc` on every request moved its count between the cores.
fn handle<K: Eq + std::hash::Hash, T>(
    map: &DashMap<K, T, RandomState>,
    key: K,
    register: impl FnOnce() -> T,
) -> Ref<'_, K, T> {
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
            requests: DashMap::with_hasher(RandomState::default()),
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

    fn counter(&self, series: Series) -> Ref<'_, SeriesKey, Counter> {
        handle(&self.counters, series.key, || {
            self.recorder.register_counter(&series.key(), &METADATA)
        })
    }

    fn gauge(&self, series: Series) -> Ref<'_, SeriesKey, Gauge> {
        handle(&self.gauges, series.key, || {
            self.recorder.register_gauge(&series.key(), &METADATA)
        })
    }

    fn histogram(&self, series: Series) -> Ref<'_, SeriesKey, Histogram> {
        handle(&self.histograms, series.key, || {
            self.recorder.register_histogram(&series.key(), &METADATA)
        })
    }

    fn count(&self, series: Series) {
        self.counter(series).increment(1);
    }

    pub fn http_request(&self, route: &'static str, status: u16, elapsed: Duration) {
        let key = (place(route), status);
        let handles = handle(&self.requests, key, || {
            let by_route = Series::of(HTTP_REQUESTS).by("route", route).status(status);
            let duration = Series::of(HTTP_DURATION).by("route", route);
            (
                self.recorder.register_counter(&by_route.key(), &METADATA),
                self.recorder.register_histogram(&duration.key(), &METADATA),
            )
        });
        let (requests, duration) = &*handles;
        requests.increment(1);
        duration.record(elapsed.as_secs_f64());
    }

    /// `outcome`: created, resent, replayed, max_sends_reached, send_quota_exceeded.
    pub fn verification_started(&self, channel: &'static str, outcome: &'static str) {
        let series = Series::of(VERIFICATIONS_STARTED).by("channel", channel);
        self.count(series.by("outcome", outcome));
    }

    /// `outcome`: the status a check left (approved, pending, …), or not_found, already_final
    /// (nothing counted), replayed (an idempotency key's recorded outcome) or key_reused.
    pub fn verification_checked(&self, outcome: &'static str) {
        self.count(Series::of(VERIFICATION_CHECKS).by("outcome", outcome));
    }

    pub fn send_admitted(&self, country: Region) {
        self.count(Series::of(SENDS_ADMITTED).by("country_code", country_label(country)));
    }

    /// A workflow fell back from channel `from` to `to`; `reason`: failed, timeout.
    pub fn fallback(&self, from: &'static str, to: &'static str, reason: &'static str) {
        let series = Series::of(FALLBACKS).by("from", from).by("to", to);
        self.count(series.by("reason", reason));
    }

    /// An approved verification, by destination country and by the channel its code went out
    /// on: with `otpgate_verifications_started_total`, conversion per channel.
    pub fn approval(&self, country: Region, channel: &'static str) {
        let series = Series::of(APPROVALS).by("country_code", country_label(country));
        self.count(series.by("channel", channel));
    }

    pub fn abuse_block(&self, country: Region, rule: &'static str) {
        let series = Series::of(ABUSE_BLOCKS).by("country", country_label(country));
        self.count(series.by("rule", rule));
    }

    pub fn store_error(&self, operation: &'static str) {
        self.count(Series::of(STORE_ERRORS).by("operation", operation));
    }

    /// One provider attempt. `channel`: sms, whatsapp, call, email. `outcome`: accepted, failed
    /// (retryable), refused (permanent). `country`: the calling code of the destination.
    pub fn message(
        &self,
        provider: &'static str,
        channel: &'static str,
        country: &'static str,
        outcome: &'static str,
    ) {
        let series = Series::of(MESSAGES).by("provider", provider);
        let series = series.by("channel", channel).by("country_code", country);
        self.count(series.by("outcome", outcome));
    }

    /// How long one provider request took, by provider and channel (a call is placed by
    /// another API than a text).
    pub fn provider_latency(
        &self,
        provider: &'static str,
        channel: &'static str,
        elapsed: Duration,
    ) {
        let series = Series::of(PROVIDER_DURATION).by("provider", provider);
        self.histogram(series.by("channel", channel))
            .record(elapsed.as_secs_f64());
    }

    /// `scope`: ip, key, failed_auth.
    pub fn rate_limited(&self, scope: &'static str) {
        self.count(Series::of(RATE_LIMITED).by("scope", scope));
    }

    /// A connection closed at accept. `reason`: process, ip.
    pub fn connection_refused(&self, reason: &'static str) {
        self.count(Series::of(CONNECTIONS_REFUSED).by("reason", reason));
    }

    /// A connection closed by a deadline. `reason`: first_request, idle, body_timeout.
    pub fn connection_timed_out(&self, reason: &'static str) {
        self.count(Series::of(CONNECTIONS_TIMED_OUT).by("reason", reason));
    }

    pub fn connections_open(&self, open: usize) {
        self.gauge(Series::of(CONNECTIONS_OPEN)).set(open as f64);
    }

    pub fn accept_error(&self) {
        self.count(Series::of(ACCEPT_ERRORS));
    }

    /// 0 closed, 1 half-open, 2 open.
    pub fn breaker_state(&self, provider: &'static str, state: f64) {
        self.gauge(Series::of(PROVIDER_BREAKER_STATE).by("provider", provider))
            .set(state);
    }

    pub fn smpp_session_bound(&self, provider: &'static str, role: &'static str, bound: bool) {
        let series = Series::of(SMPP_SESSIONS_BOUND).by("provider", provider);
        self.gauge(series.by("role", role))
            .set(f64::from(u8::from(bound)));
    }

    pub fn oldest_queued_age(&self, age: Duration) {
        self.gauge(Series::of(DISPATCH_OLDEST_AGE))
            .set(age.as_secs_f64());
    }

    pub fn dead_letter(&self) {
        self.count(Series::of(DEAD_LETTERS));
    }

    pub fn outbox_read_failing(&self, failing_for: Duration) {
        self.gauge(Series::of(OUTBOX_READ_FAILING))
            .set(failing_for.as_secs_f64());
    }

    pub fn outbox_group_created(&self) {
        self.count(Series::of(OUTBOX_GROUPS_RECREATED));
    }

    /// A message delivered again after its worker died before acknowledging it.
    pub fn redelivered(&self) {
        self.count(Series::of(REDELIVERIES));
    }

    /// SMS segments per message, by encoding (gsm7, ucs2).
    pub fn segments(&self, encoding: &'static str, segments: u32) {
        self.counter(Series::of(MESSAGE_SEGMENTS).by("encoding", encoding))
            .increment(u64::from(segments));
    }

    /// A delivery receipt from a provider. `status`: the normalized delivery status.
    pub fn receipt(&self, provider: &'static str, status: &'static str) {
        let series = Series::of(RECEIPTS).by("provider", provider);
        self.count(series.by("status", status));
    }

    /// `outcome`: match, mismatch, wait, locked, changed, disabled, transferred (issue 14).
    pub fn pin_checked(&self, outcome: &'static str) {
        self.count(Series::of(PIN_CHECKS).by("outcome", outcome));
    }

    pub fn pin_locked(&self) {
        self.count(Series::of(PIN_LOCKS));
    }

    /// `purpose`: disable, reset. `outcome`: sent, refused, no_email, mail_failed.
    pub fn two_step_link_request(&self, purpose: &'static str, outcome: &'static str) {
        let series = Series::of(TWO_STEP_LINK_REQUESTS).by("purpose", purpose);
        self.count(series.by("outcome", outcome));
        if purpose == "disable" {
            self.count(Series::of(TWO_STEP_DISABLE_REQUESTS).by("outcome", outcome));
        }
    }

    /// `purpose`: disable, reset, support. `outcome`: used, replayed, expired, superseded,
    /// unknown, already_disabled.
    pub fn two_step_link_used(&self, purpose: &'static str, outcome: &'static str) {
        let series = Series::of(TWO_STEP_LINKS_USED).by("purpose", purpose);
        self.count(series.by("outcome", outcome));
    }

    /// `kind`: totp, webauthn, recovery_code. `outcome`: see `FACTOR_CHALLENGES`.
    pub fn factor_challenge(&self, kind: &'static str, outcome: &'static str) {
        let series = Series::of(FACTOR_CHALLENGES).by("type", kind);
        self.count(series.by("outcome", outcome));
    }

    /// `kind`: totp, webauthn, passkey. `outcome`: started, confirmed, or a refusal reason.
    pub fn factor_enrolment(&self, kind: &'static str, outcome: &'static str) {
        let series = Series::of(FACTOR_ENROLMENTS).by("type", kind);
        self.count(series.by("outcome", outcome));
    }

    /// `outcome`: emitted, dropped.
    pub fn event(&self, outcome: &'static str, count: u64) {
        self.counter(Series::of(EVENTS).by("outcome", outcome))
            .increment(count);
    }

    /// `outcome`: delivered, failed, dead_lettered.
    pub fn webhook_delivery(&self, outcome: &'static str, elapsed: Duration) {
        self.count(Series::of(WEBHOOK_DELIVERIES).by("outcome", outcome));
        self.histogram(Series::of(WEBHOOK_DURATION))
            .record(elapsed.as_secs_f64());
    }

    pub fn pin_hash_time(&self, elapsed: Duration) {
        self.histogram(Series::of(PIN_HASH_DURATION))
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

/// A series to record into: its cache key, and the label names that go with the key's values.
#[derive(Clone, Copy)]
struct Series {
    key: SeriesKey,
    names: LabelNames,
    with_status: bool,
}

impl Series {
    /// The metric `name` with no labels yet.
    fn of(name: &'static str) -> Self {
        Self {
            key: SeriesKey(name, [""; 4], 0),
            names: [""; 4],
            with_status: false,
        }
    }

    /// Adds the label `name` = `value` in the next free place.
    fn by(mut self, name: &'static str, value: &'static str) -> Self {
        let slot = self.names.iter().position(|name| name.is_empty());
        let slot = slot.expect("a series has four text labels at most");
        self.names[slot] = name;
        self.key.1[slot] = value;
        self
    }

    /// Adds the numeric label `status`.
    fn status(mut self, status: u16) -> Self {
        self.key.2 = status;
        self.with_status = true;
        self
    }

    fn key(&self) -> Key {
        let SeriesKey(metric, values, status) = self.key;
        let mut labels: Vec<Label> = (self.names.iter().zip(values))
            .filter(|(name, _)| !name.is_empty())
            .map(|(name, value)| Label::new(*name, value))
            .collect();
        if self.with_status {
            labels.push(Label::new("status", status.to_string()));
        }
        Key::from_parts(metric, labels)
    }
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
    fn series_are_told_apart_by_length_where_one_name_starts_another() {
        // A shorter text at the same address (as the linker may place a literal inside another).
        const LONG: &str = "check_trusted_device";
        let short: &'static str = &LONG[..5];
        let metrics = Metrics::new();
        metrics.http_request(LONG, 200, Duration::from_micros(300));
        metrics.http_request(short, 200, Duration::from_micros(300));
        metrics.http_request(short, 404, Duration::from_micros(300));
        metrics.verification_checked(LONG);
        metrics.verification_checked(short);
        let text = metrics.render();
        for series in [
            "otpgate_http_requests_total{route=\"check_trusted_device\",status=\"200\"} 1",
            "otpgate_http_requests_total{route=\"check\",status=\"200\"} 1",
            "otpgate_http_requests_total{route=\"check\",status=\"404\"} 1",
            "otpgate_verification_checks_total{outcome=\"check_trusted_device\"} 1",
            "otpgate_verification_checks_total{outcome=\"check\"} 1",
        ] {
            assert!(text.contains(series), "{series} missing from:\n{text}");
        }
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
