//! Real redis-server processes for the test binaries (`tests/api`, `tests/store` mod this file):
//! a single server and a 3-node cluster, each on free loopback ports (never 6379), started by the
//! tests themselves. `tests/api/redis_harness.rs` adds what only the HTTP suite needs (restarts,
//! kills, the failover cluster).
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
    pub(crate) child: Option<Child>,
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

    pub(crate) fn spawn(&mut self) {
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
pub fn create_cluster(count: usize, replicas: u8, args: &[&str]) -> Vec<RedisServer> {
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
    /// Every node's URL: the seeds a client is given.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

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
