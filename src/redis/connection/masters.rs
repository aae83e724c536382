//! Each shard's current master over a direct connection, for the outbox worker.
//!
//! redis 1.8's cluster client serves every shard from one task: while one master is dead, its
//! retries and its slot refresh hold the calls of healthy shards too (the outbox's reads and
//! acknowledgements waited 5-6 s after a kill). The outbox instead sends each call to the
//! master of its key's slot on a multiplexed connection of its own (one per master node), so a
//! dead master stalls only its own shards. The slot ranges come from the supervisor's
//! `CLUSTER SLOTS` (every probe round, and at once when a call here meets a `MOVED` or a
//! connection error); a `MOVED` is followed to the node it names while the map catches up.
//! Until the supervisor has seen a topology (a single server, a process without the
//! supervisor), and for `ASK` (a slot in migration), calls go through the client as before.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{Cmd, ErrorKind, Pipeline, RedisFuture, RedisResult, ServerErrorKind, Value};
use tokio::sync::Notify;

use super::is_outage;
use super::nodes::{Dialer, Node, Shard};
use super::Connection;

/// Who serves which slots, and a connection to each master.
pub(super) struct Masters {
    dialer: Dialer,
    /// `(first slot, last slot, master)`, from the last `CLUSTER SLOTS` seen.
    ranges: RwLock<Arc<[(u16, u16, Node)]>>,
    connections: Mutex<HashMap<Node, MultiplexedConnection>>,
    /// Moves whenever the slot ranges or their masters change.
    generation: AtomicU64,
    /// A call met a moved slot or a master that does not answer: look at the topology now.
    pub(super) stale: Notify,
}

impl Masters {
    pub(super) fn new(dialer: Dialer) -> Self {
        Self {
            dialer,
            ranges: RwLock::new(Arc::new([])),
            connections: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
            stale: Notify::new(),
        }
    }

    /// The topology the supervisor just read.
    pub(super) fn publish(&self, shards: &[Shard]) {
        let ranges: Arc<[(u16, u16, Node)]> = shards
            .iter()
            .map(|shard| (shard.first_slot, shard.last_slot, shard.master.clone()))
            .collect();
        let masters: Vec<&Node> = ranges.iter().map(|(_, _, master)| master).collect();
        // Connections to nodes that no longer serve as masters go (a demoted master answers
        // MOVED; a dead one nothing).
        self.lock().retain(|node, _| masters.contains(&node));
        let mut known = self.ranges.write().unwrap_or_else(PoisonError::into_inner);
        if *known != ranges {
            *known = ranges;
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Moves whenever a shard's master changes (a failover, a resharding).
    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn master_of(&self, slot: u16) -> Option<Node> {
        let ranges = self
            .ranges
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        ranges
            .iter()
            .find(|(first, last, _)| (*first..=*last).contains(&slot))
            .map(|(_, _, master)| master.clone())
    }

    async fn connection(&self, node: &Node) -> RedisResult<MultiplexedConnection> {
        if let Some(connection) = self.lock().get(node) {
            return Ok(connection.clone());
        }
        let connection = self.dialer.connect(node).await?;
        self.lock().insert(node.clone(), connection.clone());
        Ok(connection)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Node, MultiplexedConnection>> {
        // A plain map of handles; a poisoned lock still holds a valid one.
        self.connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// `call` on the master of `slot`; `None` when the client should take it (no topology
    /// known yet, or a slot in migration).
    async fn send<T, F, R>(&self, slot: u16, call: F) -> Option<RedisResult<T>>
    where
        T: Reply,
        F: Fn(MultiplexedConnection) -> R,
        R: Future<Output = RedisResult<T>>,
    {
        let node = self.master_of(slot)?;
        let result = match self.connection(&node).await {
            Ok(connection) => call(connection).await,
            Err(error) => Err(error),
        };
        let redirect = match &result {
            Ok(reply) => reply.redirect(),
            Err(error) => match error.kind() {
                ErrorKind::Server(ServerErrorKind::Moved) => Some(Redirect::Moved(
                    error.redirect_node().and_then(|(addr, _)| node_of(addr)),
                )),
                ErrorKind::Server(ServerErrorKind::Ask) => Some(Redirect::Ask),
                _ => None,
            },
        };
        match redirect {
            Some(Redirect::Ask) => return None,
            Some(Redirect::Moved(to)) => {
                // The slot has a new master: follow it now, and have the map catch up.
                self.stale.notify_one();
                let Some(to) = to else {
                    return Some(result);
                };
                return Some(match self.connection(&to).await {
                    Ok(connection) => call(connection).await,
                    Err(error) => Err(error),
                });
            }
            None => {}
        }
        if let Err(error) = &result {
            if is_outage(error) {
                self.lock().remove(&node);
                self.stale.notify_one();
            }
        }
        Some(result)
    }
}

/// Where a reply sends its call instead.
enum Redirect {
    /// `MOVED`: the slot's master is now the node named (if it could be read).
    Moved(Option<Node>),
    /// `ASK`: the slot is migrating; the client knows the `ASKING` dance.
    Ask,
}

/// A reply that may hold a redirection: the connection hands server errors back as values.
trait Reply {
    fn redirect(&self) -> Option<Redirect>;
}

impl Reply for Value {
    fn redirect(&self) -> Option<Redirect> {
        let Value::ServerError(error) = self else {
            return None;
        };
        match error.kind()? {
            ServerErrorKind::Moved => Some(Redirect::Moved(
                error
                    .details()
                    .and_then(|details| details.split_ascii_whitespace().nth(1))
                    .and_then(node_of),
            )),
            ServerErrorKind::Ask => Some(Redirect::Ask),
            _ => None,
        }
    }
}

impl Reply for Vec<Value> {
    fn redirect(&self) -> Option<Redirect> {
        self.iter().find_map(Reply::redirect)
    }
}

/// `host:port` of a redirection (the host may be an IPv6 address with colons).
fn node_of(addr: &str) -> Option<Node> {
    let (host, port) = addr.rsplit_once(':')?;
    Some((host.to_owned(), port.parse().ok()?))
}

/// The Redis Cluster hash slot of a key: CRC16 (XMODEM) of its hash tag, or of the whole key
/// when it has none, modulo 16384.
pub(super) fn key_slot(key: &[u8]) -> u16 {
    let tagged = key
        .iter()
        .position(|&byte| byte == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|&byte| byte == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    crc16::State::<crc16::XMODEM>::calculate(tagged) % 16384
}

/// The connection for one key's shard: its master directly on a cluster whose topology the
/// supervisor knows, the supervised client otherwise.
pub(crate) struct ShardConnection {
    connection: Connection,
    slot: u16,
}

impl ShardConnection {
    pub(super) fn new(connection: Connection, slot: u16) -> Self {
        Self { connection, slot }
    }
}

impl ConnectionLike for ShardConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let masters = &self.connection.shared.masters;
            let direct = masters
                .send(self.slot, |mut connection| async move {
                    connection.req_packed_command(cmd).await
                })
                .await;
            match direct {
                Some(result) => result,
                None => self.connection.req_packed_command(cmd).await,
            }
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let masters = &self.connection.shared.masters;
            let direct = masters
                .send(self.slot, |mut connection| async move {
                    connection.req_packed_commands(cmd, offset, count).await
                })
                .await;
            match direct {
                Some(result) => result,
                None => {
                    self.connection
                        .req_packed_commands(cmd, offset, count)
                        .await
                }
            }
        })
    }

    fn get_db(&self) -> i64 {
        self.connection.get_db()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_slots_are_those_redis_computes() {
        // CLUSTER KEYSLOT on Redis 7.
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"somekey"), 11058);
        // Only the hash tag counts, and an empty tag does not.
        assert_eq!(key_slot(b"otp:{foo}:v:VE1"), 12182);
        // An empty tag is no tag: the whole key is hashed (CLUSTER KEYSLOT {}foo = 9500).
        assert_eq!(key_slot(b"{}foo"), 9500);
        assert_eq!(key_slot(b"{s07}:o"), 633);
        assert_ne!(key_slot(b"{}foo"), key_slot(b"foo"));
    }

    #[test]
    fn redirections_name_host_and_port() {
        assert_eq!(node_of("127.0.0.1:7001"), Some(("127.0.0.1".into(), 7001)));
        assert_eq!(node_of("::1:7001"), Some(("::1".into(), 7001)));
        assert_eq!(node_of("nowhere"), None);
    }
}
