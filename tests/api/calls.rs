//! Voice calls (issue 17): `channel: "call"` end to end through the real server, and the
//! providers' `channels` (a send on a channel no provider carries is refused, changing nothing).

use otpgate::clock::Clock;
use otpgate::config::Settings;
use otpgate::dispatch::model::Channel;
use otpgate::dispatch::providers::{AdapterKind, ProviderSettings};
use otpgate::dispatch::router::RouteSettings;
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::dispatch::{twilio_signature, wait_for_attempt};
use crate::helpers::{reply, spawn_app, spawn_app_with, Backend, TestApp};
use crate::on_every_store;
use otpgate::secret::Secret;

const TO: &str = "+4915112345678";

/// The code a spoken text reads out: its digits in order, read once (the script reads them
/// twice, each time as "4, 0, 8, ...").
fn spoken_code(body: &str) -> String {
    let first = body
        .split(". ")
        .find(|part| part.chars().filter(char::is_ascii_digit).count() >= 4)
        .expect("the script reads the code");
    first.chars().filter(char::is_ascii_digit).collect()
}

async fn start_call(app: &TestApp, locale: Option<&str>) -> crate::helpers::Reply {
    let mut body = json!({"to": TO, "channel": "call"});
    if let Some(locale) = locale {
        body["locale"] = json!(locale);
    }
    app.post("/v1/verifications", body).await
}

/// An `http` provider at `server`'s `/messages` carrying `channels`.
fn http_carrying(name: &str, server: &MockServer, channels: &[Channel]) -> ProviderSettings {
    let mut provider = ProviderSettings::new(name, AdapterKind::Http);
    provider.url = Some(format!("{}/messages", server.uri()));
    provider.channels = Some(channels.to_vec());
    provider
}

async fn accepting_server() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/messages"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "gw-1"})))
        .mount(&server)
        .await;
    server
}

async fn bodies(server: &MockServer) -> Vec<Value> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .map(|request| serde_json::from_slice(&request.body).unwrap())
        .collect()
}

async fn a_call_reads_the_code_digit_by_digit_twice_and_the_code_approves(backend: Backend) {
    let app = spawn_app(backend).await;
    let started = start_call(&app, Some("de-AT")).await;
    assert_eq!(started.status, 201, "{}", started.body);
    assert_eq!(started.str("channel"), "call");

    let messages = app.wait_for_messages(1).await;
    let message = &messages[0];
    assert_eq!(message["channel"], "call");
    assert_eq!(message["to"], TO);
    let body = message["body"].as_str().unwrap();
    assert!(body.starts_with("Ihr Bestätigungscode"), "{body}");
    let code = spoken_code(body);
    let spelled = code
        .chars()
        .map(String::from)
        .collect::<Vec<_>>()
        .join(", ");
    assert_eq!(body.matches(&spelled).count(), 2, "read twice: {body}");

    let checked = app.check_id(started.str("id"), &code).await;
    assert_eq!(checked.status, 200, "{}", checked.body);
    assert_eq!(checked.str("status"), "approved");

    // Messages, latency and conversion per channel.
    let metrics = app.metrics().await;
    for line in [
        r#"otpgate_verifications_started_total{channel="call",outcome="created"} 1"#,
        r#"otpgate_messages_total{provider="http",channel="call",country_code="49",outcome="accepted"} 1"#,
        r#"otpgate_provider_request_duration_seconds_count{provider="http",channel="call"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
    let approvals = r#"otpgate_verification_approvals_total{country_code="DE",channel="call"} 1"#;
    // Approvals are counted off the check's path: wait for the count, do not sleep.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !app.metrics().await.contains(approvals) {
        assert!(std::time::Instant::now() < deadline, "{approvals}");
        tokio::task::yield_now().await;
    }
    app.stop().await;
}

async fn a_call_no_provider_carries_is_refused_and_changes_nothing(backend: Backend) {
    let server = accepting_server().await;
    let sms_only = http_carrying("texts", &server, &[Channel::Sms]);
    let app = spawn_app_with(backend, |settings: &mut Settings| {
        settings.dispatch.providers = vec![sms_only];
        // One send per number: a refused call that used it up would fail the SMS below.
        settings.limits.send_per_number = 1;
    })
    .await;
    for _ in 0..2 {
        let refused = start_call(&app, None).await;
        refused.assert_problem(422, "refused");
        assert_eq!(refused.body["rule"], "channel-not-configured");
    }

    let sms = app.send(TO).await;
    assert_eq!(sms.status, 201, "{}", sms.body);
    let delivered = wait_for_attempt(&app, sms.str("id"), "accepted").await;
    assert_eq!(delivered["provider"], "texts");
    assert_eq!(bodies(&server).await.len(), 1, "only the SMS went out");
    assert!(app
        .metrics()
        .await
        .contains(r#"outcome="channel_not_configured""#));
    app.stop().await;
}

async fn the_router_hands_each_channel_to_the_providers_that_carry_it(backend: Backend) {
    let texts = accepting_server().await;
    let voice = accepting_server().await;
    let providers = vec![
        http_carrying("texts", &texts, &[Channel::Sms, Channel::Whatsapp]),
        http_carrying("voice", &voice, &[Channel::Call]),
    ];
    let app = spawn_app_with(backend, |settings: &mut Settings| {
        settings.dispatch.providers = providers;
        // One route listing both: each channel still goes only to its carrier.
        settings.dispatch.routes = vec![RouteSettings {
            prefix: "*".into(),
            channel: None,
            providers: vec!["texts".into(), "voice".into()],
        }];
    })
    .await;
    let call = start_call(&app, None).await;
    assert_eq!(call.status, 201, "{}", call.body);
    let accepted = wait_for_attempt(&app, call.str("id"), "accepted").await;
    assert_eq!(accepted["provider"], "voice");
    let sms = app.send("+4915112345679").await;
    assert_eq!(sms.status, 201, "{}", sms.body);
    let accepted = wait_for_attempt(&app, sms.str("id"), "accepted").await;
    assert_eq!(accepted["provider"], "texts");

    let calls = bodies(&voice).await;
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["channel"], "call");
    let texted = bodies(&texts).await;
    assert_eq!(texted.len(), 1);
    assert_eq!(texted[0]["channel"], "sms");
    app.stop().await;
}

const ACCOUNT_SID: &str = "AC00000000000000000000000000000001";
const CALL_SID: &str = "CA11111111111111111111111111111111";

async fn a_twilio_call_status_callback_signed_by_twilio_marks_the_call_delivered(backend: Backend) {
    let twilio = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!(
            "/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json"
        )))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(json!({"sid": CALL_SID, "status": "queued"})),
        )
        .mount(&twilio)
        .await;
    let mut provider = ProviderSettings::new("twilio-voice", AdapterKind::Twilio);
    provider.base_url = Some(twilio.uri());
    provider.account_sid = Some(ACCOUNT_SID.into());
    provider.auth_token = Some(Secret::from("twilio-auth-token"));
    provider.from = Some("+15017122661".into());
    provider.status_callback = Some("https://otp.example.com/v1/receipts/twilio-voice".into());
    let app = spawn_app_with(backend, |settings: &mut Settings| {
        settings.dispatch.providers = vec![provider];
    })
    .await;
    let started = start_call(&app, Some("it")).await;
    assert_eq!(started.status, 201, "{}", started.body);
    let id = started.str("id").to_owned();
    let attempt = wait_for_attempt(&app, &id, "accepted").await;
    assert_eq!(attempt["provider_message_id"], CALL_SID);
    let calls = twilio.received_requests().await.unwrap();
    let form = otpgate::dispatch::receipts::parse_form(&calls[0].body);
    let twiml = &form.iter().find(|(key, _)| key == "Twiml").unwrap().1;
    assert!(
        twiml.contains(r#"<Say language="it-IT">Il tuo codice"#),
        "{twiml}"
    );

    let url = format!("{}/v1/receipts/twilio-voice", app.address);
    let params = [
        ("CallSid", CALL_SID),
        ("CallStatus", "in-progress"),
        ("AccountSid", ACCOUNT_SID),
    ];
    let body = format!("CallSid={CALL_SID}&CallStatus=in-progress&AccountSid={ACCOUNT_SID}");
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
    let applied = post(twilio_signature(&url, &params, "twilio-auth-token")).await;
    assert_eq!(applied.status, 200, "{}", applied.body);
    assert_eq!(applied.body["applied"], 1);
    wait_for_attempt(&app, &id, "delivered").await;
    app.stop().await;
}

/// A fresh RSA key (PKCS#8 PEM) from the openssl command line: none is kept in the repository.
fn rsa_test_key() -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("private.key");
    let status = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&file)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("the openssl command runs");
    assert!(status.success());
    std::fs::read_to_string(file).unwrap()
}

/// `Authorization: Bearer` a JWT as Vonage signs its webhooks: HS256 with the signature secret,
/// `iat` and the body's SHA-256 as `payload_hash`.
fn vonage_signed(secret: &[u8], iat_secs: u64, body: &[u8]) -> String {
    use data_encoding::{BASE64URL_NOPAD, HEXLOWER};
    let hash = HEXLOWER.encode(ring::digest::digest(&ring::digest::SHA256, body).as_ref());
    let header = BASE64URL_NOPAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = json!({"iat": iat_secs, "jti": "j-1", "iss": "Vonage", "payload_hash": hash,
        "api_key": "abcd1234", "application_id": "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"});
    let input = format!(
        "{header}.{}",
        BASE64URL_NOPAD.encode(claims.to_string().as_bytes())
    );
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let tag = ring::hmac::sign(&key, input.as_bytes());
    format!("Bearer {input}.{}", BASE64URL_NOPAD.encode(tag.as_ref()))
}

async fn a_vonage_call_event_signed_with_the_signature_secret_marks_the_call(backend: Backend) {
    const UUID: &str = "63f61863-4a51-4f6b-86e1-46edebcf9356";
    let vonage = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/calls"))
        .respond_with(ResponseTemplate::new(201).set_body_json(
            json!({"uuid": UUID, "status": "started", "direction": "outbound",
                   "conversation_uuid": "CON-f972836a-550f-45fa-956c-12a2ab5b7d22"}),
        ))
        .mount(&vonage)
        .await;
    let mut provider = ProviderSettings::new("vonage-voice", AdapterKind::Vonage);
    provider.voice_base_url = Some(vonage.uri());
    provider.application_id = Some("aaaaaaaa-bbbb-cccc-dddd-0123456789ab".into());
    provider.private_key = Some(Secret::from(rsa_test_key().as_str()));
    provider.from = Some("447700900000".into());
    provider.signature_secret = Some(Secret::from("vonage-signature-secret"));
    let app = spawn_app_with(backend, |settings: &mut Settings| {
        settings.dispatch.providers = vec![provider];
    })
    .await;
    let started = start_call(&app, None).await;
    assert_eq!(started.status, 201, "{}", started.body);
    let id = started.str("id").to_owned();
    assert_eq!(
        wait_for_attempt(&app, &id, "accepted").await["provider_message_id"],
        UUID
    );

    let url = format!("{}/v1/receipts/vonage-voice", app.address);
    let now_secs = app.clock.now_ms() / 1000;
    let event = |status: &str| {
        json!({"uuid": UUID, "conversation_uuid": "CON-f972836a-550f-45fa-956c-12a2ab5b7d22",
               "status": status, "direction": "outbound", "timestamp": "2026-12-03T08:00:00.000Z"})
        .to_string()
    };
    let post = |body: String, authorization: String| {
        let request = app
            .http
            .post(&url)
            .header("content-type", "application/json")
            .header("authorization", authorization)
            .body(body);
        async move { reply(request.send().await.unwrap()).await }
    };
    let answered = event("answered");
    // Signed with another secret, or for another body: refused, nothing applied.
    post(
        answered.clone(),
        vonage_signed(b"other-secret", now_secs, answered.as_bytes()),
    )
    .await
    .assert_problem(403, "forbidden");
    post(
        answered.clone(),
        vonage_signed(
            b"vonage-signature-secret",
            now_secs,
            event("ringing").as_bytes(),
        ),
    )
    .await
    .assert_problem(403, "forbidden");
    assert_eq!(
        wait_for_attempt(&app, &id, "accepted").await["status"],
        "accepted"
    );
    let applied = post(
        answered.clone(),
        vonage_signed(b"vonage-signature-secret", now_secs, answered.as_bytes()),
    )
    .await;
    assert_eq!(applied.status, 200, "{}", applied.body);
    assert_eq!(applied.body["applied"], 1);
    wait_for_attempt(&app, &id, "delivered").await;
    app.stop().await;
}

/// A landline: calls reach it by default, texts do not (the abuse policy's number types).
async fn a_fixed_line_gets_a_call_but_not_an_sms_by_default(backend: Backend) {
    const LANDLINE: &str = "+493012345678";
    let app = spawn_app(backend).await;
    let sms = app.send(LANDLINE).await;
    sms.assert_problem(422, "refused");
    assert_eq!(sms.body["rule"], "number-type");
    let call = app
        .post(
            "/v1/verifications",
            json!({"to": LANDLINE, "channel": "call"}),
        )
        .await;
    assert_eq!(call.status, 201, "{}", call.body);
    let messages = app.wait_for_messages(1).await;
    assert_eq!(messages[0]["to"], LANDLINE);
    assert_eq!(messages[0]["channel"], "call");
    app.stop().await;
}

async fn the_login_decision_offers_a_call_after_the_strongest_factor(backend: Backend) {
    use otpgate::account::user::FactorType;
    let org = crate::accounts_support::Org::new(backend).await;
    org.policy(json!({"channels": ["sms", "call", "totp"], "sms_fallback": true}))
        .await;
    org.user("ann", "member", Some("+4915112360041")).await;
    org.enrol("ann", FactorType::Totp, "FA-totp").await;
    let decision = org.login("ann", None).await;
    assert_eq!(decision.body["decision"], "challenge", "{}", decision.body);
    assert_eq!(
        decision.body["factors"],
        json!([{"type": "totp", "id": "FA-totp"}])
    );
    assert_eq!(
        decision.body["fallbacks"],
        json!([{"type": "sms", "to": "+491*******041"}, {"type": "call", "to": "+491*******041"}])
    );
    assert_eq!(
        decision.body["fallback"]["type"], "sms",
        "the first fallback, as before"
    );

    // Without calls in the policy, no call is offered.
    org.policy(json!({"channels": ["sms", "totp"]})).await;
    let decision = org.login("ann", None).await;
    assert_eq!(
        decision.body["fallbacks"],
        json!([{"type": "sms", "to": "+491*******041"}])
    );
    org.app.stop().await;
}

async fn calls_need_every_user_to_have_a_phone(backend: Backend) {
    let org = crate::accounts_support::Org::new(backend).await;
    org.policy(json!({"channels": ["totp"]})).await;
    org.user("bob", "member", None).await;
    // Allowing calls lists the users without a phone, and changes nothing.
    let refused = org
        .put_policy("owner", json!({"channels": ["totp", "call"]}))
        .await;
    refused.assert_problem(422, "refused");
    assert_eq!(refused.body["rule"], "sms-needs-every-user-to-have-a-phone");
    assert_eq!(refused.body["users"], json!(["bob"]));
    let patched = org
        .patch_user("owner", "bob", json!({"phone": "+4915112360051"}))
        .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    org.policy(json!({"channels": ["totp", "call"]})).await;
    // While calls are allowed, a new user needs a phone.
    let no_phone = org
        .add_user("owner", json!({"id": "cy", "role": "member"}))
        .await;
    no_phone.assert_problem(422, "refused");
    assert_eq!(
        no_phone.body["rule"],
        "a-phone-is-required-while-sms-is-active"
    );
    org.app.stop().await;
}

/// A vendor that cannot place the call (503) fails over to the next provider that carries calls,
/// as a text does; its failed try is listed beside the accepted one.
async fn a_call_fails_over_to_the_next_provider_that_places_calls(backend: Backend) {
    let twilio = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!(
            "/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json"
        )))
        .respond_with(ResponseTemplate::new(503))
        .mount(&twilio)
        .await;
    let mut primary = ProviderSettings::new("twilio-voice", AdapterKind::Twilio);
    primary.base_url = Some(twilio.uri());
    primary.account_sid = Some(ACCOUNT_SID.into());
    primary.auth_token = Some(Secret::from("twilio-auth-token"));
    primary.from = Some("+15017122661".into());
    let backup_server = accepting_server().await;
    let backup = http_carrying("backup", &backup_server, &[Channel::Call]);
    let app = spawn_app_with(backend, |settings: &mut Settings| {
        settings.dispatch.providers = vec![primary, backup];
        settings.dispatch.routes = vec![RouteSettings {
            prefix: "*".into(),
            channel: Some(Channel::Call),
            providers: vec!["twilio-voice".into(), "backup".into()],
        }];
    })
    .await;
    let started = start_call(&app, None).await;
    assert_eq!(started.status, 201, "{}", started.body);
    let id = started.str("id").to_owned();
    assert_eq!(
        wait_for_attempt(&app, &id, "accepted").await["provider"],
        "backup"
    );
    let failed = wait_for_attempt(&app, &id, "provider_error").await;
    assert_eq!(failed["provider"], "twilio-voice");
    assert_eq!(twilio.received_requests().await.unwrap().len(), 1);
    let calls = bodies(&backup_server).await;
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["channel"], "call");
    let code = spoken_code(calls[0]["body"].as_str().unwrap());
    let checked = app.check_id(&id, &code).await;
    assert_eq!(checked.str("status"), "approved", "{}", checked.body);
    app.stop().await;
}

on_every_store!(
    a_call_fails_over_to_the_next_provider_that_places_calls,
    the_login_decision_offers_a_call_after_the_strongest_factor,
    calls_need_every_user_to_have_a_phone,
    a_call_reads_the_code_digit_by_digit_twice_and_the_code_approves,
    a_call_no_provider_carries_is_refused_and_changes_nothing,
    the_router_hands_each_channel_to_the_providers_that_carry_it,
    a_twilio_call_status_callback_signed_by_twilio_marks_the_call_delivered,
    a_vonage_call_event_signed_with_the_signature_secret_marks_the_call,
    a_fixed_line_gets_a_call_but_not_an_sms_by_default,
);

#[tokio::test]
async fn a_route_for_calls_that_lists_no_provider_carrying_calls_is_a_config_error() {
    let mut settings = Settings::defaults();
    let mut texts = ProviderSettings::new("texts", AdapterKind::Http);
    texts.url = Some("http://127.0.0.1:9/messages".into());
    texts.channels = Some(vec![Channel::Sms]);
    settings.dispatch.providers = vec![texts];
    settings.dispatch.routes = vec![RouteSettings {
        prefix: "*".into(),
        channel: Some(Channel::Call),
        providers: vec!["texts".into()],
    }];
    settings.auth.root_key = otpgate::secret::Secret::new(crate::helpers::ROOT_KEY);
    let error = match otpgate::App::build(settings).await {
        Ok(_) => panic!("a route for calls without a carrier must be refused at start"),
        Err(error) => error.to_string(),
    };
    assert!(
        error.contains("lists no provider that carries it"),
        "{error}"
    );
}

#[tokio::test]
async fn a_provider_kind_cannot_be_given_a_channel_it_cannot_carry() {
    let mut whatsapp = ProviderSettings::new("wa", AdapterKind::Whatsapp);
    whatsapp.channels = Some(vec![Channel::Call]);
    let problems = whatsapp.validate().join("\n");
    assert!(problems.contains("cannot carry 'call'"), "{problems}");
}

#[tokio::test]
async fn the_openapi_document_describes_calls_and_the_fallbacks() {
    let app = spawn_app(Backend::Memory).await;
    let document = app.get("/openapi.json").await.body;
    let schemas = &document["components"]["schemas"];
    let channels = schemas["Channel"]["enum"]
        .as_array()
        .expect("a Channel enum");
    assert!(channels.contains(&json!("call")), "{channels:?}");
    assert!(
        schemas["LoginDecision"]["properties"]["fallbacks"].is_object(),
        "{}",
        schemas["LoginDecision"]
    );
    app.stop().await;
}

/// The Twilio facade takes `Channel=call` as Twilio does, and answers Twilio's 60223 when no
/// provider of this gateway places calls.
#[tokio::test]
async fn the_twilio_facade_places_calls_and_answers_60223_without_a_call_provider() {
    let post = |app: &TestApp| {
        let path = format!(
            "{}/v2/Services/VA{}/Verifications",
            app.address,
            &app.account_id[2..]
        );
        app.http
            .post(path)
            .basic_auth(&app.account_id, Some(&app.key))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("To=%2B4915112345678&Channel=call&Locale=pt-BR")
    };
    let app = spawn_app(Backend::Memory).await;
    let created = reply(post(&app).send().await.unwrap()).await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["channel"], "call");
    let messages = app.wait_for_messages(1).await;
    assert!(
        messages[0]["body"]
            .as_str()
            .unwrap()
            .starts_with("Seu código"),
        "{}",
        messages[0]
    );
    app.stop().await;

    let server = accepting_server().await;
    let texts = http_carrying("texts", &server, &[Channel::Sms]);
    let app = spawn_app_with(Backend::Memory, |settings: &mut Settings| {
        settings.dispatch.providers = vec![texts];
    })
    .await;
    let refused = reply(post(&app).send().await.unwrap()).await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert_eq!(refused.body["code"], 60223, "{}", refused.body);
    assert_eq!(refused.body["message"], "Delivery channel disabled: CALL");
    app.stop().await;
}
