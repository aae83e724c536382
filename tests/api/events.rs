//! Webhooks out through the API: registration and its SSRF rules, and end to end from a send
//! and a check to a receiver on loopback that checks every signature with its own
//! implementation of the Standard Webhooks spec (tests/common/webhook_receiver.rs). Time moves
//! the gateway's clock; the delivery worker polls every 20 ms of real time.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use otpgate::dispatch::providers::{AdapterKind, ProviderSettings};
use otpgate::secret::Secret;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::dispatch::{failover, twilio_signature, wait_for_attempt};
use crate::helpers::{spawn_app_with, spawn_peer_with, Backend, Reply, TestApp};
use crate::on_every_store;
use crate::webhook_receiver::{Received, Receiver};

const TO: &str = "+4915112345678";

/// An app whose webhooks may point at loopback over http, with a fast worker, an owner key,
/// and a receiver with a webhook of `events` pointing at it.
struct Hooked {
    app: TestApp,
    owner: String,
    receiver: Receiver,
    secret: Arc<Mutex<Option<String>>>,
    webhook: String,
}

fn loopback(settings: &mut otpgate::config::Settings) {
    settings.events.allow_http_loopback = true;
    settings.events.poll_interval = Duration::from_millis(20);
}

impl Hooked {
    async fn new(backend: Backend, events: Value) -> Self {
        Self::with(backend, events, |_| {}).await
    }

    async fn with(
        backend: Backend,
        events: Value,
        adjust: impl FnOnce(&mut otpgate::config::Settings),
    ) -> Self {
        let app = spawn_app_with(backend, |settings| {
            loopback(settings);
            adjust(settings);
        })
        .await;
        let owner = app.mint_key(&app.account_id, "owner").await;
        let secret = Arc::new(Mutex::new(None));
        let receiver = Receiver::start(secret.clone()).await;
        let created = as_owner(
            &app,
            &owner,
            Method::POST,
            "/v1/webhooks",
            Some(json!({
                "url": receiver.url(), "events": events,
            })),
        )
        .await;
        assert_eq!(created.status, 201, "{}", created.body);
        *secret.lock().unwrap() = Some(created.str("secret").to_owned());
        let webhook = created.str("id").to_owned();
        Self {
            app,
            owner,
            receiver,
            secret,
            webhook,
        }
    }

    /// A call of this webhook's own routes (`suffix`: "", "/test", "/deliveries").
    async fn call(&self, method: Method, suffix: &str) -> Reply {
        let path = format!("/v1/webhooks/{}{suffix}", self.webhook);
        as_owner(&self.app, &self.owner, method, &path, None).await
    }

    /// Waits until the receiver got `count` requests (the worker is asynchronous).
    async fn received(&self, count: usize) -> Vec<Received> {
        eventually(|| async {
            let requests = self.receiver.requests();
            (requests.len() >= count).then_some(requests)
        })
        .await
    }

    /// The scrape of `/metrics` counts `count` deliveries of `outcome`.
    async fn assert_deliveries_counted(&self, outcome: &str, count: u64) {
        let line = format!("otpgate_webhook_deliveries_total{{outcome=\"{outcome}\"}} {count}");
        // The worker counts a delivery once the receiver has answered, so the scrape may lag
        // what the receiver saw: wait for the line, and show the last scrape if it never comes.
        let last = Mutex::new(String::new());
        waited_for(
            || format!("no '{line}' in\n{}", last.lock().unwrap()),
            || async {
                let scrape = self.app.metrics().await;
                let found = scrape.contains(&line).then_some(());
                *last.lock().unwrap() = scrape;
                found
            },
        )
        .await;
    }

    /// Waits until the webhook's log satisfies `done`.
    async fn deliveries_until(&self, done: impl Fn(&Value) -> bool) -> Value {
        eventually(|| async {
            let log = self.call(Method::GET, "/deliveries").await;
            assert_eq!(log.status, 200, "{}", log.body);
            done(&log.body).then_some(log.body)
        })
        .await
    }
}

/// The first `Some` of `probe`, polled every 5 ms of real time for at most 10 s: it waits for
/// asynchronous work (the worker, the receiver), never for time to pass.
async fn eventually<T, F: std::future::Future<Output = Option<T>>>(probe: impl FnMut() -> F) -> T {
    waited_for(|| "it never happened".to_owned(), probe).await
}

/// `eventually`, failing with `what` (read when the time is up) instead of a bare message.
async fn waited_for<T, F: std::future::Future<Output = Option<T>>>(
    what: impl Fn() -> String,
    mut probe: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(Instant::now() < deadline, "{}", what());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn as_owner(
    app: &TestApp,
    owner: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Reply {
    app.request(method, path, Some(owner), body).await
}

fn event_type(received: &Received) -> String {
    let event: Value = serde_json::from_str(&received.body).unwrap();
    event["type"].as_str().unwrap().to_owned()
}

on_every_store!(a_send_and_a_check_reach_the_receiver_in_order_signed_and_masked);

async fn a_send_and_a_check_reach_the_receiver_in_order_signed_and_masked(backend: Backend) {
    let hooked = Hooked::new(backend, json!(["*"])).await;
    let sent = hooked.app.send(TO).await;
    assert_eq!(sent.status, 201, "{}", sent.body);
    let id = sent.str("id").to_owned();
    let code = hooked.app.code_sent_to(TO, 1).await;
    // The message's acceptance is emitted by the worker that sent it: waited for, so that the
    // check comes after it as it would for a person typing the code.
    hooked.received(2).await;
    let checked = hooked.app.check_id(&id, &code).await;
    assert_eq!(checked.body["status"], "approved", "{}", checked.body);
    let received = hooked.received(3).await;
    let types: Vec<String> = received.iter().map(event_type).collect();
    assert_eq!(
        types,
        [
            "io.otpgate.verification.created",
            "io.otpgate.message.accepted",
            "io.otpgate.verification.approved",
        ]
    );
    for request in &received {
        assert!(request.signature_valid, "{}", request.body);
        assert_eq!(request.subject, id);
        assert!(!request.body.contains("4915112345678"), "{}", request.body);
        assert!(!request.body.contains(&code), "{}", request.body);
        let event: Value = serde_json::from_str(&request.body).unwrap();
        assert_eq!(event["data"]["account_id"], hooked.app.account_id.as_str());
        assert_eq!(event["data"]["to"]["calling_code"], 49);
    }
    let ids: std::collections::HashSet<&str> =
        received.iter().map(|r| r.webhook_id.as_str()).collect();
    assert_eq!(ids.len(), 3, "each event has its own webhook-id");
    hooked.assert_deliveries_counted("delivered", 3).await;
}

on_every_store!(a_receiver_answering_500_then_200_gets_the_event_exactly_once_more);

async fn a_receiver_answering_500_then_200_gets_the_event_exactly_once_more(backend: Backend) {
    let hooked = Hooked::new(backend, json!(["*"])).await;
    hooked.receiver.answer(&[500]);
    let test = hooked.call(Method::POST, "/test").await;
    assert_eq!(test.status, 202, "{}", test.body);
    hooked.received(1).await;
    hooked.app.clock.advance(Duration::from_secs(5));
    let received = hooked.received(2).await;
    assert_eq!(received[0].webhook_id, received[1].webhook_id);
    assert_eq!(received[0].webhook_id, test.str("event_id"));
    // Delivered and gone from the queue: nothing is left to send again.
    let log = hooked
        .deliveries_until(|log| {
            log["queued"] == 0 && log["attempts"].as_array().unwrap().len() == 2
        })
        .await;
    assert_eq!(log["attempts"][0]["outcome"], "delivered");
    assert_eq!(log["attempts"][0]["attempt"], 2);
    assert_eq!(log["attempts"][1]["outcome"], "failed");
    assert_eq!(log["attempts"][1]["status_code"], 500);
    assert_eq!(hooked.receiver.requests().len(), 2);
}

on_every_store!(a_receiver_down_for_a_while_gets_every_event_in_order_when_back);

async fn a_receiver_down_for_a_while_gets_every_event_in_order_when_back(backend: Backend) {
    let mut hooked = Hooked::new(backend, json!(["io.otpgate.verification.created"])).await;
    hooked.receiver.stop();
    let mut ids = Vec::new();
    for n in 0..3 {
        let sent = hooked.app.send(&format!("+49151123456{n:02}")).await;
        assert_eq!(sent.status, 201, "{}", sent.body);
        ids.push(sent.str("id").to_owned());
    }
    // The first attempt failed (nothing listens); the others wait behind it.
    hooked
        .deliveries_until(|log| log["queued"] == 3 && log["attempts"][0]["error"] == "connect")
        .await;
    hooked.receiver.restart(hooked.secret.clone()).await;
    hooked.app.clock.advance(Duration::from_secs(5));
    let received = hooked.received(3).await;
    let subjects: Vec<&str> = received.iter().map(|r| r.subject.as_str()).collect();
    assert_eq!(subjects, ids.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(received.iter().all(|r| r.signature_valid));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_queued_in_redis_by_a_gateway_that_is_gone_are_delivered_by_a_new_one() {
    // An API-only instance queues; it goes away before anything is delivered.
    let hooked = Hooked::with(
        Backend::Redis,
        json!(["io.otpgate.verification.created"]),
        |s| {
            s.events.workers = false;
        },
    )
    .await;
    let mut ids = Vec::new();
    for n in 0..3 {
        let sent = hooked.app.send(&format!("+49151123457{n:02}")).await;
        ids.push(sent.str("id").to_owned());
    }
    hooked.deliveries_until(|log| log["queued"] == 3).await;
    let Hooked { app, receiver, .. } = hooked;
    // The new instance shares the store, the prefix and the clock; the first one goes away.
    let peer = spawn_peer_with(&app, Backend::Redis, loopback).await;
    app.stop().await;
    eventually(|| async { (receiver.requests().len() >= 3).then_some(()) }).await;
    let requests = receiver.requests();
    assert!(requests.iter().all(|r| r.signature_valid));
    let subjects: Vec<String> = requests.into_iter().map(|r| r.subject).collect();
    assert_eq!(subjects, ids);
    peer.stop().await;
}

#[tokio::test]
async fn urls_that_are_not_https_or_reach_inside_are_refused_at_registration() {
    let app = spawn_app_with(Backend::Memory, |_| {}).await;
    let owner = app.mint_key(&app.account_id, "owner").await;
    for (url, rule) in [
        ("https://10.0.0.5/hook", "webhook-target-not-public"),
        (
            "https://169.254.169.254/latest/meta-data",
            "webhook-target-not-public",
        ),
        ("https://[::1]/hook", "webhook-target-not-public"),
        ("https://localhost/hook", "webhook-target-not-public"),
        ("http://hooks.example.com/", "webhook-url-must-be-https"),
        (
            "https://user:pw@hooks.example.com/",
            "webhook-url-malformed",
        ),
    ] {
        let refused = as_owner(
            &app,
            &owner,
            Method::POST,
            "/v1/webhooks",
            Some(json!({"url": url})),
        )
        .await;
        refused.assert_problem(422, "refused");
        assert_eq!(refused.body["rule"], rule, "{url}: {}", refused.body);
    }
    let unknown = as_owner(
        &app,
        &owner,
        Method::POST,
        "/v1/webhooks",
        Some(json!({
            "url": "https://93.184.216.34/hook", "events": ["io.otpgate.nope"],
        })),
    )
    .await;
    unknown.assert_problem(400, "invalid-request");
    // A service key runs logins; it does not manage webhooks.
    let service = app
        .post("/v1/webhooks", json!({"url": "https://93.184.216.34/hook"}))
        .await;
    service.assert_problem(403, "forbidden");
    let listed = as_owner(&app, &owner, Method::GET, "/v1/webhooks", None).await;
    assert_eq!(listed.body["webhooks"], json!([]));
}

#[tokio::test]
async fn a_webhook_is_listed_without_its_secret_audited_and_removed() {
    let app = spawn_app_with(Backend::Memory, |_| {}).await;
    let owner = app.mint_key(&app.account_id, "admin").await;
    let created = as_owner(
        &app,
        &owner,
        Method::POST,
        "/v1/webhooks",
        Some(json!({
            "url": "https://93.184.216.34/hook?token=abc",
            "events": ["io.otpgate.verification.approved"],
        })),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert!(created.str("secret").starts_with("whsec_"));
    let id = created.str("id");
    let path = format!("/v1/webhooks/{id}");
    let webhook = |method| as_owner(&app, &owner, method, &path, None);
    let read = webhook(Method::GET).await;
    assert_eq!(
        read.body["events"],
        json!(["io.otpgate.verification.approved"])
    );
    assert!(read.body.get("secret").is_none(), "{}", read.body);
    let listed = as_owner(&app, &owner, Method::GET, "/v1/webhooks", None).await;
    assert_eq!(listed.body["webhooks"][0]["id"], id);
    assert!(listed.body["webhooks"][0].get("secret").is_none());
    let removed = webhook(Method::DELETE).await;
    assert_eq!(removed.status, 200, "{}", removed.body);
    let gone = webhook(Method::GET).await;
    gone.assert_problem(404, "not-found");
    let audit = as_owner(&app, &owner, Method::GET, "/v1/audit", None).await;
    let actions: Vec<&str> = audit.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions[..2], ["webhook.deleted", "webhook.created"]);
    let created_entry = &audit.body["entries"][1];
    assert_eq!(
        created_entry["details"]["url"], "https://93.184.216.34",
        "only the origin"
    );
}

on_every_store!(the_deliveries_show_each_attempt_and_the_dead_letter_after_the_schedule);

async fn the_deliveries_show_each_attempt_and_the_dead_letter_after_the_schedule(backend: Backend) {
    let hooked = Hooked::with(backend, json!(["*"]), |settings| {
        settings.events.give_up_after = Duration::from_secs(10);
    })
    .await;
    hooked.receiver.answer(&[500, 503, 500, 500]);
    let test = hooked.call(Method::POST, "/test").await;
    hooked.received(1).await;
    // Second attempt after 5 s; the next would be 10 s later, past the 10 s from the first.
    hooked.app.clock.advance(Duration::from_secs(5));
    let log = hooked
        .deliveries_until(|log| {
            log["dead_letters"]
                .as_array()
                .is_some_and(|d| !d.is_empty())
        })
        .await;
    assert_eq!(log["queued"], 0);
    assert_eq!(log["attempts"][0]["outcome"], "dead_lettered");
    assert_eq!(log["attempts"][0]["attempt"], 2);
    assert_eq!(log["attempts"][0]["status_code"], 503);
    assert_eq!(log["attempts"][1]["outcome"], "failed");
    let dead = &log["dead_letters"][0];
    assert_eq!(dead["event_id"], test.str("event_id"));
    assert_eq!(dead["event_type"], "io.otpgate.webhook.test");
    hooked.assert_deliveries_counted("dead_lettered", 1).await;
}

on_every_store!(a_send_refused_by_abuse_protection_is_a_blocked_event_with_its_rule);

async fn a_send_refused_by_abuse_protection_is_a_blocked_event_with_its_rule(backend: Backend) {
    let hooked = Hooked::new(backend, json!(["io.otpgate.verification.blocked"])).await;
    let premium = "+499001234567";
    let refused = hooked.app.send(premium).await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    let received = hooked.received(1).await;
    let event: Value = serde_json::from_str(&received[0].body).unwrap();
    assert_eq!(event["type"], "io.otpgate.verification.blocked");
    assert_eq!(event["data"]["rule"], "number-type");
    assert_eq!(event["data"]["channel"], "sms");
    assert_eq!(event["data"]["to"]["calling_code"], 49);
    assert_eq!(event["subject"], hooked.app.account_id.as_str());
    assert!(received[0].signature_valid);
    assert!(
        !received[0].body.contains("9001234567"),
        "{}",
        received[0].body
    );
    // An admitted send is not a blocked event: nothing more arrives for it.
    assert_eq!(hooked.app.send(TO).await.status, 201);
    assert_eq!(hooked.app.send(premium).await.status, 422);
    assert_eq!(hooked.received(2).await.len(), 2);
}

on_every_store!(receipts_make_one_event_per_new_outcome_of_a_message);

/// A Twilio status callback for `message_sid`, signed as Twilio signs it.
async fn twilio_receipt(app: &TestApp, message_sid: &str, status: &str) {
    let url = format!("{}/v1/receipts/twilio-main", app.address);
    let params = [("MessageSid", message_sid), ("MessageStatus", status)];
    let answer = app
        .http
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header(
            "x-twilio-signature",
            twilio_signature(&url, &params, "twilio-auth-token"),
        )
        .body(format!("MessageSid={message_sid}&MessageStatus={status}"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
}

async fn receipts_make_one_event_per_new_outcome_of_a_message(backend: Backend) {
    const SID: &str = "AC00000000000000000000000000000001";
    const DELIVERED: &str = "SM11111111111111111111111111111111";
    const UNDELIVERED: &str = "SM22222222222222222222222222222222";
    let twilio = MockServer::start().await;
    for message_sid in [DELIVERED, UNDELIVERED] {
        Mock::given(method("POST"))
            .and(path(format!("/2010-04-01/Accounts/{SID}/Messages.json")))
            .respond_with(
                ResponseTemplate::new(201)
                    .set_body_json(json!({"sid": message_sid, "status": "queued"})),
            )
            .up_to_n_times(1)
            .mount(&twilio)
            .await;
    }
    let mut provider = ProviderSettings::new("twilio-main", AdapterKind::Twilio);
    provider.base_url = Some(twilio.uri());
    provider.account_sid = Some(SID.into());
    provider.auth_token = Some(Secret::from("twilio-auth-token"));
    provider.from = Some("+15017122661".into());
    let events = json!(["io.otpgate.message.delivered", "io.otpgate.message.failed"]);
    let hooked = Hooked::with(backend, events, |settings| {
        failover(settings, vec![provider], &["twilio-main"])
    })
    .await;
    let mut ids = Vec::new();
    for (to, message_sid) in [(TO, DELIVERED), ("+4915112345679", UNDELIVERED)] {
        let sent = hooked.app.send(to).await;
        assert_eq!(sent.status, 201, "{}", sent.body);
        let id = sent.str("id").to_owned();
        let attempt = wait_for_attempt(&hooked.app, &id, "accepted").await;
        assert_eq!(attempt["provider_message_id"], message_sid);
        ids.push(id);
    }
    // Sent, delivered, delivered again (a retried callback), read: one delivery. Then the other
    // message's failure. Events of one webhook arrive in order, so a second delivered event
    // would arrive before the failure.
    for status in ["sent", "delivered", "delivered", "read"] {
        twilio_receipt(&hooked.app, DELIVERED, status).await;
    }
    twilio_receipt(&hooked.app, UNDELIVERED, "undelivered").await;
    let received = hooked.received(2).await;
    let events: Vec<Value> = received
        .iter()
        .map(|request| serde_json::from_str(&request.body).unwrap())
        .collect();
    assert_eq!(events[0]["type"], "io.otpgate.message.delivered");
    assert_eq!(events[0]["subject"], ids[0].as_str());
    assert_eq!(events[1]["type"], "io.otpgate.message.failed");
    assert_eq!(events[1]["subject"], ids[1].as_str());
    assert_eq!(events[1]["data"]["reason"], "undelivered");
    for (request, event) in received.iter().zip(&events) {
        assert!(request.signature_valid, "{}", request.body);
        assert_eq!(event["data"]["provider"], "twilio-main");
        assert_eq!(event["data"]["channel"], "sms");
        assert_eq!(event["data"]["to"]["calling_code"], 49);
        assert!(!request.body.contains("4915112345"), "{}", request.body);
    }
}

on_every_store!(a_workflow_fallback_goes_out_as_one_event);

async fn a_workflow_fallback_goes_out_as_one_event(backend: Backend) {
    let hooked = Hooked::new(backend, json!(["io.otpgate.verification.fallback"])).await;
    let app = &hooked.app;
    let policy = json!({"channels": ["sms", "whatsapp"]});
    let allowed = as_owner(app, &hooked.owner, Method::PUT, "/v1/policy", Some(policy)).await;
    assert_eq!(allowed.status, 200, "{}", allowed.body);
    let body = json!({"to": TO, "channels": ["whatsapp", "sms"], "fallback_after_seconds": 30});
    let sent = app.post("/v1/verifications", body).await;
    assert_eq!(sent.status, 201, "{}", sent.body);
    app.wait_for_messages(1).await;
    app.clock.advance(Duration::from_secs(31));
    app.wait_for_messages(2).await;

    let received = hooked.received(1).await;
    assert_eq!(received.len(), 1, "one event for the one step left");
    assert!(received[0].signature_valid);
    assert_eq!(event_type(&received[0]), "io.otpgate.verification.fallback");
    assert_eq!(received[0].subject, sent.str("id"));
    let event: Value = serde_json::from_str(&received[0].body).unwrap();
    assert_eq!(event["data"]["channel"], "sms", "{event}");
    assert_eq!(event["data"]["reason"], "timeout", "{event}");
    assert!(
        !received[0].body.contains(&TO[1..]),
        "masked: {}",
        received[0].body
    );
}
