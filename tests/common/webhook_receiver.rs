//! A webhook receiver on loopback for the tests of events out (tests/store, tests/api): it
//! answers each request with the next scripted status (200 when none is left), records what it
//! was sent, and checks every signature with its own implementation of the Standard Webhooks
//! spec, not the gateway's.

// Each test binary uses its part.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use ring::hmac;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// A webhook receiver on loopback: answers each request with the next scripted status (200
/// when none is left), records what it was sent, and checks every signature itself.
pub struct Receiver {
    addr: SocketAddr,
    state: Arc<Mutex<ReceiverState>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

#[derive(Default)]
struct ReceiverState {
    answers: VecDeque<u16>,
    /// Every request: its `webhook-id` and the event's `data.verification_id`.
    requests: Vec<Received>,
}

#[derive(Debug, Clone)]
pub struct Received {
    pub webhook_id: String,
    pub timestamp: u64,
    /// The event's `data.verification_id`.
    pub subject: String,
    pub signature_valid: bool,
    /// The body as sent.
    pub body: String,
}

impl Receiver {
    pub async fn start(secret: Arc<Mutex<Option<String>>>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(ReceiverState::default()));
        let mut receiver = Self {
            addr,
            state,
            server: None,
        };
        receiver.serve(listener, secret);
        receiver
    }

    pub fn url(&self) -> String {
        format!("http://{}/hooks/otpgate", self.addr)
    }

    pub fn answer(&self, statuses: &[u16]) {
        self.state.lock().unwrap().answers.extend(statuses);
    }

    pub fn requests(&self) -> Vec<Received> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Down: the listener and every open connection close (connections are refused).
    pub fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }

    /// Up again on the same port.
    pub async fn restart(&mut self, secret: Arc<Mutex<Option<String>>>) {
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(listener) => break listener,
                // The aborted server's socket may take a moment to close.
                Err(_) if tries < 100 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(error) => panic!("rebind {}: {error}", self.addr),
            }
        };
        self.serve(listener, secret);
    }

    fn serve(&mut self, listener: TcpListener, secret: Arc<Mutex<Option<String>>>) {
        let state = self.state.clone();
        self.server = Some(tokio::spawn(async move {
            // Dropped with the task: every connection closes when the receiver stops.
            let mut connections = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (state, secret) = (state.clone(), secret.clone());
                connections.spawn(async move {
                    let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                        let (state, secret) = (state.clone(), secret.clone());
                        async move {
                            let headers = request.headers().clone();
                            let body = request.into_body().collect().await?.to_bytes();
                            let received =
                                check(&headers, &body, secret.lock().unwrap().as_deref());
                            let status = {
                                let mut state = state.lock().unwrap();
                                state.requests.push(received);
                                state.answers.pop_front().unwrap_or(200)
                            };
                            Ok::<_, hyper::Error>(
                                Response::builder()
                                    .status(status)
                                    .body(Full::new(Bytes::new()))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        }));
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The receiver's own Standard Webhooks check, written from the spec: the secret is base64
/// after `whsec_`; the signed content is `{id}.{timestamp}.{body}`; the header lists
/// space-separated `v1,<base64>` signatures, one of which must match.
fn check(headers: &hyper::HeaderMap, body: &[u8], secret: Option<&str>) -> Received {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (id, timestamp, signatures) = (
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
    );
    let key = secret
        .and_then(|secret| secret.strip_prefix("whsec_"))
        .and_then(|key| data_encoding::BASE64.decode(key.as_bytes()).ok())
        .unwrap_or_default();
    let key = hmac::Key::new(hmac::HMAC_SHA256, &key);
    let mut signed = format!("{id}.{timestamp}.").into_bytes();
    signed.extend_from_slice(body);
    let signature_valid = signatures.split(' ').any(|candidate| {
        candidate
            .strip_prefix("v1,")
            .and_then(|b64| data_encoding::BASE64.decode(b64.as_bytes()).ok())
            .is_some_and(|mac| hmac::verify(&key, &signed, &mac).is_ok())
    });
    let event: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    assert_eq!(header("content-type"), "application/cloudevents+json");
    assert_eq!(event["id"], id.as_str(), "webhook-id is the event id");
    Received {
        webhook_id: id,
        timestamp: timestamp.parse().unwrap_or_default(),
        subject: event["data"]["verification_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        signature_valid,
        body: String::from_utf8_lossy(body).into_owned(),
    }
}
