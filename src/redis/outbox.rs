//! `RedisOutbox`, the `Outbox` port (src/dispatch/outbox.rs) on Redis: outgoing messages in one
//! Redis Stream per shard, read by a consumer group.
//!
//! The start script appends the sealed message in the same atomic step that creates the
//! verification. Workers read with `XREADGROUP`, and acknowledge (`XACK`, then `XDEL` so the
//! stream does not grow) only after a provider accepted the message and its attempt, with the
//! sent flag, is in the verification's record: if a worker dies after the provider accepted but
//! before the attempt was recorded, the message is sent again (counted as a redelivery); if it
//! dies after, the flag stops a second send. Acknowledgements come in batches (the worker
//! buffers them for a few ms, src/dispatch/durable.rs): one `MULTI`/`XACK`/`XDEL`/`EXEC` of many
//! ids per shard, every shard's batch written at once on the multiplexed connection. Entries idle longer than the reclaim time belong to
//! a dead worker and are taken over with `XAUTOCLAIM`; after too many deliveries, or when no
//! provider takes a message, it moves to the shard's dead-letter stream with its reasons.
//!
//! Every shard is read on its own: one shard's failure (a dead master, a lost group) is that
//! shard's result, not the whole read's. A stream whose consumer group vanished (Redis restarted
//! empty, FLUSHALL, failover to an empty replica) answers `NOGROUP`, which the reader reports as
//! `ShardReadError::NoGroup` so that the worker recreates the group and carries on.
//!
//! A message that no provider took yet is not kept pending while it waits for its next try (a
//! pending entry idle for the reclaim time would be taken over and sent twice): the defer script
//! moves it, atomically, from the stream to the shard's retry set (a sorted set by due time, the
//! payloads in a hash), and the release script moves due messages back onto the stream.
//!
//! Its keys (`KeySpace`), all under the shard's hash tag, so each script touches one slot:
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `P:{sNN}:o` | stream | the shard's queued messages (`v` verification id, `m` sealed, `r` round, `x` refused providers), consumer group `dispatch` |
//! | `P:{sNN}:d` | stream | dead letters: `v`, `m`, `reasons`, `deliveries` |
//! | `P:{sNN}:z` | sorted set | deferred messages' ids by due time (gateway clock ms) |
//! | `P:{sNN}:y` | hash | the deferred messages' fields, `<message id>:v`, `:m`, `:r`, `:x` |

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::join_all;
use redis::streams::{
    StreamAutoClaimReply, StreamId, StreamPendingCountReply, StreamReadOptions, StreamReadReply,
};
use redis::Value;

use super::connection::{Connection, ShardConnection};
use super::script::{corrupt, scripts, store_error, words};
use super::verify::record_says_sent;
use super::{KeySpace, RedisStore};
use crate::dispatch::outbox::{
    Deferral, Outbox, OutboxEntry, OutboxStats, ReadFrom, ShardReadError, ShardResults,
};
use crate::phone::SHARD_COUNT;
use crate::store::StoreError;
use crate::verify::model::VerificationId;

/// The consumer group every gateway instance reads with.
pub const GROUP: &str = "dispatch";

scripts! { OutboxScripts = "outbox_": dead_letter, defer, release }

pub struct RedisOutbox {
    connection: Connection,
    keys: KeySpace,
    scripts: OutboxScripts,
}

impl RedisOutbox {
    pub(crate) fn new(connection: Connection, prefix: &str) -> Self {
        Self {
            connection,
            keys: KeySpace::new(prefix),
            scripts: OutboxScripts::load(),
        }
    }

    /// The outbox the verification store's start script appends to (same connection, prefix).
    pub fn on(store: &RedisStore) -> Self {
        Self::new(store.connection(), store.prefix())
    }

    /// The connection for one shard's outbox calls: its master directly on a cluster, so that a
    /// dead master holds only its own shards' reads and acknowledgements.
    fn shard_connection(&self, key: &str) -> ShardConnection {
        self.connection.for_key(key)
    }

    async fn read_shard(
        &self,
        consumer: &str,
        shard: u8,
        from: &ReadFrom,
        count: usize,
    ) -> Result<Vec<OutboxEntry>, ShardReadError> {
        let options = StreamReadOptions::default()
            .group(GROUP, consumer)
            .count(count);
        let mut connection = self.shard_connection(&self.keys.outbox(shard));
        let reply: Option<StreamReadReply> = redis::cmd("XREADGROUP")
            .arg(&options)
            .arg("STREAMS")
            .arg(self.keys.outbox(shard))
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

    /// Runs one of the settling scripts on an entry's shard; `expected` is its reply.
    async fn settle(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
        shard: u8,
        expected: &str,
    ) -> Result<(), StoreError> {
        let mut connection = self.shard_connection(&self.keys.outbox(shard));
        let reply: String = invocation
            .invoke_async(&mut connection)
            .await
            .map_err(store_error)?;
        if reply == expected {
            Ok(())
        } else {
            Err(corrupt("unexpected outbox script reply"))
        }
    }
}

#[async_trait]
impl Outbox for RedisOutbox {
    /// Moves whenever a shard's master changes (0 on a single server).
    fn topology(&self) -> u64 {
        self.connection.topology_generation()
    }

    /// Creates the consumer group on one shard's stream (an existing group is left as it is).
    /// Starting at `0` keeps anything queued before the group existed; `MKSTREAM` creates the
    /// stream when Redis lost it.
    async fn prepare_shard(&self, shard: u8) -> Result<(), StoreError> {
        let mut connection = self.shard_connection(&self.keys.outbox(shard));
        let result: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(self.keys.outbox(shard))
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

    /// The multiplexed connection pipelines the shards' reads.
    async fn read(
        &self,
        consumer: &str,
        shards: &[(u8, ReadFrom)],
        count: usize,
    ) -> ShardResults<ShardReadError> {
        let reads = shards.iter().map(|(shard, from)| async move {
            (*shard, self.read_shard(consumer, *shard, from, count).await)
        });
        join_all(reads).await
    }

    /// Parks the message in the shard's retry set (acknowledged on the stream, atomically).
    async fn defer(&self, entry: &OutboxEntry, deferral: &Deferral<'_>) -> Result<(), StoreError> {
        let shard = entry.shard;
        let mut invocation = self.scripts.defer.prepare_invoke();
        invocation
            .key(self.keys.outbox(shard))
            .key(self.keys.retry_set(shard))
            .key(self.keys.retry_payloads(shard))
            .arg(GROUP)
            .arg(&entry.entry_id)
            .arg(deferral.message_id)
            .arg(deferral.due_ms)
            .arg(&entry.verification_id)
            .arg(&entry.sealed[..])
            .arg(deferral.round)
            .arg(deferral.refused);
        self.settle(&invocation, shard, "deferred").await
    }

    /// Moves due messages from each shard's retry set back onto its stream.
    async fn release_due(&self, now_ms: u64, per_shard: usize) -> usize {
        let releases = (0..SHARD_COUNT).map(|shard| async move {
            let mut connection = self.shard_connection(&self.keys.outbox(shard));
            let reply: Option<String> = (self.scripts.release)
                .key(self.keys.retry_set(shard))
                .key(self.keys.retry_payloads(shard))
                .key(self.keys.outbox(shard))
                .arg(now_ms)
                .arg(per_shard)
                .invoke_async(&mut connection)
                .await
                .ok();
            match reply.as_deref().map(words).as_deref() {
                Some(["released", moved]) => moved.parse().unwrap_or(0),
                _ => 0,
            }
        });
        join_all(releases).await.into_iter().sum()
    }

    async fn reclaim(
        &self,
        consumer: &str,
        min_idle: Duration,
        per_shard: usize,
    ) -> ShardResults<StoreError> {
        let claims = (0..SHARD_COUNT).map(|shard| async move {
            let key = self.keys.outbox(shard);
            let mut connection = self.shard_connection(&key);
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

    async fn already_sent(
        &self,
        verification_id: &str,
        message_id: &str,
    ) -> Result<bool, StoreError> {
        let Some(id) = VerificationId::parse(verification_id) else {
            return Ok(false);
        };
        let key = self.keys.verification(&id);
        let mut connection = self.shard_connection(&key);
        // The whole packed record (a few hundred bytes): its delivery states say whether a
        // provider accepted this message.
        let record: Option<Vec<u8>> = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut connection)
            .await
            .map_err(store_error)?;
        Ok(record
            .as_deref()
            .is_some_and(|record| record_says_sent(record, message_id)))
    }

    /// Each shard's ids in one transaction (XACK and XDEL together, as one step, so that no
    /// entry is left acknowledged but kept); the shards' transactions are written at once and
    /// pipelined by the multiplexed connection (one round trip on a single server).
    async fn ack(&self, batches: &[(u8, Vec<String>)]) -> Vec<(u8, Result<(), StoreError>)> {
        let acks = batches.iter().map(|(shard, ids)| async move {
            if ids.is_empty() {
                return (*shard, Ok(()));
            }
            let key = self.keys.outbox(*shard);
            let mut connection = self.shard_connection(&key);
            let result: redis::RedisResult<(u64, u64)> = redis::pipe()
                .atomic()
                .cmd("XACK")
                .arg(&key)
                .arg(GROUP)
                .arg(ids)
                .cmd("XDEL")
                .arg(&key)
                .arg(ids)
                .query_async(&mut connection)
                .await;
            (*shard, result.map(|_| ()).map_err(store_error))
        });
        join_all(acks).await
    }

    /// The shard's dead-letter stream keeps the message, its reasons and its deliveries.
    async fn dead_letter(&self, entry: &OutboxEntry, reasons: &str) -> Result<(), StoreError> {
        let shard = entry.shard;
        let mut invocation = self.scripts.dead_letter.prepare_invoke();
        invocation
            .key(self.keys.outbox(shard))
            .key(self.keys.dead_letters(shard))
            .arg(GROUP)
            .arg(&entry.entry_id)
            .arg(&entry.verification_id)
            .arg(&entry.sealed[..])
            .arg(reasons)
            .arg(entry.deliveries);
        self.settle(&invocation, shard, "dead").await
    }

    async fn stats(&self, now_ms: u64) -> Result<OutboxStats, StoreError> {
        let per_shard = (0..SHARD_COUNT).map(|shard| async move {
            let mut connection = self.shard_connection(&self.keys.outbox(shard));
            // One round trip: the three keys share the shard's hash tag.
            let (depth, dead, parked): (u64, u64, u64) = redis::pipe()
                .cmd("XLEN")
                .arg(self.keys.outbox(shard))
                .cmd("XLEN")
                .arg(self.keys.dead_letters(shard))
                .cmd("ZCARD")
                .arg(self.keys.retry_set(shard))
                .query_async(&mut connection)
                .await
                .map_err(store_error)?;
            let oldest = if depth > 0 {
                let first: Vec<(String, HashMap<String, Value>)> = redis::cmd("XRANGE")
                    .arg(self.keys.outbox(shard))
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
