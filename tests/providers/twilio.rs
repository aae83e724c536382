//! Twilio Programmable Messaging: `POST /2010-04-01/Accounts/{AccountSid}/Messages.json`,
//! form-encoded `To`, `From` or `MessagingServiceSid`, `Body`, `StatusCallback`; HTTP Basic
//! `AccountSid:AuthToken`; a Message resource (`sid`) or an error (`code`, `message`,
//! `more_info`, `status`) in JSON.

use std::time::Duration;

use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;

const SID: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "twilio-auth-token";
const MESSAGES: &str = "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages.json";

fn twilio(server: &MockServer) -> Value {
    json!({
        "name": "twilio-main",
        "kind": "twilio",
        "base_url": server.uri(),
        "timeout_ms": SHORT_TIMEOUT_MS,
        "account_sid": SID,
        "auth_token": TOKEN,
        "from": "+15017122661",
        "status_callback": "https://otp.example.com/v1/receipts/twilio-main",
    })
}

/// The Message resource Twilio answers a create with (trimmed to the usual fields).
fn created() -> Value {
    json!({
        "account_sid": SID,
        "api_version": "2010-04-01",
        "body": BODY,
        "date_created": "Thu, 24 Aug 2023 05:01:45 +0000",
        "date_sent": null,
        "date_updated": "Thu, 24 Aug 2023 05:01:45 +0000",
        "direction": "outbound-api",
        "error_code": null,
        "error_message": null,
        "from": "+15017122661",
        "messaging_service_sid": null,
        "num_media": "0",
        "num_segments": "1",
        "price": null,
        "price_unit": null,
        "sid": "SM1f0e8ae6ade43cb3c0ce4525424e404f",
        "status": "queued",
        "to": TO,
        "uri": "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages/SM1f0e8ae6ade43cb3c0ce4525424e404f.json"
    })
}

fn error(status: u16, code: u32, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({
        "code": code,
        "message": message,
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
        "status": status,
    }))
}

async fn answering(response: ResponseTemplate) -> (MockServer, Value) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(MESSAGES))
        .respond_with(response)
        .mount(&server)
        .await;
    let settings = twilio(&server);
    (server, settings)
}

#[tokio::test]
async fn twilio_posts_the_documented_form_with_basic_auth_and_keeps_the_sid() {
    let (server, settings) = answering(ResponseTemplate::new(201).set_body_json(created())).await;
    let result = provider(settings).send(&message()).await;
    accepted_with(result, "SM1f0e8ae6ade43cb3c0ce4525424e404f");

    let request = only_request(&server).await;
    assert_eq!(request.method.as_str(), "POST");
    assert_eq!(request.url.path(), MESSAGES);
    assert_eq!(header(&request, "authorization"), basic_auth(SID, TOKEN));
    assert_eq!(
        header(&request, "content-type"),
        "application/x-www-form-urlencoded"
    );
    let expected_body = "To=%2B4915112345678&From=%2B15017122661\
        &Body=Your+Acme+verification+code+is+482913.+It+expires+in+10+minutes.+Do+not+share+it+with+anyone.\
        &StatusCallback=https%3A%2F%2Fotp.example.com%2Fv1%2Freceipts%2Ftwilio-main";
    assert_eq!(String::from_utf8_lossy(&request.body), expected_body);
}

#[tokio::test]
async fn twilio_sends_through_a_messaging_service_when_configured() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(MESSAGES))
        .respond_with(ResponseTemplate::new(201).set_body_json(created()))
        .mount(&server)
        .await;
    let mut settings = twilio(&server);
    settings["from"] = Value::Null;
    settings["messaging_service_sid"] = json!("MG0123456789abcdef0123456789abcdef");
    settings["status_callback"] = Value::Null;
    provider(settings).send(&message()).await.expect("accepted");
    let request = only_request(&server).await;
    let body = String::from_utf8_lossy(&request.body).into_owned();
    assert!(
        body.starts_with(
            "To=%2B4915112345678&MessagingServiceSid=MG0123456789abcdef0123456789abcdef&Body="
        ),
        "{body}"
    );
    assert!(!body.contains("From="), "{body}");
    assert!(!body.contains("StatusCallback="), "{body}");
}

#[tokio::test]
async fn twilio_500_is_retryable() {
    let (_server, settings) = answering(error(500, 20500, "Internal Server Error")).await;
    retryable(provider(settings).send(&message()).await);
}

#[tokio::test]
async fn twilio_429_is_retryable() {
    let (_server, settings) = answering(error(429, 20429, "Too Many Requests")).await;
    let reason = retryable(provider(settings).send(&message()).await);
    assert!(reason.contains("20429"), "{reason}");
}

#[tokio::test]
async fn twilio_queue_overflow_code_is_retryable_despite_its_400() {
    let (_server, settings) = answering(error(
        400,
        21611,
        "This 'From' number has exceeded the maximum number of queued messages",
    ))
    .await;
    retryable(provider(settings).send(&message()).await);
}

#[tokio::test]
async fn twilio_invalid_number_is_permanent_and_the_reason_hides_the_code() {
    // Twilio quotes request fields in some messages; the adapter blanks the code out.
    let (_server, settings) = answering(error(
        400,
        21211,
        "The 'To' number +4915112345678 is not a valid phone number (text: 482913).",
    ))
    .await;
    let reason = permanent(provider(settings).send(&message()).await);
    assert!(reason.contains("21211"), "{reason}");
    assert!(reason.contains("[code]"), "{reason}");
}

#[tokio::test]
async fn twilio_bad_credentials_are_permanent() {
    let (_server, settings) = answering(error(401, 20003, "Authenticate")).await;
    let reason = permanent(provider(settings).send(&message()).await);
    assert!(reason.contains("20003"), "{reason}");
}

#[tokio::test]
async fn twilio_timeout_is_retryable() {
    let (_server, settings) = answering(
        ResponseTemplate::new(201)
            .set_body_json(created())
            .set_delay(Duration::from_millis(SHORT_TIMEOUT_MS * 4)),
    )
    .await;
    let reason = retryable(provider(settings).send(&message()).await);
    assert!(reason.contains("timed out"), "{reason}");
}

#[tokio::test]
async fn twilio_success_without_a_sid_is_not_taken_for_acceptance() {
    let (_server, settings) =
        answering(ResponseTemplate::new(200).set_body_string("<html>proxy</html>")).await;
    retryable(provider(settings).send(&message()).await);
}
