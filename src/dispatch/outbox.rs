//! The `Outbox` port: where the durable worker reads the messages the store queued with their
//! verification, and settles each one. One adapter, `RedisOutbox` (src/redis/outbox.rs): the
//! embedded store queues nothing, its messages go through the memory dispatcher's channel.
//!
//! The contract, per shard: a message is read once as new (`ReadFrom::New`) and then stays
//! pending on its reader until it is settled (acknowledged, deferred, dead-lettered); a reader
//! reads its own pending messages again (`ReadFrom::Pending`), and pending messages idle longer
//! than the reclaim time are taken over by another reader, with their delivery count. A
//! deferred message leaves the pending ones and comes back as new once released when due.

use std::time::Duration;

use async_trait::async_trait;

use crate::store::StoreError;

/// A message read from the outbox.
#[derive(Debug, Clone)]
pub struct OutboxEntry {
    pub shard: u8,
    pub entry_id: String,
    pub verification_id: String,
    pub sealed: Vec<u8>,
    /// 1 on first delivery; more when reclaimed from a dead worker.
    pub deliveries: u64,
    /// Rounds over the providers already made (0 for a new message; kept across deferrals so
    /// that the back-off keeps growing).
    pub round: u32,
    /// Providers that refused the message for good, space-separated (not tried again).
    pub refused: String,
}

/// How a message is parked: until `due_ms` (gateway clock), with the rounds made and the
/// providers that refused it.
#[derive(Debug, Clone, Copy)]
pub struct Deferral<'a> {
    pub message_id: &'a str,
    pub due_ms: u64,
    pub round: u32,
    /// Space-separated, as `OutboxEntry::refused`.
    pub refused: &'a str,
}

/// Where a shard read starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadFrom {
    /// Messages no reader has read yet.
    New,
    /// This reader's own pending messages (read before, the reply lost or never handled),
    /// from the first (`None`) or after the given entry id.
    Pending(Option<String>),
}

/// Why one shard could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ShardReadError {
    /// The shard's queue or its readers' group is gone (the store lost its data): prepare the
    /// shard again.
    #[error("the consumer group is missing (NOGROUP)")]
    NoGroup,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Depth and age of what waits in the outbox.
#[derive(Debug, Clone, Copy, Default)]
pub struct OutboxStats {
    pub depth: u64,
    pub oldest_age_ms: Option<u64>,
    pub dead_letters: u64,
}

/// One shard's result of a read or a reclaim: what healthy shards gave is handled even when
/// another failed.
pub type ShardResults<E> = Vec<(u8, Result<Vec<OutboxEntry>, E>)>;

#[async_trait]
pub trait Outbox: Send + Sync {
    /// Moves whenever a shard's home changes (a new master): shards that backed off while
    /// theirs was unreachable can be read again at once.
    fn topology(&self) -> u64;

    /// Makes one shard readable (its readers' group; an existing one is left as it is), keeping
    /// anything queued before.
    async fn prepare_shard(&self, shard: u8) -> Result<(), StoreError>;

    /// Up to `count` messages for `reader` from each of `shards`, read concurrently; one result
    /// per shard, in the order given.
    async fn read(
        &self,
        reader: &str,
        shards: &[(u8, ReadFrom)],
        count: usize,
    ) -> ShardResults<ShardReadError>;

    /// Ends this delivery of `entry` and parks the message as `deferral` says.
    async fn defer(&self, entry: &OutboxEntry, deferral: &Deferral<'_>) -> Result<(), StoreError>;

    /// Makes messages due by `now_ms` readable again as new; returns how many. A shard that
    /// fails is skipped (its messages wait for the next call).
    async fn release_due(&self, now_ms: u64, per_shard: usize) -> usize;

    /// Takes over, for `reader`, messages that another reader read but did not settle within
    /// `min_idle`.
    async fn reclaim(
        &self,
        reader: &str,
        min_idle: Duration,
        per_shard: usize,
    ) -> ShardResults<StoreError>;

    /// Whether a provider already accepted this message (a worker died before acknowledging):
    /// its attempt in the verification's record says so.
    async fn already_sent(
        &self,
        verification_id: &str,
        message_id: &str,
    ) -> Result<bool, StoreError>;

    /// Done: a provider accepted these messages (and their attempts, recorded first, say so).
    /// Many entry ids per shard, the shards at once; one result per shard, in the order given.
    /// A shard that fails keeps its entries pending (they are read again or reclaimed, and the
    /// sent mark stops a second send).
    async fn ack(&self, batches: &[(u8, Vec<String>)]) -> Vec<(u8, Result<(), StoreError>)>;

    /// Gives up on a message: it moves, with its reasons, to the dead letters.
    async fn dead_letter(&self, entry: &OutboxEntry, reasons: &str) -> Result<(), StoreError>;

    /// Messages waiting (read or not, or parked), the age of the oldest queued, and the dead
    /// letters kept.
    async fn stats(&self, now_ms: u64) -> Result<OutboxStats, StoreError>;
}
