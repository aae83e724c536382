//! What only the HTTP suite needs of real Redis processes: stopping, restarting and killing a
//! server, and the 6-node cluster with replicas for failovers. The processes themselves come
//! from `tests/common/redis_server.rs`, shared with the store suite.

use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

pub use crate::redis_server::{
    command, create_cluster, free_port, shared_cluster, shared_redis, RedisServer,
};

impl RedisServer {
    /// Saves the dataset and stops the server, the way an operator restart does.
    pub fn stop(&mut self) {
        let _ = self.command(&["SHUTDOWN", "SAVE"]);
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(
                Instant::now() < deadline,
                "redis on {} did not stop",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts it again on the same port, reloading the saved dataset.
    pub fn restart(&mut self) {
        self.spawn();
    }

    /// SIGKILL, as a crash: nothing is saved beyond what the AOF (if on) already holds.
    pub fn kill(&mut self) {
        let info = self.command(&["INFO", "server"]);
        let pid = info
            .lines()
            .find_map(|line| line.strip_prefix("process_id:"))
            .map(|pid| pid.trim().to_owned())
            .expect("INFO server names the process id");
        let status = Command::new("kill")
            .args(["-9", &pid])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -9 {pid} failed");
        // The watchdog shell exits once its redis-server is gone.
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(
                Instant::now() < deadline,
                "redis on {} survived kill -9",
                self.port
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// A node as `CLUSTER NODES` describes it.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub id: String,
    pub port: u16,
    pub master: bool,
    pub failed: bool,
    /// The master's id, for a replica.
    pub master_id: Option<String>,
    /// Slot ranges served, for a master.
    pub slots: Vec<(u16, u16)>,
}

/// Three masters with one replica each, node timeout 2 s, AOF on: the operator's failover setup.
pub struct FailoverCluster {
    pub nodes: Vec<RedisServer>,
}

impl FailoverCluster {
    pub fn start() -> Self {
        let nodes = create_cluster(
            6,
            1,
            &["--cluster-node-timeout", "2000", "--appendonly", "yes"],
        );
        let cluster = Self { nodes };
        cluster.wait_until_settled(Duration::from_secs(30));
        cluster
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    pub fn node(&mut self, port: u16) -> &mut RedisServer {
        self.nodes
            .iter_mut()
            .find(|node| node.port == port)
            .expect("a node of this cluster")
    }

    /// The topology as some answering node sees it.
    pub fn topology(&self) -> Vec<NodeInfo> {
        for node in &self.nodes {
            let reply = node.command(&["CLUSTER", "NODES"]);
            if let Some(nodes) = parse_cluster_nodes(&reply) {
                return nodes;
            }
        }
        panic!("no node answers CLUSTER NODES")
    }

    /// The master serving `slot` and its replica, by port.
    pub fn master_and_replica_of(&self, slot: u16) -> (u16, u16) {
        let topology = self.topology();
        let master = topology
            .iter()
            .find(|node| {
                node.master
                    && !node.failed
                    && node.slots.iter().any(|(a, b)| (*a..=*b).contains(&slot))
            })
            .expect("a master serves every slot");
        let replica = topology
            .iter()
            .find(|node| node.master_id.as_deref() == Some(master.id.as_str()) && !node.failed)
            .expect("every master has a replica");
        (master.port, replica.port)
    }

    /// Waits until every node says the cluster is ok, every master has a replica in sync and
    /// no node is flagged as failed.
    pub fn wait_until_settled(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let settled = self.nodes.iter().all(|node| {
                node.command(&["CLUSTER", "INFO"])
                    .contains("cluster_state:ok")
            }) && self.nodes.iter().all(|node| {
                let replication = node.command(&["INFO", "replication"]);
                replication.contains("role:master") || replication.contains("master_link_status:up")
            }) && {
                let topology = self.topology();
                topology.len() == self.nodes.len()
                    && topology.iter().all(|node| !node.failed)
                    && topology
                        .iter()
                        .filter(|node| node.master && !node.slots.is_empty())
                        .all(|master| {
                            topology
                                .iter()
                                .any(|node| node.master_id.as_deref() == Some(master.id.as_str()))
                        })
            };
            if settled {
                return;
            }
            assert!(Instant::now() < deadline, "the cluster did not settle");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Which hash slot a key falls in, as the cluster computes it.
pub fn key_slot(port: u16, key: &str) -> u16 {
    let reply = command(port, &["CLUSTER", "KEYSLOT", key]);
    reply
        .trim()
        .trim_start_matches(':')
        .parse()
        .unwrap_or_else(|_| panic!("CLUSTER KEYSLOT answered {reply:?}"))
}

/// Whether the node on `port` is a master now (`ROLE`).
pub fn is_master(port: u16) -> bool {
    command(port, &["ROLE"]).contains("master")
}

fn parse_cluster_nodes(reply: &str) -> Option<Vec<NodeInfo>> {
    // A bulk string: `$<len>\r\n<lines>\r\n`.
    let body = reply.strip_prefix('$')?.split_once("\r\n")?.1;
    let mut nodes = Vec::new();
    for line in body.lines().filter(|line| !line.trim().is_empty()) {
        let fields: Vec<&str> = line.split(' ').collect();
        if fields.len() < 8 {
            return None;
        }
        let port = fields[1]
            .split('@')
            .next()?
            .rsplit(':')
            .next()?
            .parse()
            .ok()?;
        let flags = fields[2];
        let slots = fields[8..]
            .iter()
            .filter(|slot| !slot.starts_with('['))
            .filter_map(|slot| match slot.split_once('-') {
                Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                None => slot.parse().ok().map(|one| (one, one)),
            })
            .collect();
        nodes.push(NodeInfo {
            id: fields[0].to_owned(),
            port,
            master: flags.contains("master"),
            failed: flags.contains("fail") && !flags.contains("fail?"),
            master_id: (fields[3] != "-").then(|| fields[3].to_owned()),
            slots,
        });
    }
    Some(nodes)
}
