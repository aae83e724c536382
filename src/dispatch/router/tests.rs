//! The router's unit tests: routes, weights, failover, breakers, rates and retries.

use super::*;
use crate::clock::ManualClock;
use crate::phone::PhoneNumber;
use async_trait::async_trait;
use std::sync::atomic::{AtomicU32, Ordering};

/// A provider that answers from a script and counts its calls.
struct Scripted {
    name: &'static str,
    fail_first: u32,
    permanent: bool,
    calls: AtomicU32,
}

#[async_trait]
impl Provider for Scripted {
    fn name(&self) -> &'static str {
        self.name
    }

    async fn send(&self, _: &OutgoingMessage) -> Result<Accepted, ProviderError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        if call < self.fail_first {
            return Err(if self.permanent {
                ProviderError::Permanent("refused".into())
            } else {
                ProviderError::Retryable("down".into())
            });
        }
        Ok(Accepted {
            provider_message_id: Some(format!("{}-{call}", self.name)),
        })
    }
}

fn scripted(name: &'static str, fail_first: u32) -> Arc<Scripted> {
    Arc::new(Scripted {
        name,
        fail_first,
        permanent: false,
        calls: AtomicU32::new(0),
    })
}

fn message(to: &str) -> OutgoingMessage {
    OutgoingMessage {
        id: "MS1".into(),
        verification_id: "VE1".into(),
        account: String::new(),
        to: PhoneNumber::parse(to).unwrap().into(),
        channel: Channel::Sms,
        body: "code".into(),
        code: "123456".into(),
        locale: "en".into(),
        not_after_ms: u64::MAX,
    }
}

fn router(providers: Vec<Arc<Scripted>>, routes: &[RouteSettings], backoff_ms: u32) -> Router {
    let breaker = breaker(2, Duration::from_secs(3600));
    build(providers, routes, breaker, backoff_ms).unwrap()
}

fn breaker(failures_to_open: u32, open_for: Duration) -> BreakerSettings {
    BreakerSettings {
        failures_to_open,
        open_for,
    }
}

/// A router on a clock standing at 0, its back-off starting at `backoff_ms`, at most 1 s.
fn build(
    providers: Vec<Arc<Scripted>>,
    routes: &[RouteSettings],
    breaker: BreakerSettings,
    backoff_ms: u32,
) -> Result<Router, Vec<String>> {
    Router::new(
        providers
            .into_iter()
            .map(|p| (p as Arc<dyn Provider>, None))
            .collect(),
        routes,
        breaker,
        RetrySettings {
            base_backoff: Duration::from_millis(backoff_ms.into()),
            max_backoff: Duration::from_secs(1),
        },
        Arc::new(ManualClock::new(0)),
        Arc::new(Metrics::new()),
    )
}

fn route(prefix: &str, providers: &[&str]) -> RouteSettings {
    RouteSettings {
        prefix: prefix.into(),
        channel: None,
        providers: providers.iter().map(|p| p.to_string()).collect(),
    }
}

#[test]
fn the_longest_prefix_wins() {
    let router = router(
        vec![scripted("a", 0), scripted("b", 0), scripted("c", 0)],
        &[
            route("*", &["a"]),
            route("+49", &["b"]),
            route("+4915", &["c", "a"]),
        ],
        1,
    );
    assert_eq!(router.plan(&message("+4915112345678")), vec![2, 0]);
    assert_eq!(router.plan(&message("+4930123456")), vec![1]);
    assert_eq!(router.plan(&message("+33612345678")), vec![0]);
}

#[test]
fn weights_split_the_first_choice() {
    let router = router(
        vec![scripted("a", 0), scripted("b", 0)],
        &[route("*", &["a:3", "b:1"])],
        1,
    );
    let firsts: Vec<usize> = (0..4000)
        .map(|_| router.plan(&message("+4915112345678"))[0])
        .collect();
    let share_a = firsts.iter().filter(|&&first| first == 0).count() as f64 / 4000.0;
    assert!((0.70..0.80).contains(&share_a), "a got {share_a}");
}

#[tokio::test]
async fn a_failing_provider_fails_over_to_the_next() {
    let a = scripted("a", u32::MAX);
    let b = scripted("b", 0);
    let router = router(vec![a.clone(), b.clone()], &[route("*", &["a", "b"])], 1);
    let delivery = router
        .deliver(&message("+4915112345678"), &mut Progress::default())
        .await;
    let Delivery::Accepted {
        provider,
        provider_message_id,
        failures,
        ..
    } = delivery
    else {
        panic!("{delivery:?}")
    };
    assert_eq!(
        (provider, provider_message_id.as_deref()),
        ("b", Some("b-0"))
    );
    assert_eq!(failures.len(), 1, "a's failure is reported");
    assert_eq!((failures[0].provider, failures[0].permanent), ("a", false));
}

#[tokio::test]
async fn the_breaker_opens_after_consecutive_failures_and_skips_the_provider() {
    let a = scripted("a", u32::MAX);
    let b = scripted("b", 0);
    let router = router(vec![a.clone(), b.clone()], &[route("*", &["a", "b"])], 1);
    for _ in 0..5 {
        router
            .deliver(&message("+4915112345678"), &mut Progress::default())
            .await;
    }
    assert_eq!(
        a.calls.load(Ordering::SeqCst),
        2,
        "open after two failures, then skipped"
    );
    assert_eq!(router.slots()[0].breaker_state(), 2.0);
}

#[test]
fn an_open_breaker_lets_one_probe_through_and_closes_on_success() {
    let breaker = Breaker::new(BreakerSettings {
        failures_to_open: 1,
        open_for: Duration::from_secs(10),
    });
    breaker.failed(1_000);
    assert_eq!(
        breaker.allow(10_999),
        Err(11_000),
        "refused until the probe's time"
    );
    assert!(breaker.allow(11_000).is_ok(), "the probe");
    assert!(breaker.allow(11_000).is_err(), "only one probe");
    assert!(breaker.succeeded(), "closing an open breaker is a recovery");
    assert!(breaker.allow(12_000).is_ok());
    assert!(!breaker.succeeded(), "already closed");
}

#[tokio::test]
async fn a_round_that_fails_defers_the_message_with_a_growing_back_off_until_a_provider_recovers() {
    let a = scripted("a", 2);
    let router = build(
        vec![a.clone()],
        &[],
        breaker(10, Duration::from_secs(1)),
        100,
    )
    .unwrap();
    let message = message("+4915112345678");
    let mut progress = Progress::default();
    let mut delays = Vec::new();
    for _ in 0..2 {
        match router.deliver(&message, &mut progress).await {
            Delivery::Deferred {
                failures,
                retry_at_ms,
            } => {
                assert_eq!(failures.len(), 1);
                delays.push(retry_at_ms);
            }
            other => panic!("{other:?}"),
        }
    }
    // Round 0: 50..=100 ms; round 1: 100..=200 ms (the clock stands still here).
    assert!((50..=100).contains(&delays[0]), "{delays:?}");
    assert!((100..=200).contains(&delays[1]), "{delays:?}");
    assert!(matches!(
        router.deliver(&message, &mut progress).await,
        Delivery::Accepted { .. }
    ));
    assert_eq!(a.calls.load(Ordering::SeqCst), 3);
    assert_eq!(progress.round, 2);
}

#[tokio::test]
async fn with_every_breaker_open_the_next_try_waits_for_the_first_probe() {
    let a = scripted("a", u32::MAX);
    // Breakers open after 2 failures, for an hour.
    let router = router(vec![a.clone()], &[], 1);
    let message = message("+4915112345678");
    let mut progress = Progress::default();
    router.deliver(&message, &mut progress).await;
    router.deliver(&message, &mut progress).await;
    let delivery = router.deliver(&message, &mut progress).await;
    assert_eq!(
        delivery,
        Delivery::Deferred {
            failures: Vec::new(),
            retry_at_ms: 3_600_000
        },
        "not tried, and not before the breaker's probe"
    );
    assert_eq!(a.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_message_is_given_up_only_when_every_provider_refused_it_or_its_code_expires() {
    let refusing = Arc::new(Scripted {
        name: "r",
        fail_first: u32::MAX,
        permanent: true,
        calls: AtomicU32::new(0),
    });
    let down = scripted("d", u32::MAX);
    let mixed = router(
        vec![refusing.clone(), down.clone()],
        &[route("*", &["r", "d"])],
        1,
    );
    let mut message = message("+4915112345678");
    message.not_after_ms = 10_000;
    let mut progress = Progress::default();
    assert!(matches!(
        mixed.deliver(&message, &mut progress).await,
        Delivery::Deferred { .. }
    ));
    assert_eq!(progress.refused, vec!["r"]);
    assert!(matches!(
        mixed.deliver(&message, &mut progress).await,
        Delivery::Deferred { .. }
    ));
    assert_eq!(refusing.calls.load(Ordering::SeqCst), 1, "not asked again");
    assert_eq!(
        mixed.progress_from(progress.round, "r"),
        progress,
        "progress survives the outbox's text form"
    );

    // Both refuse: given up at once.
    let only_refusing = router_of_refusers();
    let mut progress = Progress::default();
    assert!(matches!(
        only_refusing.deliver(&message, &mut progress).await,
        Delivery::Failed { reason, .. } if reason.contains("refused")
    ));

    // The next try would come after the code's expiry: given up.
    let late = router(vec![scripted("x", u32::MAX)], &[], 1_000);
    message.not_after_ms = 500;
    assert!(matches!(
        late.deliver(&message, &mut Progress::default()).await,
        Delivery::Failed { reason, .. } if reason.contains("expires")
    ));
}

fn router_of_refusers() -> Router {
    let refuser = |name| {
        Arc::new(Scripted {
            name,
            fail_first: u32::MAX,
            permanent: true,
            calls: AtomicU32::new(0),
        })
    };
    router(vec![refuser("p"), refuser("q")], &[], 1)
}

#[tokio::test]
async fn nothing_is_tried_after_the_code_expired() {
    let a = scripted("a", 0);
    let router = router(vec![a.clone()], &[], 3);
    let mut expired = message("+4915112345678");
    expired.not_after_ms = 0;
    assert!(matches!(
        router.deliver(&expired, &mut Progress::default()).await,
        Delivery::Failed { .. }
    ));
    assert_eq!(a.calls.load(Ordering::SeqCst), 0);
}

#[test]
fn unknown_providers_in_routes_are_reported() {
    let routes = [route("+49", &["nope"]), route("49", &["a"])];
    let breaker = breaker(1, Duration::from_secs(1));
    let errors = build(vec![scripted("a", 0)], &routes, breaker, 1)
        .err()
        .unwrap();
    assert!(
        errors.iter().any(|e| e.contains("unknown provider 'nope'")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.contains("prefix '49'")),
        "{errors:?}"
    );
}
