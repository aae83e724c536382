//! The SMPP provider against a fake SMSC built on Net::SMPP (tests/common/fake_smsc.pl): the
//! bind, submit_sm as SMPP 3.4 lays it out (addresses, data_coding, esm_class, UDH), the
//! SMSC's refusals, enquire_link, and a session bound again after it dropped.

use std::collections::HashSet;
use std::time::Duration;

use otpgate::config::Settings;
use otpgate::dispatch::providers::settings::SmppBind;
use otpgate::dispatch::providers::{Accepted, ProviderError};
use otpgate::verify::model::Channel;
use serde_json::{json, Value};

use crate::fake_smsc::{short_message, FakeSmsc};
use crate::helpers::{message, message_with, provider, settings, BODY, TO_DIGITS};

const WAIT: Duration = Duration::from_secs(10);

fn smpp(smsc: &FakeSmsc, extra: Value) -> Value {
    let mut value = json!({
        "name": "smsc-a",
        "kind": "smpp",
        "address": smsc.address(),
        "system_id": "otpgate",
        "password": "s3cret",
        "from": "Acme",
        "timeout_ms": 2000,
    });
    for (key, field) in extra.as_object().cloned().unwrap_or_default() {
        value[key] = field;
    }
    value
}

fn accepted_id(result: Result<Accepted, ProviderError>) -> String {
    match result {
        Ok(Accepted {
            provider_message_id: Some(id),
        }) => id,
        other => panic!("not accepted with an id: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_is_one_gsm7_submit_sm_that_asks_for_a_receipt() {
    let smsc = FakeSmsc::start(&[]);
    let sender = provider(smpp(&smsc, json!({})));
    let id = accepted_id(sender.send(&message()).await);

    let binds = smsc.named("bind");
    assert_eq!(binds.len(), 1, "{binds:?}");
    assert_eq!(binds[0]["kind"], "transceiver");
    assert_eq!(binds[0]["system_id"], "otpgate");
    assert_eq!(binds[0]["password"], "s3cret");
    assert_eq!(binds[0]["interface_version"], 0x34);
    let submits = smsc.wait_for("submit_sm", 1, WAIT).await;
    let submit = &submits[0];
    assert_eq!(submit["destination"], TO_DIGITS);
    assert_eq!(submit["source"], "Acme");
    assert_eq!(submit["source_ton"], 5, "alphanumeric sender");
    assert_eq!(submit["data_coding"], 0, "GSM 03.38 default alphabet");
    assert_eq!(submit["esm_class"], 0, "no UDH");
    assert_eq!(submit["registered_delivery"], 1);
    // The body is ASCII letters, digits and punctuation that GSM 03.38 puts at the same codes.
    assert_eq!(short_message(submit), BODY.as_bytes());
    assert_eq!(id, submit["message_id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_message_goes_in_parts_with_a_concatenation_udh() {
    let smsc = FakeSmsc::start(&[]);
    let sender = provider(smpp(&smsc, json!({})));
    let body = "Your code is 482913. ".repeat(15); // 315 GSM-7 characters
    let id = accepted_id(sender.send(&message_with(Channel::Sms, &body, "en")).await);

    let parts = smsc.wait_for("submit_sm", 3, WAIT).await;
    assert_eq!(
        parts.len(),
        3,
        "134 characters a part after the 6-octet UDH"
    );
    let mut text = Vec::new();
    let mut references = HashSet::new();
    for (index, part) in parts.iter().enumerate() {
        assert_eq!(part["esm_class"], 0x40, "UDHI set, default mode and type");
        assert_eq!(part["data_coding"], 0);
        let bytes = short_message(part);
        assert_eq!(
            &bytes[..3],
            &[0x05, 0x00, 0x03],
            "UDH: concatenation, 8-bit reference"
        );
        references.insert(bytes[3]);
        assert_eq!(bytes[4], 3, "total parts");
        assert_eq!(usize::from(bytes[5]), index + 1, "part number");
        let last = index == 2;
        assert_eq!(
            part["registered_delivery"],
            u64::from(last),
            "a receipt for the last part only"
        );
        text.extend_from_slice(&bytes[6..]);
    }
    assert_eq!(references.len(), 1, "one reference for the whole message");
    assert_eq!(text, body.as_bytes());
    assert_eq!(
        id, parts[2]["message_id"],
        "the send is known by its last part"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_outside_the_gsm_alphabet_goes_as_ucs2() {
    let smsc = FakeSmsc::start(&[]);
    let sender = provider(smpp(&smsc, json!({})));
    let body = "Ваш код: 482913";
    accepted_id(sender.send(&message_with(Channel::Sms, body, "ru")).await);

    let submits = smsc.wait_for("submit_sm", 1, WAIT).await;
    assert_eq!(submits[0]["data_coding"], 8, "UCS-2");
    let utf16: Vec<u8> = body.encode_utf16().flat_map(u16::to_be_bytes).collect();
    assert_eq!(short_message(&submits[0]), utf16);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_and_a_full_queue_are_retryable_then_the_smsc_accepts() {
    let smsc = FakeSmsc::start(&["--throttle", "1", "--queue-full", "1"]);
    let sender = provider(smpp(&smsc, json!({})));
    match sender.send(&message()).await {
        Err(ProviderError::Retryable(reason)) => {
            assert!(
                reason.contains("EsmeRthrottled") && reason.contains("0x00000058"),
                "{reason}"
            )
        }
        other => panic!("throttling is retryable: {other:?}"),
    }
    match sender.send(&message()).await {
        Err(ProviderError::Retryable(reason)) => assert!(reason.contains("0x00000014"), "{reason}"),
        other => panic!("a full queue is retryable: {other:?}"),
    }
    accepted_id(sender.send(&message()).await);
    let answers: Vec<Value> = smsc
        .named("submit_sm")
        .iter()
        .map(|submit| submit["answer"].clone())
        .collect();
    assert_eq!(answers, vec![json!(0x58), json!(0x14), json!(0)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_session_keeps_alive_with_enquire_link() {
    let smsc = FakeSmsc::start(&[]);
    let sender = provider(smpp(&smsc, json!({"enquire_link_ms": 1000})));
    accepted_id(sender.send(&message()).await);
    smsc.wait_for("enquire_link", 2, WAIT).await;
    assert_eq!(
        smsc.named("bind").len(),
        1,
        "the answered keep-alives keep the one session"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_whose_smsc_stops_answering_enquire_link_is_bound_again() {
    let smsc = FakeSmsc::start(&["--mute-enquire"]);
    let sender = provider(smpp(
        &smsc,
        json!({"enquire_link_ms": 1000, "timeout_ms": 500, "reconnect_max_ms": 250}),
    ));
    accepted_id(sender.send(&message()).await);
    smsc.wait_for("bind", 2, WAIT).await;
    assert!(!smsc.named("enquire_link").is_empty());
    let closed_first = smsc
        .events()
        .iter()
        .position(|event| event["event"] == "closed")
        .expect("the silent session was closed");
    let second_bind = smsc
        .events()
        .iter()
        .enumerate()
        .filter(|(_, event)| event["event"] == "bind")
        .nth(1)
        .map(|(at, _)| at)
        .unwrap();
    assert!(closed_first < second_bind, "closed, then bound anew");
    accepted_id(sender.send(&message()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_session_is_bound_again_and_the_next_send_goes_through() {
    let smsc = FakeSmsc::start(&["--drop-after", "1"]);
    let sender = provider(smpp(&smsc, json!({"reconnect_max_ms": 500})));
    match sender.send(&message()).await {
        Err(ProviderError::Retryable(reason)) => assert!(reason.contains("SMPP"), "{reason}"),
        other => panic!("a send lost with its session is retryable: {other:?}"),
    }
    // A send made before the session has noticed the drop fails as retryable too (the
    // dispatcher retries it); once bound again, a send goes through.
    let deadline = std::time::Instant::now() + WAIT;
    let accepted = loop {
        match sender.send(&message()).await {
            Err(ProviderError::Retryable(_)) if std::time::Instant::now() < deadline => {
                tokio::task::yield_now().await
            }
            other => break other,
        }
    };
    accepted_id(accepted);
    assert_eq!(smsc.named("bind").len(), 2, "bound again");
    let answers: Vec<Value> = smsc
        .named("submit_sm")
        .iter()
        .map(|submit| submit["answer"].clone())
        .collect();
    assert_eq!(answers, vec![json!("dropped"), json!(0)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transmitter_and_a_receiver_bind_where_asked() {
    let smsc = FakeSmsc::start(&[]);
    let sender = provider(smpp(&smsc, json!({"bind": "transmitter_receiver"})));
    accepted_id(sender.send(&message()).await);
    smsc.wait_for("bind", 2, WAIT).await;
    let kinds: HashSet<String> = smsc
        .named("bind")
        .iter()
        .map(|bind| bind["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        kinds,
        HashSet::from(["transmitter".into(), "receiver".into()])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_of_another_channel_is_refused_for_good_and_never_submitted() {
    let smsc = FakeSmsc::start(&[]);
    let sender = provider(smpp(&smsc, json!({})));
    match sender
        .send(&message_with(Channel::Whatsapp, BODY, "en"))
        .await
    {
        Err(ProviderError::Permanent(reason)) => assert!(reason.contains("SMS only"), "{reason}"),
        other => panic!("refused for good: {other:?}"),
    }
    accepted_id(sender.send(&message()).await);
    assert_eq!(smsc.named("submit_sm").len(), 1, "only the SMS went out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_bound_session_a_send_fails_as_retryable_within_its_timeout() {
    // A port nothing listens on: taken, then freed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let sender = provider(json!({
        "name": "smsc-down", "kind": "smpp", "address": format!("127.0.0.1:{port}"),
        "system_id": "otpgate", "from": "Acme", "timeout_ms": 300,
    }));
    match sender.send(&message()).await {
        Err(ProviderError::Retryable(reason)) => {
            assert!(reason.contains("no session is bound"), "{reason}")
        }
        other => panic!("retryable while unbound: {other:?}"),
    }
}

#[test]
fn smpp_settings_report_every_mistake() {
    let bad = settings(json!({
        "name": "smsc", "kind": "smpp", "address": "no-port",
        "system_id": "a-system-id-far-too-long", "password": "longer-than-8",
        "window": 0, "enquire_link_ms": 10, "url": "https://example.com",
    }));
    let all = bad.validate().join("\n");
    for expected in [
        "'address' must be host:port",
        "'system_id' must be at most 15",
        "'password' must be at most 8",
        "'from' is required",
        "'window' must be between 1 and 1000",
        "'enquire_link_ms' must be between 1000",
        "'url' does not apply",
    ] {
        assert!(all.contains(expected), "{expected} missing from:\n{all}");
    }
    assert!(
        !all.contains("s3cret") && !all.contains("longer-than-8"),
        "{all}"
    );
}

#[test]
fn the_readme_smpp_table_loads_with_its_password_from_the_environment() {
    let file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    let table = "[[dispatch.providers]]\nname = \"smsc-direct\"\nkind = \"smpp\"\n\
        address = \"smsc.example.net:2775\"\nsystem_id = \"acme\"\npassword = \"env:SMSC_PASSWORD\"\n\
        from = \"Acme\"\nbind = \"transmitter_receiver\"\nwindow = 20\nenquire_link_ms = 15000\n";
    std::fs::write(file.path(), table).unwrap();
    let env = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
    };
    let password = |settings: &Settings| {
        settings.dispatch.providers[0]
            .password
            .as_ref()
            .map(|secret| secret.expose_str().into_owned())
    };
    let loaded = Settings::load_from(Some(file.path()), env(&[("SMSC_PASSWORD", "pw-1")])).unwrap();
    assert_eq!(password(&loaded).as_deref(), Some("pw-1"));
    let provider = &loaded.dispatch.providers[0];
    assert_eq!(provider.window, Some(20));
    assert_eq!(provider.bind, Some(SmppBind::TransmitterReceiver));
    let overridden = Settings::load_from(
        Some(file.path()),
        env(&[
            ("SMSC_PASSWORD", "pw-1"),
            ("OTPGATE_PROVIDER_SMSC_DIRECT_PASSWORD", "pw-2"),
        ]),
    )
    .unwrap();
    assert_eq!(password(&overridden).as_deref(), Some("pw-2"));
    let missing = Settings::load_from(Some(file.path()), env(&[])).unwrap_err();
    assert!(missing.to_string().contains("SMSC_PASSWORD"), "{missing}");
}
