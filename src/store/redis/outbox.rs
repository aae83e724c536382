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

use std::collections::HashMap;
use std::time::Duration;

use futures::future::join_all;
use redis::streams::{
    StreamAutoClaimReply, StreamId, StreamPendingCountReply, StreamReadOptions, StreamReadReply,
};
use redis::{Script, Value};

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
}

pub(crate) struct Scripts {
    ack: Script,
    dead_letter: Script,
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

    /// Creates the consumer group on every shard's stream (once per deployment; an existing group
    /// is left as it is). Starting at `0` keeps anything queued before the group existed.
    pub async fn outbox_prepare(&self) -> Result<(), StoreError> {
        let creations = (0..SHARD_COUNT).map(|shard| async move {
            let mut connection = self.connection.clone();
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
        });
        join_all(creations).await.into_iter().collect()
    }

    /// New messages for `consumer`, up to `per_shard` from each shard, read concurrently (the
    /// multiplexed connection pipelines the reads).
    pub async fn outbox_read(
        &self,
        consumer: &str,
        per_shard: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let reads = (0..SHARD_COUNT).map(|shard| {
            let options = StreamReadOptions::default()
                .group(GROUP, consumer)
                .count(per_shard);
            async move {
                let mut connection = self.connection.clone();
                let reply: Option<StreamReadReply> = redis::cmd("XREADGROUP")
                    .arg(&options)
                    .arg("STREAMS")
                    .arg(self.outbox_key(shard))
                    .arg(">")
                    .query_async(&mut connection)
                    .await
                    .map_err(store_error)?;
                Ok::<_, StoreError>(
                    reply
                        .into_iter()
                        .flat_map(|reply| reply.keys)
                        .flat_map(|key| key.ids)
                        .filter_map(|id| entry(shard, id, 1))
                        .collect::<Vec<_>>(),
                )
            }
        });
        let mut entries = Vec::new();
        for read in join_all(reads).await {
            entries.extend(read?);
        }
        Ok(entries)
    }

    /// Takes over messages that another consumer read but did not acknowledge within `min_idle`.
    pub async fn outbox_reclaim(
        &self,
        consumer: &str,
        min_idle: Duration,
        per_shard: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let claims = (0..SHARD_COUNT).map(|shard| async move {
            let mut connection = self.connection.clone();
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
        let mut entries = Vec::new();
        for claim in join_all(claims).await {
            entries.extend(claim?);
        }
        Ok(entries)
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
        let mut connection = self.connection.clone();
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
        let mut connection = self.connection.clone();
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
        let mut connection = self.connection.clone();
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

    /// Messages waiting (read or not), the age of the oldest, and the dead letters kept.
    pub async fn outbox_stats(&self, now_ms: u64) -> Result<OutboxStats, StoreError> {
        let per_shard = (0..SHARD_COUNT).map(|shard| async move {
            let mut connection = self.connection.clone();
            let depth: u64 = redis::cmd("XLEN")
                .arg(self.outbox_key(shard))
                .query_async(&mut connection)
                .await
                .map_err(store_error)?;
            let dead: u64 = redis::cmd("XLEN")
                .arg(self.dead_letter_key(shard))
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
            Ok::<_, StoreError>((depth, dead, oldest))
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
    Some(OutboxEntry {
        shard,
        entry_id: id.id,
        verification_id,
        sealed,
        deliveries,
    })
}
