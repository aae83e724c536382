//! Redis failures: the gateway fails closed (503, never an approval) and recovers by itself.

use std::time::{Duration, Instant};

use crate::helpers::{
    spawn_app_with, spawn_without_account, wrong_code, Backend, TestApp, ROOT_KEY,
};
use crate::redis_harness::RedisServer;

async fn wait_until_ready(app: &TestApp) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let ready = app
            .http
            .get(format!("{}/readyz", app.address))
            .send()
            .await
            .unwrap();
        if ready.status() == 200 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the gateway did not recover after Redis came back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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
    assert!(app
        .metrics()
        .await
        .contains("otpgate_store_errors_total{operation=\"check\"}"));

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
    assert_eq!(
        app.check_id(&approved_later, &code).await.body["valid"],
        false
    );
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
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ready = app
            .http
            .get(format!("{}/readyz", app.address))
            .send()
            .await
            .unwrap();
        if ready.status() == 503 {
            break;
        }
        assert!(Instant::now() < deadline, "the outage was not noticed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::task::block_in_place(|| redis.restart());
    wait_until_ready(&app).await;

    // The clock has not moved: only the flush on reconnect keeps the lost key from working.
    let refused = app.send("+4915112347102").await;
    refused.assert_problem(401, "unauthorized");
    app.stop().await;
}
