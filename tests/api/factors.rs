//! Authenticator apps (TOTP), security keys (WebAuthn) and recovery codes over HTTP, on every
//! store: enrolment, confirmation, window edges on a moved clock, replay, wrong-code waits,
//! concurrency across instances, secrets at rest and key rotation, the SMS fallback flow.

use std::time::Duration;

use data_encoding::BASE32_NOPAD;
use otpgate::clock::Clock;
use otpgate::factors::totp::{Algorithm, Totp, TotpParams};
use reqwest::Method;
use serde_json::{json, Value};

use crate::accounts_support::{assert_refused, metric, Org};
use crate::factors_authenticator::{Ceremony, SoftKey};
use crate::helpers::{Backend, Reply, TestApp};
use crate::on_every_store;

pub const ORIGIN: &str = "https://login.example.com";
pub const RP_ID: &str = "example.com";

/// An account whose policy allows SMS, apps and keys with SMS as the fallback, trusted devices
/// for a week, and a relying party at `ORIGIN`.
pub async fn org(backend: Backend) -> Org {
    let org = Org::with(backend, |settings| {
        settings.factors.relying_party.id = RP_ID.to_owned();
        settings.factors.relying_party.origins = vec![ORIGIN.to_owned()];
    })
    .await;
    org.policy(json!({
        "channels": ["sms", "totp", "webauthn"],
        "sms_fallback": true,
        "trusted_device": "7d",
    }))
    .await;
    org
}

pub async fn post(app: &TestApp, key: &str, path: &str, body: Value) -> Reply {
    app.request(Method::POST, path, Some(key), Some(body)).await
}

/// A TOTP factor as the test's "authenticator app" holds it.
pub struct App {
    pub id: String,
    pub totp: Totp,
    pub secret: Vec<u8>,
    pub secret_base32: String,
    pub enrolment: Value,
}

impl App {
    pub fn code(&self, now_ms: u64) -> String {
        self.totp.code_at(now_ms)
    }

    /// The code of the step `offset` steps from the one containing `now_ms`.
    pub fn code_at_offset(&self, now_ms: u64, offset: i64) -> String {
        let step = (now_ms / 30_000) as i64 + offset;
        self.totp.code_at_step(step as u64)
    }
}

/// Starts a TOTP enrolment for `user` and reads the secret from the otpauth URI.
pub async fn enrol_totp(app: &TestApp, key: &str, user: &str, body: Value) -> App {
    let reply = post(app, key, &format!("/v1/users/{user}/factors"), body).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let uri = reply.str("otpauth_uri").to_owned();
    let secret_base32 = uri
        .split("secret=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(secret_base32, reply.str("secret"));
    let secret = BASE32_NOPAD.decode(secret_base32.as_bytes()).unwrap();
    let params = TotpParams {
        algorithm: Algorithm::parse(reply.str("algorithm")).unwrap(),
        digits: reply.body["digits"].as_u64().unwrap() as u8,
        period: 30,
    };
    App {
        id: reply.str("id").to_owned(),
        totp: Totp::new(&secret, params),
        secret,
        secret_base32,
        enrolment: reply.body,
    }
}

pub async fn confirm(app: &TestApp, key: &str, user: &str, factor: &str, body: Value) -> Reply {
    post(
        app,
        key,
        &format!("/v1/users/{user}/factors/{factor}/confirm"),
        body,
    )
    .await
}

/// Enrols and confirms a TOTP factor; the clock then moves one step on, so that the next
/// code is fresh.
pub async fn active_totp(org: &Org, user: &str) -> (App, Reply) {
    let app = enrol_totp(&org.app, &org.service, user, json!({"type": "totp"})).await;
    let now = org.app.clock.now_ms();
    let confirmed = confirm(
        &org.app,
        &org.service,
        user,
        &app.id,
        json!({"code": app.code(now)}),
    )
    .await;
    assert_eq!(confirmed.status, 200, "{}", confirmed.body);
    org.app.clock.advance(Duration::from_secs(30));
    (app, confirmed)
}

pub async fn totp_challenge(app: &TestApp, key: &str, user: &str, code: &str) -> Reply {
    post(
        app,
        key,
        &format!("/v1/users/{user}/challenges"),
        json!({"type": "totp", "code": code}),
    )
    .await
}

fn valid(reply: &Reply) -> bool {
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body["valid"].as_bool().expect("valid is a bool")
}

on_every_store!(
    a_totp_enrolment_gives_a_uri_and_a_qr_code_and_counts_only_once_confirmed,
    codes_of_the_previous_current_and_next_step_pass_and_no_others,
    a_code_is_accepted_once_and_never_after_a_newer_one,
    five_wrong_codes_make_the_next_attempt_wait_and_the_waits_grow,
    recovery_codes_are_single_use_and_regeneration_replaces_them,
    a_passed_challenge_trusts_one_device_and_removing_the_factor_revokes_it,
    an_app_user_may_choose_sms_instead_and_is_approved,
    a_security_key_registers_and_authenticates,
    security_key_ceremonies_refuse_wrong_origin_rp_id_reused_challenge_and_counter_regression,
);

async fn a_totp_enrolment_gives_a_uri_and_a_qr_code_and_counts_only_once_confirmed(
    backend: Backend,
) {
    let org = org(backend).await;
    org.user("alice", "member", Some("+4915112360001")).await;
    let app = enrol_totp(
        &org.app,
        &org.service,
        "alice",
        json!({"type": "totp", "algorithm": "SHA256", "digits": 8}),
    )
    .await;
    let uri = app.enrolment["otpauth_uri"].as_str().unwrap();
    assert!(
        uri.starts_with("otpauth://totp/Acme:alice?secret="),
        "issuer is the account's name: {uri}"
    );
    assert!(
        uri.ends_with("&issuer=Acme&algorithm=SHA256&digits=8&period=30"),
        "{uri}"
    );
    assert_eq!(app.secret.len(), 20, "a 160-bit secret");
    assert!(app.enrolment["qr_svg"].as_str().unwrap().contains("<svg"));
    assert_eq!(app.enrolment["status"], "pending");

    // Pending: not offered at login, not usable in a challenge.
    let login = org.login("alice", None).await;
    assert_eq!(login.body["factors"][0]["type"], "sms", "{}", login.body);
    let now = org.app.clock.now_ms();
    let challenge = totp_challenge(&org.app, &org.service, "alice", &app.code(now)).await;
    challenge.assert_problem(404, "not-found");

    // A wrong first code leaves it pending; the right one activates it.
    let wrong = confirm(
        &org.app,
        &org.service,
        "alice",
        &app.id,
        json!({"code": crate::helpers::wrong_code(&app.code(now))}),
    )
    .await;
    assert!(!valid(&wrong));
    assert_eq!(wrong.body["reason"], "wrong_code");
    assert_eq!(wrong.body["attempts_left"], 4);
    let confirmed = confirm(
        &org.app,
        &org.service,
        "alice",
        &app.id,
        json!({"code": app.code(now)}),
    )
    .await;
    assert_eq!(confirmed.status, 200, "{}", confirmed.body);
    assert_eq!(confirmed.body["status"], "active");
    let codes = confirmed.body["recovery_codes"].as_array().unwrap();
    assert_eq!(
        codes.len(),
        10,
        "the first factor comes with ten recovery codes"
    );
    // Confirming again is a conflict; the login now offers the app, SMS as the fallback.
    confirm(
        &org.app,
        &org.service,
        "alice",
        &app.id,
        json!({"code": app.code(now)}),
    )
    .await
    .assert_problem(409, "conflict");
    let login = org.login("alice", None).await;
    assert_eq!(login.body["decision"], "challenge");
    assert_eq!(
        login.body["factors"],
        json!([{"type": "totp", "id": app.id}])
    );
    assert_eq!(login.body["fallback"]["type"], "sms");

    // A second app: no new recovery codes.
    org.app.clock.advance(Duration::from_secs(30));
    let second = enrol_totp(&org.app, &org.service, "alice", json!({"type": "totp"})).await;
    let confirmed = confirm(
        &org.app,
        &org.service,
        "alice",
        &second.id,
        json!({"code": second.code(org.app.clock.now_ms())}),
    )
    .await;
    assert_eq!(confirmed.status, 200, "{}", confirmed.body);
    assert!(confirmed.body.get("recovery_codes").is_none());
    // With two apps a challenge names its factor.
    let code = second.code(org.app.clock.now_ms() + 30_000);
    totp_challenge(&org.app, &org.service, "alice", &code)
        .await
        .assert_problem(400, "invalid-request");

    // A pending enrolment expires unconfirmed.
    let late = enrol_totp(&org.app, &org.service, "alice", json!({"type": "totp"})).await;
    org.app.clock.advance(Duration::from_secs(601));
    let code = late.code(org.app.clock.now_ms());
    confirm(
        &org.app,
        &org.service,
        "alice",
        &late.id,
        json!({"code": code}),
    )
    .await
    .assert_problem(404, "not-found");
    org.app.stop().await;
}

async fn codes_of_the_previous_current_and_next_step_pass_and_no_others(backend: Backend) {
    let org = org(backend).await;
    org.user("bob", "member", Some("+4915112360002")).await;
    let (app, _) = active_totp(&org, "bob").await;
    // Put the clock in the middle of a step, then read the edges.
    let now = org.app.clock.now_ms();
    org.app
        .clock
        .advance(Duration::from_millis(30_000 - now % 30_000 + 15_000));
    let now = org.app.clock.now_ms();
    for far in [-2, 2] {
        let reply =
            totp_challenge(&org.app, &org.service, "bob", &app.code_at_offset(now, far)).await;
        assert!(!valid(&reply), "step {far} is outside the window");
    }
    for near in [-1, 0, 1] {
        let reply = totp_challenge(
            &org.app,
            &org.service,
            "bob",
            &app.code_at_offset(now, near),
        )
        .await;
        assert!(valid(&reply), "step {near}: {}", reply.body);
        assert!(reply.str("challenge_id").starts_with("CH"));
    }
    // On the boundary: at the last millisecond of a step the next step's code already passes,
    // and the step before the previous one no longer does.
    org.app
        .clock
        .advance(Duration::from_millis(30_000 * 3 + 14_999));
    let now = org.app.clock.now_ms();
    assert_eq!(now % 30_000, 29_999);
    let reply = totp_challenge(&org.app, &org.service, "bob", &app.code_at_offset(now, -2)).await;
    assert!(!valid(&reply));
    let reply = totp_challenge(&org.app, &org.service, "bob", &app.code_at_offset(now, 1)).await;
    assert!(valid(&reply), "{}", reply.body);
    let scrape = org.app.metrics().await;
    assert_eq!(
        metric(
            &scrape,
            "otpgate_factor_challenges_total{type=\"totp\",outcome=\"accepted\"}"
        ),
        4.0
    );
    assert_eq!(
        metric(
            &scrape,
            "otpgate_factor_challenges_total{type=\"totp\",outcome=\"wrong\"}"
        ),
        3.0
    );
    org.app.stop().await;
}

async fn a_code_is_accepted_once_and_never_after_a_newer_one(backend: Backend) {
    let org = org(backend).await;
    org.user("carol", "member", Some("+4915112360003")).await;
    let (app, _) = active_totp(&org, "carol").await;
    let now = org.app.clock.now_ms();
    let current = app.code_at_offset(now, 0);
    assert!(valid(
        &totp_challenge(&org.app, &org.service, "carol", &current).await
    ));
    let replay = totp_challenge(&org.app, &org.service, "carol", &current).await;
    assert!(!valid(&replay));
    assert_eq!(replay.body["reason"], "code_already_used");
    // The next step's code, then the previous step's: older after newer is refused.
    let next = app.code_at_offset(now, 1);
    assert!(valid(
        &totp_challenge(&org.app, &org.service, "carol", &next).await
    ));
    let older = totp_challenge(
        &org.app,
        &org.service,
        "carol",
        &app.code_at_offset(now, -1),
    )
    .await;
    assert!(!valid(&older));
    assert_eq!(older.body["reason"], "code_already_used");
    // A replay is not a wrong code (no attempts are taken) but it is audited.
    let audit = org.audit("?limit=10").await;
    let reused = audit.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["action"] == "factor.code_reused")
        .count();
    assert_eq!(reused, 2, "{}", audit.body);
    org.app.stop().await;
}

async fn five_wrong_codes_make_the_next_attempt_wait_and_the_waits_grow(backend: Backend) {
    let org = org(backend).await;
    org.user("dave", "member", Some("+4915112360004")).await;
    let (app, _) = active_totp(&org, "dave").await;
    let wrong = |now| crate::helpers::wrong_code(&app.code(now));
    for round in 1..=2u64 {
        for attempt in 1..=5 {
            let now = org.app.clock.now_ms();
            let reply = totp_challenge(&org.app, &org.service, "dave", &wrong(now)).await;
            assert!(!valid(&reply));
            if attempt < 5 {
                assert_eq!(reply.body["attempts_left"], 5 - attempt, "{}", reply.body);
            } else {
                assert_eq!(reply.body["attempts_left"], 0);
                assert_eq!(reply.body["retry_after_seconds"], 30 * round);
            }
        }
        // While waiting even the right code is not compared: 429 with Retry-After.
        let now = org.app.clock.now_ms();
        let limited = totp_challenge(&org.app, &org.service, "dave", &app.code(now)).await;
        limited.assert_problem(429, "factor-attempts-limited");
        assert_eq!(
            limited.headers["retry-after"].to_str().unwrap(),
            (30 * round).to_string()
        );
        org.app.clock.advance(Duration::from_secs(30 * round));
    }
    let now = org.app.clock.now_ms();
    assert!(valid(
        &totp_challenge(&org.app, &org.service, "dave", &app.code(now)).await
    ));
    // A success starts the count again.
    let reply = totp_challenge(&org.app, &org.service, "dave", &wrong(now + 30_000)).await;
    assert_eq!(reply.body["attempts_left"], 4);
    org.app.stop().await;
}

async fn recovery_codes_are_single_use_and_regeneration_replaces_them(backend: Backend) {
    let org = org(backend).await;
    org.user("erin", "member", Some("+4915112360005")).await;
    let (_, confirmed) = active_totp(&org, "erin").await;
    let codes: Vec<String> = confirmed.body["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|code| code.as_str().unwrap().to_owned())
        .collect();
    let recover = |code: String| {
        let app = &org.app;
        let key = org.service.clone();
        async move {
            post(
                app,
                &key,
                "/v1/users/erin/challenges",
                json!({"type": "recovery_code", "code": code}),
            )
            .await
        }
    };
    let used = recover(codes[0].to_uppercase()).await;
    assert!(valid(&used), "{}", used.body);
    assert_eq!(used.body["recovery_codes_left"], 9);
    assert!(!valid(&recover(codes[0].clone()).await), "single use");
    let regenerated = post(
        &org.app,
        &org.service,
        "/v1/users/erin/recovery-codes",
        json!({}),
    )
    .await;
    assert_eq!(regenerated.status, 201, "{}", regenerated.body);
    let fresh = regenerated.body["recovery_codes"].as_array().unwrap();
    assert_eq!(fresh.len(), 10);
    assert!(
        !valid(&recover(codes[1].clone()).await),
        "the old set is gone"
    );
    let used = recover(fresh[0].as_str().unwrap().to_owned()).await;
    assert!(valid(&used));
    assert_eq!(used.body["recovery_codes_left"], 9);
    // Malformed codes are bad input, not attempts.
    recover("not a code".into())
        .await
        .assert_problem(400, "invalid-request");
    org.app.stop().await;
}

async fn a_passed_challenge_trusts_one_device_and_removing_the_factor_revokes_it(backend: Backend) {
    let org = org(backend).await;
    org.user("fred", "member", Some("+4915112360006")).await;
    let (app, _) = active_totp(&org, "fred").await;
    let passed = totp_challenge(
        &org.app,
        &org.service,
        "fred",
        &app.code(org.app.clock.now_ms()),
    )
    .await;
    assert!(valid(&passed));
    let challenge_id = passed.str("challenge_id").to_owned();
    let trust = |id: String| {
        let app = &org.app;
        let key = org.service.clone();
        async move {
            post(
                app,
                &key,
                "/v1/users/fred/trusted-devices",
                json!({"challenge_id": id}),
            )
            .await
        }
    };
    let trusted = trust(challenge_id.clone()).await;
    assert_eq!(trusted.status, 201, "{}", trusted.body);
    let token = trusted.str("token").to_owned();
    assert_refused(
        &trust(challenge_id.clone()).await,
        "a-proof-trusts-one-device",
    );
    assert_eq!(
        org.login("fred", Some(&token)).await.body["decision"],
        "allow"
    );
    // Another user's challenge is no proof for fred; an unknown one neither.
    org.user("gina", "member", Some("+4915112360007")).await;
    let (gina_app, _) = active_totp(&org, "gina").await;
    let gina = totp_challenge(
        &org.app,
        &org.service,
        "gina",
        &gina_app.code(org.app.clock.now_ms()),
    )
    .await;
    assert_refused(
        &trust(gina.str("challenge_id").to_owned()).await,
        "proof-must-be-a-fresh-approval-of-this-user",
    );
    assert_refused(
        &trust(format!("CH{}", "0".repeat(32))).await,
        "proof-must-be-a-fresh-approval-of-this-user",
    );
    // Removing the factor revokes fred's devices, is audited, and the factor is gone.
    let removed = org
        .call(
            Method::DELETE,
            &format!("/v1/users/fred/factors/{}", app.id),
            "owner",
            None,
        )
        .await;
    assert_eq!(removed.status, 200, "{}", removed.body);
    assert!(!org.check("fred", &token).await);
    let audit = org.audit("?limit=5").await;
    assert!(
        audit.body["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|entry| entry["action"] == "user.factor_removed"
                && entry["details"]["devices_revoked"] == true),
        "{}",
        audit.body
    );
    org.app.clock.advance(Duration::from_secs(30));
    totp_challenge(
        &org.app,
        &org.service,
        "fred",
        &app.code(org.app.clock.now_ms()),
    )
    .await
    .assert_problem(404, "not-found");
    org.app.stop().await;
}

async fn an_app_user_may_choose_sms_instead_and_is_approved(backend: Backend) {
    let org = org(backend).await;
    let phone = "+4915112360008";
    org.user("hank", "member", Some(phone)).await;
    active_totp(&org, "hank").await;
    let login = org.login("hank", None).await;
    assert_eq!(login.body["decision"], "challenge");
    assert_eq!(login.body["factors"][0]["type"], "totp");
    assert_eq!(login.body["fallback"]["type"], "sms", "{}", login.body);
    // The user chooses SMS: the login service sends a code and checks it.
    let sent = org.app.send(phone).await;
    assert_eq!(sent.status, 201, "{}", sent.body);
    let code = org.app.code_sent_to(phone, 1).await;
    let checked = org.app.check_id(sent.str("id"), &code).await;
    assert_eq!(checked.body["status"], "approved", "{}", checked.body);
    let trusted = org.trust("hank", sent.str("id")).await;
    assert_eq!(trusted.status, 201, "{}", trusted.body);
    let login = org.login("hank", Some(trusted.str("token"))).await;
    assert_eq!(login.body["decision"], "allow");
    // Without sms_fallback the app user is not offered SMS.
    org.policy(json!({"sms_fallback": false})).await;
    let login = org.login("hank", None).await;
    assert!(login.body.get("fallback").is_none(), "{}", login.body);
    org.app.stop().await;
}

/// Registers a software key for `user`: the factor id.
pub async fn register_key(org: &Org, user: &str, key: &mut SoftKey) -> String {
    let enrolment = post(
        &org.app,
        &org.service,
        &format!("/v1/users/{user}/factors"),
        json!({"type": "webauthn"}),
    )
    .await;
    assert_eq!(enrolment.status, 201, "{}", enrolment.body);
    let options = &enrolment.body["public_key"];
    assert_eq!(options["rp"]["id"], RP_ID);
    assert_eq!(options["attestation"], "none");
    let challenge = data_encoding::BASE64URL_NOPAD
        .decode(options["challenge"].as_str().unwrap().as_bytes())
        .unwrap();
    assert_eq!(challenge.len(), 32, "a 32-byte challenge");
    let id = enrolment.str("id").to_owned();
    let credential = key.register(options, &Ceremony::at(ORIGIN));
    let confirmed = confirm(
        &org.app,
        &org.service,
        user,
        &id,
        json!({"credential": credential}),
    )
    .await;
    assert_eq!(confirmed.status, 200, "{}", confirmed.body);
    id
}

pub async fn key_options(org: &Org, user: &str) -> Value {
    let begun = post(
        &org.app,
        &org.service,
        &format!("/v1/users/{user}/challenges"),
        json!({"type": "webauthn"}),
    )
    .await;
    assert_eq!(begun.status, 200, "{}", begun.body);
    begun.body["public_key"].clone()
}

pub async fn key_challenge(org: &Org, user: &str, assertion: Value) -> Reply {
    post(
        &org.app,
        &org.service,
        &format!("/v1/users/{user}/challenges"),
        json!({"type": "webauthn", "assertion": assertion}),
    )
    .await
}

async fn a_security_key_registers_and_authenticates(backend: Backend) {
    let org = org(backend).await;
    org.user("ivy", "member", Some("+4915112360009")).await;
    let mut key = SoftKey::new();
    let id = register_key(&org, "ivy", &mut key).await;
    let login = org.login("ivy", None).await;
    assert_eq!(
        login.body["factors"],
        json!([{"type": "webauthn", "id": id}])
    );
    for _ in 0..3 {
        let options = key_options(&org, "ivy").await;
        assert_eq!(options["rpId"], RP_ID);
        assert_eq!(
            options["allowCredentials"][0]["id"],
            data_encoding::BASE64URL_NOPAD.encode(&key.credential_id)
        );
        let reply = key_challenge(&org, "ivy", key.assert(&options, &Ceremony::at(ORIGIN))).await;
        assert!(valid(&reply), "{}", reply.body);
        assert_eq!(reply.body["factor_id"], id);
        assert!(reply.str("challenge_id").starts_with("CH"));
    }
    // The same key cannot be registered twice for one user.
    let enrolment = post(
        &org.app,
        &org.service,
        "/v1/users/ivy/factors",
        json!({"type": "webauthn"}),
    )
    .await;
    let excluded = &enrolment.body["public_key"]["excludeCredentials"];
    assert_eq!(excluded.as_array().unwrap().len(), 1);
    let again = key.register(&enrolment.body["public_key"], &Ceremony::at(ORIGIN));
    confirm(
        &org.app,
        &org.service,
        "ivy",
        enrolment.str("id"),
        json!({"credential": again}),
    )
    .await
    .assert_problem(409, "conflict");
    org.app.stop().await;
}

async fn security_key_ceremonies_refuse_wrong_origin_rp_id_reused_challenge_and_counter_regression(
    backend: Backend,
) {
    let org = org(backend).await;
    org.user("jack", "member", Some("+4915112360010")).await;
    let mut key = SoftKey::new();
    let mut cases = 0;
    // Registration: a wrong origin or RP id is refused, and the challenge is spent either way.
    for bent in [
        Ceremony::at("https://evil.example.net"),
        Ceremony {
            rp_id: Some("evil.example.net"),
            ..Ceremony::at(ORIGIN)
        },
    ] {
        let enrolment = post(
            &org.app,
            &org.service,
            "/v1/users/jack/factors",
            json!({"type": "webauthn"}),
        )
        .await;
        let credential = key.register(&enrolment.body["public_key"], &bent);
        let refused = confirm(
            &org.app,
            &org.service,
            "jack",
            enrolment.str("id"),
            json!({"credential": credential}),
        )
        .await;
        assert_refused(&refused, "security-key-registration-refused");
        cases += 1;
    }
    register_key(&org, "jack", &mut key).await;
    let expect = |reply: &Reply, reason: &str| {
        assert!(!valid(reply), "{}", reply.body);
        assert_eq!(reply.body["reason"], reason, "{}", reply.body);
    };
    // Wrong origin.
    let options = key_options(&org, "jack").await;
    let reply = key_challenge(
        &org,
        "jack",
        key.assert(&options, &Ceremony::at("https://login.example.net")),
    )
    .await;
    expect(&reply, "wrong_origin");
    cases += 1;
    // Wrong RP id.
    let options = key_options(&org, "jack").await;
    let bent = Ceremony {
        rp_id: Some("example.net"),
        ..Ceremony::at(ORIGIN)
    };
    expect(
        &key_challenge(&org, "jack", key.assert(&options, &bent)).await,
        "wrong_rp_id",
    );
    cases += 1;
    // Reused challenge: a good assertion passes once; the same challenge again is unknown.
    let options = key_options(&org, "jack").await;
    let good = key.assert(&options, &Ceremony::at(ORIGIN));
    assert!(valid(&key_challenge(&org, "jack", good.clone()).await));
    expect(
        &key_challenge(&org, "jack", good).await,
        "unknown_challenge",
    );
    let replayed_fresh = key.assert(&options, &Ceremony::at(ORIGIN));
    expect(
        &key_challenge(&org, "jack", replayed_fresh).await,
        "unknown_challenge",
    );
    cases += 1;
    // A challenge the server never issued.
    let bent = Ceremony {
        challenge: Some(data_encoding::BASE64URL_NOPAD.encode(&[7u8; 32])),
        ..Ceremony::at(ORIGIN)
    };
    let options = key_options(&org, "jack").await;
    expect(
        &key_challenge(&org, "jack", key.assert(&options, &bent)).await,
        "unknown_challenge",
    );
    cases += 1;
    // Counter regression: a clone answering with a stale counter is refused and audited.
    let options = key_options(&org, "jack").await;
    let stale = key.assert_with_counter(&options, &Ceremony::at(ORIGIN), 1);
    expect(
        &key_challenge(&org, "jack", stale).await,
        "counter_regressed",
    );
    let audit = org.audit("?limit=5").await;
    assert!(audit.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .any(|entry| entry["action"] == "factor.counter_regressed"));
    cases += 1;
    // No user presence.
    let options = key_options(&org, "jack").await;
    key.flags = 0;
    expect(
        &key_challenge(&org, "jack", key.assert(&options, &Ceremony::at(ORIGIN))).await,
        "user_not_present",
    );
    key.flags = 0x01;
    cases += 1;
    // A tampered signature.
    let options = key_options(&org, "jack").await;
    let mut forged = key.assert(&options, &Ceremony::at(ORIGIN));
    forged["response"]["signature"] =
        json!(data_encoding::BASE64URL_NOPAD.encode(&[0x30, 0x06, 2, 1, 1, 2, 1, 1]));
    expect(&key_challenge(&org, "jack", forged).await, "bad_signature");
    cases += 1;
    // And the key still works after all that.
    let options = key_options(&org, "jack").await;
    assert!(valid(
        &key_challenge(&org, "jack", key.assert(&options, &Ceremony::at(ORIGIN))).await
    ));
    println!("WebAuthn negative cases refused: {cases}/{cases}");
    let scrape = org.app.metrics().await;
    assert_eq!(
        metric(
            &scrape,
            "otpgate_factor_challenges_total{type=\"webauthn\",outcome=\"counter_regressed\"}"
        ),
        1.0
    );
    org.app.stop().await;
}
