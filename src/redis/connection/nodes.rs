//! The cluster's nodes, seen directly rather than through the client: which node answers,
//! which shard's master is unreachable, and who serves which slots (`CLUSTER SLOTS`, published
//! to [`Masters`] for the outbox's direct connections). [`Dialer`] opens a connection to one
//! node with the seeds' settings.

use std::collections::HashMap;

use futures_util::future::join_all;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{
    AsyncConnectionConfig, Cmd, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisError,
    RedisResult, Value,
};

use super::masters::Masters;
use super::RedisSettings;

/// A node's host and port, as `CLUSTER SLOTS` names it.
pub(super) type Node = (String, u16);

/// Opens a multiplexed connection to one node with the first seed's settings (password,
/// database, TLS) and the configured timeouts.
pub(super) struct Dialer {
    template: Option<ConnectionInfo>,
    config: AsyncConnectionConfig,
}

impl Dialer {
    pub(super) fn new(settings: &RedisSettings) -> Self {
        Self {
            template: settings
                .urls
                .iter()
                .find_map(|url| url.as_str().into_connection_info().ok()),
            config: AsyncConnectionConfig::new()
                .set_connection_timeout(Some(settings.connect_timeout))
                .set_response_timeout(Some(settings.response_timeout)),
        }
    }

    pub(super) async fn connect(&self, node: &Node) -> RedisResult<MultiplexedConnection> {
        let info = self.info_for(node).ok_or_else(|| {
            RedisError::from((redis::ErrorKind::InvalidClientConfig, "no seed URL"))
        })?;
        redis::Client::open(info)?
            .get_multiplexed_async_connection_with_config(&self.config)
            .await
    }

    fn info_for(&self, node: &Node) -> Option<ConnectionInfo> {
        let template = self.template.clone()?;
        let addr = match template.addr() {
            ConnectionAddr::TcpTls {
                insecure,
                tls_params,
                ..
            } => ConnectionAddr::TcpTls {
                host: node.0.clone(),
                port: node.1,
                insecure: *insecure,
                tls_params: tls_params.clone(),
            },
            _ => ConnectionAddr::Tcp(node.0.clone(), node.1),
        };
        Some(template.set_addr(addr))
    }
}

/// One round's direct view of the nodes.
#[derive(Debug, Default)]
pub(super) struct View {
    /// Some node answered.
    pub(super) answered: bool,
    /// Shards (by the first slot of their range) whose master did not answer a PING.
    pub(super) unreachable: Vec<u16>,
}

/// Direct connections to the nodes, apart from the client: they tell whether Redis answers when
/// the client does not, and which shard's master is unreachable.
pub(super) struct Nodes {
    dialer: Dialer,
    seeds: Vec<Node>,
    /// Every node of the last topology seen, masters first.
    known: Vec<Node>,
    cluster: bool,
    connections: HashMap<Node, MultiplexedConnection>,
}

impl Nodes {
    pub(super) fn new(settings: &RedisSettings) -> Self {
        let seeds = settings
            .urls
            .iter()
            .filter_map(|url| url.as_str().into_connection_info().ok())
            .filter_map(|info| host_port(&info))
            .collect();
        Self {
            dialer: Dialer::new(settings),
            seeds,
            known: Vec::new(),
            cluster: settings.urls.len() > 1,
            connections: HashMap::new(),
        }
    }

    /// `CLUSTER SLOTS` from the first node that answers (published to `masters` at once), then
    /// a PING to every shard's master.
    pub(super) async fn look(&mut self, masters: &Masters) -> View {
        if !self.cluster {
            let Some(server) = self.seeds.first().cloned() else {
                return View::default();
            };
            let answered = self.ask(&server, redis::cmd("PING")).await.is_some();
            return View {
                answered,
                unreachable: Vec::new(),
            };
        }
        let mut candidates = self.known.clone();
        for seed in &self.seeds {
            if !candidates.contains(seed) {
                candidates.push(seed.clone());
            }
        }
        let mut topology = None;
        for node in &candidates {
            let slots = self
                .ask(node, redis::cmd("CLUSTER").arg("SLOTS").clone())
                .await;
            if let Some(shards) = slots.as_ref().and_then(parse_slots) {
                topology = Some(shards);
                break;
            }
        }
        let Some(shards) = topology else {
            return View::default();
        };
        masters.publish(&shards);
        let mut known: Vec<Node> = Vec::new();
        for shard in &shards {
            for node in std::iter::once(&shard.master).chain(&shard.replicas) {
                if !known.contains(node) {
                    known.push(node.clone());
                }
            }
        }
        self.known = known;
        // PING every master at once, each on its own cached connection.
        let mut heads: Vec<Node> = shards.iter().map(|s| s.master.clone()).collect();
        heads.sort();
        heads.dedup();
        let mut pings = Vec::with_capacity(heads.len());
        for master in heads {
            let connection = self.connections.remove(&master);
            let dialer = &self.dialer;
            pings.push(async move {
                let (connection, reply) =
                    ask(connection, dialer, &master, redis::cmd("PING")).await;
                (master, connection, reply)
            });
        }
        let mut answering = Vec::new();
        for (master, connection, reply) in join_all(pings).await {
            if let Some(connection) = connection {
                self.connections.insert(master.clone(), connection);
            }
            if matches!(reply, Some(Value::SimpleString(ref pong)) if pong == "PONG") {
                answering.push(master);
            }
        }
        self.connections
            .retain(|node, _| self.known.contains(node) || self.seeds.contains(node));
        View {
            answered: true,
            unreachable: shards
                .iter()
                .filter(|shard| !answering.contains(&shard.master))
                .map(|shard| shard.first_slot)
                .collect(),
        }
    }

    /// Sends one command to one node on its cached connection; `None` when it did not answer.
    async fn ask(&mut self, node: &Node, cmd: Cmd) -> Option<Value> {
        let connection = self.connections.remove(node);
        let (connection, reply) = ask(connection, &self.dialer, node, cmd).await;
        if let Some(connection) = connection {
            self.connections.insert(node.clone(), connection);
        }
        reply.filter(|value| !matches!(value, Value::ServerError(_)))
    }
}

/// One command on a (possibly new) connection; the connection comes back unless it failed.
async fn ask(
    connection: Option<MultiplexedConnection>,
    dialer: &Dialer,
    node: &Node,
    cmd: Cmd,
) -> (Option<MultiplexedConnection>, Option<Value>) {
    let mut connection = match connection {
        Some(connection) => connection,
        None => match dialer.connect(node).await {
            Ok(connection) => connection,
            Err(_) => return (None, None),
        },
    };
    match connection.req_packed_command(&cmd).await {
        Ok(value) => (Some(connection), Some(value)),
        Err(_) => (None, None),
    }
}

fn host_port(info: &ConnectionInfo) -> Option<Node> {
    match info.addr() {
        ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
            Some((host.clone(), *port))
        }
        _ => None,
    }
}

/// One slot range of `CLUSTER SLOTS`: who serves it.
#[derive(Debug, PartialEq)]
pub(super) struct Shard {
    pub(super) first_slot: u16,
    pub(super) last_slot: u16,
    pub(super) master: Node,
    pub(super) replicas: Vec<Node>,
}

/// `CLUSTER SLOTS`: `[[start, end, [host, port, id, …], replica…], …]`.
pub(super) fn parse_slots(reply: &Value) -> Option<Vec<Shard>> {
    let Value::Array(ranges) = reply else {
        return None;
    };
    let node = |value: &Value| -> Option<Node> {
        let Value::Array(parts) = value else {
            return None;
        };
        let host = match parts.first()? {
            Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok()?,
            Value::SimpleString(text) => text.clone(),
            _ => return None,
        };
        let port = match parts.get(1)? {
            Value::Int(port) => u16::try_from(*port).ok()?,
            _ => return None,
        };
        Some((host, port))
    };
    let mut shards = Vec::new();
    for range in ranges {
        let Value::Array(fields) = range else {
            return None;
        };
        let (Some(Value::Int(first_slot)), Some(Value::Int(last_slot))) =
            (fields.first(), fields.get(1))
        else {
            return None;
        };
        let master = node(fields.get(2)?)?;
        shards.push(Shard {
            first_slot: u16::try_from(*first_slot).ok()?,
            last_slot: u16::try_from(*last_slot).ok()?,
            master,
            replicas: fields.iter().skip(3).filter_map(node).collect(),
        });
    }
    (!shards.is_empty()).then_some(shards)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_slots_replies_name_each_ranges_master_and_replicas() {
        let node = |port: i64| {
            Value::Array(vec![
                Value::BulkString(b"127.0.0.1".to_vec()),
                Value::Int(port),
                Value::BulkString(b"id".to_vec()),
            ])
        };
        let reply = Value::Array(vec![
            Value::Array(vec![
                Value::Int(0),
                Value::Int(5460),
                node(7000),
                node(7003),
            ]),
            Value::Array(vec![Value::Int(5461), Value::Int(10922), node(7001)]),
        ]);
        let shards = parse_slots(&reply).unwrap();
        assert_eq!(
            shards,
            vec![
                Shard {
                    first_slot: 0,
                    last_slot: 5460,
                    master: ("127.0.0.1".into(), 7000),
                    replicas: vec![("127.0.0.1".into(), 7003)],
                },
                Shard {
                    first_slot: 5461,
                    last_slot: 10922,
                    master: ("127.0.0.1".into(), 7001),
                    replicas: vec![],
                },
            ]
        );
        assert_eq!(parse_slots(&Value::Array(vec![])), None);
        assert_eq!(parse_slots(&Value::Nil), None);
    }
}
