//! Which provider sends a message, and what happens when it fails.
//!
//! A route (longest prefix of the E.164 number wins, optionally per channel) lists providers in
//! order, with weights that split the first choice; the rest of the list is the failover order.
//! Each provider has a circuit breaker (open after consecutive failures, one half-open probe
//! after a cool-down, closed again on success) and an optional send rate. A message is tried
//! across the list, round after round with exponential backoff and jitter, and never after its
//! code has expired.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use ring::rand::{SecureRandom, SystemRandom};

use super::providers::{Accepted, Provider, ProviderError};
use super::OutgoingMessage;
use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::verify::model::Channel;

/// One line of the routing table, as configured.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSettings {
    /// `+49`, `+4915`, or `*` for every number.
    pub prefix: String,
    /// Only for this channel; every channel when absent.
    #[serde(default)]
    pub channel: Option<Channel>,
    /// Provider names in failover order. `name:weight` entries split the first choice by weight;
    /// without any weight the first listed is always tried first.
    pub providers: Vec<String>,
}

#[derive(Debug, Clone, Copy)]
pub struct BreakerSettings {
    /// Consecutive retryable failures that open the breaker.
    pub failures_to_open: u32,
    /// How long it stays open before one probe is let through.
    pub open_for: Duration,
}

#[derive(Debug, Clone, Copy)]
pub struct RetrySettings {
    /// Rounds over the provider list.
    pub max_rounds: u32,
    /// First backoff; doubled each round, plus up to as much again of jitter.
    pub base_backoff: Duration,
}

struct Route {
    prefix: String,
    channel: Option<Channel>,
    /// (provider index, weight) in configured order.
    providers: Vec<(usize, u32)>,
}

pub struct Slot {
    pub provider: Arc<dyn Provider>,
    breaker: Breaker,
    rate: Option<DefaultDirectRateLimiter>,
}

pub struct Router {
    slots: Vec<Slot>,
    /// Longest prefix first.
    routes: Vec<Route>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    retry: RetrySettings,
    rng: SystemRandom,
}

/// How a message's delivery ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Accepted {
        provider: &'static str,
        provider_message_id: Option<String>,
    },
    /// Every try failed, or the code expired first; the reasons, in order, and the last
    /// provider tried (none when none was).
    Failed {
        reasons: Vec<String>,
        last_provider: Option<&'static str>,
    },
}

impl Router {
    /// `providers` with their optional rate per second; `routes` naming them. Every route must
    /// name known providers, and without a `*` route a catch-all over every provider is added.
    pub fn new(
        providers: Vec<(Arc<dyn Provider>, Option<u32>)>,
        routes: &[RouteSettings],
        breaker: BreakerSettings,
        retry: RetrySettings,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, Vec<String>> {
        let mut errors = Vec::new();
        let slots: Vec<Slot> = providers
            .into_iter()
            .map(|(provider, per_second)| Slot {
                provider,
                breaker: Breaker::new(breaker),
                rate: per_second
                    .and_then(std::num::NonZeroU32::new)
                    .map(|rate| RateLimiter::direct(Quota::per_second(rate))),
            })
            .collect();
        if slots.is_empty() {
            errors.push("dispatch: no provider configured".to_owned());
        }
        let index_of = |name: &str| slots.iter().position(|slot| slot.provider.name() == name);
        let mut table = Vec::new();
        for route in routes {
            let prefix_ok = route.prefix == "*"
                || (route.prefix.starts_with('+')
                    && route.prefix.len() > 1
                    && route.prefix[1..].bytes().all(|b| b.is_ascii_digit()));
            if !prefix_ok {
                errors.push(format!(
                    "dispatch.routes: prefix '{}' must be '*' or '+' and digits",
                    route.prefix
                ));
            }
            let mut providers = Vec::new();
            for entry in &route.providers {
                // Unweighted entries take part in failover only (weight 0 for the first pick).
                let (name, weight) = match entry.split_once(':') {
                    Some((name, weight)) => (name, weight.parse::<u32>().ok().filter(|w| *w > 0)),
                    None => (entry.as_str(), Some(0)),
                };
                match (index_of(name), weight) {
                    (Some(index), Some(weight)) => providers.push((index, weight)),
                    (None, _) => errors.push(format!(
                        "dispatch.routes: '{}' names unknown provider '{name}'",
                        route.prefix
                    )),
                    (_, None) => {
                        errors.push(format!("dispatch.routes: '{entry}' has a bad weight"))
                    }
                }
            }
            if providers.is_empty() {
                errors.push(format!(
                    "dispatch.routes: '{}' lists no provider",
                    route.prefix
                ));
            }
            table.push(Route {
                prefix: if route.prefix == "*" {
                    String::new()
                } else {
                    route.prefix.clone()
                },
                channel: route.channel,
                providers,
            });
        }
        if !table
            .iter()
            .any(|route| route.prefix.is_empty() && route.channel.is_none())
        {
            table.push(Route {
                prefix: String::new(),
                channel: None,
                providers: (0..slots.len()).map(|index| (index, 1)).collect(),
            });
        }
        // Longest prefix first; a channel-specific route before a general one of equal length.
        table.sort_by_key(|route| {
            (
                std::cmp::Reverse(route.prefix.len()),
                route.channel.is_none(),
            )
        });
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Self {
            slots,
            routes: table,
            clock,
            metrics,
            retry,
            rng: SystemRandom::new(),
        })
    }

    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }

    /// The providers to try for `message`, in order: a weighted pick first, then the rest of the
    /// route in its configured order.
    pub fn plan(&self, message: &OutgoingMessage) -> Vec<usize> {
        let number = message.to.e164();
        let Some(route) = self.routes.iter().find(|route| {
            number.starts_with(&route.prefix)
                && route
                    .channel
                    .is_none_or(|channel| channel == message.channel)
        }) else {
            return Vec::new();
        };
        let total: u32 = route.providers.iter().map(|(_, weight)| weight).sum();
        let first = if total == 0 {
            0
        } else {
            let mut pick = self.random_below(total);
            route
                .providers
                .iter()
                .position(|(_, weight)| {
                    if pick < *weight {
                        true
                    } else {
                        pick -= weight;
                        false
                    }
                })
                .unwrap_or(0)
        };
        let mut order = vec![route.providers[first].0];
        order.extend(
            route
                .providers
                .iter()
                .enumerate()
                .filter(|(position, _)| *position != first)
                .map(|(_, (index, _))| *index),
        );
        order
    }

    fn random_below(&self, bound: u32) -> u32 {
        let mut bytes = [0u8; 4];
        // The pick only spreads load; if the generator fails, the first provider is fine.
        if bound <= 1 || self.rng.fill(&mut bytes).is_err() {
            return 0;
        }
        u32::from_le_bytes(bytes) % bound
    }

    /// Tries the plan until a provider accepts, the rounds run out, or the code expires.
    pub async fn deliver(&self, message: &OutgoingMessage) -> Delivery {
        let plan = self.plan(message);
        let mut reasons = Vec::new();
        let mut last_provider = None;
        let country = country_label(message.to.country_code());
        for round in 0..self.retry.max_rounds {
            for &index in &plan {
                let slot = &self.slots[index];
                let name = slot.provider.name();
                if self.clock.now_ms() >= message.not_after_ms {
                    reasons.push("the code expired before a provider accepted it".to_owned());
                    return Delivery::Failed {
                        reasons,
                        last_provider,
                    };
                }
                if !slot.breaker.allow(self.clock.now_ms()) {
                    reasons.push(format!("{name}: circuit open"));
                    continue;
                }
                if let Some(rate) = &slot.rate {
                    rate.until_ready().await;
                }
                last_provider = Some(name);
                let started = Instant::now();
                let result = slot.provider.send(message).await;
                self.metrics.provider_latency(name, started.elapsed());
                match result {
                    Ok(Accepted {
                        provider_message_id,
                    }) => {
                        slot.breaker.succeeded();
                        self.metrics.message(name, country, "accepted");
                        self.metrics.breaker_state(name, slot.breaker.state_code());
                        return Delivery::Accepted {
                            provider: name,
                            provider_message_id,
                        };
                    }
                    Err(ProviderError::Permanent(reason)) => {
                        // A refusal says nothing about the provider's health; the next provider
                        // may still accept (another account, another network).
                        slot.breaker.succeeded();
                        self.metrics.message(name, country, "refused");
                        reasons.push(format!("{name}: {reason}"));
                    }
                    Err(ProviderError::Retryable(reason)) => {
                        slot.breaker.failed(self.clock.now_ms());
                        self.metrics.message(name, country, "failed");
                        self.metrics.breaker_state(name, slot.breaker.state_code());
                        reasons.push(format!("{name}: {reason}"));
                    }
                }
            }
            if round + 1 == self.retry.max_rounds {
                break;
            }
            let backoff = self.backoff(round);
            if self.clock.now_ms() + backoff.as_millis() as u64 >= message.not_after_ms {
                reasons.push("no time left before the code expires".to_owned());
                break;
            }
            tokio::time::sleep(backoff).await;
        }
        Delivery::Failed {
            reasons,
            last_provider,
        }
    }

    /// `base × 2^round` plus up to as much again of random jitter, so that retries of many
    /// messages after one outage do not arrive in lockstep.
    fn backoff(&self, round: u32) -> Duration {
        let base = self.retry.base_backoff.saturating_mul(1 << round.min(10));
        let jitter_ms = self.random_below(base.as_millis().min(u128::from(u32::MAX)) as u32 + 1);
        base + Duration::from_millis(u64::from(jitter_ms))
    }
}

/// The country calling code as a bounded metric label.
pub fn country_label(code: u16) -> &'static str {
    // Label values must be 'static for the metric cache; calling codes are at most 3 digits,
    // so the table of their strings is small and made once.
    static LABELS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let labels = LABELS.get_or_init(|| (0..1000).map(|code| code.to_string()).collect());
    labels
        .get(usize::from(code))
        .map(String::as_str)
        .unwrap_or("other")
}

/// A per-provider circuit breaker.
struct Breaker {
    settings: BreakerSettings,
    state: Mutex<BreakerState>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BreakerState {
    Closed {
        failures: u32,
    },
    Open {
        until_ms: u64,
    },
    /// One probe is in flight; everyone else waits for its answer.
    HalfOpen,
}

impl Breaker {
    fn new(settings: BreakerSettings) -> Self {
        Self {
            settings,
            state: Mutex::new(BreakerState::Closed { failures: 0 }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BreakerState> {
        // The state is a plain value replaced whole; a poisoned lock still holds a valid one.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Time is the gateway's `Clock` (epoch milliseconds), so tests move it instead of waiting.
    fn allow(&self, now_ms: u64) -> bool {
        let mut state = self.lock();
        match *state {
            BreakerState::Closed { .. } => true,
            BreakerState::Open { until_ms } if now_ms >= until_ms => {
                *state = BreakerState::HalfOpen;
                true
            }
            BreakerState::Open { .. } | BreakerState::HalfOpen => false,
        }
    }

    fn succeeded(&self) {
        *self.lock() = BreakerState::Closed { failures: 0 };
    }

    fn failed(&self, now_ms: u64) {
        let mut state = self.lock();
        *state = match *state {
            BreakerState::Closed { failures } if failures + 1 < self.settings.failures_to_open => {
                BreakerState::Closed {
                    failures: failures + 1,
                }
            }
            _ => BreakerState::Open {
                until_ms: now_ms + self.settings.open_for.as_millis() as u64,
            },
        };
    }

    /// 0 closed, 1 half-open, 2 open: the value of the breaker-state gauge.
    fn state_code(&self) -> f64 {
        match *self.lock() {
            BreakerState::Closed { .. } => 0.0,
            BreakerState::HalfOpen => 1.0,
            BreakerState::Open { .. } => 2.0,
        }
    }
}

impl Slot {
    pub fn breaker_state(&self) -> f64 {
        self.breaker.state_code()
    }
}

#[cfg(test)]
mod tests {
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
            to: PhoneNumber::parse(to).unwrap(),
            channel: Channel::Sms,
            body: "code".into(),
            code: "123456".into(),
            locale: "en".into(),
            not_after_ms: u64::MAX,
        }
    }

    fn router(providers: Vec<Arc<Scripted>>, routes: &[RouteSettings], rounds: u32) -> Router {
        Router::new(
            providers
                .into_iter()
                .map(|p| (p as Arc<dyn Provider>, None))
                .collect(),
            routes,
            BreakerSettings {
                failures_to_open: 2,
                open_for: Duration::from_secs(3600),
            },
            RetrySettings {
                max_rounds: rounds,
                base_backoff: Duration::from_millis(1),
            },
            Arc::new(ManualClock::new(0)),
            Arc::new(Metrics::new()),
        )
        .unwrap()
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
        let delivery = router.deliver(&message("+4915112345678")).await;
        assert_eq!(
            delivery,
            Delivery::Accepted {
                provider: "b",
                provider_message_id: Some("b-0".into())
            }
        );
    }

    #[tokio::test]
    async fn the_breaker_opens_after_consecutive_failures_and_skips_the_provider() {
        let a = scripted("a", u32::MAX);
        let b = scripted("b", 0);
        let router = router(vec![a.clone(), b.clone()], &[route("*", &["a", "b"])], 1);
        for _ in 0..5 {
            router.deliver(&message("+4915112345678")).await;
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
        assert!(!breaker.allow(10_999));
        assert!(breaker.allow(11_000), "the probe");
        assert!(!breaker.allow(11_000), "only one probe");
        breaker.succeeded();
        assert!(breaker.allow(12_000));
    }

    #[tokio::test]
    async fn retries_run_rounds_until_a_provider_recovers() {
        let a = scripted("a", 2);
        let router = Router::new(
            vec![(a.clone() as Arc<dyn Provider>, None)],
            &[],
            BreakerSettings {
                failures_to_open: 10,
                open_for: Duration::from_secs(1),
            },
            RetrySettings {
                max_rounds: 3,
                base_backoff: Duration::from_millis(1),
            },
            Arc::new(ManualClock::new(0)),
            Arc::new(Metrics::new()),
        )
        .unwrap();
        assert!(matches!(
            router.deliver(&message("+4915112345678")).await,
            Delivery::Accepted { .. }
        ));
        assert_eq!(a.calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn nothing_is_tried_after_the_code_expired() {
        let a = scripted("a", 0);
        let router = router(vec![a.clone()], &[], 3);
        let mut expired = message("+4915112345678");
        expired.not_after_ms = 0;
        assert!(matches!(
            router.deliver(&expired).await,
            Delivery::Failed { .. }
        ));
        assert_eq!(a.calls.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn unknown_providers_in_routes_are_reported() {
        let errors = Router::new(
            vec![(scripted("a", 0) as Arc<dyn Provider>, None)],
            &[route("+49", &["nope"]), route("49", &["a"])],
            BreakerSettings {
                failures_to_open: 1,
                open_for: Duration::from_secs(1),
            },
            RetrySettings {
                max_rounds: 1,
                base_backoff: Duration::from_millis(1),
            },
            Arc::new(ManualClock::new(0)),
            Arc::new(Metrics::new()),
        )
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
}
