//! WhatsApp Cloud API: `POST /{version}/{phone-number-id}/messages`, Bearer token, JSON
//! authentication template with the code as body parameter and as the copy-code (URL) button
//! parameter; answers `messages[0].id` or a Graph `error{code, message, error_data}`.

use std::time::Duration;

use otpgate::verify::model::Channel;
use serde_json::{json, Value};
use wiremock::matchers::{body_json, header as header_is, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;

const MESSAGES: &str = "/v21.0/106540352242922/messages";
const WAMID: &str = "wamid.HBgNNDkxNTExMjM0NTY3OBUCABEYEjQzRDYwQkI1NUQyRjYwQ0UzQQA=";

fn whatsapp(server: &MockServer) -> Value {
    json!({
        "name": "wa",
        "kind": "whatsapp",
        "base_url": server.uri(),
        "timeout_ms": SHORT_TIMEOUT_MS,
        "access_token": "EAAJB-meta-access-token",
        "phone_number_id": "106540352242922",
        "template_name": "login_code",
        "template_languages": ["en_US", "de", "pt_BR"],
    })
}

fn sent() -> Value {
    json!({
        "messaging_product": "whatsapp",
        "contacts": [{ "input": TO, "wa_id": TO_DIGITS }],
        "messages": [{ "id": WAMID, "message_status": "accepted" }]
    })
}

fn graph_error(status: u16, code: i64, message: &str, details: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({
        "error": {
            "message": message,
            "type": "OAuthException",
            "code": code,
            "error_data": { "messaging_product": "whatsapp", "details": details },
            "fbtrace_id": "Az8or2yhqkZfEZ-_4Qn_Bam"
        }
    }))
}

fn whatsapp_message(locale: &str) -> otpgate::dispatch::OutgoingMessage {
    message_with(Channel::Whatsapp, BODY, locale)
}

async fn answering(response: ResponseTemplate) -> (MockServer, Value) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(MESSAGES))
        .respond_with(response)
        .mount(&server)
        .await;
    let settings = whatsapp(&server);
    (server, settings)
}

#[tokio::test]
async fn whatsapp_posts_an_authentication_template_with_bearer_auth_and_keeps_the_wamid() {
    let server = MockServer::start().await;
    let expected = json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": TO,
        "type": "template",
        "template": {
            "name": "login_code",
            "language": { "code": "pt_BR" },
            "components": [
                { "type": "body", "parameters": [{ "type": "text", "text": CODE }] },
                {
                    "type": "button",
                    "sub_type": "url",
                    "index": "0",
                    "parameters": [{ "type": "text", "text": CODE }]
                }
            ]
        },
        "biz_opaque_callback_data": MESSAGE_ID
    });
    Mock::given(method("POST"))
        .and(path(MESSAGES))
        .and(header_is("authorization", "Bearer EAAJB-meta-access-token"))
        .and(header_is("content-type", "application/json"))
        .and(body_json(&expected))
        .respond_with(ResponseTemplate::new(200).set_body_json(sent()))
        .expect(1)
        .mount(&server)
        .await;
    let result = provider(whatsapp(&server))
        .send(&whatsapp_message("pt-BR"))
        .await;
    accepted_with(result, WAMID);
}

#[tokio::test]
async fn whatsapp_defaults_to_the_verification_code_template_and_v21() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v21.0/106540352242922/messages"))
        .respond_with(ResponseTemplate::new(200).set_body_json(sent()))
        .mount(&server)
        .await;
    let settings = json!({
        "name": "wa",
        "kind": "whatsapp",
        "base_url": server.uri(),
        "access_token": "token",
        "phone_number_id": "106540352242922",
    });
    provider(settings)
        .send(&whatsapp_message("fr"))
        .await
        .expect("accepted");
    let body: Value = serde_json::from_slice(&only_request(&server).await.body).expect("JSON");
    assert_eq!(body["template"]["name"], "verification_code");
    assert_eq!(body["template"]["language"]["code"], "en");
}

#[tokio::test]
async fn whatsapp_500_is_retryable() {
    let (_server, settings) = answering(graph_error(500, 131000, "Something went wrong", "")).await;
    retryable(provider(settings).send(&whatsapp_message("en")).await);
}

#[tokio::test]
async fn whatsapp_429_is_retryable() {
    let (_server, settings) = answering(graph_error(
        429,
        4,
        "(#4) Application request limit reached",
        "",
    ))
    .await;
    retryable(provider(settings).send(&whatsapp_message("en")).await);
}

#[tokio::test]
async fn whatsapp_throughput_limit_130429_is_retryable_despite_its_400() {
    let (_server, settings) = answering(graph_error(
        400,
        130429,
        "(#130429) Rate limit hit",
        "Cloud API message throughput has been reached.",
    ))
    .await;
    let reason = retryable(provider(settings).send(&whatsapp_message("en")).await);
    assert!(reason.contains("130429"), "{reason}");
}

#[tokio::test]
async fn whatsapp_pair_rate_limit_131056_is_retryable() {
    let (_server, settings) = answering(graph_error(
        400,
        131056,
        "(#131056) (Business Account, Consumer Account) pair rate limit hit",
        "Message failed to send because there were too many messages sent from this phone number to the same phone number in a short period of time.",
    ))
    .await;
    retryable(provider(settings).send(&whatsapp_message("en")).await);
}

#[tokio::test]
async fn whatsapp_undeliverable_131026_is_permanent() {
    let (_server, settings) = answering(graph_error(
        400,
        131026,
        "(#131026) Message undeliverable",
        "Unable to deliver message.",
    ))
    .await;
    let reason = permanent(provider(settings).send(&whatsapp_message("en")).await);
    assert!(reason.contains("131026"), "{reason}");
}

#[tokio::test]
async fn whatsapp_expired_token_is_permanent() {
    let (_server, settings) = answering(graph_error(
        401,
        190,
        "Error validating access token: Session has expired.",
        "",
    ))
    .await;
    permanent(provider(settings).send(&whatsapp_message("en")).await);
}

#[tokio::test]
async fn whatsapp_timeout_is_retryable() {
    let (_server, settings) = answering(
        ResponseTemplate::new(200)
            .set_body_json(sent())
            .set_delay(Duration::from_millis(SHORT_TIMEOUT_MS * 4)),
    )
    .await;
    let reason = retryable(provider(settings).send(&whatsapp_message("en")).await);
    assert!(reason.contains("timed out"), "{reason}");
}
