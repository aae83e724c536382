//! E-mail codes (issue 17): `channel: "email"` end to end through the real server, delivered by
//! the `smtp` provider to an SMTP sink on loopback from which the test reads the code; the
//! per-address quota and idempotency; bad addresses refused with a 400 that changes nothing;
//! SendGrid's Event Webhook applied as receipts.

use std::time::Duration;

use otpgate::config::Settings;
use otpgate::dispatch::model::Channel;
use otpgate::dispatch::providers::{AdapterKind, ProviderSettings};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{extract_code, reply, spawn_app_with, Backend, Reply, TestApp};
use crate::on_every_store;
use crate::pin::{decode_quoted_printable, Captured, SmtpSink};

const ADDRESS: &str = "jane.doe@example.com";

/// The test's `http` fake keeps SMS; e-mail goes to the sink through an `smtp` provider.
fn with_smtp(settings: &mut Settings, sink: &SmtpSink) {
    let mut http = ProviderSettings::new("http", AdapterKind::Http);
    http.url = Some(settings.dispatch.http_url.clone());
    http.channels = Some(vec![Channel::Sms]);
    let mut smtp = ProviderSettings::new("mail", AdapterKind::Smtp);
    smtp.url = Some(format!("smtp://127.0.0.1:{}?tls=none", sink.port));
    smtp.from = Some("Acme <no-reply@acme.test>".into());
    settings.dispatch.providers = vec![http, smtp];
}

async fn spawn_with_sink(backend: Backend) -> (TestApp, SmtpSink) {
    let sink = SmtpSink::start().await;
    let app = spawn_app_with(backend, |settings| with_smtp(settings, &sink)).await;
    (app, sink)
}

async fn send_email(app: &TestApp, to: &str, locale: Option<&str>) -> Reply {
    let mut body = json!({"to": to, "channel": "email"});
    if let Some(locale) = locale {
        body["locale"] = json!(locale);
    }
    app.post("/v1/verifications", body).await
}

/// A mail as the sink received it, decoded: its headers and parts as text.
fn text_of(mail: &Captured) -> String {
    decode_quoted_printable(&mail.data)
}

/// The `Subject:` header, its RFC 2047 encoded words (`=?utf-8?b?…?=`) decoded.
fn subject_of(text: &str) -> String {
    let line = text
        .lines()
        .find_map(|line| line.strip_prefix("Subject: "))
        .expect("a Subject header");
    line.split(' ')
        .map(|word| {
            match word
                .strip_prefix("=?utf-8?b?")
                .and_then(|rest| rest.strip_suffix("?="))
            {
                Some(encoded) => {
                    String::from_utf8(data_encoding::BASE64.decode(encoded.as_bytes()).unwrap())
                        .unwrap()
                }
                None => word.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The code in the mail's plain-text part (the subject carries it too).
fn code_in(mail: &Captured) -> String {
    let text = text_of(mail);
    let plain = text
        .split("Content-Type: text/plain")
        .nth(1)
        .expect("a text/plain part");
    extract_code(plain)
}

async fn an_email_code_reaches_the_smtp_sink_and_is_approved(backend: Backend) {
    let (app, sink) = spawn_with_sink(backend).await;
    let started = send_email(&app, "Jane.Doe@Example.COM", Some("de")).await;
    assert_eq!(started.status, 201, "{}", started.body);
    assert_eq!(started.body["channel"], "email");
    // One inbox, one key: the address is lower-cased whole.
    assert_eq!(started.body["to"], "jane.doe@example.com");
    let id = started.str("id").to_owned();

    let mails = sink.wait_for(1).await;
    assert_eq!(mails[0].recipients, ["jane.doe@example.com"]);
    let text = text_of(&mails[0]);
    let code = code_in(&mails[0]);
    assert_eq!(subject_of(&text), format!("Ihr Bestätigungscode: {code}"));
    assert!(text.contains("multipart/alternative"), "{text}");
    assert!(text.contains("Content-Type: text/html"), "{text}");
    assert!(text.contains(&format!("<strong>{code}</strong>")), "{text}");
    assert!(!text.contains("<img"), "the code is text, never an image");
    // Nothing went to the SMS provider.
    assert!(app.messages().await.is_empty());

    let checked = app.check_id(&id, &code).await;
    assert_eq!(checked.status, 200, "{}", checked.body);
    assert_eq!(checked.body["status"], "approved");
    assert_eq!(checked.body["valid"], true);
    let read = app.get(&format!("/v1/verifications/{id}")).await;
    assert_eq!(read.body["send_attempts"][0]["provider"], "mail");
    assert_eq!(read.body["send_attempts"][0]["status"], "accepted");

    // Metrics per channel: the mail sent, the verification started and approved.
    let metrics = app.metrics().await;
    let value = |name: &str, labels: &[&str]| -> f64 {
        metrics
            .lines()
            .filter(|line| line.starts_with(name) && labels.iter().all(|l| line.contains(l)))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let mail = [
        "provider=\"mail\"",
        "channel=\"email\"",
        "outcome=\"accepted\"",
    ];
    assert_eq!(value("otpgate_messages_total", &mail), 1.0, "{metrics}");
    let started = ["channel=\"email\"", "outcome=\"created\""];
    assert_eq!(value("otpgate_verifications_started_total", &started), 1.0);
    let approved = ["channel=\"email\""];
    assert_eq!(
        value("otpgate_verification_approvals_total", &approved),
        1.0
    );
    app.stop().await;
}

async fn a_check_by_address_finds_the_pending_email_verification(backend: Backend) {
    let (app, sink) = spawn_with_sink(backend).await;
    assert_eq!(send_email(&app, ADDRESS, None).await.status, 201);
    let code = code_in(&sink.wait_for(1).await[0]);
    let wrong = app.check_to("jane.doe@EXAMPLE.com", "000000").await;
    assert_eq!(wrong.body["status"], "pending", "{}", wrong.body);
    assert_eq!(wrong.body["valid"], false);
    let right = app.check_to(ADDRESS, &code).await;
    assert_eq!(right.body["status"], "approved", "{}", right.body);
    app.stop().await;
}

async fn sends_to_one_address_are_counted_by_its_quota(backend: Backend) {
    let sink = SmtpSink::start().await;
    let app = spawn_app_with(backend, |settings| {
        with_smtp(settings, &sink);
        settings.limits.send_per_number = 2;
    })
    .await;
    assert_eq!(send_email(&app, ADDRESS, None).await.status, 201);
    assert_eq!(
        send_email(&app, ADDRESS, None).await.status,
        200,
        "a resend"
    );
    send_email(&app, ADDRESS, None)
        .await
        .assert_problem(429, "send-quota-exceeded");
    // Another address has its own quota.
    assert_eq!(
        send_email(&app, "other@example.com", None).await.status,
        201
    );
    sink.wait_for(3).await;
    // The window passes on the moved clock, and the address may be sent to again.
    app.clock.advance(Duration::from_secs(601));
    assert_eq!(send_email(&app, ADDRESS, None).await.status, 201);
    app.stop().await;
}

async fn an_idempotent_email_send_is_replayed_and_sends_once(backend: Backend) {
    let (app, sink) = spawn_with_sink(backend).await;
    let send = || async {
        let request = app
            .http
            .post(format!("{}/v1/verifications", app.address))
            .bearer_auth(&app.key)
            .header("Idempotency-Key", "signup-42")
            .json(&json!({"to": ADDRESS, "channel": "email"}));
        reply(request.send().await.unwrap()).await
    };
    let first = send().await;
    assert_eq!(first.status, 201, "{}", first.body);
    let again = send().await;
    assert_eq!(again.status, 200);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(again.body["id"], first.body["id"]);
    sink.wait_for(1).await;
    let read = app
        .get(&format!("/v1/verifications/{}", first.str("id")))
        .await;
    assert_eq!(read.body["send_count"], 1);
    app.stop().await;
}

async fn bad_addresses_and_mismatched_channels_are_400_and_change_nothing(backend: Backend) {
    let (app, sink) = spawn_with_sink(backend).await;
    for (to, channel) in [
        ("jane@", "email"),
        ("jane", "email"),
        ("Jane <jane@example.com>", "email"),
        ("jane@[127.0.0.1]", "email"),
        ("jane@localhost", "email"),
        ("ü@example.com", "email"),
        ("+4915112345678", "email"),
        (ADDRESS, "sms"),
        (ADDRESS, "whatsapp"),
        (ADDRESS, "call"),
    ] {
        let refused = app
            .post("/v1/verifications", json!({"to": to, "channel": channel}))
            .await;
        refused.assert_problem(400, "invalid-request");
        assert!(
            refused.str("detail").starts_with("to "),
            "{to} by {channel}: {}",
            refused.body
        );
    }
    let long = format!("{}@{}.example.com", "a".repeat(64), "b".repeat(190));
    send_email(&app, &long, None)
        .await
        .assert_problem(400, "invalid-request");
    app.check_to("not-an-address@", "123456")
        .await
        .assert_problem(400, "invalid-request");
    // Nothing was stored or sent: the next send to the address is a new verification.
    assert_eq!(send_email(&app, ADDRESS, None).await.status, 201);
    assert_eq!(sink.wait_for(1).await.len(), 1);
    assert!(app.messages().await.is_empty());
    app.stop().await;
}

on_every_store!(
    an_email_code_reaches_the_smtp_sink_and_is_approved,
    a_check_by_address_finds_the_pending_email_verification,
    sends_to_one_address_are_counted_by_its_quota,
    an_idempotent_email_send_is_replayed_and_sends_once,
    bad_addresses_and_mismatched_channels_are_400_and_change_nothing,
);

// ---- SendGrid: the send through its API, and its Event Webhook as receipts ----

/// A P-256 key pair standing in for SendGrid's: the verification key as SendGrid shows it
/// (base64 DER SubjectPublicKeyInfo), and a signer of `timestamp` + body.
struct EventSigner {
    pair: EcdsaKeyPair,
    rng: SystemRandom,
}

impl EventSigner {
    fn new() -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        Self { pair, rng }
    }

    fn verification_key(&self) -> String {
        // id-ecPublicKey, prime256v1, then the 65-byte point as a bit string.
        let mut der = data_encoding::HEXLOWER
            .decode(b"3059301306072a8648ce3d020106082a8648ce3d030107034200")
            .unwrap();
        der.extend_from_slice(self.pair.public_key().as_ref());
        data_encoding::BASE64.encode(&der)
    }

    fn sign(&self, timestamp: &str, body: &[u8]) -> String {
        let mut signed = timestamp.as_bytes().to_vec();
        signed.extend_from_slice(body);
        data_encoding::BASE64.encode(self.pair.sign(&self.rng, &signed).unwrap().as_ref())
    }
}

async fn post_events(app: &TestApp, body: &[u8], timestamp: &str, signature: &str) -> Reply {
    let request = app
        .http
        .post(format!("{}/v1/receipts/grid", app.address))
        .header("content-type", "application/json")
        .header("X-Twilio-Email-Event-Webhook-Timestamp", timestamp)
        .header("X-Twilio-Email-Event-Webhook-Signature", signature)
        .body(body.to_vec());
    reply(request.send().await.unwrap()).await
}

async fn sendgrid_delivers_and_its_signed_events_become_receipts(backend: Backend) {
    let sendgrid = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v3/mail/send"))
        .respond_with(ResponseTemplate::new(202).insert_header("X-Message-Id", "14c5d75ce93"))
        .mount(&sendgrid)
        .await;
    let signer = EventSigner::new();
    let key = signer.verification_key();
    let app = spawn_app_with(backend, |settings| {
        let mut http = ProviderSettings::new("http", AdapterKind::Http);
        http.url = Some(settings.dispatch.http_url.clone());
        http.channels = Some(vec![Channel::Sms]);
        let mut grid = ProviderSettings::new("grid", AdapterKind::Sendgrid);
        grid.base_url = Some(sendgrid.uri());
        grid.api_key = Some("SG.test".into());
        grid.from = Some("no-reply@acme.test".into());
        grid.verification_key = Some(key);
        settings.dispatch.providers = vec![http, grid];
    })
    .await;
    let started = send_email(&app, ADDRESS, None).await;
    assert_eq!(started.status, 201, "{}", started.body);
    let id = started.str("id").to_owned();
    let path_of = format!("/v1/verifications/{id}");
    let accepted = wait_for_status(&app, &path_of, "accepted").await;
    assert_eq!(accepted["provider_message_id"], "14c5d75ce93");
    let sent: Value =
        serde_json::from_slice(&sendgrid.received_requests().await.unwrap()[0].body).unwrap();
    assert_eq!(sent["personalizations"][0]["to"][0]["email"], ADDRESS);

    let events = serde_json::to_vec(&json!([
        {"email": ADDRESS, "timestamp": 1764748800, "event": "processed",
         "sg_event_id": "cHJvY2Vzc2Vk", "sg_message_id": "14c5d75ce93.filterdrecv-p3las1-1-0"},
        {"email": ADDRESS, "timestamp": 1764748801, "event": "delivered", "response": "250 OK",
         "sg_event_id": "ZGVsaXZlcmVk", "sg_message_id": "14c5d75ce93.filterdrecv-p3las1-1-0"},
        {"email": ADDRESS, "timestamp": 1764748802, "event": "open",
         "sg_event_id": "b3Blbg", "sg_message_id": "14c5d75ce93.filterdrecv-p3las1-1-0"}
    ]))
    .unwrap();
    let timestamp = "1764748803";
    // A forged or re-dated delivery is refused and applies nothing.
    let forged = signer.sign(timestamp, b"[]");
    post_events(&app, &events, timestamp, &forged)
        .await
        .assert_problem(403, "forbidden");
    let redated = signer.sign("1764748804", &events);
    post_events(&app, &events, timestamp, &redated)
        .await
        .assert_problem(403, "forbidden");
    assert_eq!(
        app.get(&path_of).await.body["send_attempts"][0]["status"],
        "accepted"
    );

    let applied = post_events(&app, &events, timestamp, &signer.sign(timestamp, &events)).await;
    assert_eq!(applied.status, 200, "{}", applied.body);
    assert_eq!(
        applied.body["received"], 2,
        "the open event is not a receipt"
    );
    assert_eq!(applied.body["applied"], 2);
    assert_eq!(
        app.get(&path_of).await.body["send_attempts"][0]["status"],
        "delivered"
    );
    app.stop().await;
}

async fn wait_for_status(app: &TestApp, path: &str, status: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let read = app.get(path).await;
        let attempt = read.body["send_attempts"][0].clone();
        if attempt["status"] == status {
            return attempt;
        }
        assert!(std::time::Instant::now() < deadline, "still {}", read.body);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

on_every_store!(sendgrid_delivers_and_its_signed_events_become_receipts);

// ---- users' addresses, the policy's email channel, the login decision ----

async fn users_get_an_address_and_enabling_email_lists_those_without_one(backend: Backend) {
    use crate::accounts_support::{assert_refused, Org};
    let org = Org::new(backend).await;
    org.policy(json!({"channels": ["totp"]})).await;
    let added = org
        .add_user(
            "owner",
            json!({"id": "ann", "role": "member", "email": " Ann@Example.COM "}),
        )
        .await;
    assert_eq!(added.status, 201, "{}", added.body);
    assert_eq!(added.body["email"], "ann@example.com");
    org.user("bob", "member", None).await;
    org.user("cy", "member", None).await;
    for bad in ["ann", "ann@", "Ann <ann@example.com>", "ann@localhost"] {
        org.add_user("owner", json!({"id": "dee", "email": bad}))
            .await
            .assert_problem(400, "invalid-request");
        org.patch_user("owner", "bob", json!({"email": bad}))
            .await
            .assert_problem(400, "invalid-request");
    }
    assert_eq!(
        org.get_user("dee").await.status,
        404,
        "a refused user is not added"
    );

    let refused = org
        .put_policy("owner", json!({"channels": ["totp", "email"]}))
        .await;
    assert_refused(&refused, "email-needs-every-user-to-have-an-address");
    assert_eq!(refused.body["users"], json!(["bob", "cy"]));
    let unchanged = org
        .call(reqwest::Method::GET, "/v1/policy", "owner", None)
        .await;
    assert_eq!(
        unchanged.body["channels"],
        json!(["totp"]),
        "a refusal changes nothing"
    );

    for id in refused.body["users"].as_array().unwrap() {
        let id = id.as_str().unwrap();
        let patched = org
            .patch_user("owner", id, json!({"email": format!("{id}@example.com")}))
            .await;
        assert_eq!(patched.status, 200, "{}", patched.body);
    }
    org.policy(json!({"channels": ["totp", "email"]})).await;
    // While e-mail is active, nobody is added or left without an address.
    let refused = org.add_user("owner", json!({"id": "eve"})).await;
    assert_refused(&refused, "an-address-is-required-while-email-is-active");
    let refused = org.patch_user("owner", "ann", json!({"email": null})).await;
    assert_refused(&refused, "an-address-is-required-while-email-is-active");

    // No app yet: the address is ann's factor; with an app, e-mail is its fallback.
    let decision = org.login("ann", None).await;
    assert_eq!(decision.body["decision"], "challenge", "{}", decision.body);
    assert_eq!(
        decision.body["factors"],
        json!([{"type": "email", "to": "a***@example.com"}])
    );
    org.enrol("ann", otpgate::account::user::FactorType::Totp, "FA-totp")
        .await;
    let decision = org.login("ann", None).await;
    assert_eq!(
        decision.body["factors"][0]["type"], "totp",
        "{}",
        decision.body
    );
    assert_eq!(
        decision.body["fallbacks"],
        json!([{"type": "email", "to": "a***@example.com"}])
    );
    org.app.stop().await;
}

on_every_store!(users_get_an_address_and_enabling_email_lists_those_without_one);

// ---- the Twilio Verify facade: Channel=email with To an address, as Twilio has it ----

async fn twilio_form(app: &TestApp, path: &str, form: &[(&str, &str)]) -> Reply {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let service = format!("VA{}", &app.account_id[2..]);
    let request = app
        .http
        .post(format!("{}/v2/Services/{service}/{path}", app.address))
        .basic_auth(&app.account_id, Some(&app.key))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body);
    reply(request.send().await.unwrap()).await
}

async fn the_twilio_facade_sends_channel_email_and_checks_it_by_address(backend: Backend) {
    let (app, sink) = spawn_with_sink(backend).await;
    let sent = twilio_form(
        &app,
        "Verifications",
        &[
            ("To", "Jane.Doe@Example.com"),
            ("Channel", "email"),
            ("Locale", "fr"),
        ],
    )
    .await;
    assert_eq!(sent.status, 201, "{}", sent.body);
    assert_eq!(sent.body["channel"], "email");
    assert_eq!(sent.body["to"], "jane.doe@example.com");
    assert_eq!(sent.body["status"], "pending");
    let mail = &sink.wait_for(1).await[0];
    assert_eq!(
        subject_of(&text_of(mail)),
        format!("Votre code de vérification: {}", code_in(mail))
    );

    // Twilio's 60200 for an address on a phone channel and a number on e-mail; nothing sent.
    for (to, channel) in [
        (ADDRESS, "sms"),
        ("+4915112345678", "email"),
        ("jane@", "email"),
    ] {
        let refused = twilio_form(&app, "Verifications", &[("To", to), ("Channel", channel)]).await;
        assert_eq!(refused.status, 400, "{}", refused.body);
        assert_eq!(refused.body["code"], 60200, "{}", refused.body);
    }
    let checked = twilio_form(
        &app,
        "VerificationCheck",
        &[("To", "JANE.DOE@example.com"), ("Code", "000000")],
    )
    .await;
    assert_eq!(checked.body["status"], "pending", "{}", checked.body);
    assert_eq!(checked.body["valid"], false);
    let checked = twilio_form(
        &app,
        "VerificationCheck",
        &[("To", "jane.doe@example.com"), ("Code", &code_in(mail))],
    )
    .await;
    assert_eq!(checked.status, 200, "{}", checked.body);
    assert_eq!(checked.body["status"], "approved");
    assert_eq!(checked.body["valid"], true);
    assert_eq!(sink.mails().len(), 1);
    app.stop().await;
}

on_every_store!(the_twilio_facade_sends_channel_email_and_checks_it_by_address);

#[tokio::test]
async fn the_openapi_document_describes_email_as_a_channel_and_a_users_address() {
    let app = crate::helpers::spawn_app(Backend::Memory).await;
    let document = app.get("/openapi.json").await.body;
    let schemas = &document["components"]["schemas"];
    let channels = &schemas["Channel"]["enum"];
    assert!(
        channels
            .as_array()
            .is_some_and(|all| all.contains(&json!("email"))),
        "{channels}"
    );
    for schema in ["User", "CreateUser", "PatchUser"] {
        assert!(
            schemas[schema]["properties"]["email"].is_object(),
            "{schema}: {}",
            schemas[schema]
        );
    }
    let to = schemas["StartVerification"]["properties"]["to"]["description"]
        .as_str()
        .unwrap_or_default();
    assert!(to.contains("e-mail address"), "{to}");
    app.stop().await;
}
