//! Dispatch: failover, breakers, dead letters, receipts, a killed worker, and a drain of 10 000
//! sends — against fake providers on loopback and real Redis.

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use otpgate::config::Settings;
use otpgate::dispatch::providers::{AdapterKind, ProviderSettings};
use otpgate::dispatch::router::RouteSettings;
use otpgate::secret::Secret;
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
pub(crate) fn failover(settings: &mut Settings, providers: Vec<ProviderSettings>, names: &[&str]) {
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

/// Polls the verification until one of its send attempts has `status`; returns that attempt.
pub(crate) async fn wait_for_attempt(app: &TestApp, id: &str, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let attempts = send_attempts(app, id).await;
        if let Some(attempt) = attempts.iter().find(|attempt| attempt["status"] == status) {
            return attempt.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no '{status}' attempt: {attempts:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn send_attempts(app: &TestApp, id: &str) -> Vec<Value> {
    let read = app.get(&format!("/v1/verifications/{id}")).await;
    read.body["send_attempts"]
        .as_array()
        .cloned()
        .unwrap_or_default()
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
        "otpgate_messages_total{provider=\"a\",channel=\"sms\",country_code=\"49\",outcome=\"failed\"} 2"
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
async fn with_every_provider_down_a_message_waits_and_is_dead_lettered_only_when_its_code_expires()
{
    let a = provider_answering(503, Duration::ZERO).await;
    let b = provider_answering(500, Duration::ZERO).await;
    let (pa, pb) = (http_provider("a", &a, 2000), http_provider("b", &b, 2000));
    let app = spawn_app_with(Backend::Redis, |settings| {
        failover(settings, vec![pa, pb], &["a", "b"]);
        // Breakers that never open: every round reaches both providers.
        settings.dispatch.breaker_failures = 1000;
        settings.dispatch.retry_base = Duration::from_millis(100);
        settings.dispatch.retry_max = Duration::from_secs(1);
    })
    .await;
    let id = app.send("+4915112349301").await.str("id").to_owned();
    // Round after round as the clock moves: more than the three rounds that used to condemn it.
    // The clock moves a second at a time while a round is awaited: the worker may schedule the
    // next round after an advance made as soon as the providers saw the last one.
    for round in 1..=5 {
        let deadline = Instant::now() + Duration::from_secs(10);
        while received(&a).await.len() < round || received(&b).await.len() < round {
            assert!(Instant::now() < deadline, "round {round} never came");
            app.clock.advance(Duration::from_secs(1));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let attempts = send_attempts(&app, &id).await;
    assert!(
        attempts.iter().all(|attempt| attempt["status"] != "failed"),
        "not given up while the code lives: {attempts:?}"
    );
    let by_provider = |name: &str| {
        attempts
            .iter()
            .find(|attempt| attempt["provider"] == name && attempt["status"] == "provider_error")
            .unwrap_or_else(|| panic!("no failure of {name}: {attempts:?}"))
            .clone()
    };
    assert!(by_provider("a")["error"]
        .as_str()
        .unwrap()
        .contains("answered 503"));
    assert!(by_provider("b")["error"]
        .as_str()
        .unwrap()
        .contains("answered 500"));

    // The code expires: the next round gives the message up, and nothing vanished: it sits in
    // the shard's dead-letter stream with its reason.
    app.clock.advance(Duration::from_secs(600));
    let failed = wait_for_attempt(&app, &id, "failed").await;
    assert!(
        failed["error"].as_str().unwrap().contains("expired"),
        "{failed}"
    );
    // The attempt is recorded just before the message moves: poll for the move.
    let shard = u8::from_str_radix(&id[2..4], 16).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let dead = crate::redis_harness::shared_redis().command(&[
            "XRANGE",
            &format!("{}:{{s{shard:02}}}:d", app.prefix),
            "-",
            "+",
        ]);
        if dead.contains(&id) && dead.contains("expired") {
            break;
        }
        assert!(Instant::now() < deadline, "{dead}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("otpgate_dead_letters_total 1"),
        "{metrics}"
    );
    app.stop().await;
}

/// Two fakes that answer 500 until `recover` swaps their mocks for 200s.
async fn failing_pair() -> (MockServer, MockServer) {
    (
        provider_answering(500, Duration::ZERO).await,
        provider_answering(500, Duration::ZERO).await,
    )
}

async fn recover(server: &MockServer) {
    server.reset().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "vendor-1"})))
        .mount(server)
        .await;
}

fn outage_settings(settings: &mut Settings, a: &MockServer, b: &MockServer) {
    failover(
        settings,
        vec![http_provider("a", a, 2000), http_provider("b", b, 2000)],
        &["a", "b"],
    );
    settings.dispatch.breaker_failures = 2;
    settings.dispatch.breaker_open = Duration::from_secs(30);
    settings.dispatch.retry_base = Duration::from_millis(50);
    settings.dispatch.retry_max = Duration::from_secs(2);
    settings.dispatch.reclaim_idle = Duration::from_millis(500);
    settings.dispatch.poll_interval = Duration::from_millis(20);
}

/// Waits until the verification lists a failed try of both `a` and `b`.
async fn wait_for_both_failures(app: &TestApp, id: &str) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let attempts = send_attempts(app, id).await;
        let failed = |name: &str| {
            attempts
                .iter()
                .any(|attempt| attempt["provider"] == name && attempt["status"] == "provider_error")
        };
        if failed("a") && failed("b") {
            return attempts;
        }
        assert!(Instant::now() < deadline, "{attempts:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Every message of `sends` reached `a` or `b`, and each code approves.
async fn every_code_approves(
    app: &TestApp,
    a: &MockServer,
    b: &MockServer,
    sends: &[(String, String)],
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let delivered = loop {
        let mut delivered = received(a).await;
        delivered.extend(received(b).await);
        if sends
            .iter()
            .all(|(to, _)| delivered.iter().any(|message| message["to"] == to.as_str()))
        {
            break delivered;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} delivered",
            delivered.len(),
            sends.len()
        );
        app.clock.advance(Duration::from_millis(500));
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    for (to, id) in sends {
        let message = delivered
            .iter()
            .find(|message| message["to"] == to.as_str())
            .unwrap();
        let code = crate::helpers::extract_code(message["body"].as_str().unwrap());
        let checked = app.check_id(id, &code).await;
        assert_eq!(checked.body["status"], "approved", "{}", checked.body);
        let attempts = send_attempts(app, id).await;
        assert!(
            attempts
                .iter()
                .any(|attempt| attempt["status"] == "accepted"),
            "{attempts:?}"
        );
    }
}

on_every_store!(a_transient_outage_of_every_provider_delays_codes_but_delivers_every_one);

async fn a_transient_outage_of_every_provider_delays_codes_but_delivers_every_one(
    backend: Backend,
) {
    let (a, b) = failing_pair().await;
    let app = spawn_app_with(backend, |settings| outage_settings(settings, &a, &b)).await;
    let mut sends = Vec::new();
    for n in 0..6 {
        let to = format!("+4915112348{n:03}");
        let sent = app.send(&to).await;
        assert_eq!(sent.status, 201, "{}", sent.body);
        sends.push((to, sent.str("id").to_owned()));
    }
    // Both fail and their breakers open; the messages wait instead of being given up.
    for (_, id) in &sends[..1] {
        let attempts = wait_for_both_failures(&app, id).await;
        assert!(
            attempts.iter().all(|attempt| attempt["status"] != "failed"),
            "{attempts:?}"
        );
    }
    recover(&a).await;
    recover(&b).await;
    // Past the breakers' open time, a probe goes through, closes a breaker, and the rest follow.
    app.clock.advance(Duration::from_secs(31));
    every_code_approves(&app, &a, &b, &sends).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_survives_a_gateway_killed_while_its_messages_wait() {
    let (a, b) = failing_pair().await;
    let redis = RedisServer::start(&[]);
    let first = spawn_app_with(Backend::RedisAt(redis.url()), |settings| {
        outage_settings(settings, &a, &b)
    })
    .await;
    let mut sends = Vec::new();
    for n in 0..4 {
        let to = format!("+4915112347{n:03}");
        let sent = first.send(&to).await;
        assert_eq!(sent.status, 201, "{}", sent.body);
        sends.push((to, sent.str("id").to_owned()));
    }
    wait_for_both_failures(&first, &sends[0].1).await;
    // A simulated SIGKILL: the first gateway's workers stop where they are, nothing drained.
    first.app.shutdown(Duration::ZERO).await;
    recover(&a).await;
    recover(&b).await;

    let prefix = first.prefix.clone();
    let second = spawn_app_with(Backend::RedisAt(redis.url()), |settings| {
        outage_settings(settings, &a, &b);
        settings.store.key_prefix = prefix;
    })
    .await;
    // Its clock starts later than the first one's: moved on, the messages' next tries are due.
    second.clock.advance(Duration::from_secs(31));
    // The second gateway answers for the first one's account: same Redis, same prefix.
    let mut second = second;
    second.key = first.key.clone();
    second.account_id = first.account_id.clone();
    every_code_approves(&second, &a, &b, &sends).await;
    let delivered: Vec<String> = [received(&a).await, received(&b).await]
        .concat()
        .iter()
        .filter_map(|message| message["message_id"].as_str().map(str::to_owned))
        .collect();
    let distinct: HashSet<&String> = delivered.iter().collect();
    assert_eq!(
        distinct.len(),
        sends.len(),
        "every message once: {delivered:?}"
    );
    second.stop().await;
}

pub(crate) fn twilio_signature(url: &str, params: &[(&str, &str)], token: &str) -> String {
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
    provider.auth_token = Some(Secret::from("twilio-auth-token"));
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
    // Ten thousand codes never approved: the pumping guard would rightly pause them.
    crate::abuse::safe_list(&app, "+49151").await;
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

/// A gateway process (`spawn_gateway_process`) once it answers, with an account and a service
/// key made through its API, and `count` verifications sent by it to `+49151123<series><n:03>`:
/// the process, and the ids of the sends in order.
async fn child_that_sent(
    redis: &RedisServer,
    prefix: &str,
    provider: &MockServer,
    series: &str,
    count: usize,
) -> (Child, Vec<String>) {
    let port = free_port(false);
    let child = spawn_gateway_process(redis, prefix, provider, port);
    let base = format!("http://127.0.0.1:{port}");
    let http = crate::helpers::http_client();
    let deadline = Instant::now() + Duration::from_secs(20);
    while http.get(format!("{base}/readyz")).send().await.is_err() {
        assert!(Instant::now() < deadline, "the child gateway did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let account_id = reply(
        http.post(format!("{base}/v1/accounts"))
            .bearer_auth(ROOT_KEY)
            .json(&json!({"name": "Acme"}))
            .send()
            .await
            .unwrap(),
    )
    .await
    .str("id")
    .to_owned();
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
    let mut ids = Vec::with_capacity(count);
    for n in 0..count {
        let sent = reply(
            http.post(format!("{base}/v1/verifications"))
                .bearer_auth(&key)
                .json(&json!({"to": format!("+49151123{series}{n:03}")}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(sent.status, 201, "{}", sent.body);
        ids.push(sent.str("id").to_owned());
    }
    (child, ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_between_read_and_ack_loses_no_message() {
    const SENDS: usize = 20;
    let redis = RedisServer::start(&[]);
    let prefix = crate::helpers::unique_prefix();
    // The child's provider takes the messages but never answers in time: the child is killed
    // with all of them read and none acknowledged.
    let stalled = provider_answering(200, Duration::from_secs(60)).await;
    let (mut child, _) = child_that_sent(&redis, &prefix, &stalled, "49", SENDS).await;
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

/// Polls until `server` has a message to `to`.
async fn wait_for_message_to(server: &MockServer, to: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        if let Some(message) = received(server)
            .await
            .into_iter()
            .find(|message| message["to"] == to)
        {
            return message;
        }
        assert!(Instant::now() < deadline, "no message to {to} arrived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Sends to `to` with a fresh account (the old one went with Redis's data) and waits for it.
async fn a_send_after_the_loss_is_delivered(app: &mut TestApp, to: &str) {
    let (account_id, key) = app.create_account_with_key("service").await;
    app.account_id = account_id;
    app.key = key;
    let sent = app.send(to).await;
    assert_eq!(sent.status, 201, "{}", sent.body);
    wait_for_message_to(&app.provider, to, Duration::from_secs(20)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_redis_loses_its_data_every_later_send_is_delivered_without_a_restart() {
    let mut redis = RedisServer::start(&[]);
    let mut app = spawn_app_with(Backend::RedisAt(redis.url()), |settings| {
        settings.dispatch.poll_interval = Duration::from_millis(20);
    })
    .await;
    app.send("+4915112346001").await;
    wait_for_message_to(&app.provider, "+4915112346001", Duration::from_secs(10)).await;

    // FLUSHALL: streams and consumer groups are gone.
    assert!(redis.command(&["FLUSHALL"]).starts_with("+OK"));
    for n in 2..5 {
        a_send_after_the_loss_is_delivered(&mut app, &format!("+491511234600{n}")).await;
    }

    // A restart with nothing saved: Redis comes back empty.
    let _ = redis.command(&["SHUTDOWN", "NOSAVE"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", redis.port)).is_ok() {
        assert!(Instant::now() < deadline, "redis did not stop");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    redis.restart();
    assert!(redis.command(&["DBSIZE"]).contains(":0"), "restarted empty");
    let deadline = Instant::now() + Duration::from_secs(20);
    // The gateway reconnects by itself; the first request may still meet the dead connection.
    while app
        .request(
            reqwest::Method::POST,
            "/v1/accounts",
            Some(ROOT_KEY),
            Some(json!({"name": "Probe"})),
        )
        .await
        .status
        != 201
    {
        assert!(Instant::now() < deadline, "the gateway did not reconnect");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for n in 5..8 {
        a_send_after_the_loss_is_delivered(&mut app, &format!("+491511234600{n}")).await;
    }
    assert!(
        !app.metrics()
            .await
            .contains("otpgate_outbox_groups_recreated_total 0"),
        "the recreations are counted"
    );
    app.stop().await;
}

/// Numbers whose shard is not `shard`, and one whose shard is.
fn numbers_around_shard(shard: u8, count: usize) -> (Vec<String>, String) {
    let shard_of = |to: &str| otpgate::phone::PhoneNumber::parse(to).unwrap().shard();
    let candidates = (0..10_000).map(|n| format!("+49151123{n:05}"));
    let others: Vec<String> = candidates
        .clone()
        .filter(|to| shard_of(to) != shard)
        .take(count)
        .collect();
    let same = candidates
        .into_iter()
        .find(|to| shard_of(to) == shard)
        .unwrap();
    (others, same)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_that_cannot_be_read_delays_only_its_own_messages_and_makes_the_instance_unready() {
    const BROKEN: u8 = 7;
    let redis = RedisServer::start(&[]);
    let app = spawn_app_with(Backend::RedisAt(redis.url()), |settings| {
        settings.dispatch.poll_interval = Duration::from_millis(20);
        settings.dispatch.outbox_unready_after = Duration::from_secs(10);
    })
    .await;
    let (others, same) = numbers_around_shard(BROKEN, 8);
    // The broken shard's message is queued first, then its stream is replaced by a string: every
    // read of that shard now fails (WRONGTYPE) while the other 63 are fine.
    let stuck = app.send(&same).await;
    assert_eq!(stuck.status, 201, "{}", stuck.body);
    wait_for_message_to(&app.provider, &same, Duration::from_secs(10)).await;
    let stream = format!("{}:{{s{BROKEN:02}}}:o", app.prefix);
    assert!(redis.command(&["DEL", &stream]).starts_with(':'));
    assert!(redis
        .command(&["SET", &stream, "not a stream"])
        .starts_with("+OK"));
    tokio::time::sleep(Duration::from_millis(200)).await;

    let started = Instant::now();
    for to in &others {
        let sent = app.send(to).await;
        assert_eq!(sent.status, 201, "{}", sent.body);
    }
    for to in &others {
        wait_for_message_to(&app.provider, to, Duration::from_secs(5)).await;
    }
    println!(
        "{} messages of healthy shards delivered {:?} after the first send, one shard failing",
        others.len(),
        started.elapsed()
    );
    let messages = app.messages().await;
    let ids: Vec<&str> = messages
        .iter()
        .filter_map(|message| message["message_id"].as_str())
        .collect();
    let distinct: HashSet<&&str> = ids.iter().collect();
    assert_eq!(distinct.len(), ids.len(), "no message sent twice");

    // Within the window: still ready. Past it: 503, saying why.
    let ready = app
        .request(reqwest::Method::GET, "/readyz", None, None)
        .await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    app.clock.advance(Duration::from_secs(11));
    let unready = app
        .request(reqwest::Method::GET, "/readyz", None, None)
        .await;
    unready.assert_problem(503, "unavailable");
    assert!(
        unready.body["detail"].as_str().unwrap().contains("outbox"),
        "{}",
        unready.body
    );
    assert!(app
        .metrics()
        .await
        .contains("otpgate_outbox_read_failing_seconds"));

    // The shard heals (its key is gone: the worker recreates stream and group): ready again.
    assert!(redis.command(&["DEL", &stream]).starts_with(':'));
    let deadline = Instant::now() + Duration::from_secs(15);
    while app
        .request(reqwest::Method::GET, "/readyz", None, None)
        .await
        .status
        != 200
    {
        assert!(
            Instant::now() < deadline,
            "still unready after the shard healed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_provider_answer_fails_over_and_an_unprintable_vendor_id_is_not_kept() {
    // "huge" answers 200 with 4 MiB; "odd" takes the message but names it with a newline.
    let huge = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(
            format!(r#"{{"id":"{}"}}"#, "h".repeat(4 * 1024 * 1024)),
            "application/json",
        ))
        .mount(&huge)
        .await;
    let odd = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "abc\r\nSET x 1"})))
        .mount(&odd)
        .await;
    let long = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "L".repeat(129)})))
        .mount(&long)
        .await;
    let (ph, po, pl) = (
        http_provider("huge", &huge, 5000),
        http_provider("odd", &odd, 2000),
        http_provider("long", &long, 2000),
    );
    let app = spawn_app_with(Backend::Redis, |settings| {
        failover(settings, vec![ph, po, pl], &["huge", "odd"]);
        settings.dispatch.routes.push(RouteSettings {
            prefix: "+33".into(),
            channel: None,
            providers: vec!["long".into()],
        });
    })
    .await;
    let id = app.send("+4915112349501").await.str("id").to_owned();
    let accepted = wait_for_attempt(&app, &id, "accepted").await;
    assert_eq!(accepted["provider"], "odd");
    assert!(accepted.get("provider_message_id").is_none(), "{accepted}");
    assert_eq!(accepted["error"], "invalid id");
    let failed = wait_for_attempt(&app, &id, "provider_error").await;
    assert_eq!(failed["provider"], "huge");
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("over 65536 bytes"),
        "{failed}"
    );

    let other = app.send("+33612345678").await.str("id").to_owned();
    let accepted = wait_for_attempt(&app, &other, "accepted").await;
    assert_eq!(accepted["provider"], "long");
    assert!(accepted.get("provider_message_id").is_none(), "{accepted}");
    assert_eq!(accepted["error"], "invalid id");

    // Both count as sent: nothing is tried again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.clock.advance(Duration::from_secs(60));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(received(&odd).await.len(), 1);
    assert_eq!(received(&long).await.len(), 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_over_the_provider_body_limit_is_refused_unread() {
    let vonage_api = MockServer::start().await;
    let mut provider = ProviderSettings::new("vonage", AdapterKind::Vonage);
    provider.base_url = Some(vonage_api.uri());
    provider.api_key = Some(Secret::from("k"));
    provider.api_secret = Some(Secret::from("s"));
    provider.from = Some("Acme".into());
    let app = spawn_app_with(Backend::Memory, |settings| {
        failover(settings, vec![provider], &["vonage"]);
        settings.dispatch.receipt_token = "receipt-token".into();
    })
    .await;
    let url = format!("{}/v1/receipts/vonage?token=receipt-token", app.address);
    let post = |body: String| {
        let request = app
            .http
            .post(&url)
            .header("content-type", "application/json")
            .body(body);
        async move { reply(request.send().await.unwrap()).await }
    };
    // 80 KiB announced: under the API-wide receipt limit of old, over the 64 KiB provider body
    // limit. Only the head is sent, so the answer proves the body was refused unread (a client
    // still writing 80 KiB could meet the closed connection before reading the answer).
    let address = app.address.trim_start_matches("http://");
    let mut socket = tokio::net::TcpStream::connect(address).await.unwrap();
    let head = format!(
        "POST /v1/receipts/vonage?token=receipt-token HTTP/1.1\r\nHost: {address}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        80 * 1024
    );
    tokio::io::AsyncWriteExt::write_all(&mut socket, head.as_bytes())
        .await
        .unwrap();
    let mut answer = vec![0u8; 4096];
    let read = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::AsyncReadExt::read(&mut socket, &mut answer),
    )
    .await
    .expect("answered before the body")
    .unwrap();
    let answer = String::from_utf8_lossy(&answer[..read]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.contains("urn:otpgate:problem:payload-too-large"),
        "{answer}"
    );
    let small = post(r#"{"messageId":"unknown-id","status":"delivered"}"#.to_owned()).await;
    assert_eq!(small.status, 200, "{}", small.body);
    app.stop().await;
}

/// `INFO commandstats` as (command, calls).
fn command_calls(redis: &RedisServer) -> HashMap<String, u64> {
    redis
        .command(&["INFO", "commandstats"])
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("cmdstat_")?;
            let (name, stats) = rest.split_once(':')?;
            let calls = stats.strip_prefix("calls=")?.split(',').next()?;
            Some((name.to_owned(), calls.parse().ok()?))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivered_messages_are_acknowledged_in_batches_not_one_call_each() {
    const SENDS: usize = 200;
    let redis = RedisServer::start(&[]);
    let prefix = crate::helpers::unique_prefix();
    // An instance without workers queues the messages; one with workers then drains them, and
    // its Redis calls alone are counted.
    let api = spawn_app_with(Backend::RedisAt(redis.url()), |settings| {
        settings.store.key_prefix = prefix.clone();
        settings.dispatch.workers = false;
    })
    .await;
    crate::abuse::safe_list(&api, "+49151").await;
    let statuses: Vec<u16> = stream::iter(0..SENDS)
        .map(|n| {
            let api = &api;
            async move {
                api.send(&format!("+49151{:08}", 20_000_000 + n))
                    .await
                    .status
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    assert!(statuses.iter().all(|status| *status == 201), "{statuses:?}");
    api.stop().await;
    assert_eq!(queued_entries(&redis, &prefix), SENDS as u64);

    let _ = redis.command(&["CONFIG", "RESETSTAT"]);
    let sink = provider_answering(200, Duration::ZERO).await;
    let worker = spawn_app_with(Backend::RedisAt(redis.url()), |settings| {
        settings.store.key_prefix = prefix.clone();
        settings.dispatch.http_url = format!("{}/messages", sink.uri());
    })
    .await;
    wait_for(&sink, SENDS, Duration::from_secs(60)).await;
    // The stop flushes what is still buffered.
    worker.stop().await;
    assert_eq!(
        queued_entries(&redis, &prefix),
        0,
        "every message acknowledged"
    );
    let calls = command_calls(&redis);
    let per_message = |name: &str| calls.get(name).copied().unwrap_or(0) as f64 / SENDS as f64;
    let mut report: Vec<(&String, &u64)> = calls.iter().collect();
    report.sort();
    println!(
        "worker's Redis calls per delivered message ({SENDS} queued messages drained, INFO commandstats, calls inside scripts included): {:?}",
        report
            .iter()
            .map(|(name, count)| format!("{name} {:.2}", **count as f64 / SENDS as f64))
            .collect::<Vec<_>>()
    );
    assert!(
        per_message("xack") <= 0.5,
        "acknowledgements go in batches: {} XACK per message",
        per_message("xack")
    );
    assert!(
        per_message("xdel") <= 0.5,
        "deletions go in batches: {} XDEL per message",
        per_message("xdel")
    );
}

/// XACK calls Redis refused (`rejected_calls` in `INFO commandstats`).
fn rejected_acks(redis: &RedisServer) -> u64 {
    redis
        .command(&["INFO", "commandstats"])
        .lines()
        .find_map(|line| line.strip_prefix("cmdstat_xack:"))
        .and_then(|stats| stats.split("rejected_calls=").nth(1))
        .and_then(|rest| rest.split(',').next())
        .and_then(|count| count.trim().parse().ok())
        .unwrap_or(0)
}

/// Entries left in the outbox streams of `prefix` (every shard).
fn queued_entries(redis: &RedisServer, prefix: &str) -> u64 {
    (0..64)
        .map(|shard| {
            let reply = redis.command(&["XLEN", &format!("{prefix}:{{s{shard:02}}}:o")]);
            reply
                .trim()
                .strip_prefix(':')
                .and_then(|count| count.parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_with_its_acknowledgements_still_buffered_sends_nothing_twice() {
    const SENDS: usize = 20;
    let redis = RedisServer::start(&[]);
    let prefix = crate::helpers::unique_prefix();
    // Redis refuses XACK: the child's provider takes every message and its sent mark is stored,
    // but no acknowledgement leaves the buffer, which dies with the child.
    assert!(redis
        .command(&["ACL", "SETUSER", "default", "-xack"])
        .starts_with("+OK"));
    let first = provider_answering(200, Duration::ZERO).await;
    let (mut child, _) = child_that_sent(&redis, &prefix, &first, "48", SENDS).await;
    wait_for(&first, SENDS, Duration::from_secs(20)).await;
    // The child tried to flush (and was refused): its acknowledgements are only in its buffer.
    let deadline = Instant::now() + Duration::from_secs(10);
    while rejected_acks(&redis) == 0 {
        assert!(Instant::now() < deadline, "the child never flushed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        queued_entries(&redis, &prefix),
        SENDS as u64,
        "nothing was acknowledged before the kill"
    );
    assert!(redis
        .command(&["ACL", "SETUSER", "default", "+xack"])
        .starts_with("+OK"));

    // A healthy instance reclaims the dead worker's entries, finds each sent mark, and only
    // acknowledges.
    let second = provider_answering(200, Duration::ZERO).await;
    let second_url = format!("{}/messages", second.uri());
    let app = spawn_app_with(Backend::RedisAt(redis.url()), |settings| {
        settings.store.key_prefix = prefix.clone();
        settings.dispatch.http_url = second_url;
        settings.dispatch.reclaim_idle = Duration::from_millis(300);
        settings.dispatch.poll_interval = Duration::from_millis(20);
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while queued_entries(&redis, &prefix) > 0 {
        assert!(
            Instant::now() < deadline,
            "the reclaimed entries were not acknowledged"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(&format!("otpgate_messages_redelivered_total {SENDS}")),
        "every entry was reclaimed:\n{metrics}"
    );
    assert!(
        received(&second).await.is_empty(),
        "no message was sent a second time"
    );
    let first_ids: HashSet<String> = received(&first)
        .await
        .iter()
        .filter_map(|m| m["message_id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(first_ids.len(), SENDS, "each message was sent exactly once");
    app.stop().await;
}
