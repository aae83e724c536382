//! SendGrid v3 Mail Send: `POST /v3/mail/send`, `Authorization: Bearer <API key>`, JSON
//! `personalizations[].to[].email`, `from`, `subject`, `content` (text/plain first, then
//! text/html), `custom_args`; answers 202 with an empty body and `X-Message-Id`, or
//! `{"errors":[{"message","field","help"}]}` with a 4xx (permanent; 429 retryable) or a 5xx
//! (retryable).

use otpgate::destination::Destination;
use otpgate::dispatch::providers::Accepted;
use otpgate::verify::model::Channel;
use serde_json::{json, Value};
use wiremock::matchers::{header as header_is, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;

const API_KEY: &str = "SG.test-key.abcdefghijklmnopqrstuvwxyz";
const ADDRESS: &str = "jane.doe@example.com";

fn sendgrid(server: &MockServer) -> Value {
    json!({
        "name": "mail",
        "kind": "sendgrid",
        "base_url": server.uri(),
        "timeout_ms": SHORT_TIMEOUT_MS,
        "api_key": API_KEY,
        "from": "Acme <no-reply@acme.example>",
    })
}

fn mail_message(locale: &str) -> otpgate::dispatch::OutgoingMessage {
    let text = format!("{BODY}\n\nIf you did not ask for this code, ignore this e-mail.\n");
    let mut message = message_with(Channel::Email, &text, locale);
    message.to = Destination::parse(ADDRESS).expect("a valid address");
    message
}

async fn answering(response: ResponseTemplate) -> (MockServer, Value) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v3/mail/send"))
        .respond_with(response)
        .mount(&server)
        .await;
    let settings = sendgrid(&server);
    (server, settings)
}

fn errors(status: u16, message: &str, field: Option<&str>) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({
        "errors": [{ "message": message, "field": field, "help": null }]
    }))
}

#[tokio::test]
async fn sendgrid_posts_the_documented_json_with_bearer_auth_and_keeps_the_message_id() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v3/mail/send"))
        .and(header_is(
            "authorization",
            format!("Bearer {API_KEY}").as_str(),
        ))
        .and(header_is("content-type", "application/json"))
        .respond_with(
            ResponseTemplate::new(202).insert_header("X-Message-Id", "W86EgYT6SQKk0lRflfLRsA"),
        )
        .expect(1)
        .mount(&server)
        .await;
    let sent = provider(sendgrid(&server)).send(&mail_message("de")).await;
    assert_eq!(
        sent,
        Ok(Accepted {
            provider_message_id: Some("W86EgYT6SQKk0lRflfLRsA".to_owned())
        })
    );
    let request = only_request(&server).await;
    let body: Value = serde_json::from_slice(&request.body).expect("a JSON body");
    assert_eq!(
        body["personalizations"],
        json!([{ "to": [{ "email": ADDRESS }] }])
    );
    assert_eq!(
        body["from"],
        json!({ "email": "no-reply@acme.example", "name": "Acme" })
    );
    assert_eq!(
        body["subject"],
        json!(format!("Ihr Bestätigungscode: {CODE}"))
    );
    let content = body["content"].as_array().expect("content is a list");
    assert_eq!(content.len(), 2);
    assert_eq!(content[0]["type"], "text/plain");
    assert!(content[0]["value"].as_str().unwrap().contains(CODE));
    assert_eq!(content[1]["type"], "text/html");
    let html = content[1]["value"].as_str().unwrap();
    assert!(html.contains(&format!("<strong>{CODE}</strong>")), "{html}");
    assert!(!html.contains("<img"), "the code is text, never an image");
    assert_eq!(
        body["custom_args"],
        json!({ "otpgate_message_id": MESSAGE_ID })
    );
    assert_eq!(
        body["tracking_settings"],
        json!({ "click_tracking": { "enable": false }, "open_tracking": { "enable": false } })
    );
}

#[tokio::test]
async fn sendgrid_client_errors_are_permanent_and_name_the_field_without_the_code() {
    let (_server, settings) = answering(errors(
        400,
        &format!("The subject 'Your verification code: {CODE}' is too long"),
        Some("subject"),
    ))
    .await;
    let reason = permanent(provider(settings).send(&mail_message("en")).await);
    assert!(
        reason.contains("400") && reason.contains("subject"),
        "{reason}"
    );

    let (_server, settings) = answering(errors(
        401,
        "The provided authorization grant is invalid, expired, or revoked",
        None,
    ))
    .await;
    let reason = permanent(provider(settings).send(&mail_message("en")).await);
    assert!(
        reason.contains("401") && reason.contains("authorization grant"),
        "{reason}"
    );

    let (_server, settings) = answering(errors(
        403,
        "The from address does not match a verified Sender Identity",
        Some("from"),
    ))
    .await;
    permanent(provider(settings).send(&mail_message("en")).await);
}

#[tokio::test]
async fn sendgrid_rate_limits_and_server_errors_are_retryable() {
    for status in [429, 500, 503] {
        let (_server, settings) = answering(errors(status, "try later", None)).await;
        let reason = retryable(provider(settings).send(&mail_message("en")).await);
        assert!(reason.contains(&status.to_string()), "{reason}");
    }
}

#[tokio::test]
async fn sendgrid_times_out_as_retryable() {
    let (_server, settings) = answering(
        ResponseTemplate::new(202)
            .set_delay(std::time::Duration::from_millis(SHORT_TIMEOUT_MS * 3)),
    )
    .await;
    retryable(provider(settings).send(&mail_message("en")).await);
}

#[tokio::test]
async fn sendgrid_refuses_a_phone_number_without_calling_the_api() {
    let (server, settings) = answering(ResponseTemplate::new(202)).await;
    permanent(provider(settings).send(&message()).await);
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[test]
fn sendgrid_settings_need_a_key_a_sender_and_a_well_formed_verification_key() {
    let mut entry = settings(json!({ "name": "mail", "kind": "sendgrid" }));
    let problems = entry.validate().join("\n");
    assert!(problems.contains("'api_key' is required"), "{problems}");
    assert!(problems.contains("'from' is required"), "{problems}");
    entry.api_key = Some("SG.x".into());
    entry.from = Some("not an address".into());
    entry.verification_key = Some("bm90IGEga2V5".into());
    let problems = entry.validate().join("\n");
    assert!(problems.contains("'from' must be an address"), "{problems}");
    assert!(problems.contains("'verification_key'"), "{problems}");
    entry.from = Some("no-reply@acme.example".into());
    entry.verification_key = Some("MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEDr2LjtURuePQzplybdC+u4CwrqDqBaWjcMMsTbhdbcwHBcepxo7yAQGhHPTnlvFYPAZFceEu/1FwCM/QmGUhA==".into());
    assert!(entry.validate().is_empty(), "{:?}", entry.validate());
}

#[test]
fn smtp_settings_take_a_url_without_a_password_and_a_sender() {
    let entry = settings(json!({
        "name": "relay", "kind": "smtp",
        "url": "smtp://otp:secret@mail.example.com", "from": "no-reply@acme.example",
    }));
    let problems = entry.validate().join("\n");
    assert!(problems.contains("must not carry a password"), "{problems}");
    let entry = settings(json!({
        "name": "relay", "kind": "smtp",
        "url": "smtp://otp@mail.example.com", "from": "no-reply@acme.example", "password": "secret",
    }));
    assert!(entry.validate().is_empty(), "{:?}", entry.validate());
    assert!(entry.carries(Channel::Email) && !entry.carries(Channel::Sms));
}
