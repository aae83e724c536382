//! Redis failures: the gateway fails closed (503, never an approval), says whether a request
//! may have taken effect, and recovers by itself.

use std::time::{Duration, Instant};

use crate::helpers::{
    reply, spawn_app_with, spawn_without_account, wrong_code, Backend, TestApp, ROOT_KEY,
};
use crate::redis_harness::RedisServer;

/// Polls `/readyz` until it answers `status` (within 15 s, else fails saying `what` did not happen).
async fn wait_for_readyz(app: &TestApp, status: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let ready = app
            .http
            .get(format!("{}/readyz", app.address))
            .send()
            .await
            .unwrap();
        if ready.status() == status {
            return;
        }
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until Redis answers the gateway again (it came back, or a pause ended).
async fn wait_until_ready(app: &TestApp) {
    wait_for_readyz(
        app,
        200,
        "the gateway did not recover after Redis came back",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_fails_closed_and_the_gateway_recovers_with_nothing_lost_or_invented() {
    let mut redis = RedisServer::start(&[]);
    let app = spawn_app_with(Backend::RedisAt(redis.url()), |settings| {
        settings.store.response_timeout = Duration::from_millis(300);
        settings.store.connect_timeout = Duration::from_millis(300);
    })
    .await;
    let approved_later = app.send("+4915112347001").await.str("id").to_owned();
    let code = app.code_sent_to("+4915112347001", 1).await;
    let guessed_while_down = app.send("+4915112347002").await.str("id").to_owned();
    let other_code = app.code_sent_to("+4915112347002", 2).await;

    tokio::task::block_in_place(|| redis.stop());
    // The first call meets the connection Redis closed, which may have carried it (an unknown
    // outcome); it makes the client reconnect. From then on each connection is refused before
    // anything is sent: "nothing was changed" is certain.
    let first = app
        .http
        .get(format!("{}/readyz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 503);

    let started = Instant::now();
    let send = app.send("+4915112347003").await;
    send.assert_problem(503, "unavailable");
    assert_eq!(send.headers["retry-after"], "1");
    app.check_id(&approved_later, &code)
        .await
        .assert_problem(503, "unavailable");
    app.check_id(&guessed_while_down, &wrong_code(&other_code))
        .await
        .assert_problem(503, "unavailable");
    let ready = app
        .http
        .get(format!("{}/readyz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "errors come within the timeouts"
    );
    assert_eq!(
        app.messages().await.len(),
        2,
        "nothing is sent while the store is down"
    );
    let scrape = app.metrics().await;
    assert!(
        // The key is read first (keys are cached only while the invalidation link is up, so
        // that a revocation reaches every instance at once): that read is the failing one.
        scrape.contains("otpgate_store_errors_total{operation=\"key\"}"),
        "{scrape}"
    );

    tokio::task::block_in_place(|| redis.restart());
    wait_until_ready(&app).await;

    // The wrong guess made while Redis was down was not counted.
    let after = app
        .check_id(&guessed_while_down, &wrong_code(&other_code))
        .await;
    assert_eq!(after.body["status"], "pending");
    assert_eq!(after.body["attempts_left"], 4);
    // The code checked (and refused with 503) while Redis was down still works, exactly once.
    let approved = app.check_id(&approved_later, &code).await;
    assert_eq!(approved.body["status"], "approved", "{}", approved.body);
    assert_eq!(approved.body["valid"], true);
    app.check_id(&approved_later, &code)
        .await
        .assert_problem(409, "verification-already-approved");
    // And new sends work again.
    assert_eq!(app.send("+4915112347003").await.status, 201);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_starts_while_redis_is_down_and_serves_once_it_is_up() {
    let mut redis = RedisServer::start(&[]);
    tokio::task::block_in_place(|| redis.stop());
    let mut app = spawn_without_account(Backend::RedisAt(redis.url())).await;
    let ready = app
        .http
        .get(format!("{}/readyz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503, "not ready while Redis is down");
    let healthy = app
        .http
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(healthy.status(), 200, "but the process is up");
    let refused = app
        .request(
            reqwest::Method::POST,
            "/v1/accounts",
            Some(ROOT_KEY),
            Some(serde_json::json!({"name": "Acme"})),
        )
        .await;
    refused.assert_problem(503, "unavailable");

    tokio::task::block_in_place(|| redis.restart());
    wait_until_ready(&app).await;
    let (_, key) = app.create_account_with_key("service").await;
    app.key = key;
    assert_eq!(app.send("+4915112347004").await.status, 201);
    app.stop().await;
}

/// A request whose command reached Redis but whose answer did not come within the response
/// timeout (Redis paused with CLIENT PAUSE, longer than the timeout) may take effect later:
/// the gateway says the outcome is unknown, and a retry with the same Idempotency-Key answers
/// what the first request did, for a check (the approval, once) and for a send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_lost_in_a_redis_stall_answers_outcome_unknown_and_its_keyed_retry_the_outcome() {
    let redis = RedisServer::start(&[]);
    let app = spawn_app_with(Backend::RedisAt(redis.url()), |settings| {
        settings.store.response_timeout = Duration::from_millis(300);
        settings.store.connect_timeout = Duration::from_millis(300);
    })
    .await;
    let to = "+4915112347011";
    let id = app.send(to).await.str("id").to_owned();
    let code = app.code_sent_to(to, 1).await;
    let keyed = |path: &'static str, key: &'static str, body: serde_json::Value| {
        let request = app
            .http
            .post(format!("{}{path}", app.address))
            .bearer_auth(&app.key)
            .header("Idempotency-Key", key)
            .json(&body);
        async move { reply(request.send().await.unwrap()).await }
    };
    let check_body = serde_json::json!({"id": id, "code": code});
    let send_body = serde_json::json!({"to": "+4915112347012"});
    // Redis knows the check script before the pause (a script it did not know would be
    // refused, NOSCRIPT, when the pause ends, and the client would load it only on the retry).
    app.check_to("+4915112347013", "123456")
        .await
        .assert_problem(404, "not-found");

    // Ten response timeouts: the three requests below all meet it, even on a busy machine; the
    // paused commands run when it ends.
    let paused_at = Instant::now();
    let paused = redis.command(&["CLIENT", "PAUSE", "3000", "ALL"]);
    assert!(paused.starts_with("+OK"), "{paused}");
    let check = keyed(
        "/v1/verifications/check",
        "check-after-stall",
        check_body.clone(),
    )
    .await;
    check.assert_problem(503, "outcome-unknown");
    assert_eq!(check.headers["retry-after"], "1");
    assert_eq!(check.body["title"], "Outcome unknown");
    assert!(check.str("detail").contains("unknown"), "{}", check.body);
    // On a single Redis a send is one script, abuse protection's admission and the start
    // together: stalled, it may run when Redis resumes, and the answer says so.
    let send = keyed("/v1/verifications", "send-after-stall", send_body.clone()).await;
    send.assert_problem(503, "outcome-unknown");
    // The Twilio facade says the same in its own words.
    let twilio = app
        .http
        .post(format!(
            "{}/v2/Services/VA{}/VerificationCheck",
            app.address,
            &app.account_id[2..]
        ))
        .basic_auth(&app.account_id, Some(&app.key))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            form_urlencoded::Serializer::new(String::new())
                .extend_pairs([("VerificationSid", id.as_str()), ("Code", "000000")])
                .finish(),
        )
        .send()
        .await
        .unwrap();
    let twilio = reply(twilio).await;
    assert_eq!(twilio.status, 503, "{}", twilio.body);
    assert_eq!(twilio.body["code"], 20503);
    assert!(twilio.str("message").contains("unknown"), "{}", twilio.body);
    assert!(
        paused_at.elapsed() < Duration::from_millis(3000),
        "the stalled requests must all be made during the pause"
    );

    wait_until_ready(&app).await;

    // The check ran when Redis resumed: its retry answers the approval, replayed.
    let retried = keyed("/v1/verifications/check", "check-after-stall", check_body).await;
    assert_eq!(retried.status, 200, "{}", retried.body);
    assert_eq!(retried.headers["idempotent-replayed"], "true");
    assert_eq!(retried.body["status"], "approved");
    assert_eq!(retried.body["valid"], true);
    // Without the key the code is spent, and no check approved it a second time.
    app.check_id(&id, &code)
        .await
        .assert_problem(409, "verification-already-approved");

    // The send ran when Redis resumed: its keyed retry answers it, replayed, and no second
    // verification or message was made.
    let resent = keyed("/v1/verifications", "send-after-stall", send_body.clone()).await;
    assert_eq!(resent.status, 200, "{}", resent.body);
    assert_eq!(resent.headers["idempotent-replayed"], "true");
    assert_eq!(resent.body["send_count"], 1);
    let read = app
        .get(&format!("/v1/verifications/{}", resent.str("id")))
        .await;
    assert_eq!(read.body["send_count"], 1, "{}", read.body);
    // Its message went out.
    app.code_sent_to("+4915112347012", 2).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_redis_lost_in_an_outage_is_refused_as_soon_as_redis_is_back() {
    let mut redis = RedisServer::start(&[]);
    let app = spawn_app_with(Backend::RedisAt(redis.url()), |settings| {
        settings.store.response_timeout = Duration::from_millis(300);
        settings.store.connect_timeout = Duration::from_millis(300);
    })
    .await;
    // The key and its account are now in the in-process caches (30 s).
    assert_eq!(app.send("+4915112347101").await.status, 201);

    // Redis dies and comes back empty (no persistence): the key is gone with everything else.
    tokio::task::block_in_place(|| redis.kill());
    wait_for_readyz(&app, 503, "the outage was not noticed").await;
    tokio::task::block_in_place(|| redis.restart());
    wait_until_ready(&app).await;

    // The clock has not moved: only the flush on reconnect keeps the lost key from working.
    let refused = app.send("+4915112347102").await;
    refused.assert_problem(401, "unauthorized");
    app.stop().await;
}
