//! The Redis connection: one multiplexed client (a reconnecting manager for a single server, a
//! cluster connection for Redis Cluster) behind a supervisor that replaces the client when it
//! stops answering while Redis answers, and that tells readiness and liveness what it sees.
//!
//! Why a supervisor: redis 1.8's cluster client drives every request, every reconnect and every
//! topology refresh from one task, and a refresh it starts during a failover can stay pending
//! ("beginning slot refresh" and never its end); from then on every call on every shard times
//! out, healthy shards included, until the process stops. The supervisor does not depend on
//! knowing which await hangs: it probes the client (a PING to any node, through the client's
//! own request path) and the nodes directly (their own connections), and when the client has
//! answered nothing for `rebuild_after` (3 s) while a node answers, it builds a new client from the
//! seeds and swaps it in. Every holder of a [`Connection`] (stores, outbox, directory, PINs,
//! factors) reads the current client per call, so one swap repairs them all.
//!
//! The same loop records, per shard, how long its master has been unreachable (readiness) and
//! how long the client has been silent while nodes answer (liveness), and every call's outcome
//! feeds an epoch that moves on each reconnect after an outage, which in-process caches of store
//! data compare. The topology it reads also routes the outbox's calls, which bypass the cluster
//! client and go straight to each shard's master (`connection/masters.rs`).

mod masters;
mod nodes;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, RedisResult, Value};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub(crate) use self::masters::ShardConnection;
use self::masters::{key_slot, Masters};
use self::nodes::{Dialer, Nodes};
use super::script::unavailable as read_error;
use crate::metrics::Metrics;
use crate::store::StoreError;

/// How to reach Redis. Timeouts are explicit because the client's defaults (500 ms response,
/// 1 s connect) are a policy decision: a request waits at most this long before answering 503.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// One URL for a single server; several for the seed nodes of a Redis Cluster.
    pub urls: Vec<String>,
    pub key_prefix: String,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub supervision: Supervision,
}

/// What the supervisor watches for, and how long it waits before acting.
#[derive(Debug, Clone)]
pub struct Supervision {
    /// How often the client and the nodes are probed.
    pub probe_interval: Duration,
    /// A client that answered nothing for this long while a node answers is replaced.
    pub rebuild_after: Duration,
    /// Liveness fails when the client answered nothing for this long while a node answers.
    pub unhealthy_after: Duration,
    /// Readiness fails when a shard's master has been unreachable for this long.
    pub shard_down_grace: Duration,
}

impl Default for Supervision {
    /// The documented defaults (config/default.toml), for callers without settings.
    fn default() -> Self {
        Self {
            probe_interval: Duration::from_millis(500),
            rebuild_after: Duration::from_secs(3),
            unhealthy_after: Duration::from_secs(30),
            shard_down_grace: Duration::from_secs(2),
        }
    }
}

/// The client itself: both kinds are multiplexed and cloned per call rather than pooled.
#[derive(Clone)]
enum Client {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

/// A handle on the supervised client; cheap to clone (one `Arc`), and every clone follows a
/// rebuild because it reads the current client on each call.
#[derive(Clone)]
pub(crate) struct Connection {
    shared: Arc<Shared>,
}

struct Shared {
    client: RwLock<Client>,
    settings: RedisSettings,
    cluster: bool,
    started: Instant,
    /// A call ended in a connection-level failure and none has been answered since.
    failing: AtomicBool,
    /// Moves when a call is answered after calls failed (see `observe`).
    epoch: AtomicU64,
    /// Whether the supervisor runs: liveness and the shard view mean nothing without it.
    supervised: AtomicBool,
    /// Milliseconds since `started` of the last probe the client answered.
    client_answered_ms: AtomicU64,
    /// Milliseconds since `started` of the last direct answer from any node, plus one (0: never).
    node_answered_ms: AtomicU64,
    /// Since when (ms since `started`, plus one) the longest-unreachable shard master has been
    /// unreachable; 0 while every master answers.
    shard_down_since_ms: AtomicU64,
    /// Each shard's master over a direct connection (the outbox's calls; see `masters.rs`).
    masters: Masters,
}

impl Connection {
    /// Connects lazily to a single server (so the gateway starts, fails closed and recovers while
    /// Redis is down), or to a cluster through its seed nodes.
    pub(crate) async fn connect(settings: &RedisSettings) -> Result<Self, StoreError> {
        let cluster = settings.urls.len() > 1;
        let client = if cluster {
            Client::Cluster(connect_cluster(settings).await.map_err(read_error)?)
        } else {
            Client::Single(connect_single(settings)?)
        };
        Ok(Self {
            shared: Arc::new(Shared {
                client: RwLock::new(client),
                settings: settings.clone(),
                cluster,
                started: Instant::now(),
                failing: AtomicBool::new(false),
                epoch: AtomicU64::new(0),
                supervised: AtomicBool::new(false),
                client_answered_ms: AtomicU64::new(0),
                node_answered_ms: AtomicU64::new(0),
                shard_down_since_ms: AtomicU64::new(0),
                masters: Masters::new(Dialer::new(settings)),
            }),
        })
    }

    pub(crate) fn is_cluster(&self) -> bool {
        self.shared.cluster
    }

    /// Moves on every reconnect after an outage (a call answered after calls failed): whatever
    /// was cached from the store before may be gone after it (a restart without persistence,
    /// a failover to a replica that missed the last writes).
    pub(crate) fn epoch(&self) -> u64 {
        self.shared.epoch.load(Ordering::Acquire)
    }

    /// Starts the supervisor on the gateway's task tracker; it stops with `stop`.
    pub(crate) fn spawn_supervisor(
        &self,
        tasks: &TaskTracker,
        stop: CancellationToken,
        metrics: Arc<Metrics>,
    ) {
        self.shared.supervised.store(true, Ordering::Release);
        tasks.spawn(supervise(self.shared.clone(), stop, metrics));
    }

    /// Ready: the client answers now, and (on a cluster) no shard's master has been unreachable
    /// for longer than the grace.
    pub(crate) async fn readiness(&self) -> Result<(), StoreError> {
        if !self.shared.probe().await {
            return Err(StoreError::Unavailable("the store does not answer".into()));
        }
        let since = self.shared.shard_down_since_ms.load(Ordering::Acquire);
        if since > 0 {
            let down_for = self.shared.now_ms().saturating_sub(since - 1);
            let grace = self.shared.settings.supervision.shard_down_grace;
            if down_for >= grace.as_millis() as u64 {
                return Err(StoreError::Unavailable(format!(
                    "a shard's master has been unreachable for {down_for} ms"
                )));
            }
        }
        Ok(())
    }

    /// Alive unless the client has answered nothing for `unhealthy_after` while nodes answer:
    /// then no rebuild helped, and only a new process will.
    pub(crate) fn liveness(&self) -> Result<(), StoreError> {
        let shared = &self.shared;
        if !shared.supervised.load(Ordering::Acquire) {
            return Ok(());
        }
        let verdict = verdict(
            shared.now_ms(),
            shared.client_answered_ms.load(Ordering::Acquire),
            shared.node_answered_ms.load(Ordering::Acquire),
            &shared.settings.supervision,
        );
        match verdict {
            Verdict::Unhealthy { silent_ms } => Err(StoreError::Unavailable(format!(
                "the store client has answered nothing for {silent_ms} ms while Redis answers"
            ))),
            Verdict::Serving | Verdict::Rebuild { .. } | Verdict::RedisDown => Ok(()),
        }
    }

    fn client(&self) -> Client {
        self.shared.client()
    }

    /// Moves whenever a shard's master changes, as the supervisor sees the topology: a shard
    /// that failed while its master was dead is worth trying again at once.
    pub(crate) fn topology_generation(&self) -> u64 {
        self.shared.masters.generation()
    }

    /// The connection for calls on `key`'s shard that must not wait for other shards: straight
    /// to its master on a cluster (see `masters.rs`), this connection otherwise.
    pub(crate) fn for_key(&self, key: &str) -> ShardConnection {
        ShardConnection::new(self.clone(), key_slot(key.as_bytes()))
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let mut client = self.client();
        let shared = &self.shared;
        Box::pin(async move {
            let result = match &mut client {
                Client::Single(inner) => inner.req_packed_command(cmd).await,
                Client::Cluster(inner) => inner.req_packed_command(cmd).await,
            };
            shared.observe(result)
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let mut client = self.client();
        let shared = &self.shared;
        Box::pin(async move {
            let result = match &mut client {
                Client::Single(inner) => inner.req_packed_commands(cmd, offset, count).await,
                Client::Cluster(inner) => inner.req_packed_commands(cmd, offset, count).await,
            };
            shared.observe(result)
        })
    }

    fn get_db(&self) -> i64 {
        match &*self
            .shared
            .client
            .read()
            .unwrap_or_else(PoisonError::into_inner)
        {
            Client::Single(inner) => inner.get_db(),
            Client::Cluster(inner) => inner.get_db(),
        }
    }
}

impl Shared {
    fn client(&self) -> Client {
        // A poisoned lock only means a panic elsewhere while swapping; the client in it is whole.
        self.client
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Moves the epoch when a call is answered after calls failed (a reconnect after an
    /// outage). On the hot path this is one relaxed load.
    fn observe<T>(&self, result: RedisResult<T>) -> RedisResult<T> {
        match &result {
            Ok(_) => {
                if self.failing.load(Ordering::Relaxed)
                    && self.failing.swap(false, Ordering::AcqRel)
                {
                    self.epoch.fetch_add(1, Ordering::AcqRel);
                }
            }
            Err(error) if is_outage(error) => {
                if !self.failing.load(Ordering::Relaxed) {
                    self.failing.store(true, Ordering::Release);
                }
            }
            Err(_) => {}
        }
        result
    }

    /// A PING through the client's own request path, to any node: it answers unless the
    /// client itself cannot serve (or no node at all answers).
    async fn probe(&self) -> bool {
        let mut client = self.client();
        let ping = redis::cmd("PING");
        let request = async {
            match &mut client {
                Client::Single(inner) => inner.req_packed_command(&ping).await,
                // PING alone would go to every master and fail while one is down; one node
                // is what tells whether the client serves.
                Client::Cluster(inner) => {
                    inner
                        .route_command(
                            ping.clone(),
                            RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
                        )
                        .await
                }
            }
        };
        // The client's own timeouts bound this; the outer one holds even if they do not.
        let bound = self.settings.response_timeout * 2;
        let answered = match tokio::time::timeout(bound, request).await {
            Ok(result) => self
                .observe(result)
                .is_ok_and(|value| !matches!(value, Value::ServerError(_))),
            Err(_) => false,
        };
        if answered {
            self.client_answered_ms
                .store(self.now_ms(), Ordering::Release);
        }
        answered
    }

    /// Builds a new client from the seeds and swaps it in; the old one ends when its last
    /// in-flight call does.
    async fn rebuild(&self) -> Result<(), String> {
        let bound = self.settings.supervision.rebuild_after;
        let client = if self.cluster {
            match tokio::time::timeout(bound, connect_cluster(&self.settings)).await {
                Ok(Ok(connection)) => Client::Cluster(connection),
                Ok(Err(error)) => return Err(error.to_string()),
                Err(_) => return Err(format!("no connection within {bound:?}")),
            }
        } else {
            Client::Single(connect_single(&self.settings).map_err(|error| error.to_string())?)
        };
        *self.client.write().unwrap_or_else(PoisonError::into_inner) = client;
        Ok(())
    }
}

/// Failures that say the store could not be reached or did not answer, as opposed to an answer
/// that was an error (a script's refusal, a wrong type).
fn is_outage(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_cluster_error()
        || error.kind() == ErrorKind::ClusterConnectionNotFound
}

async fn connect_cluster(settings: &RedisSettings) -> RedisResult<ClusterConnection> {
    redis::cluster::ClusterClientBuilder::new(settings.urls.clone())
        .connection_timeout(settings.connect_timeout)
        .response_timeout(settings.response_timeout)
        .retries(2)
        .build()?
        .get_async_connection()
        .await
}

fn connect_single(settings: &RedisSettings) -> Result<ConnectionManager, StoreError> {
    let url = settings
        .urls
        .first()
        .ok_or_else(|| StoreError::Unavailable("no Redis URL".into()))?;
    let client = redis::Client::open(url.as_str()).map_err(read_error)?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(settings.connect_timeout))
        .set_response_timeout(Some(settings.response_timeout))
        // Few quick retries: a request must fail within about one timeout, not queue up
        // behind a long reconnect loop; the next request triggers the next reconnect.
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(200));
    ConnectionManager::new_lazy_with_config(client, config).map_err(read_error)
}

/// What the supervisor concludes from when the client and the nodes last answered.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// The client answered within `rebuild_after`.
    Serving,
    /// Silent for `rebuild_after` (but not yet `unhealthy_after`) while a node answers.
    Rebuild { silent_ms: u64 },
    /// Silent for `unhealthy_after` while a node answers: liveness fails (and rebuilds go on).
    Unhealthy { silent_ms: u64 },
    /// No node answered since the client last did: Redis is down, not the client; a new
    /// client would not help.
    RedisDown,
}

/// `client_answered_ms`: when the client last answered; `node_answered_ms`: when any node last
/// answered directly, plus one (0: never). All in milliseconds on one monotonic scale.
fn verdict(
    now_ms: u64,
    client_answered_ms: u64,
    node_answered_ms: u64,
    supervision: &Supervision,
) -> Verdict {
    let silent_ms = now_ms.saturating_sub(client_answered_ms);
    if silent_ms < supervision.rebuild_after.as_millis() as u64 {
        return Verdict::Serving;
    }
    // A node must have answered after the client went silent, and recently: the same probe
    // round, give or take the time the probes themselves take.
    let recent = (supervision.probe_interval * 4).max(Duration::from_secs(2));
    let nodes_answer = node_answered_ms > 0
        && node_answered_ms - 1 > client_answered_ms
        && now_ms.saturating_sub(node_answered_ms - 1) <= recent.as_millis() as u64;
    if !nodes_answer {
        Verdict::RedisDown
    } else if silent_ms >= supervision.unhealthy_after.as_millis() as u64 {
        Verdict::Unhealthy { silent_ms }
    } else {
        Verdict::Rebuild { silent_ms }
    }
}

/// The shortest time between two rounds of the supervisor woken by a stale topology.
const STALE_LOOK_GAP: Duration = Duration::from_millis(100);

/// The supervisor: every `probe_interval`, probe the client and the nodes, record what answers,
/// and replace a client that stays silent while Redis answers.
async fn supervise(shared: Arc<Shared>, stop: CancellationToken, metrics: Arc<Metrics>) {
    let supervision = shared.settings.supervision.clone();
    let rebuilds = metrics.labelled_counter(crate::metrics::STORE_CLIENT_REBUILDS, &[]);
    let shards_down = metrics.labelled_gauge(crate::metrics::STORE_SHARDS_UNREACHABLE);
    let mut nodes = Nodes::new(&shared.settings);
    let mut down_since: BTreeMap<u16, u64> = BTreeMap::new();
    let mut last_rebuild_ms = 0u64;
    let mut tick = tokio::time::interval(supervision.probe_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_round = Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            // A direct call met a moved slot or a silent master: look again now, though not
            // more often than every STALE_LOOK_GAP.
            () = shared.masters.stale.notified() => {
                tokio::time::sleep(STALE_LOOK_GAP.saturating_sub(last_round.elapsed())).await;
            }
            () = stop.cancelled() => break,
        }
        last_round = Instant::now();
        let (_, view) = tokio::join!(shared.probe(), nodes.look(&shared.masters));
        let now = shared.now_ms();
        if view.answered {
            shared.node_answered_ms.store(now + 1, Ordering::Release);
        }
        // A round where no node answered says nothing about shards: keep what was known.
        if view.answered {
            down_since.retain(|shard, _| view.unreachable.contains(shard));
            for shard in &view.unreachable {
                down_since.entry(*shard).or_insert(now);
            }
        }
        shards_down.set(down_since.len() as f64);
        shared.shard_down_since_ms.store(
            down_since.values().min().map_or(0, |since| since + 1),
            Ordering::Release,
        );
        let verdict = verdict(
            now,
            shared.client_answered_ms.load(Ordering::Acquire),
            shared.node_answered_ms.load(Ordering::Acquire),
            &supervision,
        );
        let silent_ms = match verdict {
            Verdict::Rebuild { silent_ms } | Verdict::Unhealthy { silent_ms } => silent_ms,
            Verdict::Serving | Verdict::RedisDown => continue,
        };
        if now.saturating_sub(last_rebuild_ms) < supervision.rebuild_after.as_millis() as u64 {
            continue;
        }
        last_rebuild_ms = now;
        tracing::warn!(
            silent_ms,
            "the store client answers nothing while Redis answers: replacing it"
        );
        match shared.rebuild().await {
            Ok(()) => {
                rebuilds.increment(1);
                tracing::info!("store client replaced");
            }
            Err(error) => tracing::warn!(%error, "store client replacement failed; will retry"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The verdict under the default supervision, at `now_ms`, the client and a node last
    /// answering at the times given.
    fn judge(now_ms: u64, client_answered_ms: u64, node_answered_ms: u64) -> Verdict {
        let supervision = Supervision::default();
        verdict(now_ms, client_answered_ms, node_answered_ms, &supervision)
    }

    #[test]
    fn a_client_that_answered_recently_is_serving() {
        assert_eq!(judge(10_000, 9_000, 10_001), Verdict::Serving);
    }

    #[test]
    fn a_client_silent_for_three_seconds_while_a_node_answers_is_rebuilt() {
        assert_eq!(judge(17_900, 15_000, 17_800), Verdict::Serving);
        assert_eq!(
            judge(18_000, 15_000, 17_800),
            Verdict::Rebuild { silent_ms: 3_000 }
        );
    }

    #[test]
    fn a_silent_client_is_not_blamed_while_no_node_answers_either() {
        // The last node answer is older than the client's: Redis is down, not the client.
        assert_eq!(judge(20_000, 15_000, 14_000), Verdict::RedisDown);
        // A node answered after the client went silent, but long ago.
        assert_eq!(judge(60_000, 15_000, 16_001), Verdict::RedisDown);
        assert_eq!(judge(20_000, 15_000, 0), Verdict::RedisDown);
    }

    #[test]
    fn a_client_silent_for_thirty_seconds_while_nodes_answer_is_unhealthy() {
        assert_eq!(
            judge(45_000, 15_000, 44_900),
            Verdict::Unhealthy { silent_ms: 30_000 }
        );
    }
}
