//! Per-account bounds (issue 13 §8): users, phone numbers, factors per user and pending
//! ceremonies on every store; on the embedded store, one account filling its share of
//! ceremonies or verifications leaves another account's logins and sends working. Small
//! bounds in the settings, two accounts, the clock moved instead of waiting.

use std::time::Duration;

use otpgate::clock::Clock;
use otpgate::config::Settings;
use reqwest::Method;
use serde_json::{json, Value};

use crate::accounts_support::{metric, Org};
use crate::factors::{active_totp, confirm, enrol_totp, post, totp_challenge, ORIGIN, RP_ID};
use crate::helpers::{Backend, Reply, TestApp};
use crate::on_every_store;

on_every_store!(
    an_account_at_its_bound_of_users_adds_none_and_another_account_still_does,
    an_account_at_its_bound_of_phone_numbers_adds_none_and_another_account_still_does,
    a_user_at_the_bound_of_factors_cannot_start_another_enrolment,
    pending_ceremonies_are_bounded_per_account_and_free_themselves_when_they_expire,
    an_account_at_its_bound_of_trusted_devices_trusts_none_until_one_is_revoked,
);

mod embedded {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_account_filling_its_share_of_webauthn_ceremonies_leaves_another_accounts_totp_login_working(
    ) {
        let org = org_with(Backend::Memory, |settings| {
            settings.factors.memory_max_entries = 10;
            settings.tenants.memory_account_share_percent = 50;
        })
        .await;
        org.user("ann", "member", Some("+4915112340501")).await;
        // Account A opens security-key ceremonies until it is refused: at its share (5 of
        // 10), not when the whole store is full.
        let mut opened = 0;
        let refused = loop {
            let begun = enrol_key(&org.app, &org.service, "ann").await;
            if begun.status != 201 {
                break begun;
            }
            opened += 1;
            assert!(opened <= 10, "never refused: {}", begun.body);
        };
        assert_eq!(opened, 5, "A's share of 10 entries at 50 %");
        assert_limit(&refused, 429, "factor_entries", 5);
        assert_eq!(refused.headers["retry-after"], "60");

        // Account B enrols an authenticator app and logs in with it.
        let other = Other::new(&org.app).await;
        other.policy(json!({"channels": ["totp"]})).await;
        other.user("bob").await;
        let app = enrol_totp(&org.app, &other.service, "bob", json!({"type": "totp"})).await;
        let confirmed = confirm(
            &org.app,
            &other.service,
            "bob",
            &app.id,
            json!({"code": app.code(org.app.clock.now_ms())}),
        )
        .await;
        assert_eq!(confirmed.status, 200, "{}", confirmed.body);
        org.app.clock.advance(Duration::from_secs(30));
        let login = totp_challenge(
            &org.app,
            &other.service,
            "bob",
            &app.code(org.app.clock.now_ms()),
        )
        .await;
        assert_eq!(login.status, 200, "{}", login.body);
        assert_eq!(login.body["valid"], true, "{}", login.body);
        org.app.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_account_filling_its_share_of_verifications_leaves_another_accounts_sends_working()
    {
        let org = Org::with(Backend::Memory, |settings| {
            settings.store.memory_max_verifications = 10;
            settings.tenants.memory_account_share_percent = 50;
        })
        .await;
        let app = &org.app;
        for n in 0..5 {
            let sent = app.send(&format!("+49151123406{n:02}")).await;
            assert_eq!(sent.status, 201, "{}", sent.body);
        }
        let refused = app.send("+4915112340699").await;
        assert_limit(&refused, 429, "verifications", 5);
        let scrape = app.metrics().await;
        assert_eq!(
            metric(&scrape, "otpgate_store_errors_total{operation=\"start\"}"),
            0.0,
            "an account's refusal is not a store failure"
        );
        app.wait_for_messages(5).await;
        assert!(
            !app.messages()
                .await
                .iter()
                .any(|message| message["to"] == "+4915112340699"),
            "nothing was sent for the refused number"
        );

        // Account B's sends are untouched by A's full share.
        let other = Other::new(app).await;
        let sent = app
            .request(
                Method::POST,
                "/v1/verifications",
                Some(&other.service),
                Some(json!({"to": "+4915112340698"})),
            )
            .await;
        assert_eq!(sent.status, 201, "{}", sent.body);

        // Expired codes hold nothing: A sends again once its codes expired, although their
        // records are still kept (and readable) for the retention time.
        app.clock.advance(Duration::from_secs(11 * 60));
        let again = app.send("+4915112340699").await;
        assert_eq!(again.status, 201, "{}", again.body);
        org.app.stop().await;
    }
}

/// The embedded directory's trusted devices: one account at its share (2 of 4) leaves the rest
/// to another account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_one_account_at_its_share_of_trusted_devices_leaves_room_for_another() {
    let org = Org::with(Backend::Memory, |settings| {
        settings.tenants.memory_max_devices = 4;
        settings.tenants.memory_account_share_percent = 50;
    })
    .await;
    org.policy(json!({"trusted_device": "7d"})).await;
    org.user("dan", "member", Some("+4915112340811")).await;
    org.trusted_device("dan", "+4915112340811").await;
    org.trusted_device("dan", "+4915112340811").await;
    let proof = org.pass_challenge("+4915112340811").await;
    assert_limit(&org.trust("dan", &proof).await, 422, "trusted_devices", 2);

    let other = Other::new(&org.app).await;
    other.policy(json!({"trusted_device": "7d"})).await;
    other.user("eve").await;
    let sent = org
        .app
        .request(
            Method::POST,
            "/v1/verifications",
            Some(&other.service),
            Some(json!({"to": "+4915112340777"})),
        )
        .await;
    assert_eq!(sent.status, 201, "{}", sent.body);
    let messages = org.app.wait_for_messages(4).await;
    let code = crate::helpers::extract_code(messages.last().unwrap()["body"].as_str().unwrap());
    let checked = org
        .app
        .request(
            Method::POST,
            "/v1/verifications/check",
            Some(&other.service),
            Some(json!({"id": sent.str("id"), "code": code})),
        )
        .await;
    assert_eq!(checked.body["status"], "approved", "{}", checked.body);
    let trusted = org
        .app
        .request(
            Method::POST,
            "/v1/users/eve/trusted-devices",
            Some(&other.service),
            Some(json!({"verification_id": sent.str("id")})),
        )
        .await;
    assert_eq!(trusted.status, 201, "{}", trusted.body);
    org.app.stop().await;
}

async fn an_account_at_its_bound_of_users_adds_none_and_another_account_still_does(
    backend: Backend,
) {
    let org = Org::with(backend, |settings| settings.tenants.defaults.users = 3).await;
    for n in 0..3 {
        org.user(
            &format!("u{n}"),
            "member",
            Some(&format!("+49151123402{n:02}")),
        )
        .await;
    }
    let refused = org
        .add_user("owner", json!({"id": "u3", "phone": "+4915112340299"}))
        .await;
    assert_limit(&refused, 422, "users", 3);
    assert_eq!(org.get_user("u3").await.status, 404, "nothing was added");

    let other = Other::new(&org.app).await;
    other.user("u3").await;
    org.app.stop().await;
}

async fn an_account_at_its_bound_of_phone_numbers_adds_none_and_another_account_still_does(
    backend: Backend,
) {
    let org = Org::with(backend, |settings| {
        settings.tenants.defaults.phone_numbers = 2
    })
    .await;
    let add = |key: String, number: &'static str| {
        let app = &org.app;
        async move {
            app.request(
                Method::POST,
                "/v1/phone-numbers",
                Some(&key),
                Some(json!({"phone_number": number, "pin": "482915"})),
            )
            .await
        }
    };
    for number in ["+4915112983401", "+4915112983402"] {
        let added = add(org.owner.clone(), number).await;
        assert_eq!(added.status, 201, "{}", added.body);
    }
    let refused = add(org.partner.clone(), "+4915112983403").await;
    assert_limit(&refused, 422, "phone_numbers", 2);
    // Nothing was added: the store looks for the number before it counts, so a number that
    // had been added would now be answered as existing, not refused again.
    let again = add(org.owner.clone(), "+4915112983403").await;
    assert_limit(&again, 422, "phone_numbers", 2);

    let other = Other::new(&org.app).await;
    let added = add(other.owner.clone(), "+4915112983403").await;
    assert_eq!(added.status, 201, "{}", added.body);
    org.app.stop().await;
}

async fn a_user_at_the_bound_of_factors_cannot_start_another_enrolment(backend: Backend) {
    let org = org_with(backend, |settings| {
        settings.tenants.defaults.factors_per_user = 1
    })
    .await;
    org.user("ann", "member", Some("+4915112340301")).await;
    active_totp(&org, "ann").await;
    let app = post(
        &org.app,
        &org.service,
        "/v1/users/ann/factors",
        json!({"type": "totp"}),
    )
    .await;
    assert_limit(&app, 422, "factors_per_user", 1);
    let key = enrol_key(&org.app, &org.service, "ann").await;
    assert_limit(&key, 422, "factors_per_user", 1);
    let user = org.get_user("ann").await;
    assert_eq!(user.body["factors"].as_array().map(Vec::len), Some(1));
    org.app.stop().await;
}

async fn pending_ceremonies_are_bounded_per_account_and_free_themselves_when_they_expire(
    backend: Backend,
) {
    let org = org_with(backend, |settings| {
        settings.tenants.defaults.pending_ceremonies = 2
    })
    .await;
    org.user("ann", "member", Some("+4915112340311")).await;
    org.user("bea", "member", Some("+4915112340312")).await;
    let anns = enrol_totp(&org.app, &org.service, "ann", json!({"type": "totp"})).await;
    let key = enrol_key(&org.app, &org.service, "bea").await;
    assert_eq!(key.status, 201, "{}", key.body);
    // The bound is the account's: another user of it is refused too, with a wait.
    let app = post(
        &org.app,
        &org.service,
        "/v1/users/bea/factors",
        json!({"type": "totp"}),
    )
    .await;
    assert_limit(&app, 429, "pending_ceremonies", 2);
    assert_eq!(app.headers["retry-after"], "60");
    assert_limit(
        &enrol_key(&org.app, &org.service, "ann").await,
        429,
        "pending_ceremonies",
        2,
    );

    // Another account is not concerned.
    let other = Other::new(&org.app).await;
    other
        .policy(json!({"channels": ["sms", "totp", "webauthn"]}))
        .await;
    other.user("ann").await;
    let theirs = enrol_key(&org.app, &other.service, "ann").await;
    assert_eq!(theirs.status, 201, "{}", theirs.body);

    // A confirmed enrolment is no longer pending: its room is free at once.
    let confirmed = confirm(
        &org.app,
        &org.service,
        "ann",
        &anns.id,
        json!({"code": anns.code(org.app.clock.now_ms())}),
    )
    .await;
    assert_eq!(confirmed.status, 200, "{}", confirmed.body);
    enrol_totp(&org.app, &org.service, "bea", json!({"type": "totp"})).await;
    assert_limit(
        &enrol_key(&org.app, &org.service, "ann").await,
        429,
        "pending_ceremonies",
        2,
    );

    // Unconfirmed enrolments and ceremonies expire (10 and 5 minutes): room again.
    org.app.clock.advance(Duration::from_secs(11 * 60));
    enrol_totp(&org.app, &org.service, "bea", json!({"type": "totp"})).await;
    let key = enrol_key(&org.app, &org.service, "ann").await;
    assert_eq!(key.status, 201, "{}", key.body);
    org.app.stop().await;
}

async fn an_account_at_its_bound_of_trusted_devices_trusts_none_until_one_is_revoked(
    backend: Backend,
) {
    let org = Org::with(backend, |settings| {
        settings.tenants.defaults.trusted_devices = 2
    })
    .await;
    org.policy(json!({"trusted_device": "7d"})).await;
    let people = [
        ("dan", "+4915112340801"),
        ("eve", "+4915112340802"),
        ("fay", "+4915112340803"),
    ];
    for (user, phone) in people {
        org.user(user, "member", Some(phone)).await;
    }
    org.trusted_device("dan", "+4915112340801").await;
    org.trusted_device("eve", "+4915112340802").await;
    let proof = org.pass_challenge("+4915112340803").await;
    let refused = org.trust("fay", &proof).await;
    assert_limit(&refused, 422, "trusted_devices", 2);

    // A revocation frees room, and the refused proof was not spent: it still trusts a device.
    let revoked = org
        .call(
            Method::DELETE,
            "/v1/users/dan/trusted-devices",
            "service",
            None,
        )
        .await;
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    let trusted = org.trust("fay", &proof).await;
    assert_eq!(trusted.status, 201, "{}", trusted.body);
    org.app.stop().await;
}

/// Asserts an `account-limit-reached` problem naming `limit` and its value.
fn assert_limit(reply: &Reply, status: u16, limit: &str, max: u64) {
    reply.assert_problem(status, "account-limit-reached");
    assert_eq!(reply.body["limit"], limit, "{}", reply.body);
    assert_eq!(reply.body["max"], max, "{}", reply.body);
    assert!(reply.str("detail").contains(limit), "{}", reply.body);
}

/// An account whose policy allows SMS, apps and keys, with a relying party at `ORIGIN`.
async fn org_with(backend: Backend, adjust: impl FnOnce(&mut Settings)) -> Org {
    let org = Org::with(backend, |settings| {
        settings.factors.relying_party.id = RP_ID.to_owned();
        settings.factors.relying_party.origins = vec![ORIGIN.to_owned()];
        adjust(settings);
    })
    .await;
    org.policy(json!({"channels": ["sms", "totp", "webauthn"]}))
        .await;
    org
}

async fn enrol_key(app: &TestApp, key: &str, user: &str) -> Reply {
    post(
        app,
        key,
        &format!("/v1/users/{user}/factors"),
        json!({"type": "webauthn"}),
    )
    .await
}

/// A second account on the same server, with an owner and a service key.
struct Other<'a> {
    app: &'a TestApp,
    owner: String,
    service: String,
}

impl<'a> Other<'a> {
    async fn new(app: &'a TestApp) -> Self {
        let (account, service) = app.create_account_with_key("service").await;
        let owner = app.mint_key(&account, "owner").await;
        Self {
            app,
            owner,
            service,
        }
    }

    async fn policy(&self, body: Value) {
        let set = self
            .app
            .request(Method::PUT, "/v1/policy", Some(&self.owner), Some(body))
            .await;
        assert_eq!(set.status, 200, "{}", set.body);
    }

    /// Adds a member with a phone (SMS is the default channel).
    async fn user(&self, id: &str) {
        let added = self
            .app
            .request(
                Method::POST,
                "/v1/users",
                Some(&self.owner),
                Some(json!({"id": id, "phone": "+4915112340777"})),
            )
            .await;
        assert_eq!(added.status, 201, "{}", added.body);
    }
}
