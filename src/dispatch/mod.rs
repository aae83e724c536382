//! Message dispatch: sends leave the request path through a queue to provider workers.
//!
//! Two queues behind one `Dispatcher`:
//! - **Durable (Redis)**: the sealed message is appended to the number's shard stream by the
//!   same script that creates the verification (the [`outbox::Outbox`] port, its adapter in
//!   `redis/outbox.rs`); workers on every
//!   instance read it with a consumer group and acknowledge only after a provider accepted it
//!   (in batches per shard, a few ms after the sent mark is stored: see `durable.rs`).
//!   A dead worker's messages are reclaimed; undeliverable ones go to a dead-letter stream.
//! - **Memory (embedded store)**: a bounded channel. The send reserves a place before it touches
//!   the store, so a full queue refuses the send (503) instead of dropping a message; the place
//!   is held until the message is accepted or given up, waits for a retry included. A crash
//!   loses what is still queued or waiting (at most `queue_capacity` messages); their users ask
//!   for a resend.
//!
//! Workers deliver through the [`router::Router`] one round at a time (routes, failover,
//! breakers). A round that no provider took defers the message until the time the router names
//! (back-off, breaker probes), for as long as its code lives: in memory in a waiting list, in
//! Redis in the shard's retry set (see `redis/outbox.rs`), so a restarted gateway carries
//! on. Every provider tried is recorded with its outcome, so that `GET /v1/verifications/{id}`
//! lists them.
//!
//! The durable worker reads each shard on its own (a failing shard backs off alone while the
//! others' messages go out), recreates a consumer group that Redis lost (`NOGROUP`), re-reads
//! its own pending entries after a failed read (the reply may have been lost with the entries
//! in it), and reports how long reads have been failing, for `/readyz` and a metric.

pub mod call_receipts;
mod durable;
pub mod mail_template;
pub mod model;
pub mod outbox;
pub mod providers;
pub mod receipts;
pub mod router;
pub mod seal;
pub mod sendgrid_events;
pub mod settings;
pub mod steps;
pub mod template;
pub mod voice;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use data_encoding::HEXLOWER;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::Clock;
use crate::destination::Destination;
use crate::metrics::Metrics;
use crate::phone::SHARD_COUNT;
use model::{Channel, SendAttempt, SendLog};
use outbox::Outbox;
use router::{Delivery, Failure, Progress, Router};
use seal::Sealer;

/// A message on its way to a provider. Its body holds the code in clear, so it is never logged.
#[derive(Clone)]
pub struct OutgoingMessage {
    /// Unique per send (a resend is a new message); providers may use it to drop duplicates.
    pub id: String,
    pub verification_id: String,
    /// The account the verification belongs to (`AC…`), for the events its fate emits; empty
    /// for a message queued by a gateway that did not carry it.
    pub account: String,
    pub to: Destination,
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
    #[serde(default)]
    account: String,
    to: String,
    /// Carried so that the worker need not parse the number again (0 for an e-mail address).
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
            account: self.account.clone(),
            to: self.to.as_str().to_owned(),
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
            account: payload.account,
            // Sealed by this gateway after validation: authenticated encryption vouches for it.
            to: Destination::trusted(payload.to, payload.country_code),
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
        Ok(format!("MS{}", HEXLOWER.encode(&bytes)))
    }
}

/// How the workers run.
#[derive(Debug, Clone, Copy)]
pub struct WorkerSettings {
    /// Messages in flight to providers at once (per instance).
    pub concurrency: usize,
    /// Memory queue bound: messages queued, in flight or waiting for a retry.
    pub queue_capacity: usize,
    /// A durable message read but not acknowledged for this long belongs to a dead worker.
    pub reclaim_idle: Duration,
    /// Deliveries after which a message is dead-lettered without another try.
    pub max_deliveries: u64,
    /// How often idle workers look for messages queued by other instances.
    pub poll_interval: Duration,
    /// Durable mode: whether this instance reads the outbox at all (an API-only instance does not).
    pub run_workers: bool,
    /// Durable mode: reads failing for longer than this make the instance unready.
    pub unready_after: Duration,
}

#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<DispatcherInner>,
}

struct DispatcherInner {
    mode: Mode,
    /// Asked before a send whether any provider carries its channel to its number.
    router: Arc<Router>,
    sealer: Sealer,
    metrics: Arc<Metrics>,
    /// Durable mode with workers: how the outbox reads are going.
    health: Option<Arc<ReadHealth>>,
    clock: Arc<dyn Clock>,
    unready_after: Duration,
}

enum Mode {
    Memory {
        queue: mpsc::Sender<Queued>,
        /// One permit per message anywhere in the memory pipeline (`queue_capacity`).
        places: Arc<Semaphore>,
    },
    Durable(Arc<Notify>),
}

/// A place for one message, taken before the store is touched.
pub enum Ticket<'a> {
    Memory(mpsc::Permit<'a, Queued>, OwnedSemaphorePermit),
    /// The store queues the message itself; committing only wakes the local workers.
    Durable(&'a Notify),
}

/// A store that queues each message with its verification, in the same atomic step (Redis):
/// the store the workers record sends in, and the outbox its start appends to.
pub struct DurableQueue {
    pub store: Arc<dyn SendLog>,
    pub outbox: Arc<dyn Outbox>,
}

/// A message in the memory pipeline, with its place (freed when it is accepted or given up).
pub struct Queued {
    message: OutgoingMessage,
    progress: Progress,
    _place: OwnedSemaphorePermit,
}

#[derive(Debug, thiserror::Error)]
#[error("the message queue is full")]
pub struct QueueFull;

/// Since when each shard's reads have been failing (gateway clock ms; 0: reading fine).
pub struct ReadHealth {
    failing_since: Vec<AtomicU64>,
}

impl ReadHealth {
    fn new() -> Self {
        Self {
            failing_since: (0..SHARD_COUNT).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn failed(&self, shard: u8, now_ms: u64) {
        // The first failure of a run counts; 0 is "fine", so a failure at 0 is stored as 1.
        let _ = self.failing_since[usize::from(shard)].compare_exchange(
            0,
            now_ms.max(1),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    fn succeeded(&self, shard: u8) {
        self.failing_since[usize::from(shard)].store(0, Ordering::Relaxed);
    }

    /// How long the longest current run of failed reads has lasted, and how many shards fail.
    pub fn failing(&self, now_ms: u64) -> (Duration, usize) {
        let since: Vec<u64> = self
            .failing_since
            .iter()
            .map(|since| since.load(Ordering::Relaxed))
            .filter(|since| *since != 0)
            .collect();
        let oldest = since
            .iter()
            .min()
            .map_or(0, |at| now_ms.saturating_sub(*at));
        (Duration::from_millis(oldest), since.len())
    }
}

/// What every worker needs.
struct Shared {
    router: Arc<Router>,
    store: Arc<dyn SendLog>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    in_flight: Arc<Semaphore>,
    tasks: TaskTracker,
    /// How long recording that a provider accepted a message is retried (durable mode: the
    /// record is the sent mark that stops a redelivery from sending it again).
    sent_mark_retry: Duration,
}

/// Where sends wait for a provider, chosen once at startup with the store.
pub enum Queue {
    /// The embedded store: a bounded channel in this process; the workers record sends in the
    /// store.
    Memory(Arc<dyn SendLog>),
    /// A store that queues each message itself (Redis).
    Durable(DurableQueue),
}

/// What the workers run with.
pub struct Workers<'a> {
    pub settings: WorkerSettings,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    pub tasks: &'a TaskTracker,
    pub stop: CancellationToken,
}

impl Dispatcher {
    /// The dispatcher of `queue`, its workers spawned on `workers.tasks`.
    pub fn spawn(router: Arc<Router>, queue: Queue, seal_key: &[u8], workers: Workers<'_>) -> Self {
        match queue {
            Queue::Memory(store) => Self::spawn_memory(router, store, seal_key, workers),
            Queue::Durable(queue) => Self::spawn_durable(router, queue, seal_key, workers),
        }
    }

    /// The embedded queue: a bounded channel and one worker task.
    fn spawn_memory(
        router: Arc<Router>,
        store: Arc<dyn SendLog>,
        seal_key: &[u8],
        workers: Workers<'_>,
    ) -> Self {
        let (queue, receiver) = mpsc::channel(workers.settings.queue_capacity);
        // Nothing reads the record to decide on a resend: one try, as for any record.
        let shared = Shared::new(router.clone(), store, &workers, Duration::ZERO);
        workers
            .tasks
            .spawn(run_memory(shared, receiver, workers.settings, workers.stop));
        Self {
            inner: Arc::new(DispatcherInner {
                router,
                mode: Mode::Memory {
                    queue,
                    places: Arc::new(Semaphore::new(workers.settings.queue_capacity)),
                },
                sealer: Sealer::new(seal_key),
                metrics: workers.metrics,
                health: None,
                clock: workers.clock,
                unready_after: workers.settings.unready_after,
            }),
        }
    }

    /// The durable queue on Redis Streams, read by this instance's workers (and every other's).
    fn spawn_durable(
        router: Arc<Router>,
        queue: DurableQueue,
        seal_key: &[u8],
        workers: Workers<'_>,
    ) -> Self {
        let wake = Arc::new(Notify::new());
        let mut health = None;
        if workers.settings.run_workers {
            let read_health = Arc::new(ReadHealth::new());
            health = Some(read_health.clone());
            let sent_mark_retry = durable::settle_within(&workers.settings);
            let shared = Shared::new(router.clone(), queue.store, &workers, sent_mark_retry);
            let worker = durable::DurableWorker {
                shared,
                outbox: queue.outbox,
                settings: workers.settings,
                sealer: Sealer::new(seal_key),
                wake: wake.clone(),
                consumer: consumer_name(),
                health: read_health,
                held: Mutex::new(HashSet::new()),
                acks: durable::AckBuffer::default(),
                handles: TaskTracker::new(),
            };
            workers.tasks.spawn(worker.run(workers.stop));
        } else {
            tracing::info!(
                "dispatch.workers is off: this instance queues messages, others deliver them"
            );
        }
        let sealer = Sealer::new(seal_key);
        Self {
            inner: Arc::new(DispatcherInner {
                router,
                mode: Mode::Durable(wake),
                sealer,
                metrics: workers.metrics,
                health,
                clock: workers.clock,
                unready_after: workers.settings.unready_after,
            }),
        }
    }

    /// The router (its providers and their breakers), for the console's Operator page.
    pub fn router(&self) -> &Router {
        &self.inner.router
    }

    /// Whether a configured provider carries `channel` to `to` (see `Router::routable`).
    pub fn routable(&self, to: &Destination, channel: Channel) -> bool {
        self.inner.router.routable(to.as_str(), channel)
    }

    pub fn is_durable(&self) -> bool {
        matches!(self.inner.mode, Mode::Durable(_))
    }

    /// Whether this instance's workers can read the outbox: `Err` with the reason when reads
    /// have failed for longer than `dispatch.outbox_unready_after_ms` (for `/readyz`).
    pub fn readiness(&self) -> Result<(), &'static str> {
        let Some(health) = &self.inner.health else {
            return Ok(());
        };
        let (failing_for, _) = health.failing(self.inner.clock.now_ms());
        if failing_for > self.inner.unready_after {
            return Err("the dispatcher has not been able to read the outbox for longer than dispatch.outbox_unready_after_ms: messages are not being delivered");
        }
        Ok(())
    }

    pub fn ticket(&self) -> Result<Ticket<'_>, QueueFull> {
        match &self.inner.mode {
            Mode::Memory { queue, places } => {
                let place = places.clone().try_acquire_owned().map_err(|_| QueueFull)?;
                let permit = queue.try_reserve().map_err(|_| QueueFull)?;
                Ok(Ticket::Memory(permit, place))
            }
            Mode::Durable(wake) => Ok(Ticket::Durable(wake)),
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
        match ticket {
            Ticket::Memory(permit, place) => {
                self.inner.metrics.queue_depth().increment(1.0);
                permit.send(Queued {
                    message,
                    progress: Progress::default(),
                    _place: place,
                });
            }
            Ticket::Durable(wake) => wake.notify_one(),
        }
    }
}

fn consumer_name() -> String {
    let mut bytes = [0u8; 8];
    let _ = SystemRandom::new().fill(&mut bytes);
    format!("worker-{}", HEXLOWER.encode(&bytes))
}

impl Shared {
    fn new(
        router: Arc<Router>,
        store: Arc<dyn SendLog>,
        workers: &Workers<'_>,
        sent_mark_retry: Duration,
    ) -> Arc<Self> {
        Arc::new(Self {
            router,
            store,
            clock: workers.clock.clone(),
            metrics: workers.metrics.clone(),
            in_flight: Arc::new(Semaphore::new(workers.settings.concurrency)),
            tasks: workers.tasks.clone(),
            sent_mark_retry,
        })
    }

    /// One round through the router; records every provider that failed the message and the
    /// round's outcome beside the verification.
    async fn deliver(&self, message: &OutgoingMessage, progress: &mut Progress) -> Delivery {
        let delivery = self.router.deliver(message, progress).await;
        let now = self.clock.now_ms();
        let attempt =
            |provider: &str, status: &str, vendor_id: Option<String>, error| SendAttempt {
                message_id: message.id.clone(),
                provider: provider.to_owned(),
                status: status.to_owned(),
                provider_message_id: vendor_id,
                error,
                created_ms: now,
                updated_ms: now,
            };
        let failures: &[Failure] = match &delivery {
            Delivery::Accepted { failures, .. }
            | Delivery::Deferred { failures, .. }
            | Delivery::Failed { failures, .. } => failures,
        };
        let mut attempts: Vec<SendAttempt> = failures
            .iter()
            .map(|failure| {
                let status = if failure.permanent {
                    "refused"
                } else {
                    "provider_error"
                };
                attempt(failure.provider, status, None, Some(failure.reason.clone()))
            })
            .collect();
        match &delivery {
            Delivery::Accepted {
                provider,
                provider_message_id,
                invalid_id,
                ..
            } => attempts.push(attempt(
                provider,
                "accepted",
                provider_message_id.clone(),
                invalid_id.then(|| "invalid id".to_owned()),
            )),
            Delivery::Failed { reason, .. } => {
                tracing::warn!(message = %message.id, to = %message.to, %reason, "no provider took the message; given up");
                let last = failures.last().map_or("none", |failure| failure.provider);
                attempts.push(attempt(last, "failed", None, Some(reason.clone())));
            }
            Delivery::Deferred { retry_at_ms, .. } => {
                tracing::info!(message = %message.id, round = progress.round, in_ms = retry_at_ms.saturating_sub(now), "no provider took the message yet; it waits for the next round");
            }
        }
        for attempt in &attempts {
            // The accepted attempt is the sent mark: a redelivery that finds it acknowledges
            // instead of sending again, so it is retried (through a failover) until stored.
            let within = if attempt.status == "accepted" {
                self.sent_mark_retry
            } else {
                Duration::ZERO
            };
            let recorded = retry_within(within, || {
                self.store
                    .record_send_attempt(&message.verification_id, attempt)
            });
            if let Err(error) = recorded.await {
                tracing::warn!(%error, message = %message.id, "could not record the send");
            }
            if !attempt.is_provider_try() {
                self.store.settled(message, attempt);
            }
        }
        delivery
    }
}

/// The first pause between two tries of [`retry_within`], doubled up to `RETRY_PAUSE_MAX`.
const RETRY_PAUSE_FIRST: Duration = Duration::from_millis(50);
const RETRY_PAUSE_MAX: Duration = Duration::from_secs(1);

/// `call` until it succeeds or `within` has passed (one try when it is zero); the last error.
async fn retry_within<T, E, F, R>(within: Duration, mut call: F) -> Result<T, E>
where
    F: FnMut() -> R,
    R: std::future::Future<Output = Result<T, E>>,
{
    let deadline = tokio::time::Instant::now() + within;
    let mut pause = RETRY_PAUSE_FIRST;
    loop {
        match call().await {
            Ok(value) => return Ok(value),
            Err(error) if tokio::time::Instant::now() + pause >= deadline => return Err(error),
            Err(_) => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(RETRY_PAUSE_MAX);
            }
        }
    }
}

/// Memory mode: messages waiting for their next round, by due time (gateway clock).
#[derive(Default)]
struct Waiting {
    by_due: Mutex<BTreeMap<(u64, u64), Queued>>,
    next: AtomicU64,
}

impl Waiting {
    fn insert(&self, due_ms: u64, queued: Queued) {
        let sequence = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().insert((due_ms, sequence), queued);
    }

    /// Removes and returns what is due by `now_ms`.
    fn take_due(&self, now_ms: u64) -> Vec<Queued> {
        let mut by_due = self.lock();
        let later = by_due.split_off(&(now_ms.saturating_add(1), 0));
        std::mem::replace(&mut *by_due, later)
            .into_values()
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(u64, u64), Queued>> {
        // A plain map replaced entry by entry; a poisoned lock still holds a valid one.
        self.by_due
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

async fn run_memory(
    shared: Arc<Shared>,
    mut receiver: mpsc::Receiver<Queued>,
    settings: WorkerSettings,
    stop: CancellationToken,
) {
    let waiting = Arc::new(Waiting::default());
    loop {
        let mut batch = Vec::new();
        tokio::select! {
            queued = receiver.recv() => match queued {
                Some(queued) => batch.push(queued),
                None => break,
            },
            () = tokio::time::sleep(settings.poll_interval) => {}
            () = shared.router.recovered() => batch.extend(waiting.take_due(u64::MAX)),
            () = stop.cancelled() => {
                // No new messages; one more round for what was accepted before the stop.
                receiver.close();
                while let Some(queued) = receiver.recv().await {
                    batch.push(queued);
                }
                batch.extend(waiting.take_due(u64::MAX));
                let left = deliver_all(&shared, &waiting, batch).await;
                if left > 0 {
                    tracing::warn!(left, "stopping with messages that wait for a provider; they are lost");
                }
                break;
            }
        }
        batch.extend(waiting.take_due(shared.clock.now_ms()));
        for queued in batch {
            let Ok(permit) = shared.in_flight.clone().acquire_owned().await else {
                return;
            };
            let (worker, waiting) = (shared.clone(), waiting.clone());
            shared.tasks.spawn(async move {
                worker.metrics.queue_depth().decrement(1.0);
                deliver_queued(&worker, &waiting, queued).await;
                drop(permit);
            });
        }
    }
}

/// At the stop: one round for each, at once; returns how many still wait.
async fn deliver_all(shared: &Shared, waiting: &Waiting, batch: Vec<Queued>) -> usize {
    futures::future::join_all(
        batch
            .into_iter()
            .map(|queued| deliver_queued(shared, waiting, queued)),
    )
    .await;
    waiting.lock().len()
}

async fn deliver_queued(shared: &Shared, waiting: &Waiting, mut queued: Queued) {
    match shared.deliver(&queued.message, &mut queued.progress).await {
        Delivery::Accepted { .. } => {}
        Delivery::Failed { .. } => shared.metrics.dead_letter(),
        Delivery::Deferred { retry_at_ms, .. } => {
            shared.metrics.queue_depth().increment(1.0);
            waiting.insert(retry_at_ms, queued);
        }
    }
}

#[cfg(test)]
mod tests;
