//! The durable worker: reads each shard's outbox stream on its own, hands what it read to the
//! router, and settles each entry (acknowledged, deferred to the retry set, dead-lettered).
//!
//! Acknowledgements are batched: a sent message's entry id waits in the `AckBuffer` (its sent
//! mark is already stored, so the entry is safe to leave pending) and a flusher task sends every
//! shard's waiting ids at once, `ACK_FLUSH_EVERY` after the first arrived or as soon as
//! `ACK_FLUSH_AT` wait, and once more on shutdown. A buffer lost with the process leaves its
//! entries pending on a dead consumer: another worker reclaims them, finds the sent mark and
//! acknowledges them without sending, exactly as when a worker died before its per-message
//! acknowledgement.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::outbox::{Deferral, Outbox, OutboxEntry, ReadFrom, ShardReadError};
use super::router::Delivery;
use super::seal::Sealer;
use super::{
    OutgoingMessage, Payload, ReadHealth, Shared, WorkerSettings, RETRY_PAUSE_FIRST,
    RETRY_PAUSE_MAX,
};
use crate::phone::SHARD_COUNT;

pub(super) struct DurableWorker {
    pub(super) shared: Arc<Shared>,
    pub(super) outbox: Arc<dyn Outbox>,
    pub(super) settings: WorkerSettings,
    pub(super) sealer: Sealer,
    pub(super) wake: Arc<Notify>,
    pub(super) consumer: String,
    pub(super) health: Arc<ReadHealth>,
    /// Entries this worker is handling, by shard and entry id (ids repeat across streams): a
    /// re-read of its own pending entries, or a reclaim, skips them.
    /// Entries stay held until their acknowledgement is flushed.
    pub(super) held: Mutex<HashSet<(u8, String)>>,
    pub(super) acks: AckBuffer,
    /// The handling tasks, waited for on shutdown before the last flush.
    pub(super) handles: TaskTracker,
}

/// Flush the buffered acknowledgements once this many wait (one batch stays small: a few KB of
/// ids per shard, a few hundred µs of Redis).
const ACK_FLUSH_AT: usize = 256;
/// The longest an acknowledgement waits in the buffer before the flush (what a message's entry
/// lingers as pending; far below any reclaim time).
const ACK_FLUSH_EVERY: Duration = Duration::from_millis(5);
/// The buffer's bound: past it, the oldest ids are let go (left pending, reclaimed later and
/// acknowledged through their sent mark), which only happens while acknowledgements fail.
const ACK_BUFFER_MAX: usize = 16 * ACK_FLUSH_AT;

/// Sent messages' entry ids waiting for their acknowledgement, per shard.
#[derive(Default)]
pub(super) struct AckBuffer {
    waiting: Mutex<AckWaiting>,
    /// Told when the first id arrives and when the buffer is full enough to flush now.
    wake: Notify,
}

#[derive(Default)]
struct AckWaiting {
    /// Entry ids with when they first entered the buffer (a failed flush puts them back).
    by_shard: BTreeMap<u8, Vec<(String, Instant)>>,
    count: usize,
}

impl AckBuffer {
    fn lock(&self) -> std::sync::MutexGuard<'_, AckWaiting> {
        // Plain collections; a poisoned lock still holds valid ones.
        self.waiting
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Buffers one id; returns the ids let go to keep the bound (they are no longer held).
    fn push(&self, shard: u8, entry_id: String, since: Instant) -> Vec<(u8, String)> {
        let mut waiting = self.lock();
        waiting
            .by_shard
            .entry(shard)
            .or_default()
            .push((entry_id, since));
        waiting.count += 1;
        let dropped = waiting.shed(ACK_BUFFER_MAX);
        if waiting.count == 1 || waiting.count >= ACK_FLUSH_AT {
            self.wake.notify_one();
        }
        dropped
    }

    fn is_empty(&self) -> bool {
        self.lock().count == 0
    }

    /// Everything buffered, by shard.
    fn take(&self) -> BTreeMap<u8, Vec<(String, Instant)>> {
        let mut waiting = self.lock();
        waiting.count = 0;
        std::mem::take(&mut waiting.by_shard)
    }
}

impl AckWaiting {
    /// Lets the oldest ids go until at most `bound` wait.
    fn shed(&mut self, bound: usize) -> Vec<(u8, String)> {
        let mut dropped = Vec::new();
        while self.count > bound {
            let oldest = self
                .by_shard
                .iter()
                .filter_map(|(shard, ids)| Some((*shard, ids.first()?.1)))
                .min_by_key(|(_, since)| *since);
            let Some((shard, _)) = oldest else { break };
            if let Some(ids) = self.by_shard.get_mut(&shard) {
                let (id, _) = ids.remove(0);
                dropped.push((shard, id));
                self.count -= 1;
            }
        }
        dropped
    }
}

/// How one shard's reads are going.
struct ShardState {
    /// The consumer group is known to exist.
    group: bool,
    /// Where the next read starts.
    from: ReadFrom,
    /// No read before this instant (after failures: the shard's own back-off).
    not_before: Instant,
    backoff: Duration,
}

/// How long a sent message's sent mark and acknowledgement are retried while its entry is
/// held: half the reclaim time, so that no other worker takes the entry over meanwhile.
pub(super) fn settle_within(settings: &WorkerSettings) -> Duration {
    settings.reclaim_idle / 2
}

/// Messages read from each shard per pass.
const READ_PER_SHARD: usize = 16;
const STATS_EVERY: Duration = Duration::from_secs(2);
/// How often the retry sets are looked at for messages due again.
const RELEASE_EVERY: Duration = Duration::from_millis(250);
/// A failing shard's first and longest wait between reads.
const SHARD_BACKOFF_FIRST: Duration = Duration::from_millis(100);
const SHARD_BACKOFF_MAX: Duration = Duration::from_secs(5);

impl DurableWorker {
    pub(super) async fn run(self, stop: CancellationToken) {
        let worker = Arc::new(self);
        let mut shards: Vec<ShardState> = (0..SHARD_COUNT)
            .map(|_| ShardState {
                group: false,
                // At start, and after any failed read: this consumer's own pending entries first.
                from: ReadFrom::Pending(None),
                not_before: Instant::now(),
                backoff: SHARD_BACKOFF_FIRST,
            })
            .collect();
        let mut last_reclaim = Instant::now();
        let mut last_stats: Option<Instant> = None;
        let mut last_release: Option<Instant> = None;
        let mut release_all = false;
        let mut topology = worker.outbox.topology();
        worker
            .shared
            .tasks
            .spawn(worker.clone().flush_acks_until(stop.clone()));
        while !stop.is_cancelled() {
            if last_stats.is_none_or(|at| at.elapsed() >= STATS_EVERY) {
                worker.publish_stats().await;
                last_stats = Some(Instant::now());
            }
            if release_all || last_release.is_none_or(|at| at.elapsed() >= RELEASE_EVERY) {
                // A provider came back: what waits for it need not sit out its back-off.
                let now = if release_all {
                    u64::MAX
                } else {
                    worker.shared.clock.now_ms()
                };
                worker.outbox.release_due(now, READ_PER_SHARD).await;
                last_release = Some(Instant::now());
                release_all = false;
            }
            let mut entries = Vec::new();
            if last_reclaim.elapsed() >= worker.settings.reclaim_idle / 2 {
                last_reclaim = Instant::now();
                for (shard, reclaimed) in worker
                    .outbox
                    .reclaim(
                        &worker.consumer,
                        worker.settings.reclaim_idle,
                        READ_PER_SHARD,
                    )
                    .await
                {
                    match reclaimed {
                        Ok(reclaimed) => {
                            for _ in &reclaimed {
                                worker.shared.metrics.redelivered();
                            }
                            entries.extend(reclaimed);
                        }
                        Err(error) => tracing::debug!(%error, shard, "outbox reclaim failed"),
                    }
                }
            }
            if worker.outbox.topology() != topology {
                // A shard has a new master: shards backing off after their old one died are
                // read again now rather than after their back-off (up to 5 s).
                topology = worker.outbox.topology();
                for state in &mut shards {
                    state.not_before = Instant::now();
                    state.backoff = SHARD_BACKOFF_FIRST;
                }
            }
            entries.extend(worker.read_shards(&mut shards).await);
            entries.retain(|entry| worker.hold(entry));
            if entries.is_empty() {
                tokio::select! {
                    () = worker.wake.notified() => {}
                    () = tokio::time::sleep(worker.settings.poll_interval) => {}
                    () = worker.shared.router.recovered() => release_all = true,
                    () = stop.cancelled() => {}
                }
                continue;
            }
            for entry in entries {
                let Ok(permit) = worker.shared.in_flight.clone().acquire_owned().await else {
                    break;
                };
                let this = worker.clone();
                let handle = worker.handles.track_future(async move {
                    let key = (entry.shard, entry.entry_id.clone());
                    if !this.handle(entry).await {
                        this.held_set().remove(&key);
                    }
                    drop(permit);
                });
                worker.shared.tasks.spawn(handle);
            }
        }
        // Stopping: what the running handles acknowledge goes out with the last flush.
        worker.handles.close();
        worker.handles.wait().await;
        worker.flush_acks().await;
    }

    /// Flushes the acknowledgements `ACK_FLUSH_EVERY` after the first one arrives, or at once
    /// when `ACK_FLUSH_AT` wait, until the stop (the run loop makes the last flush). After a
    /// failed flush the next waits longer (as `retry_within` does), so that an outage is not
    /// hammered.
    async fn flush_acks_until(self: Arc<Self>, stop: CancellationToken) {
        let mut pause = ACK_FLUSH_EVERY;
        loop {
            if self.acks.is_empty() {
                tokio::select! {
                    () = self.acks.wake.notified() => {}
                    () = stop.cancelled() => return,
                }
            }
            if pause > ACK_FLUSH_EVERY {
                // Failing: only the pause, however full the buffer.
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = stop.cancelled() => return,
                }
            } else {
                tokio::select! {
                    () = self.acks.wake.notified() => {}
                    () = tokio::time::sleep(ACK_FLUSH_EVERY) => {}
                    () = stop.cancelled() => return,
                }
            }
            pause = if self.flush_acks().await {
                ACK_FLUSH_EVERY
            } else {
                (pause * 2).clamp(RETRY_PAUSE_FIRST, RETRY_PAUSE_MAX)
            };
        }
    }

    /// One acknowledgement of every buffered id, all shards at once. A shard that fails keeps
    /// its ids for the next flush while they are younger than `settle_within` (no other worker
    /// reclaims them before that); older ones are let go, pending, for a reclaim to settle.
    /// False when a shard failed.
    async fn flush_acks(&self) -> bool {
        let taken = self.acks.take();
        if taken.is_empty() {
            return true;
        }
        let mut all_acked = true;
        let batches: Vec<(u8, Vec<String>)> = taken
            .iter()
            .map(|(shard, ids)| (*shard, ids.iter().map(|(id, _)| id.clone()).collect()))
            .collect();
        let retry_until = settle_within(&self.settings);
        let mut settled = Vec::new();
        for (shard, result) in self.outbox.ack(&batches).await {
            let ids = taken.get(&shard).map(Vec::as_slice).unwrap_or_default();
            match result {
                Ok(()) => settled.extend(ids.iter().map(|(id, _)| (shard, id.clone()))),
                Err(error) => {
                    all_acked = false;
                    tracing::debug!(%error, shard, ids = ids.len(), "cannot acknowledge sent messages; trying again");
                    for (id, since) in ids {
                        if since.elapsed() < retry_until {
                            self.release(self.acks.push(shard, id.clone(), *since));
                        } else {
                            // Left pending: another worker reclaims it, finds the sent flag and
                            // acknowledges it (or, when recording the attempt failed too, sends
                            // again: a counted duplicate rather than a lost message).
                            tracing::warn!(%error, entry = %id, "cannot acknowledge a sent message");
                            settled.push((shard, id.clone()));
                        }
                    }
                }
            }
        }
        self.release(settled);
        all_acked
    }

    /// These entries are no longer handled here.
    fn release(&self, entries: Vec<(u8, String)>) {
        if entries.is_empty() {
            return;
        }
        let mut held = self.held_set();
        for entry in entries {
            held.remove(&entry);
        }
    }

    /// Reads every shard that is not backing off, each on its own: a shard that fails (a dead
    /// master, a lost group) backs off alone, and what the others gave is handled at once.
    async fn read_shards(&self, shards: &mut [ShardState]) -> Vec<OutboxEntry> {
        let now = Instant::now();
        let now_ms = self.shared.clock.now_ms();
        let due: Vec<u8> = (0..SHARD_COUNT)
            .filter(|&shard| shards[usize::from(shard)].not_before <= now)
            .collect();
        // Groups to (re)create, all at once: at start, and after Redis lost them.
        let creations = due
            .iter()
            .filter(|&&shard| !shards[usize::from(shard)].group)
            .map(|&shard| async move { (shard, self.outbox.prepare_shard(shard).await) });
        for (shard, created) in futures::future::join_all(creations).await {
            let state = &mut shards[usize::from(shard)];
            match created {
                Ok(()) => state.group = true,
                Err(error) => self.shard_failed(shard, state, now_ms, &error.to_string()),
            }
        }
        let wanted: Vec<(u8, ReadFrom)> = due
            .into_iter()
            .filter(|&shard| shards[usize::from(shard)].group)
            .map(|shard| (shard, shards[usize::from(shard)].from.clone()))
            .collect();
        let mut entries = Vec::new();
        for (shard, result) in self
            .outbox
            .read(&self.consumer, &wanted, READ_PER_SHARD)
            .await
        {
            let state = &mut shards[usize::from(shard)];
            match result {
                Ok(read) => {
                    self.health.succeeded(shard);
                    state.backoff = SHARD_BACKOFF_FIRST;
                    if let ReadFrom::Pending(_) = state.from {
                        // Page through the pending entries, then on to new ones.
                        state.from = match read.last() {
                            Some(last) if read.len() == READ_PER_SHARD => {
                                ReadFrom::Pending(Some(last.entry_id.clone()))
                            }
                            _ => ReadFrom::New,
                        };
                    }
                    entries.extend(read);
                }
                Err(ShardReadError::NoGroup) => {
                    // Redis lost the stream and its group: the next pass makes them again (no
                    // back-off) and reads what this consumer may still have pending first.
                    tracing::warn!(shard, "the outbox consumer group is gone (Redis lost its data?); creating it again");
                    self.shared.metrics.outbox_group_created();
                    self.health.failed(shard, now_ms);
                    state.group = false;
                    state.from = ReadFrom::Pending(None);
                }
                Err(ShardReadError::Store(error)) => {
                    self.shard_failed(shard, state, now_ms, &error.to_string())
                }
            }
        }
        let (failing_for, _) = self.health.failing(now_ms);
        self.shared.metrics.outbox_read_failing(failing_for);
        entries
    }

    fn shard_failed(&self, shard: u8, state: &mut ShardState, now_ms: u64, error: &str) {
        if state.backoff == SHARD_BACKOFF_FIRST {
            tracing::warn!(shard, %error, "outbox read failed; this shard backs off alone");
        } else {
            tracing::debug!(shard, %error, "outbox read failed again");
        }
        self.health.failed(shard, now_ms);
        // The reply may have been lost with entries in it: they are pending on this consumer,
        // so the next read starts with them instead of waiting for the reclaim.
        state.from = ReadFrom::Pending(None);
        state.not_before = Instant::now() + state.backoff;
        state.backoff = (state.backoff * 2).min(SHARD_BACKOFF_MAX);
    }

    /// Marks an entry as being handled here; false when it already is.
    fn hold(&self, entry: &OutboxEntry) -> bool {
        self.held_set()
            .insert((entry.shard, entry.entry_id.clone()))
    }

    fn held_set(&self) -> std::sync::MutexGuard<'_, HashSet<(u8, String)>> {
        // A plain set; a poisoned lock still holds a valid one.
        self.held
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn publish_stats(&self) {
        match self.outbox.stats(self.shared.clock.now_ms()).await {
            Ok(stats) => {
                self.shared.metrics.queue_depth().set(stats.depth as f64);
                self.shared
                    .metrics
                    .oldest_queued_age(Duration::from_millis(stats.oldest_age_ms.unwrap_or(0)));
            }
            Err(error) => tracing::debug!(%error, "outbox stats unavailable"),
        }
    }

    /// Handles one entry; true when its acknowledgement waits in the buffer (the entry stays
    /// held until it is flushed).
    async fn handle(&self, entry: OutboxEntry) -> bool {
        let metrics = &self.shared.metrics;
        if entry.deliveries > self.settings.max_deliveries {
            let reason = format!("read {} times without being acknowledged", entry.deliveries);
            self.dead_letter(&entry, &reason).await;
            return false;
        }
        let message = self
            .sealer
            .open(&entry.sealed)
            .and_then(|plain| serde_json::from_slice::<Payload>(&plain).ok())
            .and_then(|payload| {
                OutgoingMessage::from_payload(entry.verification_id.clone(), payload)
            });
        let Some(message) = message else {
            self.dead_letter(&entry, "cannot open the message (another code key?)")
                .await;
            return false;
        };
        if entry.deliveries > 1 {
            match self
                .outbox
                .already_sent(&entry.verification_id, &message.id)
                .await
            {
                Ok(true) => {
                    // A provider took it before the last worker died: acknowledge, don't resend.
                    return self.ack(entry);
                }
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(%error, "cannot check the sent-mark; the message stays queued");
                    return false;
                }
            }
        }
        let mut progress = self
            .shared
            .router
            .progress_from(entry.round, &entry.refused);
        match self.shared.deliver(&message, &mut progress).await {
            Delivery::Accepted { .. } => self.ack(entry),
            Delivery::Failed { reason, .. } => {
                metrics.dead_letter();
                self.dead_letter(&entry, &reason).await;
                false
            }
            Delivery::Deferred { retry_at_ms, .. } => {
                let refused = progress.refused.join(" ");
                let deferral = Deferral {
                    message_id: &message.id,
                    due_ms: retry_at_ms,
                    round: progress.round,
                    refused: &refused,
                };
                if let Err(error) = self.outbox.defer(&entry, &deferral).await {
                    // Left pending: read again after a failed read, or reclaimed.
                    tracing::warn!(%error, entry = %entry.entry_id, "cannot defer a message; it stays pending");
                }
                false
            }
        }
    }

    /// Buffers the acknowledgement of a sent message (its sent mark is stored: until the flush,
    /// or if this process dies first, a redelivery finds it and does not send again); true.
    fn ack(&self, entry: OutboxEntry) -> bool {
        self.release(self.acks.push(entry.shard, entry.entry_id, Instant::now()));
        true
    }

    async fn dead_letter(&self, entry: &OutboxEntry, reason: &str) {
        tracing::warn!(entry = %entry.entry_id, verification = %entry.verification_id, %reason, "message dead-lettered");
        if let Err(error) = self.outbox.dead_letter(entry, reason).await {
            tracing::warn!(%error, entry = %entry.entry_id, "cannot dead-letter; the message stays queued");
        }
    }
}
