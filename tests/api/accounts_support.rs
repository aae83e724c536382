//! Helpers for the accounts, trust and audit tests: an account with one key per role, users,
//! a passed challenge, and factors added the way the enrolment will add them.

use std::time::Duration;

use otpgate::account::audit::Who;
use otpgate::account::user::{Factor, FactorType, UserId};
use otpgate::account::AccountId;
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, spawn_app_with, Backend, Reply, TestApp};

/// A test app whose account has a key of every role (`app.key` is the service key).
pub struct Org {
    pub app: TestApp,
    pub owner: String,
    pub admin: String,
    pub partner: String,
    pub service: String,
}

pub const DAY: Duration = Duration::from_secs(86_400);

impl Org {
    pub async fn new(backend: Backend) -> Self {
        Self::from_app(spawn_app(backend).await).await
    }

    pub async fn with(
        backend: Backend,
        adjust: impl FnOnce(&mut otpgate::config::Settings),
    ) -> Self {
        Self::from_app(spawn_app_with(backend, adjust).await).await
    }

    pub async fn from_app(app: TestApp) -> Self {
        let owner = app.mint_key(&app.account_id, "owner").await;
        let admin = app.mint_key(&app.account_id, "admin").await;
        let partner = app.mint_key(&app.account_id, "partner").await;
        let service = app.key.clone();
        Self {
            app,
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
            other => panic!("no key role {other}"),
        }
    }

    pub async fn call(&self, method: Method, path: &str, role: &str, body: Option<Value>) -> Reply {
        self.app
            .request(method, path, Some(self.key(role)), body)
            .await
    }

    pub async fn put_policy(&self, role: &str, body: Value) -> Reply {
        self.call(Method::PUT, "/v1/policy", role, Some(body)).await
    }

    /// The owner sets the policy; the test fails if it is refused.
    pub async fn policy(&self, body: Value) {
        let reply = self.put_policy("owner", body).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
    }

    pub async fn add_user(&self, role: &str, body: Value) -> Reply {
        self.call(Method::POST, "/v1/users", role, Some(body)).await
    }

    /// The owner adds a user; the test fails if it is refused.
    pub async fn user(&self, id: &str, role: &str, phone: Option<&str>) {
        let mut body = json!({"id": id, "role": role});
        if let Some(phone) = phone {
            body["phone"] = json!(phone);
        }
        let reply = self.add_user("owner", body).await;
        assert_eq!(reply.status, 201, "{}", reply.body);
    }

    pub async fn patch_user(&self, role: &str, id: &str, body: Value) -> Reply {
        self.call(Method::PATCH, &format!("/v1/users/{id}"), role, Some(body))
            .await
    }

    pub async fn get_user(&self, id: &str) -> Reply {
        self.call(Method::GET, &format!("/v1/users/{id}"), "owner", None)
            .await
    }

    /// Sends a code to `phone` and checks it: the id of an approved verification.
    pub async fn pass_challenge(&self, phone: &str) -> String {
        let to_phone = |messages: &[Value]| {
            messages
                .iter()
                .filter(|message| message["to"] == phone)
                .map(|message| message["body"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        };
        let before = to_phone(&self.app.messages().await).len();
        let sent = self.app.send(phone).await;
        assert!(sent.status == 201 || sent.status == 200, "{}", sent.body);
        let id = sent.str("id").to_owned();
        // Delivery is asynchronous: wait for this number's next message (an event, not time).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let body = loop {
            let bodies = to_phone(&self.app.messages().await);
            if bodies.len() > before {
                break bodies.last().unwrap().clone();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no message to {phone}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let code = crate::helpers::extract_code(&body);
        let checked = self.app.check_id(&id, &code).await;
        assert_eq!(checked.body["status"], "approved", "{}", checked.body);
        id
    }

    pub async fn trust(&self, user: &str, verification_id: &str) -> Reply {
        self.app
            .request(
                Method::POST,
                &format!("/v1/users/{user}/trusted-devices"),
                Some(&self.service),
                Some(json!({"verification_id": verification_id})),
            )
            .await
    }

    /// Passes a challenge on the user's phone and trusts a device: its token and id.
    pub async fn trusted_device(&self, user: &str, phone: &str) -> (String, String) {
        let proof = self.pass_challenge(phone).await;
        let trusted = self.trust(user, &proof).await;
        assert_eq!(trusted.status, 201, "{}", trusted.body);
        (
            trusted.str("token").to_owned(),
            trusted.str("id").to_owned(),
        )
    }

    pub async fn check(&self, user: &str, token: &str) -> bool {
        check_on(&self.app, &self.service, user, token).await
    }

    pub async fn login(&self, user: &str, token: Option<&str>) -> Reply {
        let mut body = json!({"user": user});
        if let Some(token) = token {
            body["device_token"] = json!(token);
        }
        self.call(Method::POST, "/v1/logins", "service", Some(body))
            .await
    }

    /// Adds an enrolled factor the way the enrolment will (through the service, not HTTP).
    pub async fn enrol(&self, user: &str, kind: FactorType, id: &str) {
        self.app
            .app
            .accounts()
            .add_factor(
                &AccountId::parse(&self.app.account_id).unwrap(),
                Who::root(),
                &UserId::parse(user).unwrap(),
                Factor {
                    kind,
                    id: id.to_owned(),
                },
            )
            .await
            .expect("the factor is added");
    }

    pub async fn audit(&self, query: &str) -> Reply {
        self.call(Method::GET, &format!("/v1/audit{query}"), "owner", None)
            .await
    }
}

/// A trusted-device check on any instance.
pub async fn check_on(app: &TestApp, key: &str, user: &str, token: &str) -> bool {
    let reply = app
        .request(
            Method::POST,
            "/v1/trusted-devices/check",
            Some(key),
            Some(json!({"user": user, "device_token": token})),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body["trusted"].as_bool().expect("trusted is a bool")
}

/// Asserts a 422 refusal by `rule`, named in `detail` and in `rule`.
pub fn assert_refused(reply: &Reply, rule: &str) {
    reply.assert_problem(422, "refused");
    assert_eq!(reply.body["rule"], rule, "{}", reply.body);
    assert!(
        reply.str("detail").contains(rule),
        "the detail names the rule: {}",
        reply.body
    );
}

/// The value of one series in a Prometheus scrape (0 when absent).
pub fn metric(scrape: &str, series: &str) -> f64 {
    scrape
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}
