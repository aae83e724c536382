//! Operations: metrics, health, readiness, start-up configuration errors, graceful shutdown.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::helpers::{spawn_app, wrong_code, Backend, TestApp};

/// Scrapes until `line` appears (delivery metrics land after the provider answers).
async fn scrape_until(app: &TestApp, line: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = app.metrics().await;
        if text.lines().any(|l| l == line) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "'{line}' never appeared in:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_verifications_and_messages_by_label() {
    let app = spawn_app(Backend::Memory).await;
    let id = app.send("+4915112348001").await.str("id").to_owned();
    let code = app.code_sent_to("+4915112348001", 1).await;
    app.check_id(&id, &wrong_code(&code)).await;
    app.check_id(&id, &code).await;
    app.post("/v1/verifications", serde_json::json!({"to": "bogus"}))
        .await;

    let text = scrape_until(
        &app,
        "otpgate_messages_total{provider=\"http\",channel=\"sms\",country_code=\"49\",outcome=\"accepted\"} 1",
    )
    .await;
    for line in [
        "otpgate_http_requests_total{route=\"start_verification\",status=\"201\"} 1",
        "otpgate_http_requests_total{route=\"start_verification\",status=\"400\"} 1",
        "otpgate_http_requests_total{route=\"check_verification\",status=\"200\"} 2",
        "otpgate_verifications_started_total{channel=\"sms\",outcome=\"created\"} 1",
        "otpgate_verification_checks_total{outcome=\"pending\"} 1",
        "otpgate_verification_checks_total{outcome=\"approved\"} 1",
        "otpgate_http_request_duration_seconds_count{route=\"check_verification\"} 2",
        "otpgate_dispatch_queue_depth 0",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing '{line}' in:\n{text}"
        );
    }
    assert!(
        text.contains("otpgate_http_request_duration_seconds_bucket{route=\"check_verification\",le=\"0.001\"}"),
        "the latency histogram has real buckets"
    );
    assert!(
        !text.contains("+4915112348001"),
        "no phone number in metrics"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness_answer_on_both_stores() {
    for backend in [Backend::Memory, Backend::Redis] {
        let app = spawn_app(backend).await;
        for path in ["/healthz", "/readyz"] {
            let response = app
                .http
                .get(format!("{}{path}", app.address))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200, "{path}");
        }
        app.stop().await;
    }
}

#[test]
fn the_binary_reports_every_invalid_setting_at_once_and_exits_before_listening() {
    let output = Command::new(env!("CARGO_BIN_EXE_otpgate"))
        .env_clear()
        .env("OTPGATE_LISTEN", "nowhere")
        .env("OTPGATE_REDIS_URL", "http://not-redis")
        .env("OTPGATE_VERIFICATION__CODE_LENGTH", "99")
        .env("OTPGATE_DISPATCH__PROVIDER", "pigeon")
        .output()
        .expect("the binary runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for key in [
        "server.listen",
        "store.redis_url",
        "verification.code_length",
        "verification.code_key",
        "dispatch.provider",
    ] {
        assert!(stderr.contains(key), "'{key}' missing from:\n{stderr}");
    }
}

#[test]
fn the_binary_stops_cleanly_on_sigterm() {
    let port = crate::redis_harness::free_port(false);
    let mut child = Command::new(env!("CARGO_BIN_EXE_otpgate"))
        .env("OTPGATE_LISTEN", format!("127.0.0.1:{port}"))
        .env("OTPGATE_ROOT_KEY", crate::helpers::ROOT_KEY)
        .env("OTPGATE_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the binary did not start listening"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the binary did not stop within 10 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
