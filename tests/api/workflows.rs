//! Ordered channel workflows (issue 17 item 3): one code tried channel by channel, falling back
//! when a step's message fails or is not reported delivered in time; on every store, with the
//! clock moved instead of waiting.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use otpgate::dispatch::model::Channel;
use otpgate::dispatch::providers::{AdapterKind, ProviderSettings};
use otpgate::secret::Secret;
use serde_json::{json, Value};
use wiremock::matchers::{body_partial_json, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::dispatch::{failover, twilio_signature, wait_for_attempt};
use crate::helpers::{
    extract_code, reply, spawn_app, spawn_app_with, spawn_peer, Backend, Reply, TestApp,
};
use crate::on_every_store;
use crate::openapi::assert_matches_schema;
use crate::pin::{decode_quoted_printable, Captured, SmtpSink};

const TO: &str = "+4915112347001";

/// An owner's key of the test account.
async fn owner(app: &TestApp) -> String {
    app.mint_key(&app.account_id, "owner").await
}

async fn put_policy(app: &TestApp, key: &str, body: Value) -> Reply {
    app.request(reqwest::Method::PUT, "/v1/policy", Some(key), Some(body))
        .await
}

/// Allows WhatsApp beside SMS: a new account's policy allows SMS only.
async fn allow_whatsapp(app: &TestApp) {
    let key = owner(app).await;
    let answer = put_policy(app, &key, json!({"channels": ["sms", "whatsapp"]})).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
}

async fn send_workflow(app: &TestApp, to: &str, channels: &[&str], seconds: u32) -> Reply {
    let body = json!({"to": to, "channels": channels, "fallback_after_seconds": seconds});
    app.post("/v1/verifications", body).await
}

async fn workflow_of(app: &TestApp, id: &str) -> Value {
    let read = app.get(&format!("/v1/verifications/{id}")).await;
    assert_eq!(read.status, 200, "{}", read.body);
    read.body["workflow"].clone()
}

/// Polls the verification until its workflow's step `index` has `status`.
async fn wait_for_step(app: &TestApp, id: &str, index: usize, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let workflow = workflow_of(app, id).await;
        if workflow["steps"][index]["status"] == status {
            return workflow;
        }
        assert!(
            Instant::now() < deadline,
            "step {index} never {status}: {workflow}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn fallbacks(metrics: &str, from: &str, to: &str, reason: &str) -> u64 {
    let series = format!(
        "otpgate_verification_fallbacks_total{{from=\"{from}\",to=\"{to}\",reason=\"{reason}\"}} "
    );
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&series))
        .map_or(0, |value| value.trim().parse().unwrap())
}

async fn a_workflow_whose_first_provider_fails_reaches_the_second_channel_with_the_same_code(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    // The provider refuses WhatsApp for good (a 400), and takes SMS.
    Mock::given(method("POST"))
        .and(path("/messages"))
        .and(body_partial_json(json!({"channel": "whatsapp"})))
        .respond_with(ResponseTemplate::new(400).set_body_string("no WhatsApp account"))
        .with_priority(1)
        .mount(&app.provider)
        .await;
    allow_whatsapp(&app).await;
    let started = send_workflow(&app, TO, &["whatsapp", "sms"], 60).await;
    assert_eq!(started.status, 201, "{}", started.body);
    assert_eq!(started.body["channel"], "whatsapp");
    let id = started.str("id").to_owned();

    // No clock moves: the refusal itself brings the fallback forward.
    let messages = app.wait_for_messages(2).await;
    assert_eq!(messages[0]["channel"], "whatsapp");
    assert_eq!(messages[1]["channel"], "sms");
    assert_eq!(messages[1]["to"], TO);
    let code = extract_code(messages[0]["body"].as_str().unwrap());
    assert_eq!(code, extract_code(messages[1]["body"].as_str().unwrap()));
    assert_ne!(messages[0]["message_id"], messages[1]["message_id"]);

    let workflow = wait_for_step(&app, &id, 1, "sent").await;
    assert_eq!(workflow["steps"][0]["channel"], "whatsapp");
    assert_eq!(workflow["steps"][0]["status"], "failed");
    assert_eq!(workflow["steps"][0]["fell_back"], "failed");
    assert_eq!(workflow["steps"][1]["channel"], "sms");
    assert_eq!(
        workflow["steps"][1]["message_id"],
        messages[1]["message_id"]
    );
    let read = app.get(&format!("/v1/verifications/{id}")).await;
    assert_eq!(read.body["channel"], "sms", "the channel now in use");

    let checked = app.check_id(&id, &code).await;
    assert_eq!(checked.status, 200, "{}", checked.body);
    assert_eq!(checked.body["status"], "approved");
    let metrics = app.metrics().await;
    assert_eq!(
        fallbacks(&metrics, "whatsapp", "sms", "failed"),
        1,
        "{metrics}"
    );
    app.stop().await;
}

async fn a_workflow_whose_first_channel_never_reports_delivery_falls_back_after_the_timeout(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    allow_whatsapp(&app).await;
    let started = send_workflow(&app, TO, &["whatsapp", "sms"], 30).await;
    assert_eq!(started.status, 201, "{}", started.body);
    let id = started.str("id").to_owned();
    let first = app.wait_for_messages(1).await;
    assert_eq!(first[0]["channel"], "whatsapp");
    wait_for_step(&app, &id, 0, "sent").await;
    let waiting = workflow_of(&app, &id).await;
    assert_eq!(waiting["fallback_after_seconds"], 30);
    assert_eq!(waiting["steps"][1]["status"], "pending");
    assert!(waiting["steps"][1]["started_at"].is_null(), "{waiting}");

    app.clock.advance(Duration::from_secs(31));
    let messages = app.wait_for_messages(2).await;
    assert_eq!(messages[1]["channel"], "sms");
    let code = extract_code(messages[1]["body"].as_str().unwrap());
    assert_eq!(code, extract_code(first[0]["body"].as_str().unwrap()));
    let workflow = wait_for_step(&app, &id, 1, "sent").await;
    assert_eq!(workflow["steps"][0]["fell_back"], "timeout");
    assert_eq!(
        workflow["steps"][0]["status"], "sent",
        "no receipt, no failure"
    );
    assert!(workflow["steps"][1]["started_at"].is_string(), "{workflow}");

    // The code from either message approves.
    let checked = app.check_id(&id, &code).await;
    assert_eq!(checked.body["status"], "approved", "{}", checked.body);
    let metrics = app.metrics().await;
    assert_eq!(
        fallbacks(&metrics, "whatsapp", "sms", "timeout"),
        1,
        "{metrics}"
    );
    app.stop().await;
}

/// A fake Twilio that answers each message with its own SID, so receipts tell them apart.
struct DistinctSids(AtomicU32);

impl Respond for DistinctSids {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let n = self.0.fetch_add(1, Ordering::Relaxed);
        ResponseTemplate::new(201)
            .set_body_json(json!({"sid": format!("SM{n:032x}"), "status": "queued"}))
    }
}

const SID: &str = "AC00000000000000000000000000000001";
const TOKEN: &str = "twilio-auth-token";

async fn twilio_app(backend: Backend) -> (TestApp, MockServer) {
    let twilio = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("/2010-04-01/Accounts/{SID}/Messages.json")))
        .respond_with(DistinctSids(AtomicU32::new(1)))
        .mount(&twilio)
        .await;
    // Twilio carries SMS and, with a `from` number, calls (never WhatsApp): the workflows here
    // fall back from one to the other on the same provider.
    Mock::given(method("POST"))
        .and(path(format!("/2010-04-01/Accounts/{SID}/Calls.json")))
        .respond_with(DistinctSids(AtomicU32::new(1 << 20)))
        .mount(&twilio)
        .await;
    let mut provider = ProviderSettings::new("twilio-main", AdapterKind::Twilio);
    provider.base_url = Some(twilio.uri());
    provider.account_sid = Some(SID.into());
    provider.auth_token = Some(Secret::from(TOKEN));
    provider.from = Some("+15017122661".into());
    let app = spawn_app_with(backend, |settings| {
        failover(settings, vec![provider], &["twilio-main"])
    })
    .await;
    (app, twilio)
}

/// The numbers the fake Twilio was asked to send to, in order.
async fn twilio_recipients(twilio: &MockServer) -> Vec<String> {
    let requests = twilio.received_requests().await.unwrap_or_default();
    requests
        .iter()
        .filter_map(|request| {
            otpgate::dispatch::receipts::parse_form(&request.body)
                .into_iter()
                .find(|(name, _)| name == "To")
                .map(|(_, to)| to)
        })
        .collect()
}

async fn a_delivered_first_step_does_not_fall_back(backend: Backend) {
    let (app, twilio) = twilio_app(backend).await;
    let key = owner(&app).await;
    let allowed = put_policy(&app, &key, json!({"channels": ["sms", "call"]})).await;
    assert_eq!(allowed.status, 200, "{}", allowed.body);
    let delivered = "+4915112347002";
    let silent = "+4915112347003";
    let subject = send_workflow(&app, delivered, &["sms", "call"], 30).await;
    let subject = subject.str("id").to_owned();
    // The same workflow to another number, never reported delivered: it shows that the
    // fallbacks due at the moved time have fired.
    let witness = send_workflow(&app, silent, &["sms", "call"], 30).await;
    let witness = witness.str("id").to_owned();
    let accepted = wait_for_attempt(&app, &subject, "accepted").await;
    wait_for_attempt(&app, &witness, "accepted").await;

    let message_sid = accepted["provider_message_id"].as_str().unwrap().to_owned();
    let url = format!("{}/v1/receipts/twilio-main", app.address);
    let params = [
        ("MessageSid", message_sid.as_str()),
        ("MessageStatus", "delivered"),
    ];
    let receipt = app
        .http
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-twilio-signature", twilio_signature(&url, &params, TOKEN))
        .body(format!("MessageSid={message_sid}&MessageStatus=delivered"))
        .send()
        .await
        .unwrap();
    assert_eq!(reply(receipt).await.status, 200);
    wait_for_step(&app, &subject, 0, "delivered").await;

    app.clock.advance(Duration::from_secs(31));
    wait_for_step(&app, &witness, 1, "sent").await;
    let recipients = twilio_recipients(&twilio).await;
    assert_eq!(
        recipients.iter().filter(|to| *to == delivered).count(),
        1,
        "{recipients:?}"
    );
    let workflow = workflow_of(&app, &subject).await;
    assert_eq!(workflow["steps"][0]["status"], "delivered");
    assert!(workflow["steps"][0]["fell_back"].is_null(), "{workflow}");
    assert_eq!(workflow["steps"][1]["status"], "skipped", "{workflow}");
    assert!(workflow["steps"][1]["started_at"].is_null(), "{workflow}");
    let metrics = app.metrics().await;
    assert_eq!(
        fallbacks(&metrics, "sms", "call", "timeout"),
        1,
        "{metrics}"
    );
    app.stop().await;
}

async fn bad_workflows_are_refused_and_change_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let send = |body: Value| app.post("/v1/verifications", body);
    let cases = [
        (
            json!({"to": TO, "channel": "sms", "channels": ["sms"]}),
            400,
        ),
        (json!({"to": TO, "channels": []}), 400),
        (json!({"to": TO, "channels": ["sms", "sms"]}), 400),
        (
            json!({"to": TO, "channels": ["sms", "whatsapp", "sms", "whatsapp", "sms", "sms"]}),
            400,
        ),
        (
            json!({"to": TO, "channels": ["sms"], "fallback_after_seconds": 1}),
            400,
        ),
        (
            json!({"to": TO, "channels": ["sms"], "fallback_after_seconds": 601}),
            400,
        ),
        (json!({"to": TO, "fallback_after_seconds": 30}), 400),
        (json!({"to": TO, "channels": ["sms", "fax"]}), 422),
        (json!({"to": TO, "channels": "sms"}), 400),
    ];
    for (body, status) in cases {
        let answer = send(body.clone()).await;
        let slug = if status == 400 {
            "invalid-request"
        } else {
            "refused"
        };
        answer.assert_problem(status, slug);
        if status == 422 {
            assert_eq!(answer.body["rule"], "workflow-channels-known", "{body}");
        }
    }
    // The account's policy allows SMS only: a workflow through WhatsApp is refused by it.
    let refused = send(json!({"to": TO, "channels": ["sms", "whatsapp"]})).await;
    refused.assert_problem(422, "refused");
    assert_eq!(refused.body["rule"], "workflow-channels-allowed-by-policy");

    assert!(app.messages().await.is_empty(), "nothing was sent");
    let first = app.send(TO).await;
    assert_eq!(
        first.status, 201,
        "no verification was pending: {}",
        first.body
    );
    app.stop().await;
}

async fn the_account_default_workflow_serves_sends_that_name_no_channel(backend: Backend) {
    let app = spawn_app(backend).await;
    let key = owner(&app).await;
    // A default through a channel the policy does not allow is refused whole.
    let refused = put_policy(
        &app,
        &key,
        json!({"default_workflow": {"channels": ["whatsapp", "sms"]}}),
    )
    .await;
    refused.assert_problem(422, "refused");
    assert_eq!(refused.body["rule"], "workflow-channels-allowed-by-policy");
    let unchanged = app
        .request(reqwest::Method::GET, "/v1/policy", Some(&key), None)
        .await;
    assert!(
        unchanged.body["default_workflow"].is_null(),
        "{}",
        unchanged.body
    );

    let set = put_policy(
        &app,
        &key,
        json!({"channels": ["sms", "whatsapp"],
               "default_workflow": {"channels": ["whatsapp", "sms"], "fallback_after_seconds": 20}}),
    )
    .await;
    assert_eq!(set.status, 200, "{}", set.body);
    assert_eq!(
        set.body["default_workflow"],
        json!({"channels": ["whatsapp", "sms"], "fallback_after_seconds": 20})
    );
    let started = app.send(TO).await;
    assert_eq!(started.status, 201, "{}", started.body);
    assert_eq!(started.body["channel"], "whatsapp");
    let workflow = workflow_of(&app, started.str("id")).await;
    assert_eq!(workflow["fallback_after_seconds"], 20);
    assert_eq!(workflow["steps"][1]["channel"], "sms");

    // The answers are what the OpenAPI document says.
    let document = app
        .request(reqwest::Method::GET, "/openapi.json", None, None)
        .await
        .body;
    let read = app
        .get(&format!("/v1/verifications/{}", started.str("id")))
        .await;
    assert_matches_schema(&document, "Verification", &read.body, &["valid"]);
    assert_matches_schema(&document, "Workflow", &workflow, &[]);
    assert_matches_schema(
        &document,
        "WorkflowStep",
        &workflow["steps"][0],
        &["fell_back"],
    );
    assert_matches_schema(&document, "Policy", &set.body, &[]);
    assert_matches_schema(
        &document,
        "DefaultWorkflow",
        &set.body["default_workflow"],
        &[],
    );
    // A named channel is one channel, not the default.
    let single = app
        .post(
            "/v1/verifications",
            json!({"to": "+4915112347009", "channel": "sms"}),
        )
        .await;
    let read = app
        .get(&format!("/v1/verifications/{}", single.str("id")))
        .await;
    assert!(read.body.get("workflow").is_none(), "{}", read.body);

    let removed = put_policy(&app, &key, json!({"default_workflow": {"channels": []}})).await;
    assert!(
        removed.body.get("default_workflow").is_none(),
        "{}",
        removed.body
    );
    app.stop().await;
}

// ---- workflows mixing phone channels and e-mail: `to` the number, `email` the address ----

const ADDRESS: &str = "ada@example.com";

/// The `http` fake keeps SMS (as `app.provider`); e-mail goes through an `smtp` provider to
/// `sink`.
fn with_smtp(settings: &mut otpgate::config::Settings, sink: &SmtpSink) {
    let mut http = ProviderSettings::new("http", AdapterKind::Http);
    http.url = Some(settings.dispatch.http_url.clone());
    http.channels = Some(vec![Channel::Sms]);
    let mut smtp = ProviderSettings::new("mail", AdapterKind::Smtp);
    smtp.url = Some(format!("smtp://127.0.0.1:{}?tls=none", sink.port));
    smtp.from = Some("Acme <no-reply@acme.test>".into());
    settings.dispatch.providers = vec![http, smtp];
}

/// An app whose policy allows SMS and e-mail, with its SMTP sink.
async fn mixed_app(backend: Backend) -> (TestApp, SmtpSink) {
    let sink = SmtpSink::start().await;
    let app = spawn_app_with(backend, |settings| with_smtp(settings, &sink)).await;
    let key = owner(&app).await;
    let allowed = put_policy(&app, &key, json!({"channels": ["sms", "email"]})).await;
    assert_eq!(allowed.status, 200, "{}", allowed.body);
    (app, sink)
}

/// The code in a mail's plain-text part.
fn code_in(mail: &Captured) -> String {
    let text = decode_quoted_printable(&mail.data);
    let plain = text
        .split("Content-Type: text/plain")
        .nth(1)
        .expect("a text/plain part");
    extract_code(plain)
}

async fn a_failed_sms_falls_back_to_the_email_address_with_the_same_code(backend: Backend) {
    let (app, sink) = mixed_app(backend).await;
    // The provider refuses the SMS for good: the workflow moves on to e-mail at once.
    Mock::given(method("POST"))
        .and(path("/messages"))
        .and(body_partial_json(json!({"channel": "sms"})))
        .respond_with(ResponseTemplate::new(400).set_body_string("unreachable number"))
        .with_priority(1)
        .mount(&app.provider)
        .await;
    let body = json!({"to": TO, "email": "Ada@Example.COM", "channels": ["sms", "email"],
                      "fallback_after_seconds": 60});
    let started = app.post("/v1/verifications", body).await;
    assert_eq!(started.status, 201, "{}", started.body);
    assert_eq!(started.body["to"], TO, "the number keys the verification");
    assert_eq!(started.body["channel"], "sms");
    let id = started.str("id").to_owned();

    let sms = app.wait_for_messages(1).await;
    assert_eq!(sms[0]["to"], TO);
    let mails = sink.wait_for(1).await;
    assert_eq!(mails[0].recipients, [ADDRESS], "the normalised address");
    let code = code_in(&mails[0]);
    assert_eq!(code, extract_code(sms[0]["body"].as_str().unwrap()));

    let workflow = wait_for_step(&app, &id, 1, "sent").await;
    assert_eq!(workflow["steps"][0]["channel"], "sms");
    assert_eq!(workflow["steps"][0]["fell_back"], "failed");
    assert_eq!(workflow["steps"][0]["to"], "+491*******001");
    assert_eq!(workflow["steps"][1]["channel"], "email");
    assert_eq!(workflow["steps"][1]["to"], "a***@example.com");
    let read = app.get(&format!("/v1/verifications/{id}")).await;
    assert_eq!(read.body["channel"], "email", "the channel now in use");
    assert!(
        !read.body.to_string().contains(ADDRESS),
        "the address is shown masked only: {}",
        read.body
    );
    let document = app
        .request(reqwest::Method::GET, "/openapi.json", None, None)
        .await
        .body;
    assert_matches_schema(
        &document,
        "WorkflowStep",
        &workflow["steps"][1],
        &["fell_back"],
    );

    // A check by `to` names the number; the address keys nothing.
    app.check_to(ADDRESS, &code)
        .await
        .assert_problem(404, "not-found");
    let checked = app.check_id(&id, &code).await;
    assert_eq!(checked.status, 200, "{}", checked.body);
    assert_eq!(checked.body["status"], "approved");
    let metrics = app.metrics().await;
    assert_eq!(
        fallbacks(&metrics, "sms", "email", "failed"),
        1,
        "{metrics}"
    );
    app.stop().await;
}

async fn a_workflow_that_starts_by_email_falls_back_to_the_number_and_is_checked_by_it(
    backend: Backend,
) {
    let (app, sink) = mixed_app(backend).await;
    let body = json!({"to": TO, "email": ADDRESS, "channels": ["email", "sms"],
                      "fallback_after_seconds": 30});
    let started = app.post("/v1/verifications", body).await;
    assert_eq!(started.status, 201, "{}", started.body);
    assert_eq!(started.body["channel"], "email");
    let id = started.str("id").to_owned();
    let mails = sink.wait_for(1).await;
    assert_eq!(mails[0].recipients, [ADDRESS]);
    let code = code_in(&mails[0]);
    wait_for_step(&app, &id, 0, "sent").await;
    assert!(app.messages().await.is_empty(), "no SMS before the timeout");

    app.clock.advance(Duration::from_secs(31));
    let sms = app.wait_for_messages(1).await;
    assert_eq!(sms[0]["to"], TO);
    assert_eq!(extract_code(sms[0]["body"].as_str().unwrap()), code);
    let workflow = wait_for_step(&app, &id, 1, "sent").await;
    assert_eq!(workflow["steps"][0]["to"], "a***@example.com");
    assert_eq!(workflow["steps"][0]["fell_back"], "timeout");
    assert_eq!(workflow["steps"][1]["to"], "+491*******001");

    let checked = app.check_to(TO, &code).await;
    assert_eq!(checked.status, 200, "{}", checked.body);
    assert_eq!(checked.body["status"], "approved");
    assert_eq!(checked.body["id"], id);
    app.stop().await;
}

async fn an_email_that_does_not_fit_the_workflow_is_400_and_changes_nothing(backend: Backend) {
    let (app, sink) = mixed_app(backend).await;
    let cases = [
        // No e-mail step for the address.
        (
            json!({"to": TO, "email": ADDRESS, "channels": ["sms"]}),
            "email is the address",
        ),
        (
            json!({"to": TO, "email": ADDRESS, "channel": "sms"}),
            "email goes with channels",
        ),
        // The account's default workflow (none: SMS) has no e-mail step either.
        (json!({"to": TO, "email": ADDRESS}), "email is the address"),
        // An e-mail step without an address.
        (
            json!({"to": TO, "channels": ["sms", "email"]}),
            "the email step needs an e-mail address",
        ),
        // Phone steps after an address in `to`.
        (
            json!({"to": ADDRESS, "channels": ["email", "sms"]}),
            "put the phone number in to and the e-mail address in email",
        ),
        (
            json!({"to": ADDRESS, "email": ADDRESS, "channels": ["email", "sms"]}),
            "put the phone number in to",
        ),
        (
            json!({"to": ADDRESS, "email": "bob@example.com", "channels": ["email"]}),
            "to is already the e-mail address",
        ),
        (
            json!({"to": TO, "email": "ada@", "channels": ["sms", "email"]}),
            "email must be an e-mail address",
        ),
        (
            json!({"to": TO, "email": "Ada <ada@example.com>", "channels": ["sms", "email"]}),
            "email must be an e-mail address",
        ),
    ];
    for (body, detail) in cases {
        let refused = app.post("/v1/verifications", body.clone()).await;
        refused.assert_problem(400, "invalid-request");
        assert!(
            refused.str("detail").contains(detail),
            "{body}: {}",
            refused.body
        );
    }
    assert!(app.messages().await.is_empty(), "nothing was sent");
    assert!(sink.mails().is_empty(), "nothing was mailed");
    // Nothing was stored: the next sends are new verifications.
    assert_eq!(app.send(TO).await.status, 201);
    let by_mail = app
        .post(
            "/v1/verifications",
            json!({"to": ADDRESS, "channel": "email"}),
        )
        .await;
    assert_eq!(by_mail.status, 201, "{}", by_mail.body);
    app.stop().await;
}

on_every_store!(
    a_failed_sms_falls_back_to_the_email_address_with_the_same_code,
    a_workflow_that_starts_by_email_falls_back_to_the_number_and_is_checked_by_it,
    an_email_that_does_not_fit_the_workflow_is_400_and_changes_nothing,
);

on_every_store!(
    a_workflow_whose_first_provider_fails_reaches_the_second_channel_with_the_same_code,
    a_workflow_whose_first_channel_never_reports_delivery_falls_back_after_the_timeout,
    a_delivered_first_step_does_not_fall_back,
    bad_workflows_are_refused_and_change_nothing,
    the_account_default_workflow_serves_sends_that_name_no_channel,
);

/// Two instances sweep the same Redis: each step fires once, whichever instance fires it.
async fn two_instances_fire_each_fallback_once(backend: Backend) {
    const SENDS: usize = 12;
    let first = spawn_app(backend.clone()).await;
    let second = spawn_peer(&first, backend.clone()).await;
    allow_whatsapp(&first).await;
    for n in 0..SENDS {
        let to = format!("+49151123480{n:02}");
        let started = send_workflow(&first, &to, &["whatsapp", "sms"], 30).await;
        assert_eq!(started.status, 201, "{}", started.body);
    }
    first.wait_for_messages(SENDS).await;
    first.clock.advance(Duration::from_secs(31));
    let messages = first.wait_for_messages(2 * SENDS).await;
    let sms: Vec<&Value> = messages.iter().filter(|m| m["channel"] == "sms").collect();
    assert_eq!(sms.len(), SENDS, "one fallback each");
    let fired = fallbacks(&first.metrics().await, "whatsapp", "sms", "timeout")
        + fallbacks(&second.metrics().await, "whatsapp", "sms", "timeout");
    assert_eq!(fired, SENDS as u64);
    second.stop().await;
    first.stop().await;
}

/// The timer is data in Redis: an instance that never saw the send fires it after the one
/// that took it has stopped.
async fn a_fallback_survives_the_instance_that_started_it(backend: Backend) {
    let mut first = spawn_app(backend.clone()).await;
    allow_whatsapp(&first).await;
    let started = send_workflow(&first, TO, &["whatsapp", "sms"], 30).await;
    let id = started.str("id").to_owned();
    first.wait_for_messages(1).await;
    let second = spawn_peer(&first, backend).await;
    let provider = std::mem::replace(&mut first.provider, MockServer::start().await);
    first.stop().await;

    second.clock.advance(Duration::from_secs(31));
    wait_for_step(&second, &id, 1, "sent").await;
    let received = provider.received_requests().await.unwrap_or_default();
    let channels: Vec<Value> = received
        .iter()
        .map(|request| serde_json::from_slice::<Value>(&request.body).unwrap()["channel"].clone())
        .collect();
    assert_eq!(channels, [json!("whatsapp"), json!("sms")]);
    second.stop().await;
}

mod across_instances {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_instances_on_one_redis_fire_each_fallback_once() {
        two_instances_fire_each_fallback_once(Backend::Redis).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_instances_on_a_cluster_fire_each_fallback_once() {
        two_instances_fire_each_fallback_once(Backend::Cluster).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_fallback_survives_a_restart_on_redis() {
        a_fallback_survives_the_instance_that_started_it(Backend::Redis).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_fallback_survives_a_restart_on_a_cluster() {
        a_fallback_survives_the_instance_that_started_it(Backend::Cluster).await
    }
}
