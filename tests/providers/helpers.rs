//! Messages, settings and assertions shared by the vendor tests.

use std::sync::Arc;

use otpgate::dispatch::providers::{build, Accepted, Provider, ProviderError, ProviderSettings};
use otpgate::dispatch::OutgoingMessage;
use otpgate::phone::PhoneNumber;
use otpgate::verify::model::Channel;
use serde_json::Value;
use wiremock::{MockServer, Request};

pub const TO: &str = "+4915112345678";
pub const TO_DIGITS: &str = "4915112345678";
pub const CODE: &str = "482913";
pub const MESSAGE_ID: &str = "MS0123456789abcdef0123456789abcdef";
pub const BODY: &str =
    "Your Acme verification code is 482913. It expires in 10 minutes. Do not share it with anyone.";

/// A short timeout, so the timeout case stays fast; the fake answers well within it otherwise.
pub const SHORT_TIMEOUT_MS: u64 = 300;

pub fn message() -> OutgoingMessage {
    message_with(Channel::Sms, BODY, "en")
}

pub fn message_with(channel: Channel, body: &str, locale: &str) -> OutgoingMessage {
    OutgoingMessage {
        id: MESSAGE_ID.to_owned(),
        verification_id: "VE0123456789".to_owned(),
        account: String::new(),
        to: PhoneNumber::parse(TO)
            .expect("a valid German mobile number")
            .into(),
        channel,
        body: body.to_owned(),
        code: CODE.to_owned(),
        locale: locale.to_owned(),
        not_after_ms: u64::MAX,
    }
}

/// Settings from JSON, the way the config loader hands them over (same serde shape as TOML).
pub fn settings(value: Value) -> ProviderSettings {
    serde_json::from_value(value).expect("valid provider settings")
}

pub fn provider(value: Value) -> Arc<dyn Provider> {
    build(&settings(value)).expect("provider builds")
}

pub async fn only_request(server: &MockServer) -> Request {
    let mut requests = server
        .received_requests()
        .await
        .expect("request recording is on");
    assert_eq!(requests.len(), 1, "exactly one request reaches the vendor");
    requests.remove(0)
}

pub fn header<'a>(request: &'a Request, name: &str) -> &'a str {
    request
        .headers
        .get(name)
        .unwrap_or_else(|| panic!("header {name} is missing"))
        .to_str()
        .expect("ASCII header")
}

pub fn basic_auth(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        data_encoding::BASE64.encode(format!("{user}:{password}").as_bytes())
    )
}

pub fn accepted_with(result: Result<Accepted, ProviderError>, id: &str) {
    assert_eq!(
        result,
        Ok(Accepted {
            provider_message_id: Some(id.to_owned())
        })
    );
}

#[track_caller]
pub fn retryable(result: Result<Accepted, ProviderError>) -> String {
    match result {
        Err(ProviderError::Retryable(reason)) => {
            assert_reason_is_clean(&reason);
            reason
        }
        other => panic!("expected a retryable error, got {other:?}"),
    }
}

#[track_caller]
pub fn permanent(result: Result<Accepted, ProviderError>) -> String {
    match result {
        Err(ProviderError::Permanent(reason)) => {
            assert_reason_is_clean(&reason);
            reason
        }
        other => panic!("expected a permanent error, got {other:?}"),
    }
}

/// Reasons are logged: they must never carry the code or the text that holds it.
#[track_caller]
pub fn assert_reason_is_clean(reason: &str) {
    assert!(
        !reason.contains(CODE),
        "the reason shows the code: {reason}"
    );
    assert!(
        !reason.contains(BODY),
        "the reason shows the body: {reason}"
    );
}
