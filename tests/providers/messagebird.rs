//! MessageBird SMS: `POST /messages`, `Authorization: AccessKey <key>`, JSON `recipients`,
//! `originator`, `body`, `reference`, `datacoding`, `reportUrl`; answers 201 with the message
//! (`id`) or `errors[{code, description, parameter}]`.

use std::time::Duration;

use otpgate::verify::model::Channel;
use serde_json::{json, Value};
use wiremock::matchers::{body_json, header as header_is, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;

fn messagebird(server: &MockServer) -> Value {
    json!({
        "name": "bird",
        "kind": "messagebird",
        "base_url": server.uri(),
        "timeout_ms": SHORT_TIMEOUT_MS,
        "access_key": "live_Xy1zAbCdEfGhIjKlMnOpQrStU",
        "originator": "Acme",
        "report_url": "https://otp.example.com/v1/receipts/bird",
    })
}

fn created() -> Value {
    json!({
        "id": "e8077d803532c0b5937c639b60216938",
        "href": "https://rest.messagebird.com/messages/e8077d803532c0b5937c639b60216938",
        "direction": "mt",
        "type": "sms",
        "originator": "Acme",
        "body": BODY,
        "reference": MESSAGE_ID,
        "validity": null,
        "gateway": 10,
        "typeDetails": {},
        "datacoding": "plain",
        "mclass": 1,
        "scheduledDatetime": null,
        "createdDatetime": "2024-05-03T14:26:57+00:00",
        "recipients": {
            "totalCount": 1,
            "totalSentCount": 1,
            "totalDeliveredCount": 0,
            "totalDeliveryFailedCount": 0,
            "items": [{
                "recipient": 4915112345678u64,
                "status": "sent",
                "statusDatetime": "2024-05-03T14:26:57+00:00"
            }]
        }
    })
}

fn errors(status: u16, code: u32, description: &str, parameter: Option<&str>) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({
        "errors": [{ "code": code, "description": description, "parameter": parameter }]
    }))
}

async fn answering(response: ResponseTemplate) -> (MockServer, Value) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/messages"))
        .respond_with(response)
        .mount(&server)
        .await;
    let settings = messagebird(&server);
    (server, settings)
}

#[tokio::test]
async fn messagebird_posts_the_documented_json_with_accesskey_auth_and_keeps_the_id() {
    let server = MockServer::start().await;
    let expected = json!({
        "recipients": [4915112345678u64],
        "originator": "Acme",
        "body": BODY,
        "reference": MESSAGE_ID,
        "datacoding": "plain",
        "reportUrl": "https://otp.example.com/v1/receipts/bird"
    });
    Mock::given(method("POST"))
        .and(path("/messages"))
        .and(header_is(
            "authorization",
            "AccessKey live_Xy1zAbCdEfGhIjKlMnOpQrStU",
        ))
        .and(header_is("content-type", "application/json"))
        .and(body_json(&expected))
        .respond_with(ResponseTemplate::new(201).set_body_json(created()))
        .expect(1)
        .mount(&server)
        .await;
    let result = provider(messagebird(&server)).send(&message()).await;
    accepted_with(result, "e8077d803532c0b5937c639b60216938");
}

#[tokio::test]
async fn messagebird_asks_for_unicode_when_the_text_needs_it() {
    let (server, settings) = answering(ResponseTemplate::new(201).set_body_json(created())).await;
    let greek_free = message_with(Channel::Sms, "Kod Acme: 482913. Nie udostępniaj.", "pl");
    provider(settings)
        .send(&greek_free)
        .await
        .expect("accepted");
    let body: Value = serde_json::from_slice(&only_request(&server).await.body).expect("JSON");
    assert_eq!(body["datacoding"], "unicode");
}

#[tokio::test]
async fn messagebird_500_internal_error_is_retryable() {
    let (_server, settings) = answering(errors(500, 99, "Internal error", None)).await;
    retryable(provider(settings).send(&message()).await);
}

#[tokio::test]
async fn messagebird_429_is_retryable() {
    let (_server, settings) = answering(errors(429, 7, "Too many requests", None)).await;
    retryable(provider(settings).send(&message()).await);
}

#[tokio::test]
async fn messagebird_no_correct_recipients_is_permanent() {
    let (_server, settings) = answering(errors(
        422,
        9,
        "no (correct) recipients found",
        Some("recipients"),
    ))
    .await;
    let reason = permanent(provider(settings).send(&message()).await);
    assert!(reason.contains("code 9"), "{reason}");
}

#[tokio::test]
async fn messagebird_bad_access_key_is_permanent() {
    let (_server, settings) = answering(errors(
        401,
        2,
        "Request not allowed (incorrect access_key)",
        Some("access_key"),
    ))
    .await;
    permanent(provider(settings).send(&message()).await);
}

#[tokio::test]
async fn messagebird_timeout_is_retryable() {
    let (_server, settings) = answering(
        ResponseTemplate::new(201)
            .set_body_json(created())
            .set_delay(Duration::from_millis(SHORT_TIMEOUT_MS * 4)),
    )
    .await;
    let reason = retryable(provider(settings).send(&message()).await);
    assert!(reason.contains("timed out"), "{reason}");
}
