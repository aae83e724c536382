//! Which provider sends a message, and what happens when it fails.
//!
//! A route (longest prefix of the E.164 number wins, optionally per channel) lists providers in
//! order, with weights that split the first choice; the rest of the list is the failover order.
//! Each provider has a circuit breaker (open after consecutive failures, one half-open probe
//! after a cool-down, closed again on success) and an optional send rate.
//!
//! [`Router::deliver`] makes one round over the list. When no provider took the message, the
//! round says when to try again (exponential back-off with jitter, and never before an open
//! breaker lets its probe through); the workers keep the message until then. A message is
//! given up only when its code would be expired by the next try, or when every provider of its
//! route refused it for good: an outage delays codes, it does not condemn them.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use ring::rand::{SecureRandom, SystemRandom};

use super::providers::{valid_vendor_id, Accepted, Provider, ProviderError};
use super::OutgoingMessage;
use crate::clock::Clock;
use crate::dispatch::model::Channel;
use crate::metrics::Metrics;

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
    /// First back-off after a round; doubled each round up to `max_backoff`, of which a random
    /// part up to a half is taken off (jitter).
    pub base_backoff: Duration,
    pub max_backoff: Duration,
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
    /// Woken when a breaker closes again, so that waiting messages need not sit out their
    /// back-off once a provider is back.
    recovered: tokio::sync::Notify,
}

/// One provider's failure in a round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub provider: &'static str,
    /// Refused for good (`Permanent`): this provider is not tried again for the message.
    pub permanent: bool,
    pub reason: String,
}

/// Where a message's delivery stands between rounds: carried by the worker (and through the
/// Redis outbox) from one round to the next.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// Rounds made so far.
    pub round: u32,
    /// Providers that refused the message for good.
    pub refused: Vec<&'static str>,
}

/// How one round of a message's delivery ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Accepted {
        provider: &'static str,
        provider_message_id: Option<String>,
        /// The provider answered with an id that cannot be kept (see `valid_vendor_id`): it is
        /// dropped, and the message counts as sent all the same, since the provider said so.
        invalid_id: bool,
        /// Providers that failed before it in this round.
        failures: Vec<Failure>,
    },
    /// Nothing took it this round: try again at `retry_at_ms` (gateway clock).
    Deferred {
        failures: Vec<Failure>,
        retry_at_ms: u64,
    },
    /// Given up: the code expires before another try, or every provider refused it.
    Failed {
        failures: Vec<Failure>,
        reason: String,
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
            if let Some(channel) = route.channel {
                if !providers.is_empty()
                    && !providers
                        .iter()
                        .any(|(index, _)| slots[*index].provider.carries(channel))
                {
                    errors.push(format!(
                        "dispatch.routes: '{}' is for {} but lists no provider that carries it (see each provider's 'channels')",
                        route.prefix,
                        channel.as_str()
                    ));
                }
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
            recovered: tokio::sync::Notify::new(),
        })
    }

    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }

    /// The route of a message to `number` on `channel`: the longest matching prefix (a route
    /// for the channel before a general one) among routes with a provider that carries the
    /// channel, with those providers alone.
    fn route_for(&self, number: &str, channel: Channel) -> Option<Vec<(usize, u32)>> {
        self.routes
            .iter()
            .filter(|route| {
                number.starts_with(&route.prefix)
                    && route.channel.is_none_or(|only| only == channel)
            })
            .map(|route| {
                route
                    .providers
                    .iter()
                    .copied()
                    .filter(|(index, _)| self.slots[*index].provider.carries(channel))
                    .collect::<Vec<_>>()
            })
            .find(|providers| !providers.is_empty())
    }

    /// Whether some configured provider would carry a message to `number` on `channel`: a send
    /// that none would is refused before anything is stored.
    pub fn routable(&self, number: &str, channel: Channel) -> bool {
        self.route_for(number, channel).is_some()
    }

    /// The providers to try for `message`, in order: a weighted pick first, then the rest of the
    /// route in its configured order. Providers that do not carry the message's channel are
    /// never in it.
    pub fn plan(&self, message: &OutgoingMessage) -> Vec<usize> {
        let Some(providers) = self.route_for(message.to.as_str(), message.channel) else {
            return Vec::new();
        };
        let total: u32 = providers.iter().map(|(_, weight)| weight).sum();
        let first = if total == 0 {
            0
        } else {
            let mut pick = self.random_below(total);
            providers
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
        let mut order = vec![providers[first].0];
        order.extend(
            providers
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

    /// Progress as the outbox keeps it: the round, and the refusing providers' names.
    pub fn progress_from(&self, round: u32, refused: &str) -> Progress {
        Progress {
            round,
            refused: refused
                .split(' ')
                .filter_map(|name| {
                    self.slots
                        .iter()
                        .map(|slot| slot.provider.name())
                        .find(|known| *known == name)
                })
                .collect(),
        }
    }

    /// Waits until a breaker closes again after being open.
    pub async fn recovered(&self) {
        self.recovered.notified().await
    }

    /// One round over the plan: the first provider to accept ends it. Providers that refused
    /// the message for good (in `progress`) are skipped, and so are those whose breaker is open.
    pub async fn deliver(&self, message: &OutgoingMessage, progress: &mut Progress) -> Delivery {
        let plan = self.plan(message);
        let mut failures = Vec::new();
        let mut tried = false;
        // When every provider left is behind an open breaker, the earliest probe.
        let mut earliest_probe: Option<u64> = None;
        // An e-mail address has no calling code: its sends count under `none`.
        let country = match message.to.phone() {
            Some(number) => country_label(number.country_code()),
            None => "none",
        };
        for &index in &plan {
            let slot = &self.slots[index];
            let name = slot.provider.name();
            if progress.refused.contains(&name) {
                continue;
            }
            let now = self.clock.now_ms();
            if now >= message.not_after_ms {
                return Delivery::Failed {
                    failures,
                    reason: "the code expired before a provider accepted it".to_owned(),
                };
            }
            if let Err(probe_at) = slot.breaker.allow(now) {
                earliest_probe = Some(earliest_probe.map_or(probe_at, |at| at.min(probe_at)));
                continue;
            }
            if let Some(rate) = &slot.rate {
                rate.until_ready().await;
            }
            tried = true;
            let started = Instant::now();
            let result = slot.provider.send(message).await;
            self.metrics
                .provider_latency(name, message.channel.as_str(), started.elapsed());
            match result {
                Ok(Accepted {
                    provider_message_id,
                }) => {
                    self.closed(slot);
                    self.metrics
                        .message(name, message.channel.as_str(), country, "accepted");
                    let invalid_id = provider_message_id
                        .as_deref()
                        .is_some_and(|id| !valid_vendor_id(id));
                    return Delivery::Accepted {
                        provider: name,
                        provider_message_id: provider_message_id.filter(|_| !invalid_id),
                        invalid_id,
                        failures,
                    };
                }
                Err(ProviderError::Permanent(reason)) => {
                    // A refusal says nothing about the provider's health; the next provider
                    // may still accept (another account, another network).
                    self.closed(slot);
                    self.metrics
                        .message(name, message.channel.as_str(), country, "refused");
                    progress.refused.push(name);
                    failures.push(Failure {
                        provider: name,
                        permanent: true,
                        reason,
                    });
                }
                Err(ProviderError::Retryable(reason)) => {
                    slot.breaker.failed(self.clock.now_ms());
                    self.metrics
                        .message(name, message.channel.as_str(), country, "failed");
                    self.metrics.breaker_state(name, slot.breaker.state_code());
                    failures.push(Failure {
                        provider: name,
                        permanent: false,
                        reason,
                    });
                }
            }
        }
        if plan.iter().all(|&index| {
            progress
                .refused
                .contains(&self.slots[index].provider.name())
        }) {
            return Delivery::Failed {
                failures,
                reason: "every provider of the route refused the message".to_owned(),
            };
        }
        let now = self.clock.now_ms();
        let mut retry_at_ms = now + self.backoff(progress.round).as_millis() as u64;
        progress.round = progress.round.saturating_add(1);
        if !tried {
            // Every provider left waits behind its breaker: its probe decides.
            if let Some(probe) = earliest_probe {
                retry_at_ms = retry_at_ms.max(probe);
            }
        }
        if retry_at_ms >= message.not_after_ms {
            return Delivery::Failed {
                failures,
                reason: "the code expires before the next try".to_owned(),
            };
        }
        Delivery::Deferred {
            failures,
            retry_at_ms,
        }
    }

    /// A provider answered (accepted or refused): its breaker closes; waiting messages are
    /// woken when it was open.
    fn closed(&self, slot: &Slot) {
        if slot.breaker.succeeded() {
            self.recovered.notify_waiters();
        }
        self.metrics
            .breaker_state(slot.provider.name(), slot.breaker.state_code());
    }

    /// `base × 2^round`, at most the configured maximum, less a random part of up to a half
    /// (jitter), so that the retries of many messages after one outage do not arrive in
    /// lockstep.
    fn backoff(&self, round: u32) -> Duration {
        let full = self
            .retry
            .base_backoff
            .saturating_mul(1 << round.min(20))
            .min(self.retry.max_backoff);
        let full_ms = full.as_millis().min(u128::from(u32::MAX)) as u32;
        let jitter_ms = self.random_below(full_ms / 2 + 1);
        Duration::from_millis(u64::from(full_ms - jitter_ms))
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
    /// Refused: when the next probe may go (open), or now (a probe is in flight: its answer
    /// decides, and a waiting message tries again after its back-off).
    fn allow(&self, now_ms: u64) -> Result<(), u64> {
        let mut state = self.lock();
        match *state {
            BreakerState::Closed { .. } => Ok(()),
            BreakerState::Open { until_ms } if now_ms >= until_ms => {
                *state = BreakerState::HalfOpen;
                Ok(())
            }
            BreakerState::Open { until_ms } => Err(until_ms),
            BreakerState::HalfOpen => Err(now_ms),
        }
    }

    /// Closes the breaker; true when it was not closed (the provider is back).
    fn succeeded(&self) -> bool {
        let mut state = self.lock();
        let was_closed = matches!(*state, BreakerState::Closed { .. });
        *state = BreakerState::Closed { failures: 0 };
        !was_closed
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
mod tests;
