//! Redis Cluster failovers under load, as an operator sees them: a 6-node cluster (3 masters,
//! 3 replicas, node timeout 2 s, AOF on), two gateway instances on it, a steady mix of sends and
//! wrong, right and concurrent right checks from both; then a master SIGKILLed, or a planned
//! failover (`CLUSTER FAILOVER` on its replica), three times each.
//!
//! Each run asserts: every instance serves again (a send to the failed shard answers 201, and
//! `/readyz` 200) within 10 s of the promotion; no message of a healthy shard waits more than 5 s
//! for the provider; no message is sent twice; no wrong code is approved and no code is approved
//! twice; attempt counts are exact where every check of a verification was answered; every
//! accepted send reaches the provider.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use otpgate::phone::PhoneNumber;

use crate::helpers::{extract_code, spawn_app, spawn_peer, wrong_code, Backend, TestApp};
use crate::redis_harness::{is_master, key_slot, FailoverCluster};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Failover {
    /// The master is SIGKILLed; its replica takes over after the node timeout.
    Kill,
    /// `CLUSTER FAILOVER` on the replica: the operator's way during an upgrade.
    Planned,
}

/// How long a healthy shard's message may wait for the provider, killed master or not: the
/// outbox reads and acknowledges each shard on its own connection to that shard's master, so a
/// dead master holds only its own shards.
const HEALTHY_WAIT_BOUND: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_killed_masters_under_load_cost_seconds_and_lose_or_double_nothing() {
    failovers(Failover::Kill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_planned_failovers_under_load_cost_seconds_and_lose_or_double_nothing() {
    failovers(Failover::Planned).await;
}

async fn failovers(kind: Failover) {
    // The gateway's log, for a run that needs explaining: OTPGATE_TEST_LOG=otpgate=info.
    if let Ok(filter) = std::env::var("OTPGATE_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
    let mut cluster = tokio::task::block_in_place(FailoverCluster::start);
    let backend = Backend::ClusterAt(cluster.urls());
    let first = spawn_app(backend.clone()).await;
    // Thousands of codes never approved: the pumping guard would rightly pause them.
    crate::abuse::safe_list(&first, "+49151").await;
    let second = spawn_peer(&first, backend).await;
    let instances = Arc::new([first, second]);
    let (arrivals, polling) = Arrivals::start(instances.clone());
    let numbers = Arc::new(Numbers::new(cluster.nodes[0].port));

    for run in 0..runs(kind) {
        // A different shard's master each run.
        let target_shard = ((run * 21 + 5) % 64) as u8;
        let slot = numbers.slot_of_shard(target_shard);
        let (master, replica) = tokio::task::block_in_place(|| cluster.master_and_replica_of(slot));
        let failed_ranges: Vec<(u16, u16)> = cluster
            .topology()
            .into_iter()
            .find(|node| node.port == master)
            .map(|node| node.slots)
            .unwrap_or_default();

        let load = Load::start(instances.clone(), numbers.clone(), arrivals.clone());
        tokio::time::sleep(Duration::from_millis(1500)).await;

        let rebuilds_before = rebuilds(&instances).await;
        let failed_at = Instant::now();
        match kind {
            Failover::Kill => tokio::task::block_in_place(|| cluster.node(master).kill()),
            Failover::Planned => {
                let reply = cluster.node(replica).command(&["CLUSTER", "FAILOVER"]);
                assert!(reply.starts_with("+OK"), "CLUSTER FAILOVER: {reply}");
            }
        }
        let promoted_at = wait_for_promotion(replica, Duration::from_secs(20)).await;

        // Every instance serves the failed shard again within 10 s of the promotion.
        let mut serving_refusals = 0u64;
        for (index, instance) in instances.iter().enumerate() {
            let deadline = promoted_at + Duration::from_secs(10);
            loop {
                let to = numbers.on_shard(target_shard);
                let sent = instance.send(&to).await;
                if sent.status == 201 {
                    break;
                }
                serving_refusals += 1;
                assert!(
                    Instant::now() < deadline,
                    "run {run} ({kind:?}): instance {index} still answers {} {} 10 s after the promotion",
                    sent.status,
                    sent.body
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            // And says so to the load balancer.
            loop {
                let ready = instance
                    .http
                    .get(format!("{}/readyz", instance.address))
                    .send()
                    .await
                    .expect("the server answers");
                if ready.status() == 200 {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "run {run} ({kind:?}): instance {index} is still not ready 10 s after the promotion"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let served_after = promoted_at.elapsed();
        let rebuilt = rebuilds(&instances).await - rebuilds_before;

        tokio::time::sleep(Duration::from_millis(1000)).await;
        let flows = load.stop().await;

        let healthy = |shard: u8| {
            let slot = numbers.slot_of_shard(shard);
            !failed_ranges.iter().any(|(a, b)| (*a..=*b).contains(&slot))
        };
        let accepted: Vec<&Flow> = flows.iter().filter(|flow| flow.id.is_some()).collect();
        // Every accepted send reaches the provider (those of the failed shard once it has a
        // master again).
        let deadline = Instant::now() + Duration::from_secs(15);
        while accepted
            .iter()
            .any(|flow| arrivals.first_seen(&flow.to).is_none())
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut figures = Figures {
            promoted_after: promoted_at.duration_since(failed_at),
            served_after,
            rebuilt,
            accepted: accepted.len(),
            unavailable: serving_refusals
                + flows
                    .iter()
                    .map(|flow| flow.refused + flow.unknown)
                    .sum::<u64>(),
            ..Figures::default()
        };
        for flow in &accepted {
            figures.duplicates += arrivals.duplicates(&flow.to);
            if arrivals.duplicates(&flow.to) > 0 {
                // Which message came twice, and when, against the failure: with the gateway's
                // log (OTPGATE_TEST_LOG=otpgate=info) that tells why.
                let ids: Vec<String> = instances[0]
                    .messages()
                    .await
                    .iter()
                    .filter(|message| message["to"] == flow.to.as_str())
                    .map(|message| message["message_id"].to_string())
                    .collect();
                println!(
                    "failover run {run} ({kind:?}): sent twice: shard {} (healthy: {}), accepted {} ms after the failure, message ids {ids:?}",
                    flow.shard,
                    healthy(flow.shard),
                    flow.accepted_at.map_or(0, |at| at.saturating_duration_since(failed_at).as_millis())
                );
            }
            let Some(arrived) = arrivals.first_seen(&flow.to) else {
                figures.lost.push((flow.to.clone(), healthy(flow.shard)));
                continue;
            };
            let accepted_at = flow.accepted_at.expect("accepted flows have a time");
            let waited = arrived.saturating_duration_since(accepted_at);
            if healthy(flow.shard) {
                figures.healthy_max_wait = figures.healthy_max_wait.max(waited);
                if waited > HEALTHY_WAIT_BOUND {
                    figures.healthy_delayed += 1;
                    // When, against the failure and the promotion, tells what held it.
                    println!(
                        "failover run {run} ({kind:?}): a message of healthy shard {} accepted {} ms after the failure reached the provider {} ms after it",
                        flow.shard,
                        accepted_at.saturating_duration_since(failed_at).as_millis(),
                        arrived.saturating_duration_since(failed_at).as_millis()
                    );
                }
            } else {
                figures.failed_max_wait = figures.failed_max_wait.max(waited);
            }
        }
        println!("failover run {run} ({kind:?}): {figures}");

        assert!(
            figures.accepted >= 10,
            "run {run}: only {} sends were accepted under load",
            figures.accepted
        );
        for flow in &flows {
            assert_eq!(
                flow.wrong_approvals, 0,
                "run {run}: a wrong code was approved for {}",
                flow.to
            );
            assert!(
                flow.approvals <= 1,
                "run {run}: {} approvals of one code for {}",
                flow.approvals,
                flow.to
            );
        }
        assert!(
            figures.lost.is_empty(),
            "run {run} ({kind:?}): accepted sends never reached the provider (number, on a healthy shard): {:?}",
            figures.lost
        );
        // No message is sent twice: a sent mark or acknowledgement that fails during the
        // failover is retried against the new master while the entry is held.
        assert_eq!(
            figures.duplicates, 0,
            "run {run} ({kind:?}): messages sent twice"
        );
        assert_eq!(
            figures.healthy_delayed, 0,
            "run {run} ({kind:?}): healthy shards' messages waited up to {:?}",
            figures.healthy_max_wait
        );
        // Attempt counts, as Redis holds them: exact where every check was answered.
        let mut redis = redis::cluster::ClusterClient::new(cluster.urls())
            .expect("a cluster client")
            .get_async_connection()
            .await
            .expect("the cluster answers");
        for flow in accepted.iter().filter(|flow| flow.finished) {
            let id = flow.id.as_deref().unwrap_or_default();
            let shard = u8::from_str_radix(&id[2..4], 16).expect("the id names its shard");
            let key = format!("{}:{{s{shard:02}}}:v:{id}", instances[0].prefix);
            let used = crate::concurrency::packed_attempts(
                redis::AsyncCommands::getrange(&mut redis, &key, 1, 4)
                    .await
                    .expect("the record is there"),
            );
            // The approving check counts one attempt, like each wrong one.
            let counted = flow.wrong_counted + 1;
            if flow.unknown == 0 {
                assert_eq!(used, counted, "run {run}: attempts of {id}");
            } else {
                assert!(
                    (counted..=counted + flow.unknown).contains(&used),
                    "run {run}: attempts of {id}: {used} (counted {counted}, unknown {})",
                    flow.unknown
                );
            }
        }

        // Back to three masters with a replica each before the next run.
        tokio::task::block_in_place(|| {
            if kind == Failover::Kill {
                cluster.node(master).restart();
            }
            cluster.wait_until_settled(Duration::from_secs(30));
        });
    }
    arrivals.stop();
    polling.await.expect("the provider poller");
    let [first, second] =
        Arc::into_inner(instances).unwrap_or_else(|| panic!("the load tasks are done"));
    second.stop().await;
    first.stop().await;
}

/// What one failover cost, as `loadtest/failover` prints it.
#[derive(Debug, Default)]
struct Figures {
    promoted_after: Duration,
    served_after: Duration,
    /// Store clients the supervisors replaced (stuck in a topology refresh) on both instances.
    rebuilt: u64,
    accepted: usize,
    /// 503 answers seen by the load and by the serving probes.
    unavailable: u64,
    healthy_delayed: usize,
    healthy_max_wait: Duration,
    failed_max_wait: Duration,
    duplicates: usize,
    /// Accepted sends that never reached the provider: (number, on a healthy shard).
    lost: Vec<(String, bool)>,
}

impl std::fmt::Display for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "promoted {} ms after the failure; every instance served {} ms after the promotion \
             ({} store clients replaced); {} sends accepted; {} answers 503; healthy shards: {} messages delayed past the bound \
             (longest wait {} ms); failed shard: longest wait {} ms; {} duplicated; {} lost",
            self.promoted_after.as_millis(),
            self.served_after.as_millis(),
            self.rebuilt,
            self.accepted,
            self.unavailable,
            self.healthy_delayed,
            self.healthy_max_wait.as_millis(),
            self.failed_max_wait.as_millis(),
            self.duplicates,
            self.lost.len()
        )
    }
}

/// Store clients replaced so far by both instances' supervisors.
async fn rebuilds(instances: &[TestApp; 2]) -> u64 {
    let mut total = 0;
    for instance in instances {
        total += instance
            .metrics()
            .await
            .lines()
            .filter(|line| line.starts_with("otpgate_store_client_rebuilds_total"))
            .filter_map(|line| line.split_whitespace().last()?.parse::<f64>().ok())
            .sum::<f64>() as u64;
    }
    total
}

/// Three of each in the suite; `loadtest/failover` asks for more through the environment.
fn runs(kind: Failover) -> u32 {
    let variable = match kind {
        Failover::Kill => "OTPGATE_FAILOVER_KILLS",
        Failover::Planned => "OTPGATE_FAILOVER_PLANNED",
    };
    std::env::var(variable)
        .ok()
        .and_then(|runs| runs.parse().ok())
        .unwrap_or(3)
}

/// Waits until the replica on `port` calls itself a master; returns when it first did.
async fn wait_for_promotion(port: u16, within: Duration) -> Instant {
    let deadline = Instant::now() + within;
    loop {
        if tokio::task::block_in_place(|| is_master(port)) {
            return Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "the replica on {port} was not promoted"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Phone numbers by shard, and each shard's hash slot.
struct Numbers {
    next: AtomicU64,
    slots: Vec<u16>,
}

impl Numbers {
    fn new(port: u16) -> Self {
        Self {
            next: AtomicU64::new(0),
            slots: (0..64)
                .map(|shard| key_slot(port, &format!("{{s{shard:02}}}")))
                .collect(),
        }
    }

    fn slot_of_shard(&self, shard: u8) -> u16 {
        self.slots[usize::from(shard)]
    }

    /// A number never used before in this test.
    fn fresh(&self) -> String {
        format!("+49151{:08}", self.next.fetch_add(1, Ordering::Relaxed))
    }

    /// A number never used before whose verifications live on `shard`.
    fn on_shard(&self, shard: u8) -> String {
        loop {
            let to = self.fresh();
            if shard_of(&to) == shard {
                return to;
            }
        }
    }
}

fn shard_of(to: &str) -> u8 {
    PhoneNumber::parse(to).expect("a valid number").shard()
}

/// When the fake provider first saw a message to each number (polled, so to within ~20 ms),
/// its code, and how many messages to that number it received.
#[derive(Clone)]
struct Arrivals {
    seen: Arc<Mutex<HashMap<String, Arrival>>>,
    stop: Arc<AtomicBool>,
}

struct Arrival {
    first_seen: Instant,
    code: String,
    count: usize,
}

impl Arrivals {
    /// Starts polling; the task ends (and lets go of the instances) after `stop`.
    fn start(instances: Arc<[TestApp; 2]>) -> (Self, tokio::task::JoinHandle<()>) {
        let arrivals = Self {
            seen: Arc::default(),
            stop: Arc::default(),
        };
        let polling = arrivals.clone();
        let task = tokio::spawn(async move {
            while !polling.stop.load(Ordering::Relaxed) {
                // Both instances deliver through the first one's fake provider.
                let messages = instances[0].messages().await;
                polling.record(&messages);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        (arrivals, task)
    }

    fn record(&self, messages: &[serde_json::Value]) {
        let now = Instant::now();
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for message in messages {
            *counts
                .entry(message["to"].as_str().unwrap_or_default())
                .or_default() += 1;
        }
        let mut seen = self.seen.lock().unwrap();
        for message in messages {
            let to = message["to"].as_str().unwrap_or_default();
            let count = counts[to];
            seen.entry(to.to_owned())
                .and_modify(|arrival| arrival.count = count)
                .or_insert_with(|| Arrival {
                    first_seen: now,
                    code: extract_code(message["body"].as_str().unwrap_or_default()),
                    count,
                });
        }
    }

    fn first_seen(&self, to: &str) -> Option<Instant> {
        self.seen
            .lock()
            .unwrap()
            .get(to)
            .map(|arrival| arrival.first_seen)
    }

    fn code(&self, to: &str) -> Option<String> {
        self.seen
            .lock()
            .unwrap()
            .get(to)
            .map(|arrival| arrival.code.clone())
    }

    /// Messages to `to` beyond the first.
    fn duplicates(&self, to: &str) -> usize {
        self.seen
            .lock()
            .unwrap()
            .get(to)
            .map_or(0, |arrival| arrival.count.saturating_sub(1))
    }

    fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One verification's life under load.
#[derive(Debug, Default)]
struct Flow {
    to: String,
    shard: u8,
    id: Option<String>,
    accepted_at: Option<Instant>,
    /// Wrong checks answered 200 (so counted).
    wrong_counted: u64,
    /// The send answered 503 (not accepted).
    refused: u64,
    /// Checks answered 503: whether they counted is unknown.
    unknown: u64,
    /// Right-code checks answered `valid: true`.
    approvals: u32,
    wrong_approvals: u32,
    /// Every check got its answer and the code was approved.
    finished: bool,
}

/// A steady mix from four workers, alternating the instances: send, one wrong check, then two
/// concurrent right checks (one per instance).
struct Load {
    stop: Arc<AtomicBool>,
    workers: Vec<tokio::task::JoinHandle<Vec<Flow>>>,
}

impl Load {
    fn start(instances: Arc<[TestApp; 2]>, numbers: Arc<Numbers>, arrivals: Arrivals) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let workers = (0..4)
            .map(|worker| {
                let instances = instances.clone();
                let numbers = numbers.clone();
                let arrivals = arrivals.clone();
                let stop = stop.clone();
                tokio::spawn(async move {
                    let mut flows = Vec::new();
                    let mut turn = worker;
                    while !stop.load(Ordering::Relaxed) {
                        turn += 1;
                        flows.push(flow(&instances, &numbers, &arrivals, turn).await);
                    }
                    flows
                })
            })
            .collect();
        Self { stop, workers }
    }

    async fn stop(self) -> Vec<Flow> {
        self.stop.store(true, Ordering::Relaxed);
        let mut flows = Vec::new();
        for worker in self.workers {
            flows.extend(worker.await.expect("a load worker"));
        }
        flows
    }
}

async fn flow(
    instances: &[TestApp; 2],
    numbers: &Numbers,
    arrivals: &Arrivals,
    turn: usize,
) -> Flow {
    let to = numbers.fresh();
    let mut flow = Flow {
        shard: shard_of(&to),
        to: to.clone(),
        ..Flow::default()
    };
    let sender = &instances[turn % 2];
    let sent = sender.send(&to).await;
    match sent.status {
        201 => {}
        503 => {
            // Refused while its shard has no master: not accepted, nothing to follow.
            flow.refused += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
            return flow;
        }
        other => panic!("a send answered {other}: {}", sent.body),
    }
    flow.accepted_at = Some(Instant::now());
    let id = sent.str("id").to_owned();
    flow.id = Some(id.clone());

    // The code, once the provider has it (delivery may wait for a promotion).
    let deadline = Instant::now() + Duration::from_secs(20);
    let code = loop {
        if let Some(code) = arrivals.code(&to) {
            break code;
        }
        if Instant::now() > deadline {
            return flow;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    let wrong = instances[(turn + 1) % 2]
        .check_id(&id, &wrong_code(&code))
        .await;
    match wrong.status {
        200 => {
            if wrong.body["valid"] == true {
                flow.wrong_approvals += 1;
            }
            flow.wrong_counted += 1;
        }
        503 => flow.unknown += 1,
        other => panic!("a wrong check answered {other}: {}", wrong.body),
    }

    // Two right checks at once, one per instance, until one of them settles it.
    for _ in 0..100 {
        let (a, b) = tokio::join!(
            instances[0].check_id(&id, &code),
            instances[1].check_id(&id, &code)
        );
        let mut settled = false;
        for answer in [a, b] {
            match answer.status {
                200 if answer.body["valid"] == true => {
                    flow.approvals += 1;
                    settled = true;
                }
                // Already approved: by the other check, or by one whose answer was a 503.
                200 if answer.body["status"] == "approved" => settled = true,
                409 => settled = true,
                503 => flow.unknown += 1,
                other => panic!("a right check answered {other}: {}", answer.body),
            }
        }
        if settled {
            flow.finished = true;
            return flow;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    flow
}
