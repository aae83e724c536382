//! Dispatch: failover, breakers, dead letters, receipts, a killed worker, and a drain of 10 000
//! sends — against fake providers on loopback and real Redis.

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use otpgate::config::Settings;
use otpgate::dispatch::providers::{AdapterKind, ProviderSettings, SecretString};
use otpgate::dispatch::router::RouteSettings;
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{reply, spawn_app_with, Backend, TestApp, CODE_KEY, ROOT_KEY};
use crate::on_every_store;
use crate::redis_harness::{free_port, RedisServer};

fn http_provider(name: &str, server: &MockServer, timeout_ms: u64) -> ProviderSettings {
    let mut provider = ProviderSettings::new(name, AdapterKind::Http);
    provider.url = Some(format!("{}/messages", server.uri()));
    provider.timeout_ms = timeout_ms;
    provider
}

async fn provider_answering(status: u16, delay: Duration) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(status).set_delay(delay))
        .mount(&server)
        .await;
    server
}

/// Routes every number to `names` in failover order.
fn failover(settings: &mut Settings, providers: Vec<ProviderSettings>, names: &[&str]) {
    settings.dispatch.providers = providers;
    settings.dispatch.routes = vec![RouteSettings {
        prefix: "*".into(),
        channel: None,
        providers: names.iter().map(|name| name.to_string()).collect(),
    }];
}

async fn received(server: &MockServer) -> Vec<Value> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter_map(|request| serde_json::from_slice(&request.body).ok())
        .collect()
}

/// Polls until `server` holds `count` requests; returns them.
async fn wait_for(server: &MockServer, count: usize, within: Duration) -> Vec<Value> {
    let deadline = Instant::now() + within;
    loop {
        let requests = received(server).await;
        if requests.len() >= count {
            return requests;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {count} requests arrived",
            requests.len()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Polls the verification until its first send attempt has `status`; returns that attempt.
async fn wait_for_attempt(app: &TestApp, id: &str, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let read = app.get(&format!("/v1/verifications/{id}")).await;
        if let Some(attempt) = read.body["send_attempts"]
            .as_array()
            .and_then(|a| a.first())
        {
            if attempt["status"] == status {
                return attempt.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "no '{status}' attempt: {}",
            read.body
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

on_every_store!(send_attempts_are_listed_on_the_verification);

async fn send_attempts_are_listed_on_the_verification(backend: Backend) {
    let app = spawn_app_with(backend, |_| {}).await;
    let id = app.send("+4915112349001").await.str("id").to_owned();
    let attempt = wait_for_attempt(&app, &id, "accepted").await;
    assert_eq!(attempt["provider"], "http");
    assert!(attempt["message_id"].as_str().unwrap().starts_with("MS"));
    assert!(attempt["created_at"].as_str().unwrap().ends_with('Z'));
    let message = &app.messages().await[0];
    assert_eq!(
        message["message_id"], attempt["message_id"],
        "the listed message is the one sent"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_provider_fails_over_and_its_breaker_opens_then_closes_when_it_recovers() {
    let a = provider_answering(500, Duration::ZERO).await;
    let b = provider_answering(200, Duration::ZERO).await;
    let (pa, pb) = (http_provider("a", &a, 2000), http_provider("b", &b, 2000));
    let app = spawn_app_with(Backend::Redis, |settings| {
        failover(settings, vec![pa, pb], &["a", "b"]);
        settings.dispatch.breaker_failures = 2;
        settings.dispatch.breaker_open = Duration::from_secs(30);
    })
    .await;
    // One message at a time: concurrent deliveries may all pass a closed breaker before the
    // failure that opens it is counted.
    for n in 0..4 {
        app.send(&format!("+491511234910{n}")).await;
        wait_for(&b, n + 1, Duration::from_secs(10)).await;
    }
    assert_eq!(
        received(&a).await.len(),
        2,
        "a is skipped once its breaker is open"
    );
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("otpgate_provider_breaker_state{provider=\"a\"} 2"),
        "{metrics}"
    );
    assert!(metrics.contains(
        "otpgate_messages_total{provider=\"a\",country_code=\"49\",outcome=\"failed\"} 2"
    ));

    // a recovers; after the open period one probe goes to it, succeeds, and closes the breaker.
    a.reset().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&a)
        .await;
    app.clock.advance(Duration::from_secs(30));
    app.send("+4915112349110").await;
    wait_for(&a, 1, Duration::from_secs(10)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !app
        .metrics()
        .await
        .contains("otpgate_provider_breaker_state{provider=\"a\"} 0")
    {
        assert!(Instant::now() < deadline, "the breaker did not close");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        received(&b).await.len(),
        4,
        "the probe's message went through a alone"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_times_out_is_passed_over_for_the_next() {
    let slow = provider_answering(200, Duration::from_secs(3)).await;
    let fast = provider_answering(200, Duration::ZERO).await;
    let (ps, pf) = (
        http_provider("slow", &slow, 200),
        http_provider("fast", &fast, 2000),
    );
    let app = spawn_app_with(Backend::Memory, |settings| {
        failover(settings, vec![ps, pf], &["slow", "fast"])
    })
    .await;
    let id = app.send("+4915112349201").await.str("id").to_owned();
    let attempt = wait_for_attempt(&app, &id, "accepted").await;
    assert_eq!(attempt["provider"], "fast");
    assert_eq!(received(&slow).await.len(), 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_provider_down_a_message_is_dead_lettered_with_its_reasons() {
    let a = provider_answering(503, Duration::ZERO).await;
    let b = provider_answering(500, Duration::ZERO).await;
    let (pa, pb) = (http_provider("a", &a, 2000), http_provider("b", &b, 2000));
    let app = spawn_app_with(Backend::Redis, |settings| {
        failover(settings, vec![pa, pb], &["a", "b"]);
        settings.dispatch.max_attempts = 3;
        settings.dispatch.retry_base = Duration::from_millis(1);
    })
    .await;
    let id = app.send("+4915112349301").await.str("id").to_owned();
    let attempt = wait_for_attempt(&app, &id, "failed").await;
    assert_eq!(
        attempt["provider"], "b",
        "the failed send names the last provider tried"
    );
    let error = attempt["error"].as_str().unwrap();
    assert!(
        error.contains("a: answered 503") && error.contains("b: answered 500"),
        "{error}"
    );
    assert_eq!(received(&a).await.len(), 3, "three rounds");
    assert_eq!(received(&b).await.len(), 3);
    // Nothing vanished: the message sits in the shard's dead-letter stream with its reasons.
    let shard = u8::from_str_radix(&id[2..4], 16).unwrap();
    let dead = crate::redis_harness::shared_redis().command(&[
        "XRANGE",
        &format!("{}:{{s{shard:02}}}:d", app.prefix),
        "-",
        "+",
    ]);
    assert!(
        dead.contains(&id) && dead.contains("answered 503"),
        "{dead}"
    );
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("otpgate_dead_letters_total 1"),
        "{metrics}"
    );
    app.stop().await;
}

fn twilio_signature(url: &str, params: &[(&str, &str)], token: &str) -> String {
    let mut sorted = params.to_vec();
    sorted.sort();
    let mut data = url.to_owned();
    for (key, value) in sorted {
        data.push_str(key);
        data.push_str(value);
    }
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, token.as_bytes());
    data_encoding::BASE64.encode(ring::hmac::sign(&key, data.as_bytes()).as_ref())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_with_a_bad_signature_is_refused_and_a_signed_one_updates_the_status() {
    const SID: &str = "AC00000000000000000000000000000001";
    const MESSAGE_SID: &str = "SM11111111111111111111111111111111";
    let twilio = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("/2010-04-01/Accounts/{SID}/Messages.json")))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(json!({"sid": MESSAGE_SID, "status": "queued"})),
        )
        .mount(&twilio)
        .await;
    let mut provider = ProviderSettings::new("twilio-main", AdapterKind::Twilio);
    provider.base_url = Some(twilio.uri());
    provider.account_sid = Some(SID.into());
    provider.auth_token = Some(SecretString::new("twilio-auth-token"));
    provider.from = Some("+15017122661".into());
    let app = spawn_app_with(Backend::Memory, |settings| {
        failover(settings, vec![provider], &["twilio-main"])
    })
    .await;
    let id = app.send("+4915112349401").await.str("id").to_owned();
    let attempt = wait_for_attempt(&app, &id, "accepted").await;
    assert_eq!(attempt["provider_message_id"], MESSAGE_SID);

    let url = format!("{}/v1/receipts/twilio-main", app.address);
    let params = [("MessageSid", MESSAGE_SID), ("MessageStatus", "delivered")];
    let body = format!("MessageSid={MESSAGE_SID}&MessageStatus=delivered");
    let post = |signature: String| {
        let request = app
            .http
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-twilio-signature", signature)
            .body(body.clone());
        async move { reply(request.send().await.unwrap()).await }
    };
    post(twilio_signature(&url, &params, "wrong-token"))
        .await
        .assert_problem(403, "forbidden");
    assert_eq!(
        wait_for_attempt(&app, &id, "accepted").await["status"],
        "accepted",
        "unchanged"
    );

    let accepted = post(twilio_signature(&url, &params, "twilio-auth-token")).await;
    assert_eq!(accepted.status, 200, "{}", accepted.body);
    assert_eq!(accepted.body["applied"], 1);
    wait_for_attempt(&app, &id, "delivered").await;
    assert!(app
        .metrics()
        .await
        .contains("otpgate_delivery_receipts_total{provider=\"twilio\",status=\"delivered\"} 1"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_sends_drain_with_no_loss() {
    const SENDS: usize = 10_000;
    let sink = provider_answering(200, Duration::ZERO).await;
    let app = spawn_app_with(Backend::Redis, |settings| {
        settings.dispatch.http_url = format!("{}/messages", sink.uri());
    })
    .await;
    let started = Instant::now();
    let statuses: Vec<u16> = stream::iter(0..SENDS)
        .map(|n| {
            let app = &app;
            async move {
                let answer = app
                    .send_retrying(
                        &format!("+49151{:08}", 10_000_000 + n),
                        &format!("drain-{n}"),
                    )
                    .await;
                // A retry after an unknown outcome may find the first attempt's verification.
                if answer.status == 200 && answer.headers.contains_key("idempotent-replayed") {
                    201
                } else {
                    answer.status
                }
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let accepted = statuses.iter().filter(|status| **status == 201).count();
    let mut seen: std::collections::BTreeMap<u16, usize> = Default::default();
    for status in &statuses {
        *seen.entry(*status).or_default() += 1;
    }
    assert_eq!(accepted, SENDS, "every send was accepted: {seen:?}");
    let enqueue_time = started.elapsed();
    let messages = wait_for(&sink, SENDS, Duration::from_secs(120)).await;
    let distinct: HashSet<&str> = messages
        .iter()
        .filter_map(|m| m["message_id"].as_str())
        .collect();
    assert_eq!(
        distinct.len(),
        SENDS,
        "every accepted send reached the provider"
    );
    println!(
        "{SENDS} sends accepted in {enqueue_time:?}, all delivered after {:?}; duplicates {}",
        started.elapsed(),
        messages.len() - distinct.len()
    );
    app.stop().await;
}

/// The gateway binary as a separate process, on Redis, with its worker sending to `provider`.
fn spawn_gateway_process(
    redis: &RedisServer,
    prefix: &str,
    provider: &MockServer,
    port: u16,
) -> Child {
    Command::new(env!("CARGO_BIN_EXE_otpgate"))
        .env_clear()
        .env("OTPGATE_LISTEN", format!("127.0.0.1:{port}"))
        .env("OTPGATE_REDIS_URL", redis.url())
        .env("OTPGATE_STORE__KEY_PREFIX", prefix)
        .env("OTPGATE_CODE_KEY", CODE_KEY)
        .env("OTPGATE_DEVICE_KEY", CODE_KEY)
        .env("OTPGATE_PIN_PEPPER", CODE_KEY)
        .env("OTPGATE_ROOT_KEY", ROOT_KEY)
        .env(
            "OTPGATE_HTTP_PROVIDER_URL",
            format!("{}/messages", provider.uri()),
        )
        .env("OTPGATE_DISPATCH__HTTP_TIMEOUT_MS", "60000")
        .env("OTPGATE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the gateway binary starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_between_read_and_ack_loses_no_message() {
    const SENDS: usize = 20;
    let redis = RedisServer::start(&[]);
    let prefix = crate::helpers::unique_prefix();
    // The child's provider takes the messages but never answers in time: the child is killed
    // with all of them read and none acknowledged.
    let stalled = provider_answering(200, Duration::from_secs(60)).await;
    let port = free_port(false);
    let mut child = spawn_gateway_process(&redis, &prefix, &stalled, port);
    let base = format!("http://127.0.0.1:{port}");
    let http = crate::helpers::http_client();
    let deadline = Instant::now() + Duration::from_secs(20);
    while http.get(format!("{base}/readyz")).send().await.is_err() {
        assert!(Instant::now() < deadline, "the child gateway did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let account = reply(
        http.post(format!("{base}/v1/accounts"))
            .bearer_auth(ROOT_KEY)
            .json(&json!({"name": "Acme"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let account_id = account.str("id").to_owned();
    let key = reply(
        http.post(format!("{base}/v1/accounts/{account_id}/keys"))
            .bearer_auth(ROOT_KEY)
            .json(&json!({"role": "service"}))
            .send()
            .await
            .unwrap(),
    )
    .await
    .str("key")
    .to_owned();
    let mut ids = HashMap::new();
    for n in 0..SENDS {
        let sent = reply(
            http.post(format!("{base}/v1/verifications"))
                .bearer_auth(&key)
                .json(&json!({"to": format!("+4915112349{n:03}")}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(sent.status, 201, "{}", sent.body);
        ids.insert(sent.str("id").to_owned(), n);
    }
    wait_for(&stalled, SENDS, Duration::from_secs(20)).await;
    child.kill().unwrap();
    child.wait().unwrap();

    // A healthy instance on the same Redis takes the dead worker's messages over.
    let healthy = provider_answering(200, Duration::ZERO).await;
    let healthy_url = format!("{}/messages", healthy.uri());
    let app = spawn_app_with(Backend::RedisAt(redis.url()), |settings| {
        settings.store.key_prefix = prefix.clone();
        settings.dispatch.http_url = healthy_url;
        settings.dispatch.reclaim_idle = Duration::from_millis(300);
        settings.dispatch.poll_interval = Duration::from_millis(20);
    })
    .await;
    let delivered = wait_for(&healthy, SENDS, Duration::from_secs(30)).await;
    let delivered_ids: HashSet<&str> = delivered
        .iter()
        .filter_map(|m| m["message_id"].as_str())
        .collect();
    let stalled_ids: HashSet<String> = received(&stalled)
        .await
        .iter()
        .filter_map(|m| m["message_id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        delivered_ids.len(),
        SENDS,
        "every message was delivered after the crash"
    );
    let duplicates = delivered_ids
        .iter()
        .filter(|id| stalled_ids.contains(**id))
        .count();
    println!("worker crash: {SENDS} messages, {duplicates} possibly sent twice (the dead worker's provider had them)");
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(&format!("otpgate_messages_redelivered_total {SENDS}")),
        "every reclaimed message is counted as a redelivery:\n{metrics}"
    );
    app.stop().await;
}
