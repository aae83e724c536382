//! Message dispatch: sends leave the request path through a bounded queue to provider workers.
//!
//! The send call reserves a queue slot before it touches the store, so a verification is only
//! created when its message has a place to go; a full queue refuses the send (503) instead of
//! dropping a message. This queue lives in memory: a crash loses the messages still in it
//! (at most `queue_capacity`), and their users ask for a resend. A durable Redis Stream queue
//! replaces it behind the same `Dispatcher` API in Redis mode.

pub mod providers;
pub mod receipts;
pub mod template;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::Clock;
use crate::config::DispatchSettings;
use crate::metrics::Metrics;
use crate::phone::PhoneNumber;
use crate::verify::model::Channel;
use providers::{Provider, ProviderError};

/// A message on its way to a provider. Its body holds the code in clear, so it is never logged.
#[derive(Clone)]
pub struct OutgoingMessage {
    /// Unique per send (a resend is a new message); providers may use it to drop duplicates.
    pub id: String,
    pub verification_id: String,
    pub to: PhoneNumber,
    pub channel: Channel,
    /// The rendered text, code included.
    pub body: String,
    /// The code alone, for channels that carry it as a template parameter (WhatsApp's
    /// authentication templates) rather than as free text.
    pub code: String,
    /// BCP 47 language tag the body was rendered in (`en`, `de`, `pt-BR`, …).
    pub locale: String,
    /// No attempt is made after this instant: the code would be dead on arrival.
    pub not_after_ms: u64,
}

impl std::fmt::Debug for OutgoingMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutgoingMessage")
            .field("id", &self.id)
            .field("verification_id", &self.verification_id)
            .field("to", &self.to)
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

/// The sending side of the queue, held by the verification service.
#[derive(Clone)]
pub struct Dispatcher {
    queue: mpsc::Sender<OutgoingMessage>,
    metrics: Arc<Metrics>,
}

/// A reserved place in the queue: taken before the store is touched, used after it answered.
pub struct Slot<'a> {
    permit: mpsc::Permit<'a, OutgoingMessage>,
    metrics: &'a Metrics,
}

impl Slot<'_> {
    pub fn send(self, message: OutgoingMessage) {
        self.metrics.queue_depth().increment(1.0);
        self.permit.send(message);
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the message queue is full")]
pub struct QueueFull;

impl Dispatcher {
    /// Starts the worker on `tasks`. When `stop` fires the worker stops taking new messages,
    /// delivers what is queued, and ends; the caller waits on `tasks` with its own deadline.
    pub fn spawn(
        provider: Arc<dyn Provider>,
        settings: &DispatchSettings,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
        tasks: &TaskTracker,
        stop: CancellationToken,
    ) -> Self {
        let (queue, receiver) = mpsc::channel(settings.queue_capacity);
        let worker = Worker {
            provider,
            clock,
            metrics: metrics.clone(),
            max_attempts: settings.max_attempts,
            in_flight: Arc::new(Semaphore::new(settings.concurrency)),
            tasks: tasks.clone(),
        };
        tasks.spawn(worker.run(receiver, stop));
        Self { queue, metrics }
    }

    pub fn reserve(&self) -> Result<Slot<'_>, QueueFull> {
        let permit = self.queue.try_reserve().map_err(|_| QueueFull)?;
        Ok(Slot {
            permit,
            metrics: &self.metrics,
        })
    }
}

struct Worker {
    provider: Arc<dyn Provider>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    max_attempts: u32,
    in_flight: Arc<Semaphore>,
    tasks: TaskTracker,
}

impl Worker {
    async fn run(self, mut receiver: mpsc::Receiver<OutgoingMessage>, stop: CancellationToken) {
        let worker = Arc::new(self);
        loop {
            let message = tokio::select! {
                message = receiver.recv() => message,
                () = stop.cancelled() => {
                    // No new messages; deliver what was accepted before the stop.
                    receiver.close();
                    receiver.recv().await
                }
            };
            let Some(message) = message else { break };
            let Ok(permit) = worker.in_flight.clone().acquire_owned().await else {
                break;
            };
            let this = worker.clone();
            worker.tasks.spawn(async move {
                this.deliver(message).await;
                drop(permit);
            });
        }
    }

    async fn deliver(&self, message: OutgoingMessage) {
        self.metrics.queue_depth().decrement(1.0);
        let provider = self.provider.name();
        let mut backoff = Duration::from_millis(200);
        for attempt in 1..=self.max_attempts {
            let started = Instant::now();
            let result = self.provider.send(&message).await;
            self.metrics.provider_latency(provider, started.elapsed());
            match result {
                Ok(_) => {
                    self.metrics.message(provider, "accepted");
                    tracing::debug!(message = %message.id, to = %message.to, provider, "message accepted");
                    return;
                }
                Err(ProviderError::Permanent(reason)) => {
                    self.metrics.message(provider, "failed");
                    tracing::warn!(message = %message.id, to = %message.to, provider, %reason, "provider refused the message");
                    return;
                }
                Err(ProviderError::Retryable(reason)) => {
                    let next_try_ms = self.clock.now_ms() + backoff.as_millis() as u64;
                    if attempt == self.max_attempts || next_try_ms >= message.not_after_ms {
                        self.metrics.message(provider, "failed");
                        tracing::warn!(message = %message.id, to = %message.to, provider, %reason, attempt, "giving up on the message");
                        return;
                    }
                    self.metrics.message(provider, "retried");
                    tracing::info!(message = %message.id, provider, %reason, attempt, "provider failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
            }
        }
    }
}
