//! Infobip SMS: `POST /sms/2/text/advanced` on the account's base URL, `Authorization: App
//! <key>`, JSON `messages[{destinations[{to, messageId}], from, text, notifyUrl,
//! notifyContentType}]`; answers `messages[{messageId, status{groupName, ...}}]` or a
//! `requestError.serviceException`.

use std::time::Duration;

use serde_json::{json, Value};
use wiremock::matchers::{body_json, header as header_is, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;

fn infobip(server: &MockServer) -> Value {
    json!({
        "name": "infobip",
        "kind": "infobip",
        "base_url": server.uri(),
        "timeout_ms": SHORT_TIMEOUT_MS,
        "api_key": "003026bbc133714df1834b8638bb496e-8f4b3d9a-e931-478d-a994-28a725159ab9",
        "from": "InfoSMS",
        "notify_url": "https://otp.example.com/v1/receipts/infobip",
    })
}

fn message_status(group_id: u8, group: &str, id: u16, name: &str, description: &str) -> Value {
    json!({
        "bulkId": "2034072219640523072",
        "messages": [{
            "messageId": MESSAGE_ID,
            "status": {
                "description": description,
                "groupId": group_id,
                "groupName": group,
                "id": id,
                "name": name
            },
            "to": TO_DIGITS
        }]
    })
}

fn service_exception(status: u16, id: &str, text: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({
        "requestError": { "serviceException": { "messageId": id, "text": text } }
    }))
}

async fn answering(response: ResponseTemplate) -> (MockServer, Value) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/sms/2/text/advanced"))
        .respond_with(response)
        .mount(&server)
        .await;
    let settings = infobip(&server);
    (server, settings)
}

#[tokio::test]
async fn infobip_posts_the_documented_json_with_app_auth_and_keeps_the_message_id() {
    let server = MockServer::start().await;
    let expected = json!({
        "messages": [{
            "destinations": [{ "to": TO_DIGITS, "messageId": MESSAGE_ID }],
            "from": "InfoSMS",
            "text": BODY,
            "notifyUrl": "https://otp.example.com/v1/receipts/infobip",
            "notifyContentType": "application/json"
        }]
    });
    Mock::given(method("POST"))
        .and(path("/sms/2/text/advanced"))
        .and(header_is(
            "authorization",
            "App 003026bbc133714df1834b8638bb496e-8f4b3d9a-e931-478d-a994-28a725159ab9",
        ))
        .and(header_is("content-type", "application/json"))
        .and(body_json(&expected))
        .respond_with(ResponseTemplate::new(200).set_body_json(message_status(
            1,
            "PENDING",
            26,
            "PENDING_ACCEPTED",
            "Message sent to next instance",
        )))
        .expect(1)
        .mount(&server)
        .await;
    let result = provider(infobip(&server)).send(&message()).await;
    accepted_with(result, MESSAGE_ID);
    assert_eq!(
        only_request(&server).await.url.path(),
        "/sms/2/text/advanced"
    );
}

#[tokio::test]
async fn infobip_500_is_retryable() {
    let (_server, settings) = answering(service_exception(
        500,
        "GENERAL_ERROR",
        "Something went wrong",
    ))
    .await;
    retryable(provider(settings).send(&message()).await);
}

#[tokio::test]
async fn infobip_429_too_many_requests_is_retryable() {
    let (_server, settings) = answering(service_exception(
        429,
        "TOO_MANY_REQUESTS",
        "Too many requests",
    ))
    .await;
    let reason = retryable(provider(settings).send(&message()).await);
    assert!(reason.contains("TOO_MANY_REQUESTS"), "{reason}");
}

#[tokio::test]
async fn infobip_rejected_destination_is_permanent() {
    let (_server, settings) = answering(ResponseTemplate::new(200).set_body_json(message_status(
        5,
        "REJECTED",
        52,
        "REJECTED_DESTINATION",
        "Invalid destination address.",
    )))
    .await;
    let reason = permanent(provider(settings).send(&message()).await);
    assert!(reason.contains("REJECTED_DESTINATION"), "{reason}");
}

#[tokio::test]
async fn infobip_bad_request_is_permanent() {
    let (_server, settings) = answering(service_exception(400, "BAD_REQUEST", "Bad request")).await;
    permanent(provider(settings).send(&message()).await);
}

#[tokio::test]
async fn infobip_bad_credentials_are_permanent() {
    let (_server, settings) = answering(service_exception(
        401,
        "UNAUTHORIZED",
        "Invalid login details",
    ))
    .await;
    let reason = permanent(provider(settings).send(&message()).await);
    assert!(reason.contains("UNAUTHORIZED"), "{reason}");
}

#[tokio::test]
async fn infobip_timeout_is_retryable() {
    let (_server, settings) = answering(
        ResponseTemplate::new(200)
            .set_body_json(message_status(1, "PENDING", 26, "PENDING_ACCEPTED", "sent"))
            .set_delay(Duration::from_millis(SHORT_TIMEOUT_MS * 4)),
    )
    .await;
    let reason = retryable(provider(settings).send(&message()).await);
    assert!(reason.contains("timed out"), "{reason}");
}
