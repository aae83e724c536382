//! Voice calls (issue 17): `channel: "call"` end to end through the real server, and the
//! providers' `channels` (a send on a channel no provider carries is refused, changing nothing).

use otpgate::config::Settings;
use otpgate::dispatch::model::Channel;
use otpgate::dispatch::providers::{AdapterKind, ProviderSettings};
use otpgate::dispatch::router::RouteSettings;
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{spawn_app, spawn_app_with, Backend, TestApp};
use crate::on_every_store;

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
    let delivered = crate::dispatch::wait_for_attempt(&app, sms.str("id"), "accepted").await;
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
    let accepted = crate::dispatch::wait_for_attempt(&app, call.str("id"), "accepted").await;
    assert_eq!(accepted["provider"], "voice");
    let sms = app.send("+4915112345679").await;
    assert_eq!(sms.status, 201, "{}", sms.body);
    let accepted = crate::dispatch::wait_for_attempt(&app, sms.str("id"), "accepted").await;
    assert_eq!(accepted["provider"], "texts");

    let calls = bodies(&voice).await;
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["channel"], "call");
    let texted = bodies(&texts).await;
    assert_eq!(texted.len(), 1);
    assert_eq!(texted[0]["channel"], "sms");
    app.stop().await;
}

on_every_store!(
    a_call_reads_the_code_digit_by_digit_twice_and_the_code_approves,
    a_call_no_provider_carries_is_refused_and_changes_nothing,
    the_router_hands_each_channel_to_the_providers_that_carry_it,
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
