//! Phone-number two-step PINs (issue 7): the whole flow with mailed links read from an SMTP sink
//! on loopback, roles (a partner never disables), wrong-PIN waits and the lock on a moved clock,
//! single-use and expiring links, bad and common PINs, the Graph-compatible path, exact counting
//! across two instances, and the support command run as a child process.

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use crate::helpers::{
    http_client, reply, settings_for, spawn_app_with, Backend, Reply, TestApp, CODE_KEY, ROOT_KEY,
};
use crate::on_every_store;
use otpgate::config::Settings;
use otpgate::mail::{MailTransport, SmtpTls};
use otpgate::pin::hash::HashCost;

on_every_store!(
    the_whole_two_step_flow_runs_end_to_end_with_mailed_links,
    a_partner_may_set_a_pin_but_asking_to_disable_is_refused_and_audited,
    wrong_pins_wait_longer_and_ten_in_a_row_lock_the_number,
    links_work_once_expire_and_are_replaced_by_newer_ones,
    bad_pins_get_400_common_pins_422_and_nothing_changes,
    the_graph_compatible_path_answers_exactly_success_true,
    a_number_another_account_holds_moves_only_with_its_pin_and_both_accounts_audit_it,
    after_its_owner_disables_two_step_another_account_takes_the_number_with_its_own_pin,
    concurrent_adds_of_one_number_from_two_accounts_on_two_instances_let_exactly_one_win,
);

/// Where links in mails point; the test replays them against the server's real address.
const LINK_BASE: &str = "http://otpgate.test";
const OWNER_EMAIL: &str = "owner@acme.example";
const NUMBER: &str = "+4915112983471";
pub const PIN: &str = "482915";
pub const NEW_PIN: &str = "730164";
pub const WRONG_PIN: &str = "905183";

/// Cheap argon2id costs for tests (the defaults are measured in their own test).
const TEST_COST: HashCost = HashCost {
    memory_kib: 256,
    iterations: 1,
    parallelism: 1,
};

// ---- a minimal SMTP server on loopback: answers 220/250/354/221, keeps every DATA ----

#[derive(Clone, Default)]
pub struct SmtpSink {
    mails: Arc<Mutex<Vec<Captured>>>,
    pub port: u16,
}

#[derive(Clone, Debug)]
pub struct Captured {
    pub recipients: Vec<String>,
    pub data: String,
}

impl SmtpSink {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sink = SmtpSink {
            mails: Arc::default(),
            port: listener.local_addr().unwrap().port(),
        };
        let mails = sink.mails.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve_smtp(stream, mails.clone()));
            }
        });
        sink
    }

    pub fn mails(&self) -> Vec<Captured> {
        self.mails.lock().unwrap().clone()
    }

    /// Waits (polling, bounded) until `count` mails arrived.
    pub async fn wait_for(&self, count: usize) -> Vec<Captured> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mails = self.mails();
            if mails.len() >= count {
                return mails;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {count} mails",
                mails.len()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

async fn serve_smtp(stream: tokio::net::TcpStream, mails: Arc<Mutex<Vec<Captured>>>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    let _ = write.write_all(b"220 sink.test ESMTP\r\n").await;
    let mut recipients = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let command = line.trim_end().to_ascii_uppercase();
        let answer: &[u8] = if command.starts_with("EHLO") || command.starts_with("HELO") {
            b"250 sink.test\r\n"
        } else if command.starts_with("RCPT TO:") {
            recipients.push(
                line.trim_end()[8..]
                    .trim_matches(['<', '>', ' '])
                    .to_owned(),
            );
            b"250 OK\r\n"
        } else if command == "DATA" {
            let _ = write.write_all(b"354 go ahead\r\n").await;
            let mut data = String::new();
            loop {
                line.clear();
                if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                    return;
                }
                if line == ".\r\n" || line == ".\n" {
                    break;
                }
                data.push_str(&line);
            }
            mails.lock().unwrap().push(Captured {
                recipients: std::mem::take(&mut recipients),
                data,
            });
            b"250 queued\r\n"
        } else if command == "QUIT" {
            let _ = write.write_all(b"221 bye\r\n").await;
            return;
        } else {
            // MAIL FROM, RSET, NOOP.
            b"250 OK\r\n"
        };
        let _ = write.write_all(answer).await;
    }
}

/// The token of the link to `path` (`confirm` or `reset`) in a mail, quoted-printable decoded.
pub fn token_in(mail: &Captured, path: &str) -> String {
    let text = decode_quoted_printable(&mail.data);
    let marker = format!("{LINK_BASE}/v1/two-step/{path}?token=");
    let start = text
        .find(&marker)
        .unwrap_or_else(|| panic!("no {path} link in {text}"))
        + marker.len();
    text[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}

pub fn decode_quoted_printable(data: &str) -> String {
    let joined = data.replace("=\r\n", "").replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' && i + 2 < bytes.len() {
            if let Ok(byte) = u8::from_str_radix(&joined[i + 1..i + 3], 16) {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---- an account with one key per role, an e-mail address, and the sink ----

pub struct Org {
    pub app: TestApp,
    pub sink: SmtpSink,
    pub owner: String,
    pub admin: String,
    pub partner: String,
    pub service: String,
}

pub fn pin_settings(settings: &mut Settings, sink_port: u16) {
    settings.pin.settings.cost = TEST_COST;
    settings.mail.transport = MailTransport::Smtp;
    settings.mail.smtp_host = "127.0.0.1".into();
    settings.mail.smtp_port = sink_port;
    settings.mail.smtp_tls = SmtpTls::None;
    settings.mail.from = "otpgate <no-reply@otpgate.test>".into();
    settings.mail.link_base_url = LINK_BASE.into();
}

impl Org {
    pub async fn new(backend: Backend) -> Self {
        Self::with(backend, |_| {}).await
    }

    pub async fn with(backend: Backend, adjust: impl FnOnce(&mut Settings)) -> Self {
        let sink = SmtpSink::start().await;
        let port = sink.port;
        let mut app = spawn_app_with(backend, |settings| {
            pin_settings(settings, port);
            adjust(settings);
        })
        .await;
        let account = app
            .request(
                Method::POST,
                "/v1/accounts",
                Some(ROOT_KEY),
                Some(json!({"name": "Acme", "email": OWNER_EMAIL})),
            )
            .await;
        assert_eq!(account.status, 201, "{}", account.body);
        assert_eq!(account.body["email"], OWNER_EMAIL);
        let account_id = account.str("id").to_owned();
        app.account_id = account_id.clone();
        let owner = app.mint_key(&account_id, "owner").await;
        let admin = app.mint_key(&account_id, "admin").await;
        let partner = app.mint_key(&account_id, "partner").await;
        let service = app.mint_key(&account_id, "service").await;
        app.key = owner.clone();
        Self {
            app,
            sink,
            owner,
            admin,
            partner,
            service,
        }
    }

    pub fn key(&self, role: &str) -> &str {
        match role {
            "owner" => &self.owner,
            "admin" => &self.admin,
            "partner" => &self.partner,
            "service" => &self.service,
            other => panic!("no {other} key"),
        }
    }

    pub async fn call(&self, method: Method, path: &str, role: &str, body: Option<Value>) -> Reply {
        self.app
            .request(method, path, Some(self.key(role)), body)
            .await
    }

    pub async fn add_number(&self, role: &str) -> String {
        let added = self
            .call(
                Method::POST,
                "/v1/phone-numbers",
                role,
                Some(json!({"phone_number": NUMBER, "pin": PIN})),
            )
            .await;
        assert_eq!(added.status, 201, "{}", added.body);
        assert_eq!(added.body["two_step"], "enabled");
        assert_eq!(added.body["locked"], false);
        added.str("id").to_owned()
    }

    pub async fn register(&self, id: &str, role: &str, pin: &str) -> Reply {
        self.call(
            Method::POST,
            &format!("/v1/phone-numbers/{id}/register"),
            role,
            Some(json!({"pin": pin})),
        )
        .await
    }

    pub async fn set_pin(&self, id: &str, role: &str, body: Value) -> Reply {
        self.call(
            Method::POST,
            &format!("/v1/phone-numbers/{id}"),
            role,
            Some(body),
        )
        .await
    }

    pub async fn number(&self, id: &str) -> Value {
        let got = self
            .call(
                Method::GET,
                &format!("/v1/phone-numbers/{id}"),
                "owner",
                None,
            )
            .await;
        assert_eq!(got.status, 200, "{}", got.body);
        got.body
    }

    pub async fn ask(&self, id: &str, what: &str, role: &str) -> Reply {
        self.call(
            Method::POST,
            &format!("/v1/phone-numbers/{id}/two-step/{what}-requests"),
            role,
            None,
        )
        .await
    }

    /// Opens a link from a mail against the real server.
    pub async fn open(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> Reply {
        self.app
            .request(
                method,
                &format!("/v1/two-step/{path}?token={token}"),
                None,
                body,
            )
            .await
    }

    pub async fn audit_actions(&self) -> Vec<(String, String)> {
        let page = self
            .call(Method::GET, "/v1/audit?limit=200", "owner", None)
            .await;
        assert_eq!(page.status, 200, "{}", page.body);
        page.body["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|entry| {
                (
                    entry["action"].as_str().unwrap().to_owned(),
                    entry["who"]["role"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }
}

fn success(reply: &Reply) {
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body, json!({"success": true}));
}

async fn the_whole_two_step_flow_runs_end_to_end_with_mailed_links(backend: Backend) {
    let org = Org::new(backend).await;
    let id = org.add_number("partner").await;
    assert_eq!(id.len(), 15, "Graph-style numeric id");

    // Registration needs the PIN.
    success(&org.register(&id, "partner", PIN).await);
    assert!(org.number(&id).await["registered_at"].is_string());

    // The owner asks for a disable link: it goes to the account's address, not to the caller.
    let asked = org.ask(&id, "disable", "owner").await;
    assert_eq!(asked.status, 202, "{}", asked.body);
    assert_eq!(asked.body["sent_to"], "o***r@acme.example");
    let mails = org.sink.wait_for(1).await;
    assert_eq!(mails[0].recipients, [OWNER_EMAIL]);
    let token = token_in(&mails[0], "confirm");
    assert_eq!(
        token.len(),
        64,
        "256 random bits plus the account, base64url"
    );
    assert_eq!(
        org.number(&id).await["two_step"],
        "enabled",
        "asking changes nothing"
    );

    // Opening the link disables two-step.
    let opened = org.open(Method::GET, "confirm", &token, None).await;
    assert_eq!(opened.status, 200, "{}", opened.body);
    assert_eq!(opened.body["two_step"], "disabled");
    assert_eq!(org.number(&id).await["two_step"], "disabled");

    // Re-enabling sets a new PIN (registration with two-step off takes the PIN given).
    success(&org.register(&id, "owner", NEW_PIN).await);
    assert_eq!(org.number(&id).await["two_step"], "enabled");
    org.register(&id, "owner", PIN)
        .await
        .assert_problem(422, "pin-mismatch");
    success(&org.register(&id, "owner", NEW_PIN).await);

    // A forgotten PIN: an admin asks for a reset link; the mailbox's holder sets a new PIN.
    let asked = org.ask(&id, "reset", "admin").await;
    assert_eq!(asked.status, 202, "{}", asked.body);
    let mails = org.sink.wait_for(2).await;
    let token = token_in(&mails[1], "reset");
    let shown = org.open(Method::GET, "reset", &token, None).await;
    assert_eq!(shown.status, 200, "{}", shown.body);
    assert_eq!(shown.body["action"], "reset");
    let reset = org
        .open(Method::POST, "reset", &token, Some(json!({"pin": PIN})))
        .await;
    assert_eq!(reset.status, 200, "{}", reset.body);
    success(&org.register(&id, "owner", PIN).await);

    let actions: Vec<String> = org
        .audit_actions()
        .await
        .into_iter()
        .map(|(a, _)| a)
        .collect();
    for expected in [
        "phone_number.added",
        "two_step.pin_set",
        "phone_number.registered",
        "two_step.disable_requested",
        "two_step.disabled",
        "two_step.enabled",
        "two_step.reset_requested",
        "two_step.pin_reset",
    ] {
        assert!(
            actions.iter().any(|a| a == expected),
            "{expected} missing from {actions:?}"
        );
    }
    let metrics = org.app.metrics().await;
    assert!(
        metrics.contains(r#"otpgate_two_step_disable_requests_total{outcome="sent"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"otpgate_pin_checks_total{outcome="match"}"#));
    org.app.stop().await;
}

async fn a_partner_may_set_a_pin_but_asking_to_disable_is_refused_and_audited(backend: Backend) {
    let org = Org::new(backend).await;
    let id = org.add_number("owner").await;
    success(&org.set_pin(&id, "partner", json!({"pin": NEW_PIN})).await);
    success(&org.register(&id, "partner", NEW_PIN).await);

    for what in ["disable", "reset"] {
        org.ask(&id, what, "partner")
            .await
            .assert_problem(403, "forbidden");
    }
    org.ask(&id, "disable", "service")
        .await
        .assert_problem(403, "forbidden");
    assert_eq!(org.number(&id).await["two_step"], "enabled");
    // Service keys and the root key do not manage numbers at all.
    org.set_pin(&id, "service", json!({"pin": PIN}))
        .await
        .assert_problem(403, "forbidden");
    let root = org
        .app
        .request(
            Method::POST,
            &format!("/v1/phone-numbers/{id}/two-step/disable-requests"),
            Some(ROOT_KEY),
            None,
        )
        .await;
    root.assert_problem(403, "forbidden");

    let audit = org.audit_actions().await;
    assert!(
        audit.contains(&("two_step.disable_refused".to_owned(), "partner".to_owned())),
        "{audit:?}"
    );
    assert!(audit.contains(&("two_step.reset_refused".to_owned(), "partner".to_owned())));
    assert!(audit.contains(&("two_step.disable_refused".to_owned(), "service".to_owned())));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(org.sink.mails().is_empty(), "no mail for a refused request");
    let metrics = org.app.metrics().await;
    assert!(
        metrics.contains(r#"otpgate_two_step_disable_requests_total{outcome="refused"} 2"#),
        "{metrics}"
    );
    org.app.stop().await;
}

async fn wrong_pins_wait_longer_and_ten_in_a_row_lock_the_number(backend: Backend) {
    let org = Org::new(backend).await;
    let id = org.add_number("owner").await;
    let mut waits = Vec::new();
    for attempt in 1..=10u32 {
        let wrong = org.register(&id, "partner", WRONG_PIN).await;
        wrong.assert_problem(422, "pin-mismatch");
        assert_eq!(wrong.body["attempts_left"], 10 - attempt);
        let wait: u64 = wrong
            .headers
            .get("retry-after")
            .map(|v| v.to_str().unwrap().parse().unwrap())
            .unwrap_or(0);
        waits.push(wait);
        if wait > 0 && attempt < 10 {
            // Too early: limited, and the attempt is not counted.
            let early = org.register(&id, "partner", PIN).await;
            early.assert_problem(429, "pin-attempts-limited");
            org.app.clock.advance(Duration::from_secs(wait));
        }
    }
    assert_eq!(waits[..9], [0, 0, 30, 60, 120, 240, 480, 960, 1920]);

    // Locked: even the right PIN is refused, whatever the clock says.
    org.app.clock.advance(Duration::from_secs(24 * 3600));
    org.register(&id, "owner", PIN)
        .await
        .assert_problem(423, "locked");
    let shown = org.number(&id).await;
    assert_eq!(shown["locked"], true, "{shown}");
    assert!(shown["locked_at"].is_string());
    assert_eq!(shown["consecutive_failures"], 10);
    // A partner cannot unlock; the owner does by setting a new PIN.
    org.set_pin(&id, "partner", json!({"pin": NEW_PIN}))
        .await
        .assert_problem(423, "locked");
    success(&org.set_pin(&id, "owner", json!({"pin": NEW_PIN})).await);
    assert_eq!(org.number(&id).await["locked"], false);
    success(&org.register(&id, "partner", NEW_PIN).await);

    let audit = org.audit_actions().await;
    assert!(
        audit.iter().any(|(a, _)| a == "two_step.locked"),
        "{audit:?}"
    );
    let metrics = org.app.metrics().await;
    assert!(metrics.contains("otpgate_pin_locks_total 1"), "{metrics}");
    assert!(metrics.contains(r#"otpgate_pin_checks_total{outcome="mismatch"} 10"#));
    org.app.stop().await;
}

async fn links_work_once_expire_and_are_replaced_by_newer_ones(backend: Backend) {
    let org = Org::new(backend).await;
    let id = org.add_number("owner").await;

    // Replay: the second opening is refused.
    assert_eq!(org.ask(&id, "disable", "admin").await.status, 202);
    let token = token_in(&org.sink.wait_for(1).await[0], "confirm");
    assert_eq!(
        org.open(Method::POST, "confirm", &token, None).await.status,
        200
    );
    org.open(Method::GET, "confirm", &token, None)
        .await
        .assert_problem(410, "gone");
    success(&org.register(&id, "owner", NEW_PIN).await);

    // Expiry: 24 hours on the moved clock.
    assert_eq!(org.ask(&id, "disable", "owner").await.status, 202);
    let token = token_in(&org.sink.wait_for(2).await[1], "confirm");
    org.app.clock.advance(Duration::from_secs(24 * 3600));
    org.open(Method::GET, "confirm", &token, None)
        .await
        .assert_problem(410, "gone");
    assert_eq!(org.number(&id).await["two_step"], "enabled");

    // A newer link replaces the older one; a reset link does not disable.
    assert_eq!(org.ask(&id, "disable", "owner").await.status, 202);
    assert_eq!(org.ask(&id, "disable", "owner").await.status, 202);
    assert_eq!(org.ask(&id, "reset", "owner").await.status, 202);
    let mails = org.sink.wait_for(5).await;
    let older = token_in(&mails[2], "confirm");
    let newer = token_in(&mails[3], "confirm");
    let reset = token_in(&mails[4], "reset");
    org.open(Method::GET, "confirm", &older, None)
        .await
        .assert_problem(410, "gone");
    org.open(Method::GET, "confirm", &reset, None)
        .await
        .assert_problem(404, "not-found");
    org.open(Method::GET, "confirm", "x", None)
        .await
        .assert_problem(404, "not-found");
    let unknown = "A".repeat(64);
    org.open(Method::GET, "confirm", &unknown, None)
        .await
        .assert_problem(404, "not-found");
    assert_eq!(
        org.open(Method::GET, "confirm", &newer, None).await.status,
        200
    );
    assert_eq!(org.number(&id).await["two_step"], "disabled");
    // Nothing to disable: a disable request is a conflict.
    org.ask(&id, "disable", "owner")
        .await
        .assert_problem(409, "conflict");
    org.app.stop().await;
}

async fn bad_pins_get_400_common_pins_422_and_nothing_changes(backend: Backend) {
    let org = Org::new(backend).await;
    let id = org.add_number("owner").await;
    let before = org.number(&id).await;
    for body in [
        json!({"pin": "12345"}),
        json!({"pin": "1234567"}),
        json!({"pin": "12a456"}),
        json!({"pin": ""}),
        json!({"pin": 482915}),
        json!({}),
        json!({"pin": PIN, "extra": 1}),
    ] {
        org.set_pin(&id, "owner", body.clone())
            .await
            .assert_problem(400, "invalid-request");
        let registered = org
            .call(
                Method::POST,
                &format!("/v1/phone-numbers/{id}/register"),
                "owner",
                Some(body),
            )
            .await;
        registered.assert_problem(400, "invalid-request");
    }
    for common in [
        "000000", "123456", "111111", "121212", "654321", "123123", "112233", "696969", "159753",
        "000001", "345678", "345345",
    ] {
        let refused = org.set_pin(&id, "owner", json!({"pin": common})).await;
        refused.assert_problem(422, "refused");
        assert_eq!(refused.body["rule"], "pin-too-common", "{}", refused.body);
    }
    // The number's own last six digits.
    org.set_pin(&id, "owner", json!({"pin": "983471"}))
        .await
        .assert_problem(422, "refused");
    let refused = org
        .call(
            Method::POST,
            "/v1/phone-numbers",
            "owner",
            Some(json!({"phone_number": "+4915199999999", "pin": "123456"})),
        )
        .await;
    refused.assert_problem(422, "refused");
    let after = org.number(&id).await;
    assert_eq!(before, after, "nothing changed");
    assert_eq!(
        after["consecutive_failures"], 0,
        "bad input counts no attempt"
    );
    success(&org.register(&id, "owner", PIN).await);
    org.app.stop().await;
}

async fn the_graph_compatible_path_answers_exactly_success_true(backend: Backend) {
    let org = Org::new(backend).await;
    let id = org.add_number("owner").await;
    let response = org
        .app
        .http
        .post(format!("{}/v24.0/{id}", org.app.address))
        .bearer_auth(&org.partner)
        .json(&json!({"pin": NEW_PIN}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.text().await.unwrap(), r#"{"success":true}"#);
    let response = org
        .app
        .http
        .post(format!("{}/v1/phone-numbers/{id}", org.app.address))
        .bearer_auth(&org.owner)
        .json(&json!({"pin": PIN}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), r#"{"success":true}"#);
    success(&org.register(&id, "owner", PIN).await);
    // Not a Graph version: the v1 API's 404.
    for path in [format!("/v24/{id}"), format!("/x/{id}")] {
        let reply = org
            .app
            .request(
                Method::POST,
                &path,
                Some(&org.owner),
                Some(json!({"pin": NEW_PIN})),
            )
            .await;
        reply.assert_problem(404, "not-found");
    }
    // Not a number of this account (or another account's): Graph's "object does not exist".
    let (_, other) = org.app.create_account_with_key("owner").await;
    for (path, key) in [
        ("/v24.0/106540352242922".to_owned(), &org.owner),
        (format!("/v24.0/{id}"), &other),
    ] {
        let reply = org
            .app
            .request(
                Method::POST,
                &path,
                Some(key),
                Some(json!({"pin": NEW_PIN})),
            )
            .await;
        assert_eq!(reply.status, 400, "{}", reply.body);
        assert_eq!(reply.body["error"]["code"], 100, "{}", reply.body);
        assert_eq!(reply.body["error"]["error_subcode"], 33, "{}", reply.body);
    }
    org.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_without_an_email_cannot_ask_for_links_until_the_operator_sets_one() {
    let sink = SmtpSink::start().await;
    let app = spawn_app_with(Backend::Memory, |settings| {
        pin_settings(settings, sink.port)
    })
    .await;
    let owner = app.mint_key(&app.account_id, "owner").await;
    let added = app
        .request(
            Method::POST,
            "/v1/phone-numbers",
            Some(&owner),
            Some(json!({"phone_number": NUMBER, "pin": PIN})),
        )
        .await;
    let id = added.str("id").to_owned();
    let path = format!("/v1/phone-numbers/{id}/two-step/disable-requests");
    let refused = app.request(Method::POST, &path, Some(&owner), None).await;
    refused.assert_problem(422, "refused");
    assert_eq!(refused.body["rule"], "account-needs-an-email");
    // Only the root key sets it.
    let email_path = format!("/v1/accounts/{}/email", app.account_id);
    let body = json!({"email": OWNER_EMAIL});
    app.request(Method::PUT, &email_path, Some(&owner), Some(body.clone()))
        .await
        .assert_problem(403, "forbidden");
    let set = app
        .request(Method::PUT, &email_path, Some(ROOT_KEY), Some(body))
        .await;
    assert_eq!(set.status, 200, "{}", set.body);
    assert_eq!(
        app.request(Method::POST, &path, Some(&owner), None)
            .await
            .status,
        202
    );
    assert_eq!(sink.wait_for(1).await[0].recipients, [OWNER_EMAIL]);
    app.stop().await;
}

/// Two instances on one Redis, no waits before the lock: 40 concurrent wrong PINs evaluate
/// exactly 10 and lock the number.
async fn concurrent_wrong_pins_never_exceed_the_limit(backend: Backend) {
    let no_waits = |settings: &mut Settings| settings.pin.settings.limits.free_attempts = 10;
    let org = Org::with(backend.clone(), no_waits).await;
    let id = org.add_number("owner").await;
    // The second instance, built like `spawn_peer` but with the same PIN settings.
    let mut settings = settings_for(&backend, &org.app.prefix, "http://127.0.0.1:9/messages");
    pin_settings(&mut settings, org.sink.port);
    no_waits(&mut settings);
    let peer_app = otpgate::App::build_with(
        settings,
        otpgate::Overrides {
            clock: Some(org.app.clock.clone()),
            provider: None,
        },
    )
    .await
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let peer = format!("http://{}", listener.local_addr().unwrap());
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(otpgate::run(
        listener,
        peer_app.clone(),
        stop.clone().cancelled_owned(),
    ));

    let http = http_client();
    let mut tasks = Vec::new();
    for n in 0..40 {
        let base = if n % 2 == 0 {
            org.app.address.clone()
        } else {
            peer.clone()
        };
        let url = format!("{base}/v1/phone-numbers/{id}/register");
        let (http, key) = (http.clone(), org.partner.clone());
        tasks.push(tokio::spawn(async move {
            reply(
                http.post(url)
                    .bearer_auth(key)
                    .json(&json!({"pin": WRONG_PIN}))
                    .send()
                    .await
                    .unwrap(),
            )
            .await
            .status
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    let mismatches = statuses.iter().filter(|s| **s == 422).count();
    let locked = statuses.iter().filter(|s| **s == 423).count();
    println!("40 concurrent wrong PINs on two instances: {mismatches} evaluated, {locked} refused as locked");
    assert_eq!(mismatches, 10, "{statuses:?}");
    assert_eq!(locked, 30, "{statuses:?}");
    assert_eq!(org.number(&id).await["consecutive_failures"], 10);
    stop.cancel();
    peer_app.shutdown(Duration::from_secs(2)).await;
    org.app.stop().await;
}

mod concurrent_wrong_pins_never_exceed_the_limit {
    use crate::helpers::Backend;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_redis() {
        super::concurrent_wrong_pins_never_exceed_the_limit(Backend::Redis).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_redis_cluster() {
        super::concurrent_wrong_pins_never_exceed_the_limit(Backend::Cluster).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_wrong_pins_on_memory_never_exceed_the_limit() {
    let org = Org::with(Backend::Memory, |s| {
        s.pin.settings.limits.free_attempts = 10
    })
    .await;
    let id = org.add_number("owner").await;
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let url = format!("{}/v1/phone-numbers/{id}/register", org.app.address);
        let (http, key) = (org.app.http.clone(), org.partner.clone());
        tasks.push(tokio::spawn(async move {
            http.post(url)
                .bearer_auth(key)
                .json(&json!({"pin": WRONG_PIN}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut mismatches = 0;
    for task in tasks {
        if task.await.unwrap() == 422 {
            mismatches += 1;
        }
    }
    assert_eq!(mismatches, 10);
    org.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_support_command_disables_on_the_owners_behalf_and_audits_it() {
    let org = Org::new(Backend::Redis).await;
    let id = org.add_number("owner").await;
    let redis_url = crate::redis_harness::shared_redis().url();
    let run = |extra: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_otpgate"));
        command
            .env_clear()
            .env("OTPGATE_REDIS_URL", &redis_url)
            .env("OTPGATE_STORE__KEY_PREFIX", &org.app.prefix)
            .env("OTPGATE_CODE_KEY", CODE_KEY)
            .env("OTPGATE_DEVICE_KEY", CODE_KEY)
            .env("OTPGATE_PIN_PEPPER", CODE_KEY)
            .env("OTPGATE_LOG", "warn")
            .env("USER", "support-ann")
            .args(["support", "disable-two-step"])
            .args(extra);
        command.output().expect("the binary runs")
    };
    let account = org.app.account_id.clone();
    // Refused without a reason, and for an unknown number: nothing changes.
    let no_reason = run(&["--account", &account, "--phone-number", &id]);
    assert!(!no_reason.status.success());
    let unknown = run(&[
        "--account",
        &account,
        "--phone-number",
        "106540352242922",
        "--reason",
        "ticket 4711: lost access",
    ]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no such phone number"));
    assert_eq!(org.number(&id).await["two_step"], "enabled");

    let done = run(&[
        "--account",
        &account,
        "--phone-number",
        &id,
        "--reason",
        "ticket 4711: owner lost portfolio access",
    ]);
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert!(String::from_utf8_lossy(&done.stdout).contains("disabled"));
    assert_eq!(org.number(&id).await["two_step"], "disabled");

    let page = org
        .call(Method::GET, "/v1/audit?limit=10", "owner", None)
        .await;
    let entry = page.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["action"] == "two_step.disabled_by_support")
        .expect("the support disable is audited")
        .clone();
    assert_eq!(entry["who"]["role"], "support");
    assert_eq!(entry["who"]["acting_user"], "support-ann");
    assert_eq!(
        entry["details"]["reason"],
        "ticket 4711: owner lost portfolio access"
    );
    assert_eq!(entry["target"], format!("phone_number:{id}"));
    // Twice: already off, refused, no second entry.
    let again = run(&[
        "--account",
        &account,
        "--phone-number",
        &id,
        "--reason",
        "ticket 4711: owner lost portfolio access",
    ]);
    assert!(!again.status.success());
    org.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pins_are_stored_only_as_peppered_argon2id_hashes_with_default_costs() {
    let sink = SmtpSink::start().await;
    let org_app = spawn_app_with(Backend::Redis, |settings| {
        pin_settings(settings, sink.port);
        settings.pin.settings.cost = HashCost::DEFAULT;
    })
    .await;
    let owner = org_app.mint_key(&org_app.account_id, "owner").await;
    let added = org_app
        .request(
            Method::POST,
            "/v1/phone-numbers",
            Some(&owner),
            Some(json!({"phone_number": NUMBER, "pin": PIN})),
        )
        .await;
    assert_eq!(added.status, 201, "{}", added.body);
    let id = added.str("id");
    let key = format!("{}:{{a:{}}}:pn:{id}", org_app.prefix, org_app.account_id);
    let stored = crate::redis_harness::shared_redis().command(&["HGET", &key, "h"]);
    assert!(stored.contains("a2id$19456$2$1$"), "{stored}");
    assert!(!stored.contains(PIN));
    for _ in 0..4 {
        let path = format!("/v1/phone-numbers/{id}/register");
        let ok = org_app
            .request(Method::POST, &path, Some(&owner), Some(json!({"pin": PIN})))
            .await;
        assert_eq!(ok.status, 200, "{}", ok.body);
    }
    let metrics = org_app.metrics().await;
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in {metrics}"))
    };
    let sum = value("otpgate_pin_hash_duration_seconds_sum");
    let count = value("otpgate_pin_hash_duration_seconds_count");
    println!(
        "argon2id m=19456 KiB t=2 p=1: {count} hashes, {:.1} ms each on average (test profile)",
        sum / count * 1000.0
    );
    assert_eq!(count, 5.0);
    org_app.stop().await;
}

// ---- the gateway-wide registry of numbers (issue 14) ----

/// A second account on the same gateway; its owner key.
async fn other_account(org: &Org, name: &str) -> (String, String) {
    let account = org
        .app
        .request(
            Method::POST,
            "/v1/accounts",
            Some(ROOT_KEY),
            Some(json!({"name": name, "email": format!("owner@{name}.example")})),
        )
        .await;
    assert_eq!(account.status, 201, "{}", account.body);
    let id = account.str("id").to_owned();
    let key = org.app.mint_key(&id, "owner").await;
    (id, key)
}

async fn add_as(app_address: &str, key: &str, number: &str, pin: &str) -> Reply {
    reply(
        http_client()
            .post(format!("{app_address}/v1/phone-numbers"))
            .bearer_auth(key)
            .json(&json!({"phone_number": number, "pin": pin}))
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn audit_of(org: &Org, key: &str) -> Vec<String> {
    let page = org
        .app
        .request(Method::GET, "/v1/audit?limit=200", Some(key), None)
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    page.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["action"].as_str().unwrap().to_owned())
        .collect()
}

async fn a_number_another_account_holds_moves_only_with_its_pin_and_both_accounts_audit_it(
    backend: Backend,
) {
    let org = Org::new(backend).await;
    let held = org.add_number("owner").await;
    let (other, other_key) = other_account(&org, "rival").await;

    // The other account's own PIN is a wrong PIN for the number: refused, counted on the
    // holder's record, and the answer names neither the holder nor its id.
    let refused = add_as(&org.app.address, &other_key, NUMBER, NEW_PIN).await;
    refused.assert_problem(422, "pin-mismatch");
    let text = refused.body.to_string();
    assert!(!text.contains(&org.app.account_id), "{text}");
    assert!(!text.contains(&held), "{text}");
    assert!(!text.contains("Acme"), "{text}");
    assert_eq!(org.number(&held).await["consecutive_failures"], 1);
    assert_eq!(org.number(&held).await["two_step"], "enabled");
    assert!(audit_of(&org, &org.owner)
        .await
        .contains(&"phone_number.claim_refused".to_owned()));
    assert!(audit_of(&org, &other_key)
        .await
        .contains(&"phone_number.claim_refused".to_owned()));

    // With the number's PIN it moves: a new id in the new account, gone from the old one.
    let moved = add_as(&org.app.address, &other_key, NUMBER, PIN).await;
    assert_eq!(moved.status, 201, "{}", moved.body);
    assert_eq!(moved.body["two_step"], "enabled");
    let new_id = moved.str("id").to_owned();
    assert_ne!(new_id, held);
    let gone = org
        .call(
            Method::GET,
            &format!("/v1/phone-numbers/{held}"),
            "owner",
            None,
        )
        .await;
    assert_eq!(gone.status, 404, "{}", gone.body);
    assert!(audit_of(&org, &org.owner)
        .await
        .contains(&"phone_number.transferred_out".to_owned()));
    assert!(audit_of(&org, &other_key)
        .await
        .contains(&"phone_number.transferred_in".to_owned()));
    let audit_text = org
        .app
        .request(Method::GET, "/v1/audit?limit=200", Some(&org.owner), None)
        .await
        .body
        .to_string();
    assert!(
        !audit_text.contains(&other),
        "the holder's trail does not name the claimant"
    );
    assert!(!audit_text.contains(NUMBER), "no raw number in the trail");

    // Now the first account is the outsider: a wrong PIN is refused like anyone's.
    add_as(&org.app.address, &org.owner, NUMBER, WRONG_PIN)
        .await
        .assert_problem(422, "pin-mismatch");
    org.app.stop().await;
}

async fn after_its_owner_disables_two_step_another_account_takes_the_number_with_its_own_pin(
    backend: Backend,
) {
    let org = Org::new(backend).await;
    let held = org.add_number("owner").await;
    let (_, other_key) = other_account(&org, "rival").await;
    assert_eq!(org.ask(&held, "disable", "owner").await.status, 202);
    let token = token_in(&org.sink.wait_for(1).await[0], "confirm");
    let opened = org.open(Method::GET, "confirm", &token, None).await;
    assert_eq!(opened.status, 200, "{}", opened.body);

    let moved = add_as(&org.app.address, &other_key, NUMBER, NEW_PIN).await;
    assert_eq!(moved.status, 201, "{}", moved.body);
    let new_id = moved.str("id").to_owned();
    // The claimant's PIN is the number's PIN now: the first account's old one no longer is.
    let register = org
        .app
        .request(
            Method::POST,
            &format!("/v1/phone-numbers/{new_id}/register"),
            Some(&other_key),
            Some(json!({"pin": NEW_PIN})),
        )
        .await;
    success(&register);
    add_as(&org.app.address, &org.owner, NUMBER, PIN)
        .await
        .assert_problem(422, "pin-mismatch");
    org.app.stop().await;
}

/// Two instances on one store (one instance on memory), two accounts adding the same numbers
/// at once with different PINs: for every number exactly one account wins.
async fn concurrent_adds_of_one_number_from_two_accounts_on_two_instances_let_exactly_one_win(
    backend: Backend,
) {
    let org = Org::new(backend.clone()).await;
    let (_, first_key) = other_account(&org, "first").await;
    let (_, second_key) = other_account(&org, "second").await;
    let mut peer_parts = None;
    let peer = if matches!(backend, Backend::Memory) {
        org.app.address.clone()
    } else {
        let mut settings = settings_for(&backend, &org.app.prefix, "http://127.0.0.1:9/messages");
        pin_settings(&mut settings, org.sink.port);
        let peer_app = otpgate::App::build_with(
            settings,
            otpgate::Overrides {
                clock: Some(org.app.clock.clone()),
                provider: None,
            },
        )
        .await
        .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let stop = tokio_util::sync::CancellationToken::new();
        tokio::spawn(otpgate::run(
            listener,
            peer_app.clone(),
            stop.clone().cancelled_owned(),
        ));
        peer_parts = Some((peer_app, stop));
        address
    };
    for n in 0..8 {
        let number = format!("+49151129834{n:02}");
        let first = add_as(&org.app.address, &first_key, &number, PIN);
        let second = add_as(&peer, &second_key, &number, NEW_PIN);
        let (first, second) = tokio::join!(first, second);
        let statuses = [first.status, second.status];
        assert_eq!(
            statuses.iter().filter(|s| **s == 201).count(),
            1,
            "{number}: {statuses:?} {} {}",
            first.body,
            second.body
        );
        assert!(
            statuses.iter().all(|s| [201, 409, 422].contains(s)),
            "{statuses:?}"
        );
    }
    if let Some((peer_app, stop)) = peer_parts {
        stop.cancel();
        peer_app.shutdown(Duration::from_secs(2)).await;
    }
    org.app.stop().await;
}
