//! Vonage SMS API: `POST /sms/json`, form-encoded `api_key`, `api_secret`, `from`, `to` (digits,
//! no '+'), `text`, `type=unicode` for non-GSM text, `client-ref`, `callback`; HTTP 200 with
//! `messages[].status` ("0" is success) and `message-id`.

use std::time::Duration;

use otpgate::verify::model::Channel;
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;

fn vonage(server: &MockServer) -> Value {
    json!({
        "name": "vonage",
        "kind": "vonage",
        "base_url": server.uri(),
        "timeout_ms": SHORT_TIMEOUT_MS,
        "api_key": "abcd1234",
        "api_secret": "s3cr3t/+=",
        "from": "Acme",
        "callback": "https://otp.example.com/v1/receipts/vonage",
    })
}

fn sent() -> Value {
    json!({
        "message-count": "1",
        "messages": [{
            "to": TO_DIGITS,
            "message-id": "0A0000000123ABCD1",
            "status": "0",
            "remaining-balance": "3.14159265",
            "message-price": "0.03330000",
            "network": "26203",
            "client-ref": MESSAGE_ID
        }]
    })
}

fn refused(status: &str, text: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "message-count": "1",
        "messages": [{ "status": status, "error-text": text }]
    }))
}

async fn answering(response: ResponseTemplate) -> (MockServer, Value) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/sms/json"))
        .respond_with(response)
        .mount(&server)
        .await;
    let settings = vonage(&server);
    (server, settings)
}

#[tokio::test]
async fn vonage_posts_the_documented_form_and_keeps_the_message_id() {
    let (server, settings) = answering(ResponseTemplate::new(200).set_body_json(sent())).await;
    accepted_with(
        provider(settings).send(&message()).await,
        "0A0000000123ABCD1",
    );
    let request = only_request(&server).await;
    assert_eq!(request.method.as_str(), "POST");
    assert_eq!(request.url.path(), "/sms/json");
    assert_eq!(
        header(&request, "content-type"),
        "application/x-www-form-urlencoded"
    );
    let expected_body = "api_key=abcd1234&api_secret=s3cr3t%2F%2B%3D&from=Acme&to=4915112345678\
        &text=Your+Acme+verification+code+is+482913.+It+expires+in+10+minutes.+Do+not+share+it+with+anyone.\
        &client-ref=MS0123456789abcdef0123456789abcdef\
        &callback=https%3A%2F%2Fotp.example.com%2Fv1%2Freceipts%2Fvonage";
    assert_eq!(String::from_utf8_lossy(&request.body), expected_body);
}

#[tokio::test]
async fn vonage_marks_non_gsm_text_as_unicode() {
    let (server, settings) = answering(ResponseTemplate::new(200).set_body_json(sent())).await;
    let polish = message_with(
        Channel::Sms,
        "Twój kod Acme: 482913. Nie udostępniaj go.",
        "pl",
    );
    provider(settings).send(&polish).await.expect("accepted");
    let body = String::from_utf8_lossy(&only_request(&server).await.body).into_owned();
    assert!(body.contains("&type=unicode&"), "{body}");
    assert!(body.contains("text=Tw%C3%B3j+kod"), "{body}");
}

#[tokio::test]
async fn vonage_500_is_retryable() {
    let (_server, settings) = answering(ResponseTemplate::new(500)).await;
    retryable(provider(settings).send(&message()).await);
}

#[tokio::test]
async fn vonage_429_is_retryable() {
    let (_server, settings) = answering(ResponseTemplate::new(429)).await;
    retryable(provider(settings).send(&message()).await);
}

#[tokio::test]
async fn vonage_throttled_status_1_is_retryable() {
    let (_server, settings) = answering(refused(
        "1",
        "Throughput Rate Exceeded - please wait [ 5 ] and retry",
    ))
    .await;
    let reason = retryable(provider(settings).send(&message()).await);
    assert!(reason.contains("status 1"), "{reason}");
}

#[tokio::test]
async fn vonage_internal_error_status_5_is_retryable() {
    let (_server, settings) = answering(refused("5", "Internal Error")).await;
    retryable(provider(settings).send(&message()).await);
}

#[tokio::test]
async fn vonage_invalid_number_is_permanent() {
    let (_server, settings) = answering(refused("3", "Invalid to address")).await;
    let reason = permanent(provider(settings).send(&message()).await);
    assert!(reason.contains("Invalid to address"), "{reason}");
}

#[tokio::test]
async fn vonage_bad_credentials_are_permanent() {
    let (_server, settings) = answering(refused("4", "Bad Credentials")).await;
    permanent(provider(settings).send(&message()).await);
}

#[tokio::test]
async fn vonage_timeout_is_retryable() {
    let (_server, settings) = answering(
        ResponseTemplate::new(200)
            .set_body_json(sent())
            .set_delay(Duration::from_millis(SHORT_TIMEOUT_MS * 4)),
    )
    .await;
    let reason = retryable(provider(settings).send(&message()).await);
    assert!(reason.contains("timed out"), "{reason}");
}
