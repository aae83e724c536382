//! The durable outbox: outgoing messages in one Redis Stream per shard, read by a consumer group.
//!
//! The start script appends the sealed message in the same atomic step that creates the
//! verification. Workers read with `XREADGROUP`, and acknowledge (`XACK`, then `XDEL` so the
//! stream does not grow) only after a provider accepted the message and its attempt, with the
//! sent flag, is in the verification's record: if a worker dies after the provider accepted but
//! before the attempt was recorded, the message is sent again (counted as a redelivery); if it
//! dies after, the flag stops a second send. Entries idle longer than the reclaim time belong to
//! a dead worker and are taken over with `XAUTOCLAIM`; after too many deliveries, or when no
//! provider takes a message, it moves to the shard's dead-letter stream with its reasons.
//!
//! Every shard is read on its own: one shard's failure (a dead master, a lost group) is that
//! shard's result, not the whole read's. A stream whose consumer group vanished (Redis restarted
//! empty, FLUSHALL, failover to an empty replica) answers `NOGROUP`, which the reader reports as
//! [`ShardReadError::NoGroup`] so that the worker recreates the group and carries on.
//!
//! A message that no provider took yet is not kept pending while it waits for its next try (a
//! pending entry idle for the reclaim time would be taken over and sent twice): the defer script
//! moves it, atomically, from the stream to the shard's retry set (a sorted set by due time, the
//! payloads in a hash), and the release script moves due messages back onto the stream.

use std::collections::HashMap;
use std::time::Duration;

use futures::future::join_all;
use redis::streams::{
    StreamAutoClaimReply, StreamId, StreamPendingCountReply, StreamReadOptions, StreamReadReply,
};
use redis::{Script, Value};

use super::connection::ShardConnection;
use super::{store_error, RedisStore};
use crate::phone::SHARD_COUNT;
use crate::store::StoreError;

/// The consumer group every gateway instance reads with.
pub const GROUP: &str = "dispatch";

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

/// Where a shard read starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadFrom {
    /// Messages no consumer has read yet (`>`).
    New,
    /// This consumer's own pending messages (read before, the reply lost or never handled),
    /// from the first (`None`: id `0`) or after the given entry id.
    Pending(Option<String>),
}

/// Why one shard could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ShardReadError {
    /// The stream or its consumer group is gone (Redis lost its data): recreate the group.
    #[error("the consumer group is missing (NOGROUP)")]
    NoGroup,
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub(crate) struct Scripts {
    ack: Script,
    dead_letter: Script,
    defer: Script,
    release: Script,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        Self {
            // KEYS: stream. ARGV: group, entry id.
            ack: Script::new(
                r#"
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
"#,
            ),
            // KEYS: stream, dead-letter stream. ARGV: group, entry id, verification id, sealed, reasons, deliveries.
            dead_letter: Script::new(
                r#"
redis.call('XADD', KEYS[2], 'MAXLEN', '~', '100000', '*', 'v', ARGV[3], 'm', ARGV[4], 'reasons', ARGV[5], 'deliveries', ARGV[6])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
"#,
            ),
            // KEYS: stream, retry set, retry payloads. ARGV: group, entry id, message id, due ms,
            // verification id, sealed, round, refused providers.
            // Moves a read entry to the retry set; its delivery ends here (acknowledged).
            defer: Script::new(
                r#"
local m = ARGV[3]
redis.call('HSET', KEYS[3], m .. ':v', ARGV[5], m .. ':m', ARGV[6], m .. ':r', ARGV[7], m .. ':x', ARGV[8])
redis.call('ZADD', KEYS[2], ARGV[4], m)
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
"#,
            ),
            // KEYS: retry set, retry payloads, stream. ARGV: now ms, at most this many.
            // Puts due messages back on the stream, where any worker reads them.
            release: Script::new(
                r#"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, m in ipairs(due) do
  local f = redis.call('HMGET', KEYS[2], m .. ':v', m .. ':m', m .. ':r', m .. ':x')
  if f[1] and f[2] then
    redis.call('XADD', KEYS[3], '*', 'v', f[1], 'm', f[2], 'r', f[3] or '0', 'x', f[4] or '')
  end
  redis.call('HDEL', KEYS[2], m .. ':v', m .. ':m', m .. ':r', m .. ':x')
  redis.call('ZREM', KEYS[1], m)
end
return #due
"#,
            ),
        }
    }
}

/// Depth and age of what waits in the outbox.
#[derive(Debug, Clone, Copy, Default)]
pub struct OutboxStats {
    pub depth: u64,
    pub oldest_age_ms: Option<u64>,
    pub dead_letters: u64,
}

impl RedisStore {
    pub(crate) fn outbox_key(&self, shard: u8) -> String {
        format!("{}o", self.base(shard))
    }

    fn dead_letter_key(&self, shard: u8) -> String {
        format!("{}d", self.base(shard))
    }

    fn retry_set_key(&self, shard: u8) -> String {
        format!("{}z", self.base(shard))
    }

    fn retry_payloads_key(&self, shard: u8) -> String {
        format!("{}y", self.base(shard))
    }

    /// The connection for one shard's outbox calls: its master directly on a cluster, so that a
    /// dead master holds only its own shards' reads and acknowledgements.
    fn shard_connection(&self, key: &str) -> ShardConnection {
        self.connection.for_key(key)
    }

    /// Moves whenever a shard's master changes (0 on a single server): shards that backed off
    /// while their master was dead can be read again at once.
    pub fn outbox_topology(&self) -> u64 {
        self.connection.topology_generation()
    }

    /// Creates the consumer group on one shard's stream (an existing group is left as it is).
    /// Starting at `0` keeps anything queued before the group existed; `MKSTREAM` creates the
    /// stream when Redis lost it.
    pub async fn outbox_prepare_shard(&self, shard: u8) -> Result<(), StoreError> {
        let mut connection = self.shard_connection(&self.outbox_key(shard));
        let result: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(self.outbox_key(shard))
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut connection)
            .await;
        match result {
            Err(error) if error.code() == Some("BUSYGROUP") => Ok(()),
            other => other.map_err(store_error),
        }
    }

    /// Up to `count` messages for `consumer` from each of `shards`, read concurrently (the
    /// multiplexed connection pipelines the reads); one result per shard, in the order given.
    pub async fn outbox_read(
        &self,
        consumer: &str,
        shards: &[(u8, ReadFrom)],
        count: usize,
    ) -> Vec<(u8, Result<Vec<OutboxEntry>, ShardReadError>)> {
        let reads = shards.iter().map(|(shard, from)| async move {
            (
                *shard,
                self.outbox_read_shard(consumer, *shard, from, count).await,
            )
        });
        join_all(reads).await
    }

    async fn outbox_read_shard(
        &self,
        consumer: &str,
        shard: u8,
        from: &ReadFrom,
        count: usize,
    ) -> Result<Vec<OutboxEntry>, ShardReadError> {
        let options = StreamReadOptions::default()
            .group(GROUP, consumer)
            .count(count);
        let mut connection = self.shard_connection(&self.outbox_key(shard));
        let reply: Option<StreamReadReply> = redis::cmd("XREADGROUP")
            .arg(&options)
            .arg("STREAMS")
            .arg(self.outbox_key(shard))
            .arg(match from {
                ReadFrom::New => ">",
                ReadFrom::Pending(None) => "0",
                ReadFrom::Pending(Some(after)) => after.as_str(),
            })
            .query_async(&mut connection)
            .await
            .map_err(|error| {
                if error.code() == Some("NOGROUP") {
                    ShardReadError::NoGroup
                } else {
                    ShardReadError::Store(store_error(error))
                }
            })?;
        // A pending entry read again may have been handled before the reply was lost: it goes
        // through the sent-mark check like a reclaimed one.
        let deliveries = match from {
            ReadFrom::New => 1,
            ReadFrom::Pending(_) => 2,
        };
        Ok(reply
            .into_iter()
            .flat_map(|reply| reply.keys)
            .flat_map(|key| key.ids)
            .filter_map(|id| entry(shard, id, deliveries))
            .collect())
    }

    /// Ends this delivery of `entry` and parks the message in the shard's retry set until
    /// `due_ms` (gateway clock), with the rounds made and the providers that refused it.
    pub async fn outbox_defer(
        &self,
        entry: &OutboxEntry,
        message_id: &str,
        due_ms: u64,
        round: u32,
        refused: &str,
    ) -> Result<(), StoreError> {
        let mut connection = self.shard_connection(&self.outbox_key(entry.shard));
        self.outbox_scripts
            .defer
            .key(self.outbox_key(entry.shard))
            .key(self.retry_set_key(entry.shard))
            .key(self.retry_payloads_key(entry.shard))
            .arg(GROUP)
            .arg(&entry.entry_id)
            .arg(message_id)
            .arg(due_ms)
            .arg(&entry.verification_id)
            .arg(&entry.sealed[..])
            .arg(round)
            .arg(refused)
            .invoke_async::<()>(&mut connection)
            .await
            .map_err(store_error)
    }

    /// Moves messages due by `now_ms` from each shard's retry set back onto its stream; returns
    /// how many moved. A shard that fails is skipped (its messages wait for the next call).
    pub async fn outbox_release_due(&self, now_ms: u64, per_shard: usize) -> usize {
        let releases = (0..SHARD_COUNT).map(|shard| async move {
            let mut connection = self.shard_connection(&self.outbox_key(shard));
            self.outbox_scripts
                .release
                .key(self.retry_set_key(shard))
                .key(self.retry_payloads_key(shard))
                .key(self.outbox_key(shard))
                .arg(now_ms)
                .arg(per_shard)
                .invoke_async::<usize>(&mut connection)
                .await
                .unwrap_or(0)
        });
        join_all(releases).await.into_iter().sum()
    }

    /// Takes over messages that another consumer read but did not acknowledge within `min_idle`.
    /// One result per shard: what healthy shards gave is handled even when another failed.
    pub async fn outbox_reclaim(
        &self,
        consumer: &str,
        min_idle: Duration,
        per_shard: usize,
    ) -> Vec<(u8, Result<Vec<OutboxEntry>, StoreError>)> {
        let claims = (0..SHARD_COUNT).map(|shard| async move {
            let mut connection = self.shard_connection(&self.outbox_key(shard));
            let key = self.outbox_key(shard);
            let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
                .arg(&key)
                .arg(GROUP)
                .arg(consumer)
                .arg(min_idle.as_millis() as u64)
                .arg("0-0")
                .arg("COUNT")
                .arg(per_shard)
                .query_async(&mut connection)
                .await
                .map_err(store_error)?;
            let mut entries = Vec::new();
            for id in reply.claimed {
                // Reclaims are rare: one more round trip per message for its delivery count.
                let pending: StreamPendingCountReply = redis::cmd("XPENDING")
                    .arg(&key)
                    .arg(GROUP)
                    .arg(&id.id)
                    .arg(&id.id)
                    .arg(1)
                    .query_async(&mut connection)
                    .await
                    .map_err(store_error)?;
                let deliveries = pending.ids.first().map_or(2, |p| p.times_delivered as u64);
                entries.extend(entry(shard, id, deliveries));
            }
            Ok::<_, StoreError>(entries)
        });
        let results = join_all(claims).await;
        (0..SHARD_COUNT).zip(results).collect()
    }

    /// Whether a provider already accepted this message (a worker died before acknowledging):
    /// its attempt in the verification's record says so.
    pub async fn outbox_already_sent(
        &self,
        verification_id: &str,
        message_id: &str,
    ) -> Result<bool, StoreError> {
        let Some(id) = crate::verify::model::VerificationId::parse(verification_id) else {
            return Ok(false);
        };
        let mut connection = self.shard_connection(&self.record_key(&id));
        let value: Option<String> = redis::cmd("HGET")
            .arg(self.record_key(&id))
            .arg(super::attempt_field(message_id))
            .query_async(&mut connection)
            .await
            .map_err(store_error)?;
        Ok(value.as_deref().is_some_and(super::attempt_was_sent))
    }

    /// Done: a provider accepted it (and its attempt, recorded first, says so).
    pub async fn outbox_ack(&self, entry: &OutboxEntry) -> Result<(), StoreError> {
        let mut connection = self.shard_connection(&self.outbox_key(entry.shard));
        self.outbox_scripts
            .ack
            .key(self.outbox_key(entry.shard))
            .arg(GROUP)
            .arg(&entry.entry_id)
            .invoke_async::<()>(&mut connection)
            .await
            .map_err(store_error)
    }

    /// Gives up on a message: it moves, with its reasons, to the shard's dead-letter stream.
    pub async fn outbox_dead_letter(
        &self,
        entry: &OutboxEntry,
        reasons: &str,
    ) -> Result<(), StoreError> {
        let mut connection = self.shard_connection(&self.outbox_key(entry.shard));
        self.outbox_scripts
            .dead_letter
            .key(self.outbox_key(entry.shard))
            .key(self.dead_letter_key(entry.shard))
            .arg(GROUP)
            .arg(&entry.entry_id)
            .arg(&entry.verification_id)
            .arg(&entry.sealed[..])
            .arg(reasons)
            .arg(entry.deliveries)
            .invoke_async::<()>(&mut connection)
            .await
            .map_err(store_error)
    }

    /// Messages waiting (read or not, or parked for a retry), the age of the oldest queued, and
    /// the dead letters kept.
    pub async fn outbox_stats(&self, now_ms: u64) -> Result<OutboxStats, StoreError> {
        let per_shard = (0..SHARD_COUNT).map(|shard| async move {
            let mut connection = self.shard_connection(&self.outbox_key(shard));
            // One round trip: the three keys share the shard's hash tag.
            let (depth, dead, parked): (u64, u64, u64) = redis::pipe()
                .cmd("XLEN")
                .arg(self.outbox_key(shard))
                .cmd("XLEN")
                .arg(self.dead_letter_key(shard))
                .cmd("ZCARD")
                .arg(self.retry_set_key(shard))
                .query_async(&mut connection)
                .await
                .map_err(store_error)?;
            let oldest = if depth > 0 {
                let first: Vec<(String, HashMap<String, Value>)> = redis::cmd("XRANGE")
                    .arg(self.outbox_key(shard))
                    .arg("-")
                    .arg("+")
                    .arg("COUNT")
                    .arg(1)
                    .query_async(&mut connection)
                    .await
                    .map_err(store_error)?;
                first
                    .first()
                    .and_then(|(id, _)| id.split('-').next()?.parse::<u64>().ok())
            } else {
                None
            };
            Ok::<_, StoreError>((depth + parked, dead, oldest))
        });
        let mut stats = OutboxStats::default();
        for shard in join_all(per_shard).await {
            let (depth, dead, oldest) = shard?;
            stats.depth += depth;
            stats.dead_letters += dead;
            if let Some(oldest_ms) = oldest {
                let age = now_ms.saturating_sub(oldest_ms);
                stats.oldest_age_ms = Some(stats.oldest_age_ms.map_or(age, |known| known.max(age)));
            }
        }
        Ok(stats)
    }
}

fn entry(shard: u8, id: StreamId, deliveries: u64) -> Option<OutboxEntry> {
    let verification_id: String = id.get("v")?;
    let sealed: Vec<u8> = id.get("m")?;
    let round: u32 = id.get("r").unwrap_or(0);
    let refused: String = id.get("x").unwrap_or_default();
    Some(OutboxEntry {
        shard,
        entry_id: id.id,
        verification_id,
        sealed,
        deliveries,
        round,
        refused,
    })
}
