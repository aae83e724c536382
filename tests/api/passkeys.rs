//! Passkeys over HTTP, on every store (issue 18): registration as a discoverable credential
//! with user verification, usernameless sign-in through `POST /v1/passkeys/challenges`, the
//! single-use challenge, counters and backup flags, and the login decision it satisfies.

use reqwest::Method;
use serde_json::{json, Value};

use crate::accounts_support::Org;
use crate::factors::{confirm, org, post, register_key, ORIGIN, RP_ID};
use crate::factors_authenticator::{Ceremony, SoftKey};
use crate::helpers::{Backend, Reply};
use crate::on_every_store;

/// Opens a passkey registration for `user`: the enrolment answer.
async fn enrol_passkey(org: &Org, user: &str) -> Reply {
    let enrolment = post(
        &org.app,
        &org.service,
        &format!("/v1/users/{user}/factors"),
        json!({"type": "passkey"}),
    )
    .await;
    assert_eq!(enrolment.status, 201, "{}", enrolment.body);
    enrolment
}

/// Registers `key` as a passkey of `user`: the factor id.
async fn register_passkey(org: &Org, user: &str, key: &mut SoftKey) -> String {
    let enrolment = enrol_passkey(org, user).await;
    let credential = key.register(&enrolment.body["public_key"], &Ceremony::at(ORIGIN));
    let confirmed = confirm(
        &org.app,
        &org.service,
        user,
        enrolment.str("id"),
        json!({"credential": credential}),
    )
    .await;
    assert_eq!(confirmed.status, 200, "{}", confirmed.body);
    assert_eq!(confirmed.body["type"], "passkey");
    enrolment.str("id").to_owned()
}

/// Usernameless request options.
async fn passkey_options(org: &Org) -> Value {
    let begun = post(&org.app, &org.service, "/v1/passkeys/challenges", json!({})).await;
    assert_eq!(begun.status, 200, "{}", begun.body);
    begun.body["public_key"].clone()
}

async fn passkey_sign_in(org: &Org, assertion: Value) -> Reply {
    let reply = post(
        &org.app,
        &org.service,
        "/v1/passkeys/challenges",
        json!({"assertion": assertion}),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply
}

async fn login_with(org: &Org, user: &str, challenge_id: &str) -> Reply {
    let body = json!({"user": user, "challenge_id": challenge_id});
    org.call(Method::POST, "/v1/logins", "service", Some(body))
        .await
}

async fn a_passkey_signs_in_without_a_username_and_satisfies_the_login(backend: Backend) {
    let org = org(backend).await;
    org.user("ada", "member", Some("+4915112360101")).await;
    org.user("bob", "member", Some("+4915112360102")).await;
    let enrolment = enrol_passkey(&org, "ada").await;
    let selection = &enrolment.body["public_key"]["authenticatorSelection"];
    assert_eq!(selection["residentKey"], "required");
    assert_eq!(selection["requireResidentKey"], true);
    assert_eq!(selection["userVerification"], "required");
    let mut key = SoftKey::passkey();
    let id = register_passkey(&org, "ada", &mut key).await;
    let login = org.login("ada", None).await;
    assert_eq!(login.body["decision"], "challenge", "{}", login.body);
    assert_eq!(
        login.body["factors"][0],
        json!({"type": "passkey", "id": id})
    );

    let options = passkey_options(&org).await;
    assert_eq!(options["rpId"], RP_ID);
    assert_eq!(options["userVerification"], "required");
    assert!(options.get("allowCredentials").is_none(), "{options}");
    let assertion = key.assert(&options, &Ceremony::at(ORIGIN));
    let signed_in = passkey_sign_in(&org, assertion.clone()).await;
    assert_eq!(signed_in.body["valid"], true, "{}", signed_in.body);
    assert_eq!(signed_in.body["user"], "ada");
    assert_eq!(signed_in.body["factor_id"], id);
    assert_eq!(signed_in.body["counter"], 1);
    assert_eq!(signed_in.body["backup_eligible"], true);
    assert_eq!(signed_in.body["backed_up"], true);
    let challenge_id = signed_in.str("challenge_id").to_owned();
    assert!(challenge_id.starts_with("CH"), "{}", signed_in.body);

    // The challenge is single use.
    let replayed = passkey_sign_in(&org, assertion).await;
    assert_eq!(replayed.body["valid"], false);
    assert_eq!(replayed.body["reason"], "unknown_challenge");
    assert_eq!(replayed.body["challenge_id"], Value::Null);

    // The passed challenge is ada's second factor, and nobody else's.
    let allowed = login_with(&org, "ada", &challenge_id).await;
    assert_eq!(allowed.body["decision"], "allow", "{}", allowed.body);
    assert_eq!(allowed.body["reason"], "passkey_verified");
    let other = login_with(&org, "bob", &challenge_id).await;
    assert_eq!(other.body["decision"], "challenge", "{}", other.body);
    let made_up = login_with(&org, "ada", "CH00000000000000000000000000000000").await;
    assert_eq!(made_up.body["decision"], "challenge", "{}", made_up.body);

    // The backup state is recorded as each assertion presents it.
    key.flags &= !0x10;
    let options = passkey_options(&org).await;
    let again = passkey_sign_in(&org, key.assert(&options, &Ceremony::at(ORIGIN))).await;
    assert_eq!(again.body["valid"], true, "{}", again.body);
    assert_eq!(
        (&again.body["counter"], &again.body["backed_up"]),
        (&json!(2), &json!(false))
    );
    org.app.stop().await;
}

async fn passkey_ceremonies_refuse_what_is_not_a_verified_passkey(backend: Backend) {
    let org = org(backend).await;
    org.user("cy", "member", Some("+4915112360103")).await;
    // A registration without user verification is refused, and nothing is added.
    let mut unverified = SoftKey::passkey();
    unverified.flags = 0x01;
    let enrolment = enrol_passkey(&org, "cy").await;
    let credential = unverified.register(&enrolment.body["public_key"], &Ceremony::at(ORIGIN));
    let refused = confirm(
        &org.app,
        &org.service,
        "cy",
        enrolment.str("id"),
        json!({"credential": credential}),
    )
    .await;
    refused.assert_problem(422, "refused");
    assert!(
        refused.str("detail").contains("user_not_verified"),
        "{}",
        refused.body
    );
    assert_eq!(org.get_user("cy").await.body["factors"], json!([]));

    let mut key = SoftKey::passkey();
    register_passkey(&org, "cy", &mut key).await;
    // An assertion without user verification.
    key.flags = 0x01 | 0x08;
    let options = passkey_options(&org).await;
    let reply = passkey_sign_in(&org, key.assert(&options, &Ceremony::at(ORIGIN))).await;
    assert_eq!(reply.body["valid"], false);
    assert_eq!(reply.body["reason"], "user_not_verified");
    key.flags |= 0x04;
    // From an origin the relying party does not list.
    let options = passkey_options(&org).await;
    let elsewhere = key.assert(&options, &Ceremony::at("https://evil.example.net"));
    let reply = passkey_sign_in(&org, elsewhere).await;
    assert_eq!(reply.body["reason"], "wrong_origin");
    // A cloned passkey's stale counter, after the original signed in.
    let options = passkey_options(&org).await;
    let reply = passkey_sign_in(&org, key.assert(&options, &Ceremony::at(ORIGIN))).await;
    assert_eq!(reply.body["valid"], true, "{}", reply.body);
    let options = passkey_options(&org).await;
    let stale = key.assert_with_counter(&options, &Ceremony::at(ORIGIN), 1);
    let reply = passkey_sign_in(&org, stale).await;
    assert_eq!(reply.body["reason"], "counter_regressed");
    // A plain security key (no user handle) is no passkey.
    let mut plain = SoftKey::new();
    plain.flags = 0x05;
    register_key(&org, "cy", &mut plain).await;
    let options = passkey_options(&org).await;
    let reply = passkey_sign_in(&org, plain.assert(&options, &Ceremony::at(ORIGIN))).await;
    assert_eq!(reply.body["reason"], "unknown_credential");
    // Bad input is a 400 and opens nothing.
    let bad = post(
        &org.app,
        &org.service,
        "/v1/passkeys/challenges",
        json!({"assertion": "not a credential"}),
    )
    .await;
    bad.assert_problem(400, "invalid-request");
    let unknown_member = post(
        &org.app,
        &org.service,
        "/v1/passkeys/challenges",
        json!({"user": "cy"}),
    )
    .await;
    assert_eq!(unknown_member.status, 400, "{}", unknown_member.body);
    org.app.stop().await;
}

async fn removing_the_last_passkey_forgets_the_users_handle(backend: Backend) {
    let org = org(backend).await;
    org.user("dee", "member", Some("+4915112360104")).await;
    let mut key = SoftKey::passkey();
    let id = register_passkey(&org, "dee", &mut key).await;
    let removed = org
        .call(
            Method::DELETE,
            &format!("/v1/users/dee/factors/{id}"),
            "owner",
            None,
        )
        .await;
    assert_eq!(removed.status, 200, "{}", removed.body);
    let options = passkey_options(&org).await;
    let reply = passkey_sign_in(&org, key.assert(&options, &Ceremony::at(ORIGIN))).await;
    assert_eq!(reply.body["valid"], false);
    assert_eq!(reply.body["reason"], "unknown_credential");
    org.app.stop().await;
}

/// The browser helper is served to any origin, as the module the binary embeds.
#[tokio::test]
async fn the_webauthn_module_is_served_to_other_origins() {
    let app = crate::helpers::spawn_app(Backend::Memory).await;
    let response = app
        .http
        .get(format!("{}/sdk/webauthn.js", app.address))
        .header("Origin", "https://login.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    assert_eq!(headers["access-control-allow-origin"], "*");
    let source = response.text().await.unwrap();
    assert_eq!(source, otpgate::http::sdk::WEBAUTHN_JS);
    for export in [
        "export async function register(",
        "export async function authenticate(",
        "export async function autofill(",
    ] {
        assert!(source.contains(export), "{export}");
    }
    app.stop().await;
}

on_every_store!(
    a_passkey_signs_in_without_a_username_and_satisfies_the_login,
    passkey_ceremonies_refuse_what_is_not_a_verified_passkey,
    removing_the_last_passkey_forgets_the_users_handle,
);
