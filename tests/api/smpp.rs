//! The SMPP provider end to end: codes sent through the API reach a fake SMSC (Net::SMPP's
//! server side, tests/common/fake_smsc.pl) as submit_sm, its deliver_sm receipts mark the
//! messages delivered, throttling is retried and opens the breaker, and a bind dropped under
//! load loses no message.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use otpgate::dispatch::providers::settings::SmppBind;
use otpgate::dispatch::providers::{AdapterKind, ProviderSettings};
use otpgate::secret::Secret;
use serde_json::Value;

use crate::dispatch::{failover, wait_for_attempt};
use crate::fake_smsc::{short_message, FakeSmsc};
use crate::helpers::{extract_code, spawn_app_with, Backend, TestApp};
use crate::on_every_store;
use crate::redis_harness::RedisServer;

const WAIT: Duration = Duration::from_secs(20);

fn smpp_provider(smsc: &FakeSmsc) -> ProviderSettings {
    let mut provider = ProviderSettings::new("smsc", AdapterKind::Smpp);
    provider.address = Some(smsc.address());
    provider.system_id = Some("otpgate".into());
    provider.password = Some(Secret::from("s3cret"));
    provider.from = Some("Acme".into());
    provider.timeout_ms = 2000;
    provider.reconnect_max_ms = Some(500);
    provider
}

async fn spawn_on(backend: Backend, smsc: &FakeSmsc) -> TestApp {
    let provider = smpp_provider(smsc);
    spawn_app_with(backend, |settings| {
        failover(settings, vec![provider], &["smsc"]);
        settings.dispatch.breaker_failures = 2;
        settings.dispatch.breaker_open = Duration::from_secs(30);
        settings.dispatch.retry_base = Duration::from_millis(50);
        settings.dispatch.retry_max = Duration::from_millis(500);
    })
    .await
}

/// The text of a submit_sm, GSM-7 (the template's characters sit at their ASCII codes) or UCS-2.
fn text_of(submit: &Value) -> String {
    let bytes = short_message(submit);
    if submit["data_coding"] == 8 {
        let units: Vec<u16> = bytes
            .chunks(2)
            .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
            .collect();
        String::from_utf16(&units).expect("UCS-2 text")
    } else {
        String::from_utf8(bytes).expect("GSM-7 text in the ASCII range")
    }
}

/// The accepted submit_sm per destination so far.
fn accepted_by_destination(smsc: &FakeSmsc) -> HashMap<String, Value> {
    smsc.named("submit_sm")
        .into_iter()
        .filter(|submit| submit["answer"] == 0)
        .map(|submit| (submit["destination"].as_str().unwrap().to_owned(), submit))
        .collect()
}

on_every_store!(a_code_sent_over_smpp_is_marked_delivered_by_its_receipt);

async fn a_code_sent_over_smpp_is_marked_delivered_by_its_receipt(backend: Backend) {
    let smsc = FakeSmsc::start(&[]);
    let app = spawn_on(backend, &smsc).await;
    let to = "+4915112349501";
    let id = app.send(to).await.str("id").to_owned();

    let submit = smsc.wait_for("submit_sm", 1, WAIT).await[0].clone();
    assert_eq!(submit["destination"], "4915112349501");
    assert_eq!(submit["registered_delivery"], 1);
    let code = extract_code(&text_of(&submit));
    let attempt = wait_for_attempt(&app, &id, "delivered").await;
    assert_eq!(attempt["provider"], "smsc");
    assert_eq!(attempt["provider_message_id"], submit["message_id"]);
    let answered = smsc.wait_for("deliver_sm_resp", 1, WAIT).await;
    assert!(
        answered
            .iter()
            .any(|answer| answer["status"] == 0 && answer["id"] == submit["message_id"]),
        "the receipt is acknowledged once kept: {answered:?}"
    );
    assert!(app
        .metrics()
        .await
        .contains("otpgate_delivery_receipts_total{provider=\"smpp\",status=\"delivered\"} 1"));
    let checked = app.check_id(&id, &code).await;
    assert_eq!(checked.body["status"], "approved", "{}", checked.body);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_of_tlvs_alone_reports_an_undelivered_message() {
    let smsc = FakeSmsc::start(&["--tlvs", "--stat", "UNDELIV"]);
    let app = spawn_on(Backend::Memory, &smsc).await;
    let id = app.send("+4915112349502").await.str("id").to_owned();
    let submit = smsc.wait_for("submit_sm", 1, WAIT).await[0].clone();
    let attempt = wait_for_attempt(&app, &id, "undelivered").await;
    assert_eq!(attempt["provider_message_id"], submit["message_id"]);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_is_retried_opens_the_breaker_and_the_code_goes_out_after() {
    let smsc = FakeSmsc::start(&["--throttle", "2"]);
    let app = spawn_on(Backend::Redis, &smsc).await;
    let id = app.send("+4915112349503").await.str("id").to_owned();

    // Two throttled rounds (the clock moves the back-off along) open the breaker.
    let deadline = Instant::now() + WAIT;
    while smsc.named("submit_sm").len() < 2 {
        assert!(Instant::now() < deadline, "{:?}", smsc.events());
        app.clock.advance(Duration::from_millis(100));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let deadline = Instant::now() + WAIT;
    while !app
        .metrics()
        .await
        .contains("otpgate_provider_breaker_state{provider=\"smsc\"} 2")
    {
        assert!(Instant::now() < deadline, "the breaker did not open");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let read = app.get(&format!("/v1/verifications/{id}")).await;
    let errors: Vec<&str> = read.body["send_attempts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|attempt| attempt["error"].as_str())
        .collect();
    assert!(
        errors.iter().any(|error| error.contains("EsmeRthrottled")),
        "{errors:?}"
    );
    assert_eq!(smsc.named("submit_sm").len(), 2, "nothing sent while open");

    // Past the open period the probe goes through, and the receipt follows.
    let deadline = Instant::now() + WAIT;
    app.clock.advance(Duration::from_secs(31));
    while accepted_by_destination(&smsc).is_empty() {
        assert!(Instant::now() < deadline, "{:?}", smsc.events());
        app.clock.advance(Duration::from_millis(100));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_for_attempt(&app, &id, "delivered").await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bind_dropped_under_load_loses_no_message() {
    const SENDS: usize = 20;
    // The SMSC drops the session on the 6th submit_sm, with others in flight.
    let smsc = FakeSmsc::start(&["--drop-after", "6"]);
    let app = spawn_on(Backend::Redis, &smsc).await;
    crate::abuse::safe_list(&app, "+49151").await;
    let sends: Vec<(String, String)> = futures::future::join_all((0..SENDS).map(|n| {
        let app = &app;
        async move {
            let to = format!("+491511235{n:04}");
            let id = app.send(&to).await.str("id").to_owned();
            (to, id)
        }
    }))
    .await;

    let deadline = Instant::now() + WAIT;
    let accepted = loop {
        let accepted = accepted_by_destination(&smsc);
        if accepted.len() == SENDS {
            break accepted;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {SENDS} accepted: {:?}",
            accepted.len(),
            smsc.events()
        );
        app.clock.advance(Duration::from_millis(100));
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(smsc.named("bind").len() >= 2, "bound again after the drop");
    assert!(
        smsc.named("submit_sm")
            .iter()
            .any(|submit| submit["answer"] == "dropped"),
        "the drop happened under load"
    );
    for (to, id) in &sends {
        let code = extract_code(&text_of(&accepted[to.trim_start_matches('+')]));
        let checked = app.check_id(id, &code).await;
        assert_eq!(checked.body["status"], "approved", "{to}: {}", checked.body);
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_for_no_known_message_is_answered_so_that_the_smsc_delivers_it_again() {
    let smsc = FakeSmsc::start(&["--stray-receipt"]);
    let app = spawn_on(Backend::Memory, &smsc).await;
    let answers = smsc.wait_for("deliver_sm_resp", 3, WAIT).await;
    assert!(
        answers
            .iter()
            .all(|answer| answer["status"] == 0x64 && answer["id"] == "stray000001"),
        "ESME_RX_T_APPN each time, never taken as kept: {answers:?}"
    );
    assert!(!app
        .metrics()
        .await
        .contains("otpgate_delivery_receipts_total{provider=\"smpp\""));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_transmitter_and_a_receiver_the_receipt_comes_over_the_receiver() {
    let smsc = FakeSmsc::start(&[]);
    let mut provider = smpp_provider(&smsc);
    provider.bind = Some(SmppBind::TransmitterReceiver);
    let app = spawn_app_with(Backend::Memory, |settings| {
        failover(settings, vec![provider], &["smsc"])
    })
    .await;
    let id = app.send("+4915112349504").await.str("id").to_owned();
    let submit = smsc.wait_for("submit_sm", 1, WAIT).await[0].clone();
    let attempt = wait_for_attempt(&app, &id, "delivered").await;
    assert_eq!(attempt["provider_message_id"], submit["message_id"]);
    let answers = smsc.named("deliver_sm_resp");
    assert!(
        answers
            .iter()
            .any(|answer| answer["status"] == 0 && answer["over"] == "receiver"),
        "{answers:?}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_that_finds_redis_down_is_redelivered_and_kept_once_redis_is_back() {
    let smsc = FakeSmsc::start(&["--hold-receipts"]);
    let mut redis = RedisServer::start(&[]);
    let provider = smpp_provider(&smsc);
    let app = spawn_app_with(Backend::RedisAt(redis.url()), |settings| {
        failover(settings, vec![provider], &["smsc"]);
        settings.store.response_timeout = Duration::from_millis(300);
        settings.store.connect_timeout = Duration::from_millis(300);
    })
    .await;
    let id = app.send("+4915112349505").await.str("id").to_owned();
    smsc.wait_for("submit_sm", 1, WAIT).await;
    wait_for_attempt(&app, &id, "accepted").await;

    redis.stop();
    smsc.release_receipts();
    let refused = smsc.wait_for("deliver_sm_resp", 1, WAIT).await;
    assert_eq!(refused[0]["status"], 0x64, "not kept: redeliver later");
    redis.restart();
    wait_for_attempt(&app, &id, "delivered").await;
    assert!(smsc
        .named("deliver_sm_resp")
        .iter()
        .any(|answer| answer["status"] == 0));
    app.stop().await;
}
