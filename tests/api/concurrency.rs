//! Exactness under concurrency: a code is approved at most once and attempts are counted
//! exactly, on every store and across two instances sharing one Redis.

use std::collections::BTreeMap;

use futures::future::join_all;
use redis::AsyncCommands;

use crate::helpers::{spawn_app, spawn_peer, wrong_code, Backend, Reply, TestApp};
use crate::on_every_store;

on_every_store!(
    fifty_concurrent_right_codes_approve_exactly_once,
    fifty_concurrent_wrong_codes_count_exactly_five
);

const CONCURRENT: usize = 50;

/// Sends `CONCURRENT` checks of `code` at once, spread over `apps`, and returns the answers.
async fn burst(apps: &[&TestApp], id: &str, code: &str) -> Vec<Reply> {
    let checks = (0..CONCURRENT).map(|n| {
        let app = apps[n % apps.len()];
        async move { app.check_id(id, code).await }
    });
    join_all(checks).await
}

/// The answers of a burst: the 200 bodies, and the problem slugs of the 409s.
fn sort_answers(answers: Vec<Reply>) -> (Vec<serde_json::Value>, Vec<String>) {
    let mut counted = Vec::new();
    let mut conflicts = Vec::new();
    for reply in answers {
        match reply.status {
            200 => counted.push(reply.body),
            409 => conflicts.push(reply.str("type").to_owned()),
            other => panic!("unexpected {other}: {}", reply.body),
        }
    }
    (counted, conflicts)
}

async fn fifty_concurrent_right_codes_approve_exactly_once(backend: Backend) {
    let app = spawn_app(backend).await;
    assert_approved_once(&[&app]).await;
    app.stop().await;
}

async fn fifty_concurrent_wrong_codes_count_exactly_five(backend: Backend) {
    let app = spawn_app(backend.clone()).await;
    assert_five_attempts(&[&app], &backend).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_redis_approve_exactly_once() {
    let first = spawn_app(Backend::Redis).await;
    let second = spawn_peer(&first, Backend::Redis).await;
    assert_approved_once(&[&first, &second]).await;
    second.stop().await;
    first.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_redis_count_exactly_five_attempts() {
    let first = spawn_app(Backend::Redis).await;
    let second = spawn_peer(&first, Backend::Redis).await;
    assert_five_attempts(&[&first, &second], &Backend::Redis).await;
    second.stop().await;
    first.stop().await;
}

async fn assert_approved_once(apps: &[&TestApp]) {
    let to = "+4915112340001";
    let id = apps[0].send(to).await.str("id").to_owned();
    let code = apps[0].code_sent_to(to, 1).await;
    let (counted, conflicts) = sort_answers(burst(apps, &id, &code).await);
    assert_eq!(
        counted.len(),
        1,
        "exactly one of {CONCURRENT} concurrent right codes is answered 200: {counted:?}"
    );
    assert_eq!(counted[0]["status"], "approved");
    assert_eq!(counted[0]["valid"], true);
    assert_eq!(conflicts.len(), CONCURRENT - 1);
    assert!(
        conflicts
            .iter()
            .all(|kind| kind == "urn:otpgate:problem:verification-already-approved"),
        "{conflicts:?}"
    );
}

async fn assert_five_attempts(apps: &[&TestApp], backend: &Backend) {
    let to = "+4915112340002";
    let id = apps[0].send(to).await.str("id").to_owned();
    let code = apps[0].code_sent_to(to, 1).await;
    let (answers, conflicts) = sort_answers(burst(apps, &id, &wrong_code(&code)).await);
    assert!(answers.iter().all(|answer| answer["valid"] == false));
    // Five checks counted (four pending, the fifth closing it); the rest found it final.
    assert_eq!(answers.len(), 5, "{answers:?}");
    assert_eq!(
        answers
            .iter()
            .filter(|answer| answer["status"] == "max_attempts_reached")
            .count(),
        1
    );
    assert_eq!(conflicts.len(), CONCURRENT - 5);
    assert!(conflicts
        .iter()
        .all(|kind| kind == "urn:otpgate:problem:verification-max-attempts-reached"));
    // The four counted checks before the last each saw a distinct number of attempts left.
    let mut pending_left: BTreeMap<u64, usize> = BTreeMap::new();
    for answer in answers
        .iter()
        .filter(|answer| answer["status"] == "pending")
    {
        *pending_left
            .entry(answer["attempts_left"].as_u64().unwrap())
            .or_default() += 1;
    }
    assert_eq!(
        pending_left,
        BTreeMap::from([(1, 1), (2, 1), (3, 1), (4, 1)])
    );
    let read = apps[0].get(&format!("/v1/verifications/{id}")).await;
    assert_eq!(read.body["status"], "max_attempts_reached");
    if let Some(stored) = stored_attempts(apps[0], backend, &id).await {
        assert_eq!(stored, 5, "exactly five attempts are counted in Redis");
    }
}

/// The attempt counter of a packed record (src/redis/verify.rs, `Record`): bytes 1 to 4,
/// little-endian.
pub(crate) fn packed_attempts(bytes: Vec<u8>) -> u64 {
    let bytes: [u8; 4] = bytes
        .try_into()
        .expect("a record's attempts are four bytes");
    u64::from(u32::from_le_bytes(bytes))
}

/// The attempt counter as Redis holds it (`None` for the memory store).
async fn stored_attempts(app: &TestApp, backend: &Backend, id: &str) -> Option<u64> {
    let shard = u8::from_str_radix(&id[2..4], 16).unwrap();
    let key = format!("{}:{{s{shard:02}}}:v:{id}", app.prefix);
    match backend {
        Backend::Memory => None,
        Backend::Redis => {
            let client = redis::Client::open(crate::redis_harness::shared_redis().url()).unwrap();
            let mut connection = client.get_multiplexed_async_connection().await.unwrap();
            Some(packed_attempts(
                connection.getrange(&key, 1, 4).await.unwrap(),
            ))
        }
        Backend::Cluster => {
            let urls: Vec<String> = crate::redis_harness::shared_cluster()
                .nodes
                .iter()
                .map(|n| n.url())
                .collect();
            let client = redis::cluster::ClusterClient::new(urls).unwrap();
            let mut connection = client.get_async_connection().await.unwrap();
            Some(packed_attempts(
                connection.getrange(&key, 1, 4).await.unwrap(),
            ))
        }
        Backend::RedisAt(_) | Backend::ClusterAt(_) => None,
    }
}
