//! Message dispatch: sends leave the request path through a queue to provider workers.
//!
//! Two queues behind one `Dispatcher`:
//! - **Durable (Redis)**: the sealed message is appended to the number's shard stream by the
//!   same script that creates the verification (see `store/redis/outbox.rs`); workers on every
//!   instance read it with a consumer group and acknowledge only after a provider accepted it.
//!   A dead worker's messages are reclaimed; undeliverable ones go to a dead-letter stream.
//! - **Memory (embedded store)**: a bounded channel. The send reserves a place before it touches
//!   the store, so a full queue refuses the send (503) instead of dropping a message. A crash
//!   loses what is still queued (at most `queue_capacity` messages); their users ask for a resend.
//!
//! Workers deliver through the [`router::Router`] (routes, failover, breakers, retries) and
//! record every message's outcome so that `GET /v1/verifications/{id}` can list it.

pub mod providers;
pub mod receipts;
pub mod router;
pub mod seal;
pub mod template;

use std::sync::Arc;
use std::time::{Duration, Instant};

use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::account::hex;
use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::phone::PhoneNumber;
use crate::store::redis::outbox::OutboxEntry;
use crate::store::redis::RedisStore;
use crate::store::Store;
use crate::verify::model::{Channel, SendAttempt, VerificationId};
use router::{Delivery, Router};
use seal::Sealer;

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

/// What is sealed into the outbox; the verification id travels beside it, since a resend only
/// learns it from the store.
#[derive(Serialize, Deserialize)]
struct Payload {
    id: String,
    to: String,
    /// Carried so that the worker need not parse the number again.
    country_code: u16,
    channel: Channel,
    body: String,
    code: String,
    locale: String,
    not_after_ms: u64,
}

impl OutgoingMessage {
    fn payload(&self) -> Payload {
        Payload {
            id: self.id.clone(),
            to: self.to.e164().to_owned(),
            country_code: self.to.country_code(),
            channel: self.channel,
            body: self.body.clone(),
            code: self.code.clone(),
            locale: self.locale.clone(),
            not_after_ms: self.not_after_ms,
        }
    }

    fn from_payload(verification_id: String, payload: Payload) -> Option<Self> {
        Some(Self {
            id: payload.id,
            verification_id,
            // Sealed by this gateway after validation: authenticated encryption vouches for it.
            to: PhoneNumber::trusted(payload.to, payload.country_code),
            channel: payload.channel,
            body: payload.body,
            code: payload.code,
            locale: payload.locale,
            not_after_ms: payload.not_after_ms,
        })
    }

    /// A fresh message id: `MS` and 32 hex digits.
    pub fn new_id(rng: &SystemRandom) -> Result<String, ring::error::Unspecified> {
        let mut bytes = [0u8; 16];
        rng.fill(&mut bytes)?;
        Ok(format!("MS{}", hex(&bytes)))
    }
}

/// How the workers run.
#[derive(Debug, Clone, Copy)]
pub struct WorkerSettings {
    /// Messages in flight to providers at once (per instance).
    pub concurrency: usize,
    /// Memory queue bound.
    pub queue_capacity: usize,
    /// A durable message read but not acknowledged for this long belongs to a dead worker.
    pub reclaim_idle: Duration,
    /// Deliveries after which a message is dead-lettered without another try.
    pub max_deliveries: u64,
    /// How often idle workers look for messages queued by other instances.
    pub poll_interval: Duration,
    /// Durable mode: whether this instance reads the outbox at all (an API-only instance does not).
    pub run_workers: bool,
}

#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<DispatcherInner>,
}

struct DispatcherInner {
    mode: Mode,
    sealer: Sealer,
    metrics: Arc<Metrics>,
}

enum Mode {
    Memory(mpsc::Sender<OutgoingMessage>),
    Durable(Arc<Notify>),
}

/// A place for one message, taken before the store is touched.
pub enum Ticket<'a> {
    Memory(mpsc::Permit<'a, OutgoingMessage>),
    /// The store queues the message itself; committing only wakes the local workers.
    Durable,
}

#[derive(Debug, thiserror::Error)]
#[error("the message queue is full")]
pub struct QueueFull;

/// What every worker needs.
struct Shared {
    router: Arc<Router>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    in_flight: Arc<Semaphore>,
    tasks: TaskTracker,
}

impl Dispatcher {
    /// The embedded queue: a bounded channel and one worker task.
    #[allow(clippy::too_many_arguments)]
    pub fn spawn_memory(
        router: Arc<Router>,
        store: Arc<dyn Store>,
        settings: WorkerSettings,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
        seal_key: &[u8],
        tasks: &TaskTracker,
        stop: CancellationToken,
    ) -> Self {
        let (queue, receiver) = mpsc::channel(settings.queue_capacity);
        let shared = Arc::new(Shared {
            router,
            store,
            clock,
            metrics: metrics.clone(),
            in_flight: Arc::new(Semaphore::new(settings.concurrency)),
            tasks: tasks.clone(),
        });
        tasks.spawn(run_memory(shared, receiver, stop));
        Self {
            inner: Arc::new(DispatcherInner {
                mode: Mode::Memory(queue),
                sealer: Sealer::new(seal_key),
                metrics,
            }),
        }
    }

    /// The durable queue on Redis Streams, read by this instance's workers (and every other's).
    #[allow(clippy::too_many_arguments)]
    pub fn spawn_durable(
        router: Arc<Router>,
        redis: Arc<RedisStore>,
        settings: WorkerSettings,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
        seal_key: &[u8],
        tasks: &TaskTracker,
        stop: CancellationToken,
    ) -> Self {
        let wake = Arc::new(Notify::new());
        if settings.run_workers {
            let shared = Arc::new(Shared {
                router,
                store: redis.clone(),
                clock,
                metrics: metrics.clone(),
                in_flight: Arc::new(Semaphore::new(settings.concurrency)),
                tasks: tasks.clone(),
            });
            let worker = DurableWorker {
                shared,
                redis,
                settings,
                sealer: Sealer::new(seal_key),
                wake: wake.clone(),
                consumer: consumer_name(),
            };
            tasks.spawn(worker.run(stop));
        } else {
            tracing::info!(
                "dispatch.workers is off: this instance queues messages, others deliver them"
            );
        }
        let sealer = Sealer::new(seal_key);
        Self {
            inner: Arc::new(DispatcherInner {
                mode: Mode::Durable(wake),
                sealer,
                metrics,
            }),
        }
    }

    pub fn is_durable(&self) -> bool {
        matches!(self.inner.mode, Mode::Durable(_))
    }

    pub fn ticket(&self) -> Result<Ticket<'_>, QueueFull> {
        match &self.inner.mode {
            Mode::Memory(queue) => queue
                .try_reserve()
                .map(Ticket::Memory)
                .map_err(|_| QueueFull),
            Mode::Durable(_) => Ok(Ticket::Durable),
        }
    }

    /// The sealed message for the store to queue, in durable mode.
    pub fn seal(
        &self,
        message: &OutgoingMessage,
    ) -> Result<Option<Vec<u8>>, ring::error::Unspecified> {
        if !self.is_durable() {
            return Ok(None);
        }
        let plain = serde_json::to_vec(&message.payload()).map_err(|_| ring::error::Unspecified)?;
        self.inner.sealer.seal(&plain).map(Some)
    }

    /// The store accepted the send: hand the message on (memory) or wake the workers (durable).
    pub fn commit(&self, ticket: Ticket<'_>, message: OutgoingMessage) {
        match (ticket, &self.inner.mode) {
            (Ticket::Memory(permit), _) => {
                self.inner.metrics.queue_depth().increment(1.0);
                permit.send(message);
            }
            (Ticket::Durable, Mode::Durable(wake)) => wake.notify_one(),
            (Ticket::Durable, Mode::Memory(_)) => {
                tracing::error!("a durable ticket reached the memory queue; the message is lost")
            }
        }
    }
}

fn consumer_name() -> String {
    let mut bytes = [0u8; 8];
    let _ = SystemRandom::new().fill(&mut bytes);
    format!("worker-{}", hex(&bytes))
}

impl Shared {
    /// Delivers through the router and records the outcome beside the verification.
    async fn deliver(&self, message: &OutgoingMessage) -> Delivery {
        let delivery = self.router.deliver(message).await;
        let now = self.clock.now_ms();
        let attempt = match &delivery {
            Delivery::Accepted {
                provider,
                provider_message_id,
            } => SendAttempt {
                message_id: message.id.clone(),
                provider: (*provider).to_owned(),
                status: "accepted".to_owned(),
                provider_message_id: provider_message_id.clone(),
                error: None,
                created_ms: now,
                updated_ms: now,
            },
            Delivery::Failed {
                reasons,
                last_provider,
            } => {
                tracing::warn!(message = %message.id, to = %message.to, reasons = ?reasons, "no provider took the message");
                SendAttempt {
                    message_id: message.id.clone(),
                    provider: last_provider.unwrap_or("none").to_owned(),
                    status: "failed".to_owned(),
                    provider_message_id: None,
                    error: Some(reasons.join("; ")),
                    created_ms: now,
                    updated_ms: now,
                }
            }
        };
        if let Some(id) = VerificationId::parse(&message.verification_id) {
            if let Err(error) = self.store.record_send_attempt(&id, &attempt).await {
                tracing::warn!(%error, message = %message.id, "could not record the send");
            }
        }
        delivery
    }
}

async fn run_memory(
    shared: Arc<Shared>,
    mut receiver: mpsc::Receiver<OutgoingMessage>,
    stop: CancellationToken,
) {
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
        let Ok(permit) = shared.in_flight.clone().acquire_owned().await else {
            break;
        };
        let worker = shared.clone();
        shared.tasks.spawn(async move {
            worker.metrics.queue_depth().decrement(1.0);
            if let Delivery::Failed { .. } = worker.deliver(&message).await {
                worker.metrics.dead_letter();
            }
            drop(permit);
        });
    }
}

struct DurableWorker {
    shared: Arc<Shared>,
    redis: Arc<RedisStore>,
    settings: WorkerSettings,
    sealer: Sealer,
    wake: Arc<Notify>,
    consumer: String,
}

/// Messages read from each shard per pass.
const READ_PER_SHARD: usize = 16;
const STATS_EVERY: Duration = Duration::from_secs(2);

impl DurableWorker {
    async fn run(self, stop: CancellationToken) {
        let worker = Arc::new(self);
        let mut prepared = false;
        let mut last_reclaim = Instant::now();
        let mut last_stats: Option<Instant> = None;
        while !stop.is_cancelled() {
            if !prepared {
                match worker.redis.outbox_prepare().await {
                    Ok(()) => prepared = true,
                    Err(error) => {
                        tracing::warn!(%error, "cannot prepare the outbox; retrying");
                        worker.idle(&stop).await;
                        continue;
                    }
                }
            }
            if last_stats.is_none_or(|at| at.elapsed() >= STATS_EVERY) {
                worker.publish_stats().await;
                last_stats = Some(Instant::now());
            }
            let mut entries = Vec::new();
            if last_reclaim.elapsed() >= worker.settings.reclaim_idle / 2 {
                last_reclaim = Instant::now();
                match worker
                    .redis
                    .outbox_reclaim(
                        &worker.consumer,
                        worker.settings.reclaim_idle,
                        READ_PER_SHARD,
                    )
                    .await
                {
                    Ok(reclaimed) => {
                        for _ in &reclaimed {
                            worker.shared.metrics.redelivered();
                        }
                        entries.extend(reclaimed);
                    }
                    Err(error) => tracing::warn!(%error, "outbox reclaim failed"),
                }
            }
            match worker
                .redis
                .outbox_read(&worker.consumer, READ_PER_SHARD)
                .await
            {
                Ok(read) => entries.extend(read),
                Err(error) => tracing::warn!(%error, "outbox read failed"),
            }
            if entries.is_empty() {
                worker.idle(&stop).await;
                continue;
            }
            for entry in entries {
                let Ok(permit) = worker.shared.in_flight.clone().acquire_owned().await else {
                    return;
                };
                let this = worker.clone();
                worker.shared.tasks.spawn(async move {
                    this.handle(entry).await;
                    drop(permit);
                });
            }
        }
    }

    /// Waits for a local send, the poll interval, or the stop.
    async fn idle(&self, stop: &CancellationToken) {
        tokio::select! {
            () = self.wake.notified() => {}
            () = tokio::time::sleep(self.settings.poll_interval) => {}
            () = stop.cancelled() => {}
        }
    }

    async fn publish_stats(&self) {
        match self.redis.outbox_stats(self.shared.clock.now_ms()).await {
            Ok(stats) => {
                self.shared.metrics.queue_depth().set(stats.depth as f64);
                self.shared
                    .metrics
                    .oldest_queued_age(Duration::from_millis(stats.oldest_age_ms.unwrap_or(0)));
            }
            Err(error) => tracing::debug!(%error, "outbox stats unavailable"),
        }
    }

    async fn handle(&self, entry: OutboxEntry) {
        let metrics = &self.shared.metrics;
        if entry.deliveries > self.settings.max_deliveries {
            let reason = format!("read {} times without being acknowledged", entry.deliveries);
            return self.dead_letter(&entry, &reason).await;
        }
        let message = self
            .sealer
            .open(&entry.sealed)
            .and_then(|plain| serde_json::from_slice::<Payload>(&plain).ok())
            .and_then(|payload| {
                OutgoingMessage::from_payload(entry.verification_id.clone(), payload)
            });
        let Some(message) = message else {
            return self
                .dead_letter(&entry, "cannot open the message (another code key?)")
                .await;
        };
        if entry.deliveries > 1 {
            match self
                .redis
                .outbox_already_sent(&entry.verification_id, &message.id)
                .await
            {
                Ok(true) => {
                    // A provider took it before the last worker died: acknowledge, don't resend.
                    return self.ack(&entry).await;
                }
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(%error, "cannot check the sent-mark; the message stays queued");
                    return;
                }
            }
        }
        match self.shared.deliver(&message).await {
            Delivery::Accepted { .. } => self.ack(&entry).await,
            Delivery::Failed { reasons, .. } => {
                metrics.dead_letter();
                self.dead_letter(&entry, &reasons.join("; ")).await
            }
        }
    }

    async fn ack(&self, entry: &OutboxEntry) {
        if let Err(error) = self.redis.outbox_ack(entry).await {
            // Left pending: another worker reclaims it, finds the sent flag and acknowledges it
            // (or, when recording the attempt failed too, sends again: a counted duplicate
            // rather than a lost message).
            tracing::warn!(%error, entry = %entry.entry_id, "cannot acknowledge a sent message");
        }
    }

    async fn dead_letter(&self, entry: &OutboxEntry, reason: &str) {
        tracing::warn!(entry = %entry.entry_id, verification = %entry.verification_id, %reason, "message dead-lettered");
        if let Err(error) = self.redis.outbox_dead_letter(entry, reason).await {
            tracing::warn!(%error, entry = %entry.entry_id, "cannot dead-letter; the message stays queued");
        }
    }
}
