//! Provider answers are read only up to `dispatch.provider_body_limit_bytes` (64 KiB by
//! default), streamed: a longer answer fails as retryable, for every vendor, whether its length
//! is announced or the body is chunked and simply does not end.

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use otpgate::dispatch::providers::{build, ProviderError, DEFAULT_BODY_LIMIT};

use crate::helpers::*;

/// Settings of every kind that calls a vendor, pointed at `base`.
fn every_vendor(base: &str) -> Vec<Value> {
    vec![
        json!({"name": "tw", "kind": "twilio", "base_url": base, "timeout_ms": 2000,
               "account_sid": "AC0123456789abcdef0123456789abcdef", "auth_token": "t",
               "from": "+15017122661"}),
        json!({"name": "vo", "kind": "vonage", "base_url": base, "timeout_ms": 2000,
               "api_key": "k", "api_secret": "s", "from": "Acme"}),
        json!({"name": "ib", "kind": "infobip", "base_url": base, "timeout_ms": 2000,
               "api_key": "k", "from": "Acme"}),
        json!({"name": "mb", "kind": "messagebird", "base_url": base, "timeout_ms": 2000,
               "access_key": "k", "originator": "Acme"}),
        json!({"name": "wa", "kind": "whatsapp", "base_url": base, "timeout_ms": 2000,
               "access_token": "t", "phone_number_id": "106540352242922"}),
        json!({"name": "gw", "kind": "http", "url": format!("{base}/messages"), "timeout_ms": 2000}),
    ]
}

fn over_the_limit(result: Result<otpgate::dispatch::providers::Accepted, ProviderError>) {
    match result {
        Err(ProviderError::Retryable(reason)) => assert!(
            reason.contains(&format!("over {DEFAULT_BODY_LIMIT} bytes")),
            "{reason}"
        ),
        other => panic!("a body over the limit must fail as retryable: {other:?}"),
    }
}

#[tokio::test]
async fn an_announced_answer_over_the_limit_fails_as_retryable_for_every_vendor() {
    let server = MockServer::start().await;
    // A success status and an id, padded far past the limit: nothing of it may be trusted.
    let huge = format!(
        r#"{{"sid":"SM1","id":"x","messages":[],"pad":"{}"}}"#,
        "a".repeat(4 * 1024 * 1024)
    );
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(huge, "application/json"))
        .mount(&server)
        .await;
    for settings in every_vendor(&server.uri()) {
        let provider = build(&serde_json::from_value(settings).unwrap()).unwrap();
        over_the_limit(provider.send(&message()).await);
    }
}

/// A vendor that answers 200 with a chunked body that never ends (no Content-Length).
async fn endless_vendor() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = vec![0u8; 16 * 1024];
                let _ = socket.read(&mut request).await;
                let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
                if socket.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = format!("{:x}\r\n{}\r\n", 8192, "b".repeat(8192));
                // Far more than the limit; the reader must stop long before.
                for _ in 0..100_000 {
                    if socket.write_all(chunk.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    format!("http://{address}")
}

#[tokio::test]
async fn an_endless_chunked_answer_is_cut_at_the_limit_for_every_vendor() {
    let base = endless_vendor().await;
    for settings in every_vendor(&base) {
        let provider = build(&serde_json::from_value(settings).unwrap()).unwrap();
        over_the_limit(provider.send(&message()).await);
    }
}
