//! Calls through the vendors' voice APIs, against fakes that check the documented wire format:
//! Twilio Programmable Voice (`POST …/Calls.json`, form-encoded `To`, `From`, `Twiml`,
//! `StatusCallback` and its events; Basic auth; a Call resource with its `sid`) and the Vonage
//! Voice API (`POST /v1/calls`, JSON `to`, `from`, `ncco` with one `talk` action, `event_url`;
//! `Authorization: Bearer` an RS256 JWT of the application; 201 with the call's `uuid`).
//! The JWT is checked with the public half of a key the test makes.

use std::process::Command;

use otpgate::dispatch::call_receipts::{is_twilio_call, parse_twilio_call};
use otpgate::dispatch::receipts::{parse_form, DeliveryStatus};
use otpgate::dispatch::voice;
use otpgate::verify::model::Channel;
use ring::signature::{KeyPair, RsaKeyPair, UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256};
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;

const SID: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "twilio-auth-token";
const CALLS: &str = "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Calls.json";
const CALL_SID: &str = "CA5ef8732a3c49700934481addd5ce1659";
const APPLICATION: &str = "aaaaaaaa-bbbb-cccc-dddd-0123456789ab";
const CALL_UUID: &str = "63f61863-4a51-4f6b-86e1-46edebcf9356";

fn call_message(locale: &str) -> otpgate::dispatch::OutgoingMessage {
    let body = voice::render(locale, "Acme", CODE);
    message_with(Channel::Call, &body, locale)
}

fn twilio(server: &MockServer) -> Value {
    json!({
        "name": "twilio-voice",
        "kind": "twilio",
        "base_url": server.uri(),
        "timeout_ms": SHORT_TIMEOUT_MS,
        "account_sid": SID,
        "auth_token": TOKEN,
        "from": "+15017122661",
        "status_callback": "https://otp.example.com/v1/receipts/twilio-voice",
    })
}

async fn fake(path_: &str, response: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(path_))
        .respond_with(response)
        .mount(&server)
        .await;
    server
}

fn twilio_error(status: u16, code: u32, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({
        "code": code,
        "message": message,
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
        "status": status,
    }))
}

#[tokio::test]
async fn twilio_places_a_call_whose_twiml_says_the_code_twice_in_the_locale() {
    let created = json!({
        "sid": CALL_SID, "account_sid": SID, "status": "queued", "to": TO,
        "from": "+15017122661", "direction": "outbound-api", "api_version": "2010-04-01",
    });
    let server = fake(CALLS, ResponseTemplate::new(201).set_body_json(created)).await;
    let result = provider(twilio(&server)).send(&call_message("fr")).await;
    accepted_with(result, CALL_SID);

    let request = only_request(&server).await;
    assert_eq!(header(&request, "authorization"), basic_auth(SID, TOKEN));
    assert_eq!(
        header(&request, "content-type"),
        "application/x-www-form-urlencoded"
    );
    let form = parse_form(&request.body);
    let get = |name: &str| -> Vec<&str> {
        form.iter()
            .filter(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
            .collect()
    };
    assert_eq!(get("To"), [TO]);
    assert_eq!(get("From"), ["+15017122661"]);
    assert_eq!(
        get("StatusCallback"),
        ["https://otp.example.com/v1/receipts/twilio-voice"]
    );
    assert_eq!(
        get("StatusCallbackEvent"),
        ["initiated", "ringing", "answered", "completed"]
    );
    assert!(get("Body").is_empty(), "a call has no SMS body");
    let twiml = get("Twiml")[0];
    assert!(
        twiml.starts_with(
            r#"<?xml version="1.0" encoding="UTF-8"?><Response><Say language="fr-FR">"#
        ),
        "{twiml}"
    );
    assert!(twiml.ends_with("</Say></Response>"), "{twiml}");
    assert_eq!(twiml.matches("4, 8, 2, 9, 1, 3").count(), 2, "{twiml}");
    assert!(twiml.contains("Votre code de vérification Acme"), "{twiml}");
}

#[tokio::test]
async fn twilio_call_errors_map_to_retry_or_give_up() {
    // 21215: calling this region is not enabled (geo permissions): no retry helps.
    let server = fake(
        CALLS,
        twilio_error(400, 21215, "Account not authorized to call +4915112345678"),
    )
    .await;
    let reason = permanent(provider(twilio(&server)).send(&call_message("en")).await);
    assert!(reason.contains("21215"), "{reason}");
    // 20429: too many requests: another try may pass.
    let server = fake(CALLS, twilio_error(429, 20429, "Too Many Requests")).await;
    retryable(provider(twilio(&server)).send(&call_message("en")).await);
    // A 5xx without a body.
    let server = fake(CALLS, ResponseTemplate::new(503)).await;
    retryable(provider(twilio(&server)).send(&call_message("en")).await);
}

#[tokio::test]
async fn a_twilio_entry_with_only_a_messaging_service_carries_no_calls() {
    let mut settings = twilio(&MockServer::start().await);
    settings.as_object_mut().unwrap().remove("from");
    settings["messaging_service_sid"] = json!("MG0123456789abcdef0123456789abcdef");
    let built = provider(settings.clone());
    assert!(built.carries(Channel::Sms));
    assert!(!built.carries(Channel::Call));
    settings["channels"] = json!(["sms", "call"]);
    let problems = crate::helpers::settings(settings).validate().join("\n");
    assert!(problems.contains("calls need 'from'"), "{problems}");
}

#[test]
fn twilio_call_status_callbacks_become_receipts() {
    let answered = format!(
        "AccountSid={SID}&CallSid={CALL_SID}&CallStatus=in-progress&Direction=outbound-api&To=%2B4915112345678"
    );
    let parse = |body: &str| {
        let pairs = parse_form(body.as_bytes());
        assert!(is_twilio_call(&pairs));
        parse_twilio_call(&pairs)
    };
    let receipts = parse(&answered).unwrap();
    assert_eq!(receipts[0].provider_message_id, CALL_SID);
    assert_eq!(receipts[0].status, DeliveryStatus::Delivered);
    let unanswered = format!("CallSid={CALL_SID}&CallStatus=no-answer&CallDuration=0");
    assert_eq!(
        parse(&unanswered).unwrap()[0].status,
        DeliveryStatus::Undelivered
    );
    assert!(parse(&format!("CallSid={CALL_SID}&CallStatus=dancing")).is_err());
    // An SMS callback (it may carry a CallSid-less MessageSid) is not a call's.
    assert!(!is_twilio_call(&parse_form(
        b"MessageSid=SM1&MessageStatus=sent"
    )));
}

// ---- Vonage ----

/// A fresh 2048-bit RSA key in PKCS#8 PEM, made by the openssl command line for this test run
/// (no key is kept in the repository).
fn test_key() -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("private.key");
    let status = Command::new("openssl")
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

fn public_key(pem: &str) -> Vec<u8> {
    let base64: String = pem
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    let der = data_encoding::BASE64.decode(base64.as_bytes()).unwrap();
    let key = RsaKeyPair::from_pkcs8(&der).unwrap();
    key.public_key().as_ref().to_vec()
}

fn vonage(server: &MockServer, pem: &str) -> Value {
    json!({
        "name": "vonage-voice",
        "kind": "vonage",
        "voice_base_url": server.uri(),
        "timeout_ms": SHORT_TIMEOUT_MS,
        "application_id": APPLICATION,
        "private_key": pem,
        "from": "+447700900000",
        "event_url": "https://otp.example.com/v1/receipts/vonage-voice?token=t",
    })
}

/// The claims of a JWT whose RS256 signature the public key verifies.
fn verified_claims(token: &str, public: &[u8]) -> Value {
    let (input, signature) = token.rsplit_once('.').expect("a JWT");
    let signature = data_encoding::BASE64URL_NOPAD
        .decode(signature.as_bytes())
        .unwrap();
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, public)
        .verify(input.as_bytes(), &signature)
        .expect("the JWT is signed by the application's key");
    let (header, claims) = input.split_once('.').unwrap();
    let header: Value = serde_json::from_slice(
        &data_encoding::BASE64URL_NOPAD
            .decode(header.as_bytes())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "RS256");
    serde_json::from_slice(
        &data_encoding::BASE64URL_NOPAD
            .decode(claims.as_bytes())
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn vonage_places_a_call_with_a_talk_ncco_and_an_rs256_jwt_of_the_application() {
    let pem = test_key();
    let answer = json!({
        "uuid": CALL_UUID, "status": "started", "direction": "outbound",
        "conversation_uuid": "CON-f972836a-550f-45fa-956c-12a2ab5b7d22",
    });
    let server = fake(
        "/v1/calls",
        ResponseTemplate::new(201).set_body_json(answer),
    )
    .await;
    let result = provider(vonage(&server, &pem))
        .send(&call_message("es"))
        .await;
    accepted_with(result, CALL_UUID);

    let request = only_request(&server).await;
    let token = header(&request, "authorization")
        .strip_prefix("Bearer ")
        .expect("a bearer token");
    let claims = verified_claims(token, &public_key(&pem));
    assert_eq!(claims["application_id"], APPLICATION);
    let iat = claims["iat"].as_u64().unwrap();
    assert!(claims["exp"].as_u64().unwrap() > iat);
    assert!(claims["jti"].as_str().is_some_and(|jti| jti.len() >= 16));

    let body: Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(body["to"], json!([{"type": "phone", "number": TO_DIGITS}]));
    assert_eq!(
        body["from"],
        json!({"type": "phone", "number": "447700900000"})
    );
    assert_eq!(
        body["event_url"],
        json!(["https://otp.example.com/v1/receipts/vonage-voice?token=t"])
    );
    assert_eq!(body["event_method"], "POST");
    let ncco = body["ncco"].as_array().unwrap();
    assert_eq!(ncco.len(), 1);
    assert_eq!(ncco[0]["action"], "talk");
    assert_eq!(ncco[0]["language"], "es-ES");
    let text = ncco[0]["text"].as_str().unwrap();
    assert!(
        text.starts_with("Su código de verificación de Acme"),
        "{text}"
    );
    assert_eq!(text.matches("4, 8, 2, 9, 1, 3").count(), 2, "{text}");
}

#[tokio::test]
async fn vonage_voice_errors_map_to_retry_or_give_up() {
    let pem = test_key();
    let problem = |status: u16, title: &str| {
        ResponseTemplate::new(status).set_body_json(json!({
            "type": "https://developer.nexmo.com/api-errors#unauthorized",
            "title": title,
            "detail": "You did not provide correct credentials.",
            "instance": "bf0ca0bf927b3b52e3cb03217e1a1ddf",
        }))
    };
    let server = fake("/v1/calls", problem(401, "Unauthorized")).await;
    let reason = permanent(
        provider(vonage(&server, &pem))
            .send(&call_message("en"))
            .await,
    );
    assert!(reason.contains("401"), "{reason}");
    let server = fake("/v1/calls", problem(429, "Too Many Requests")).await;
    retryable(
        provider(vonage(&server, &pem))
            .send(&call_message("en"))
            .await,
    );
    // 201 without a uuid: nothing says the call exists.
    let server = fake(
        "/v1/calls",
        ResponseTemplate::new(201).set_body_json(json!({})),
    )
    .await;
    retryable(
        provider(vonage(&server, &pem))
            .send(&call_message("en"))
            .await,
    );
}

#[test]
fn a_vonage_call_entry_needs_an_application_and_a_usable_key() {
    let mut settings = json!({
        "name": "v", "kind": "vonage", "from": "VonageBrand", "channels": ["call"],
    });
    let problems = crate::helpers::settings(settings.clone())
        .validate()
        .join("\n");
    assert!(
        problems.contains("'application_id' is required"),
        "{problems}"
    );
    assert!(problems.contains("'private_key' is required"), "{problems}");
    assert!(problems.contains("a Vonage number"), "{problems}");
    assert!(
        !problems.contains("'api_key'"),
        "a calls-only entry needs no SMS credentials: {problems}"
    );
    settings["from"] = json!("447700900000");
    settings["application_id"] = json!(APPLICATION);
    settings["private_key"] =
        json!("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n");
    let error = otpgate::dispatch::providers::build(&crate::helpers::settings(settings))
        .err()
        .expect("a key that is not RSA is refused at start");
    assert!(error.contains("'private_key'"), "{error}");
}
