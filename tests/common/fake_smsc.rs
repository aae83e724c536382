//! A fake SMSC on loopback: `tests/common/fake_smsc.pl`, Net::SMPP's server side (Debian's
//! libnet-smpp-perl, which scripts/test installs), run as a child process. Every PDU it takes
//! is a JSON line in its log, which the tests read.

// Each test binary uses its part.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct FakeSmsc {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl FakeSmsc {
    /// Starts one with the script's options (`--throttle 2`, `--tlvs`, …).
    pub fn start(options: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let log = dir.path().join("smsc.log");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/common/fake_smsc.pl");
        let mut child = Command::new("perl")
            .arg(script)
            .arg("--log")
            .arg(&log)
            .args(options)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("perl runs (scripts/test installs libnet-smpp-perl)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped stdout"))
            .read_line(&mut line)
            .expect("the fake SMSC prints its port");
        let port = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| {
                panic!("the fake SMSC did not start (is libnet-smpp-perl installed?): {line:?}")
            });
        Self {
            child,
            port,
            log,
            _dir: dir,
        }
    }

    /// `host:port`, as the provider's `address`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Lets receipts held by `--hold-receipts` go.
    pub fn release_receipts(&self) {
        let mut release = self.log.clone().into_os_string();
        release.push(".release");
        std::fs::write(release, b"").expect("the release file is written");
    }

    /// Every PDU taken so far, oldest first.
    pub fn events(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// The events named `name` (`submit_sm`, `bind`, `enquire_link`, `deliver_sm_resp`, …).
    pub fn named(&self, name: &str) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|event| event["event"] == name)
            .collect()
    }

    /// Polls until at least `count` events named `name` were taken; answers them.
    pub async fn wait_for(&self, name: &str, count: usize, within: Duration) -> Vec<Value> {
        let deadline = Instant::now() + within;
        loop {
            let found = self.named(name);
            if found.len() >= count {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {count} '{name}' events within {within:?}: {:?}",
                found.len(),
                self.events()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for FakeSmsc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A short message's bytes, from the hex the fake SMSC logs.
pub fn short_message(event: &Value) -> Vec<u8> {
    let hex = event["short_message"].as_str().unwrap_or_default();
    (0..hex.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&hex[at..at + 2], 16).expect("hex from the log"))
        .collect()
}
