//! `spawn_app()`: the real server on 127.0.0.1:0, on the store a test asks for, with a fake
//! `http` provider on loopback, a clock the test moves, and an account with a service key.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use otpgate::clock::ManualClock;
use otpgate::config::Settings;
use otpgate::dispatch::settings::ProviderKind;
use otpgate::secret::Secret;
use otpgate::{App, Overrides};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::redis_harness::{shared_cluster, shared_redis};

pub const ROOT_KEY: &str = "test-root-key-with-at-least-32-characters";
pub const CODE_KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

/// Which store a test runs on.
#[derive(Debug, Clone)]
pub enum Backend {
    Memory,
    /// The shared single redis-server.
    Redis,
    /// The shared 3-node cluster.
    Cluster,
    /// A Redis the test started itself (for fault tests), by URL.
    RedisAt(String),
    /// A Redis Cluster the test started itself (for failovers), by its seed URLs.
    ClusterAt(Vec<String>),
}

impl Backend {
    fn urls(&self) -> Vec<String> {
        match self {
            Backend::Memory => Vec::new(),
            Backend::Redis => vec![shared_redis().url()],
            Backend::Cluster => shared_cluster().urls(),
            Backend::RedisAt(url) => vec![url.clone()],
            Backend::ClusterAt(urls) => urls.clone(),
        }
    }
}

pub struct TestApp {
    pub address: String,
    pub app: App,
    pub clock: Arc<ManualClock>,
    pub provider: MockServer,
    pub http: reqwest::Client,
    pub account_id: String,
    /// A service key of `account_id`.
    pub key: String,
    pub prefix: String,
    stop: CancellationToken,
}

/// A unique Redis key prefix per test, so tests sharing a server never see each other's keys.
pub fn unique_prefix() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "t{}x{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn settings_for(backend: &Backend, prefix: &str, provider_url: &str) -> Settings {
    let mut settings = Settings::defaults();
    settings.auth.root_key = Secret::new(ROOT_KEY);
    settings.store.redis_urls = backend.urls();
    settings.store.key_prefix = prefix.to_owned();
    settings.verification.code_key = Secret::new(hex_decode(CODE_KEY));
    settings.dispatch.provider = ProviderKind::Http;
    settings.dispatch.http_url = provider_url.to_owned();
    settings.server.shutdown_grace = Duration::from_secs(2);
    settings
}

fn hex_decode(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

/// Like `spawn_app`, with a chance to change the settings first.
pub async fn spawn_app_with(backend: Backend, adjust: impl FnOnce(&mut Settings)) -> TestApp {
    let provider = fake_provider().await;
    let prefix = unique_prefix();
    let mut settings = settings_for(&backend, &prefix, &format!("{}/messages", provider.uri()));
    adjust(&mut settings);
    let mut app = start(settings, Arc::new(ManualClock::starting_now()), provider).await;
    let (account_id, key) = app.create_account_with_key("service").await;
    app.account_id = account_id;
    app.key = key;
    app
}

/// The server alone, with no account yet: for tests that start it while the store is down.
pub async fn spawn_without_account(backend: Backend) -> TestApp {
    let provider = fake_provider().await;
    let settings = settings_for(
        &backend,
        &unique_prefix(),
        &format!("{}/messages", provider.uri()),
    );
    start(settings, Arc::new(ManualClock::starting_now()), provider).await
}

/// A second server on the same store, prefix, clock and provider as `first`: another instance
/// of the same deployment.
pub async fn spawn_peer(first: &TestApp, backend: Backend) -> TestApp {
    spawn_peer_with(first, backend, |_| {}).await
}

/// Like `spawn_peer`, with a chance to change the settings first.
pub async fn spawn_peer_with(
    first: &TestApp,
    backend: Backend,
    adjust: impl FnOnce(&mut Settings),
) -> TestApp {
    let provider_url = format!("{}/messages", first.provider.uri());
    let mut settings = settings_for(&backend, &first.prefix, &provider_url);
    adjust(&mut settings);
    let provider = MockServer::builder().start().await;
    let mut peer = start(settings, first.clock.clone(), provider).await;
    peer.account_id = first.account_id.clone();
    peer.key = first.key.clone();
    peer
}

async fn start(settings: Settings, clock: Arc<ManualClock>, provider: MockServer) -> TestApp {
    let prefix = settings.store.key_prefix.clone();
    let app = App::build_with(
        settings,
        Overrides {
            clock: Some(clock.clone()),
            provider: None,
        },
    )
    .await
    .expect("the app builds");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let stop = CancellationToken::new();
    tokio::spawn(otpgate::run(
        listener,
        app.clone(),
        stop.clone().cancelled_owned(),
    ));
    TestApp {
        address,
        app,
        clock,
        provider,
        http: http_client(),
        account_id: String::new(),
        key: String::new(),
        prefix,
        stop,
    }
}

/// An HTTP client for tests. reqwest is built without a default TLS provider (ring is the only
/// crypto stack), so install ring first, as the gateway itself does.
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// A provider that accepts every message, as a real gateway's HTTP API would.
pub async fn fake_provider() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/messages"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "provider-1"})))
        .mount(&server)
        .await;
    server
}

/// A response as the tests read it: status, headers and JSON body.
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn str(&self, field: &str) -> &str {
        self.body[field]
            .as_str()
            .unwrap_or_else(|| panic!("no string '{field}' in {}", self.body))
    }

    pub fn assert_problem(&self, status: u16, slug: &str) {
        assert_eq!(self.status, status, "body: {}", self.body);
        assert_eq!(
            self.headers["content-type"], "application/problem+json",
            "problem bodies are application/problem+json"
        );
        assert_eq!(
            self.body["type"],
            format!("urn:otpgate:problem:{slug}"),
            "body: {}",
            self.body
        );
        assert_eq!(self.body["status"], status);
        assert!(
            self.body["title"].is_string() && self.body["detail"].is_string(),
            "{}",
            self.body
        );
    }
}

impl TestApp {
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut request = self.http.request(method, format!("{}{path}", self.address));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        reply(request.send().await.expect("the server answers")).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.request(reqwest::Method::POST, path, Some(&self.key), Some(body))
            .await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.request(reqwest::Method::GET, path, Some(&self.key), None)
            .await
    }

    pub async fn create_account_with_key(&self, role: &str) -> (String, String) {
        let account = self
            .request(
                reqwest::Method::POST,
                "/v1/accounts",
                Some(ROOT_KEY),
                Some(json!({"name": "Acme"})),
            )
            .await;
        assert_eq!(account.status, 201, "{}", account.body);
        let account_id = account.str("id").to_owned();
        let key = self.mint_key(&account_id, role).await;
        (account_id, key)
    }

    pub async fn mint_key(&self, account_id: &str, role: &str) -> String {
        let key = self
            .request(
                reqwest::Method::POST,
                &format!("/v1/accounts/{account_id}/keys"),
                Some(ROOT_KEY),
                Some(json!({"role": role})),
            )
            .await;
        assert_eq!(key.status, 201, "{}", key.body);
        key.str("key").to_owned()
    }

    pub async fn send(&self, to: &str) -> Reply {
        self.post("/v1/verifications", json!({"to": to})).await
    }

    /// A send as a careful login service makes it: with an `Idempotency-Key`, retried with the
    /// same key after a 503 (whose outcome the gateway may not know), so a stall under load
    /// neither loses the send nor makes a second one.
    pub async fn send_retrying(&self, to: &str, idempotency_key: &str) -> Reply {
        let mut tries = 0;
        loop {
            let request = self
                .http
                .post(format!("{}/v1/verifications", self.address))
                .bearer_auth(&self.key)
                .header("Idempotency-Key", idempotency_key)
                .json(&json!({"to": to}));
            let answer = reply(request.send().await.expect("the server answers")).await;
            tries += 1;
            if answer.status != 503 || tries == 5 {
                return answer;
            }
        }
    }

    pub async fn check_id(&self, id: &str, code: &str) -> Reply {
        self.post("/v1/verifications/check", json!({"id": id, "code": code}))
            .await
    }

    /// A check by phone number instead of id.
    pub async fn check_to(&self, to: &str, code: &str) -> Reply {
        self.post("/v1/verifications/check", json!({"to": to, "code": code}))
            .await
    }

    /// Messages the fake provider received, in order.
    pub async fn messages(&self) -> Vec<Value> {
        self.provider
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .map(|request| {
                serde_json::from_slice(&request.body).expect("the http provider sends JSON")
            })
            .collect()
    }

    /// Waits until the fake provider holds `count` messages (delivery is asynchronous) and
    /// returns them. Polls an event, so it is not a sleep: it ends as soon as they arrive.
    pub async fn wait_for_messages(&self, count: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let messages = self.messages().await;
            if messages.len() >= count {
                return messages;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {count} messages arrived",
                messages.len()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The code in the newest message to `to`, once it has arrived.
    pub async fn code_sent_to(&self, to: &str, nth_message_overall: usize) -> String {
        let messages = self.wait_for_messages(nth_message_overall).await;
        let message = messages
            .iter()
            .rev()
            .find(|message| message["to"] == to)
            .expect("a message to that number");
        extract_code(message["body"].as_str().unwrap())
    }

    pub async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.address))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn stop(self) {
        self.stop.cancel();
        self.app.shutdown(Duration::from_secs(2)).await;
    }
}

/// The code in a message body: its first run of 4 to 10 digits (the lifetime in minutes is
/// shorter, and the brand has none).
pub fn extract_code(body: &str) -> String {
    body.split(|c: char| !c.is_ascii_digit())
        .find(|run| (4..=10).contains(&run.len()))
        .expect("the message carries the code")
        .to_owned()
}

pub async fn reply(response: reqwest::Response) -> Reply {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Reply {
        status,
        headers,
        body,
    }
}

/// A wrong code of the same length that differs from `code` in every digit.
pub fn wrong_code(code: &str) -> String {
    code.chars()
        .map(|digit| char::from(b'0' + ((digit as u8 - b'0' + 1) % 10)))
        .collect()
}
