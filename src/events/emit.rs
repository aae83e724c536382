//! `Events`: what the domain calls to send an event out. `emit` never waits: it stamps the event
//! (id, time) and hands it to a bounded in-process channel, and a background task queues it in
//! the webhook store. A full channel (the store is down or slow for long) refuses the event and
//! says so; the caller's request goes on either way. An account without webhooks is known in
//! process (`watch.rs`): its events stop at a set lookup.

use std::sync::Arc;
use std::time::Duration;

use ring::rand::SystemRandom;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::model::{Event, EventId};
use super::store::{Enqueue, QueuedEvent, Recipients, WebhookId, WebhookStore};
use super::watch::Watched;
use crate::account::AccountId;
use crate::clock::Clock;
use crate::metrics::Metrics;

/// Tries of one event's enqueue before it is given up (logged): a store that fails this long is
/// down, and `emit` starts refusing once the channel fills behind it.
const ENQUEUE_TRIES: u32 = 5;

/// What became of an emitted event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Emitted {
    /// Stamped and on its way to the store, with this id (its `webhook-id`).
    Accepted(EventId),
    /// Events are off (`events.enabled = false`).
    Disabled,
    /// The account has no webhook: nothing was done.
    Unwatched,
    /// The in-process buffer is full: the store has not kept up. The event is dropped.
    Full,
}

/// The handle the services hold; cheap to clone.
#[derive(Clone)]
pub struct Events {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    sender: mpsc::Sender<Stamped>,
    clock: Arc<dyn Clock>,
    rng: SystemRandom,
    /// `None`: every account's events go to the store (the store contract tests).
    watched: Option<Arc<Watched>>,
    metrics: Arc<Metrics>,
}

struct Stamped {
    account: AccountId,
    event: QueuedEvent,
    only: Option<WebhookId>,
}

/// What the background task needs.
pub struct EmitterSettings {
    pub buffer: usize,
    pub max_queued_per_webhook: usize,
    /// How often the accounts with webhooks are read again (`watch.rs`); `None`: no such
    /// filter, every event goes to the store.
    pub watch: Option<Duration>,
    pub metrics: Arc<Metrics>,
}

impl Events {
    /// A handle that accepts nothing (events off).
    pub fn disabled() -> Self {
        Self { inner: None }
    }

    /// Starts the task that queues emitted events in `store`, on `tasks`, until `stop`; it
    /// drains what was already accepted before it ends.
    pub fn start(
        store: Arc<dyn WebhookStore>,
        clock: Arc<dyn Clock>,
        settings: EmitterSettings,
        tasks: &TaskTracker,
        stop: CancellationToken,
    ) -> Self {
        let (sender, receiver) = mpsc::channel(settings.buffer);
        let watched = settings.watch.map(|interval| {
            let watched = Arc::new(Watched::default());
            tasks.spawn(watched.clone().run(store.clone(), interval, stop.clone()));
            watched
        });
        tasks.spawn(forward(
            receiver,
            store,
            clock.clone(),
            settings.max_queued_per_webhook,
            settings.metrics.clone(),
            stop,
        ));
        Self {
            inner: Some(Arc::new(Inner {
                sender,
                clock,
                rng: SystemRandom::new(),
                watched,
                metrics: settings.metrics,
            })),
        }
    }

    /// Whether an event of `account` would be queued: events are on and the account has a
    /// webhook (as far as this instance knows). The domain's helpers ask first, so that an
    /// account without webhooks does not even build its events.
    pub fn watches(&self, account: &AccountId) -> bool {
        self.inner.as_ref().is_some_and(|inner| {
            inner
                .watched
                .as_ref()
                .is_none_or(|watched| watched.contains(account))
        })
    }

    /// `account` just registered a webhook: its events are queued from now on.
    pub fn watch(&self, account: &AccountId) {
        if let Some(watched) = self.inner.as_ref().and_then(|inner| inner.watched.as_ref()) {
            watched.add(account);
        }
    }

    /// Sends `event` to every webhook of `account` that subscribed to its type.
    pub fn emit(&self, account: &AccountId, event: Event) -> Emitted {
        if self.inner.is_some() && !self.watches(account) {
            return Emitted::Unwatched;
        }
        self.stamp_and_send(account, event, None)
    }

    /// Sends `event` to one webhook whatever its filter (`POST /v1/webhooks/{id}/test`).
    pub fn emit_to(&self, account: &AccountId, webhook: &WebhookId, event: Event) -> Emitted {
        self.stamp_and_send(account, event, Some(webhook.clone()))
    }

    fn stamp_and_send(
        &self,
        account: &AccountId,
        event: Event,
        only: Option<WebhookId>,
    ) -> Emitted {
        let Some(inner) = &self.inner else {
            return Emitted::Disabled;
        };
        let Ok(id) = EventId::random(&inner.rng) else {
            // The system RNG failed: nothing can be signed either.
            return Emitted::Full;
        };
        let now_ms = inner.clock.now_ms();
        let body = event.envelope(account, &id, now_ms);
        let stamped = Stamped {
            account: account.clone(),
            event: QueuedEvent {
                id: id.clone(),
                kind: event.kind,
                created_ms: now_ms,
                // The envelope is serde_json's output: UTF-8.
                body: String::from_utf8_lossy(&body).into_owned(),
            },
            only,
        };
        match inner.sender.try_send(stamped) {
            Ok(()) => {
                inner.metrics.event("emitted", 1);
                Emitted::Accepted(id)
            }
            Err(_) => {
                inner.metrics.event("dropped", 1);
                Emitted::Full
            }
        }
    }
}

async fn forward(
    mut receiver: mpsc::Receiver<Stamped>,
    store: Arc<dyn WebhookStore>,
    clock: Arc<dyn Clock>,
    max_queued: usize,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    loop {
        let stamped = tokio::select! {
            biased;
            stamped = receiver.recv() => stamped,
            () = stop.cancelled() => {
                // Stop taking new events, queue those already accepted.
                receiver.close();
                receiver.recv().await
            }
        };
        let Some(stamped) = stamped else { return };
        let recipients = match &stamped.only {
            Some(id) => Recipients::Only(id),
            None => Recipients::Subscribed,
        };
        for attempt in 1..=ENQUEUE_TRIES {
            let request = Enqueue {
                account: &stamped.account,
                event: &stamped.event,
                recipients,
                now_ms: clock.now_ms(),
                max_queued,
            };
            match store.enqueue(request).await {
                Ok(enqueued) => {
                    if enqueued.dropped > 0 {
                        metrics.event("dropped", enqueued.dropped as u64);
                        tracing::warn!(
                            account = %stamped.account,
                            event = stamped.event.id.as_str(),
                            webhooks = enqueued.dropped,
                            "webhook queue full: event dropped for these webhooks"
                        );
                    }
                    break;
                }
                // Only a store known not to have taken it is retried (an unknown outcome may
                // have queued it: a retry would deliver it twice under two queue entries).
                Err(crate::store::StoreError::Unavailable(error)) if attempt < ENQUEUE_TRIES => {
                    tracing::debug!(%error, attempt, "webhook enqueue failed; trying again");
                    // A pause for the store to come back, not for time to pass in a test.
                    tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                }
                Err(error) => {
                    metrics.event("dropped", 1);
                    tracing::error!(
                        %error,
                        account = %stamped.account,
                        event = stamped.event.id.as_str(),
                        "webhook event lost: the store did not take it"
                    );
                    break;
                }
            }
        }
    }
}
