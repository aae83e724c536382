//! Real redis-server processes for the tests: a single server, a 3-node cluster and a 6-node
//! cluster with replicas (for failovers), each on free loopback ports (never 6379), started by the
//! tests themselves.
//!
//! Every process runs under a small shell watchdog that kills it once this test process is
//! gone, so a crashed or interrupted test run leaves nothing behind.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A port that was free a moment ago. For cluster nodes the bus port (port + 10000) must be free
/// as well.
pub fn free_port(with_bus: bool) -> u16 {
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
        let port = listener.local_addr().unwrap().port();
        if port == 6379 || (with_bus && port > 55_000) {
            continue;
        }
        if with_bus && TcpListener::bind(("127.0.0.1", port + 10_000)).is_err() {
            continue;
        }
        return port;
    }
}

fn redis_server_binary() -> String {
    std::env::var("OTPGATE_TEST_REDIS_SERVER").unwrap_or_else(|_| "redis-server".to_owned())
}

/// One redis-server process that a test may stop and start again on the same port and data dir.
pub struct RedisServer {
    pub port: u16,
    dir: PathBuf,
    extra: Vec<String>,
    child: Option<Child>,
}

impl RedisServer {
    pub fn start(extra: &[&str]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("otpgate-redis-")
            .tempdir()
            .expect("temp dir")
            .keep();
        let port = free_port(extra.contains(&"--cluster-enabled"));
        let mut server = Self {
            port,
            dir,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        server.spawn();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let mut args = vec![
            "--port".to_owned(),
            self.port.to_string(),
            "--bind".to_owned(),
            "127.0.0.1".to_owned(),
            "--save".to_owned(),
            "".to_owned(),
            "--appendonly".to_owned(),
            "no".to_owned(),
            "--dir".to_owned(),
            self.dir.display().to_string(),
        ];
        args.extend(self.extra.iter().cloned());
        let quoted: Vec<String> = args.iter().map(|arg| format!("'{arg}'")).collect();
        // The watchdog: start redis, then poll for this test process; when it is gone, kill redis.
        let script = format!(
            "{} {} & child=$!; trap 'kill $child 2>/dev/null' TERM; \
             while kill -0 {} 2>/dev/null && kill -0 $child 2>/dev/null; do sleep 0.5; done; \
             kill $child 2>/dev/null; wait $child",
            redis_server_binary(),
            quoted.join(" "),
            std::process::id()
        );
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/test installs it)");
        self.child = Some(child);
        wait_until_ready(self.port);
    }

    /// Sends a raw command and returns the raw reply (enough for PING, SHUTDOWN, CLUSTER INFO).
    pub fn command(&self, parts: &[&str]) -> String {
        command(self.port, parts)
    }

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

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = command(self.port, &["SHUTDOWN", "NOSAVE"]);
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn wait_until_ready(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if command(port, &["PING"]).starts_with("+PONG") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "redis on port {port} did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A RESP request over a plain socket; returns whatever arrived, or "" when nothing listens.
pub fn command(port: u16, parts: &[&str]) -> String {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut request = format!("*{}\r\n", parts.len());
    for part in parts {
        request.push_str(&format!("${}\r\n{}\r\n", part.len(), part));
    }
    if stream.write_all(request.as_bytes()).is_err() {
        return String::new();
    }
    let mut reply = vec![0u8; 64 * 1024];
    let read = stream.read(&mut reply).unwrap_or(0);
    String::from_utf8_lossy(&reply[..read]).into_owned()
}

/// Starts `count` cluster-enabled servers with `args` and joins them with `redis-cli --cluster
/// create`, `replicas` replicas per master.
fn create_cluster(count: usize, replicas: u8, args: &[&str]) -> Vec<RedisServer> {
    let nodes: Vec<RedisServer> = (0..count)
        .map(|_| {
            let mut all = vec![
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
            ];
            all.extend_from_slice(args);
            RedisServer::start(&all)
        })
        .collect();
    let mut create = Command::new("redis-cli");
    create.arg("--cluster").arg("create");
    for node in &nodes {
        create.arg(format!("127.0.0.1:{}", node.port));
    }
    let output = create
        .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
        .output()
        .expect("redis-cli must be installed");
    assert!(
        output.status.success(),
        "cluster create failed: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    nodes
}

/// Three masters, no replicas, slots spread by `redis-cli --cluster create`.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start() -> Self {
        let nodes = create_cluster(3, 0, &["--cluster-node-timeout", "5000"]);
        let deadline = Instant::now() + Duration::from_secs(30);
        for node in &nodes {
            while !node
                .command(&["CLUSTER", "INFO"])
                .contains("cluster_state:ok")
            {
                assert!(Instant::now() < deadline, "cluster did not become ready");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Self { nodes }
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

/// One redis-server shared by every test in this binary; tests stay apart by key prefix.
pub fn shared_redis() -> &'static RedisServer {
    static SERVER: OnceLock<RedisServer> = OnceLock::new();
    SERVER.get_or_init(|| RedisServer::start(&[]))
}

/// One cluster shared by every test in this binary.
pub fn shared_cluster() -> &'static RedisCluster {
    static CLUSTER: OnceLock<RedisCluster> = OnceLock::new();
    CLUSTER.get_or_init(RedisCluster::start)
}
