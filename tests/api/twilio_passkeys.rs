//! Twilio Verify Passkeys on the Twilio facade (issue 18): full ceremonies with the software
//! passkey through `Passkeys/Factors`, `VerifyFactor`, `Challenges` and `ApproveChallenge`,
//! with Twilio's JSON bodies, field names, SID shapes and error codes, on the same passkey
//! flows (and store) as the v1 API.

use reqwest::Method;
use serde_json::{json, Value};

use crate::accounts_support::Org;
use crate::factors::{org, ORIGIN, RP_ID};
use crate::factors_authenticator::{Ceremony, SoftKey};
use crate::helpers::{reply, Backend, Reply, ROOT_KEY};
use crate::on_every_store;

/// A JSON request with Basic credentials, as the Twilio SDKs send the Passkeys endpoints.
async fn twilio_json(org: &Org, path: &str, credentials: (&str, &str), body: Value) -> Reply {
    let request = org
        .app
        .http
        .request(Method::POST, format!("{}{path}", org.app.address))
        .basic_auth(credentials.0, Some(credentials.1))
        .json(&body);
    reply(request.send().await.expect("the server answers")).await
}

fn service_of(org: &Org) -> String {
    format!("VA{}", &org.app.account_id[2..])
}

/// `POST /v2/Services/{sid}/Passkeys/{what}` with the service key.
async fn passkeys(org: &Org, what: &str, body: Value) -> Reply {
    let path = format!("/v2/Services/{}/Passkeys/{what}", service_of(org));
    twilio_json(org, &path, (&org.app.account_id, &org.service), body).await
}

fn assert_twilio_error(reply: &Reply, status: u16, code: u64) {
    assert_eq!(reply.status, status, "{}", reply.body);
    assert_eq!(reply.body["code"], code, "{}", reply.body);
    assert_eq!(reply.body["status"], status, "{}", reply.body);
    assert_eq!(
        reply.body["more_info"],
        format!("https://www.twilio.com/docs/errors/{code}")
    );
}

fn is_sid(value: &Value, prefix: &str) -> bool {
    value.as_str().is_some_and(|sid| {
        sid.len() == 34
            && sid.starts_with(prefix)
            && sid[2..].bytes().all(|b| b.is_ascii_hexdigit())
    })
}

/// Creates a Passkeys Factor for `identity` and registers `key` with its options through
/// `VerifyFactor`: the verified factor.
async fn register(org: &Org, identity: &str, key: &mut SoftKey) -> Value {
    let created = passkeys(
        org,
        "Factors",
        json!({"friendly_name": "Laptop", "identity": identity}),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let mut credential = key.register(&created.body["options"]["publicKey"], &Ceremony::at(ORIGIN));
    credential["authenticatorAttachment"] = json!("platform");
    let verified = passkeys(org, "VerifyFactor", credential).await;
    assert_eq!(verified.status, 200, "{}", verified.body);
    assert_eq!(verified.body["sid"], created.body["sid"]);
    verified.body
}

async fn a_twilio_passkey_registers_and_approves_a_challenge_with_twilios_fields(backend: Backend) {
    let org = org(backend).await;
    org.user("ada-0001", "member", Some("+4915112360201")).await;
    let service = service_of(&org);

    let created = passkeys(
        &org,
        "Factors",
        json!({
            "friendly_name": "Ada's laptop",
            "identity": "ada-0001",
            "config": {
                "relying_party": {"id": RP_ID, "name": "Example", "origins": [ORIGIN]},
                "authenticator_attachment": "platform",
                "discoverable_credentials": "preferred",
                "user_verification": "preferred",
            },
        }),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let factor = &created.body;
    assert!(is_sid(&factor["sid"], "YF"), "{factor}");
    assert!(is_sid(&factor["entity_sid"], "YE"), "{factor}");
    assert_eq!(factor["account_sid"], org.app.account_id.as_str());
    assert_eq!(factor["service_sid"], service.as_str());
    assert_eq!(factor["identity"], "ada-0001");
    assert_eq!(factor["friendly_name"], "Ada's laptop");
    assert_eq!(factor["status"], "unverified");
    assert_eq!(factor["factor_type"], "passkeys");
    assert_eq!(factor["config"]["relying_party"]["id"], RP_ID);
    assert_eq!(factor["config"]["user_verification"], "required");
    let options = &factor["options"]["publicKey"];
    assert_eq!(options["rp"]["id"], RP_ID);
    assert_eq!(options["authenticatorSelection"]["residentKey"], "required");
    assert_eq!(
        options["authenticatorSelection"]["authenticatorAttachment"],
        "platform"
    );
    assert!(factor["url"].as_str().unwrap().ends_with(&format!(
        "/v2/Services/{service}/Entities/ada-0001/Factors/{}",
        factor["sid"].as_str().unwrap()
    )));

    let mut key = SoftKey::passkey();
    let mut credential = key.register(options, &Ceremony::at(ORIGIN));
    credential["authenticatorAttachment"] = json!("platform");
    let verified = passkeys(&org, "VerifyFactor", credential.clone()).await;
    assert_eq!(verified.status, 200, "{}", verified.body);
    assert_eq!(verified.body["sid"], factor["sid"]);
    assert_eq!(verified.body["entity_sid"], factor["entity_sid"]);
    assert_eq!(verified.body["identity"], "ada-0001");
    assert_eq!(verified.body["status"], "verified");
    assert_eq!(verified.body["options"], Value::Null);
    // The registration is finished once.
    let again = passkeys(&org, "VerifyFactor", credential).await;
    assert_twilio_error(&again, 403, 60311);

    // The factor is ada's passkey in the v1 API, under the same id.
    let factor_id = format!("FA{}", &factor["sid"].as_str().unwrap()[2..]);
    let login = org.login("ada-0001", None).await;
    assert_eq!(login.body["decision"], "challenge", "{}", login.body);
    assert_eq!(
        login.body["factors"][0],
        json!({"type": "passkey", "id": factor_id})
    );

    let challenge = passkeys(&org, "Challenges", json!({})).await;
    assert_eq!(challenge.status, 201, "{}", challenge.body);
    assert!(is_sid(&challenge.body["sid"], "YC"), "{}", challenge.body);
    assert_eq!(challenge.body["status"], "pending");
    assert_eq!(challenge.body["factor_type"], "passkeys");
    assert_eq!(challenge.body["identity"], "");
    assert!(challenge.body["expiration_date"].is_string());
    let request = &challenge.body["options"]["publicKey"];
    assert_eq!(request["rpId"], RP_ID);
    assert_eq!(request["userVerification"], "required");
    assert!(request.get("allowCredentials").is_none(), "{request}");

    let assertion = key.assert(request, &Ceremony::at(ORIGIN));
    let approved = passkeys(&org, "ApproveChallenge", assertion.clone()).await;
    assert_eq!(approved.status, 200, "{}", approved.body);
    assert_eq!(approved.body["sid"], challenge.body["sid"]);
    assert_eq!(approved.body["status"], "approved");
    assert_eq!(approved.body["identity"], "ada-0001");
    assert_eq!(approved.body["entity_sid"], factor["entity_sid"]);
    assert_eq!(approved.body["factor_sid"], factor["sid"]);
    assert!(approved.body["date_responded"].is_string());

    // A challenge is approved once.
    let replayed = passkeys(&org, "ApproveChallenge", assertion).await;
    assert_twilio_error(&replayed, 403, 60324);
    assert!(
        replayed.str("message").contains("unknown_challenge"),
        "{}",
        replayed.body
    );

    // The approval is a passed challenge the v1 login decision accepts.
    let passed = approved.body["metadata"]["otpgate_challenge_id"]
        .as_str()
        .unwrap();
    let allowed = org
        .call(
            Method::POST,
            "/v1/logins",
            "service",
            Some(json!({"user": "ada-0001", "challenge_id": passed})),
        )
        .await;
    assert_eq!(allowed.body["decision"], "allow", "{}", allowed.body);
    org.app.stop().await;
}

async fn a_challenge_for_an_identity_passes_only_that_users_passkey(backend: Backend) {
    let org = org(backend).await;
    org.user("ada-0001", "member", Some("+4915112360201")).await;
    org.user("bob-0002", "member", Some("+4915112360202")).await;
    let mut ada_key = SoftKey::passkey();
    let mut bob_key = SoftKey::passkey();
    let ada = register(&org, "ada-0001", &mut ada_key).await;
    register(&org, "bob-0002", &mut bob_key).await;

    let for_ada = passkeys(&org, "Challenges", json!({"identity": "ada-0001"})).await;
    assert_eq!(for_ada.status, 201, "{}", for_ada.body);
    assert_eq!(for_ada.body["identity"], "ada-0001");
    assert_eq!(for_ada.body["entity_sid"], ada["entity_sid"]);
    let request = &for_ada.body["options"]["publicKey"];
    assert_eq!(
        request["allowCredentials"],
        json!([{"type": "public-key", "id": data_encoding::BASE64URL_NOPAD.encode(&ada_key.credential_id)}])
    );
    // Bob's passkey does not pass a challenge asked for ada, and the challenge is spent.
    let by_bob = passkeys(
        &org,
        "ApproveChallenge",
        bob_key.assert(request, &Ceremony::at(ORIGIN)),
    )
    .await;
    assert_twilio_error(&by_bob, 403, 60324);
    assert!(
        by_bob.str("message").contains("wrong_user"),
        "{}",
        by_bob.body
    );
    let by_ada = passkeys(
        &org,
        "ApproveChallenge",
        ada_key.assert(request, &Ceremony::at(ORIGIN)),
    )
    .await;
    assert_twilio_error(&by_ada, 403, 60324);

    // A challenge for one factor names it and passes with it.
    let for_factor = passkeys(
        &org,
        "Challenges",
        json!({"identity": "ada-0001", "factor_sid": ada["sid"]}),
    )
    .await;
    assert_eq!(for_factor.status, 201, "{}", for_factor.body);
    assert_eq!(for_factor.body["factor_sid"], ada["sid"]);
    let approved = passkeys(
        &org,
        "ApproveChallenge",
        ada_key.assert(
            &for_factor.body["options"]["publicKey"],
            &Ceremony::at(ORIGIN),
        ),
    )
    .await;
    assert_eq!(approved.status, 200, "{}", approved.body);
    assert_eq!(approved.body["sid"], for_factor.body["sid"]);
    assert_eq!(approved.body["identity"], "ada-0001");

    // Bob's factor is not ada's; a user without passkeys has none to challenge.
    org.user("cyd-0003", "member", Some("+4915112360203")).await;
    let bob_factor = passkeys(&org, "Challenges", json!({"identity": "bob-0002"})).await;
    assert_eq!(bob_factor.status, 201, "{}", bob_factor.body);
    let wrong_factor = passkeys(
        &org,
        "Challenges",
        json!({"identity": "bob-0002", "factor_sid": ada["sid"]}),
    )
    .await;
    assert_twilio_error(&wrong_factor, 404, 20404);
    let nobody = passkeys(&org, "Challenges", json!({"identity": "cyd-0003"})).await;
    assert_twilio_error(&nobody, 404, 20404);
    org.app.stop().await;
}

#[tokio::test]
async fn twilio_passkey_calls_refuse_bad_input_with_twilio_errors_and_change_nothing() {
    let org = org(Backend::Memory).await;
    org.user("ada-0001", "member", Some("+4915112360201")).await;

    let no_name = passkeys(&org, "Factors", json!({"identity": "ada-0001"})).await;
    assert_twilio_error(&no_name, 400, 60388);
    let no_identity = passkeys(&org, "Factors", json!({"friendly_name": "Laptop"})).await;
    assert_twilio_error(&no_identity, 400, 60200);
    assert!(no_identity.str("message").contains("`identity`"));
    let bad_identity = passkeys(
        &org,
        "Factors",
        json!({"friendly_name": "Laptop", "identity": "a b"}),
    )
    .await;
    assert_twilio_error(&bad_identity, 400, 60200);
    let unknown = passkeys(
        &org,
        "Factors",
        json!({"friendly_name": "Laptop", "identity": "nobody-99"}),
    )
    .await;
    assert_twilio_error(&unknown, 404, 20404);
    let other_party = passkeys(
        &org,
        "Factors",
        json!({"friendly_name": "Laptop", "identity": "ada-0001",
               "config": {"relying_party": {"id": "evil.example", "origins": ["https://evil.example"]}}}),
    )
    .await;
    assert_twilio_error(&other_party, 400, 60371);
    let bad_level = passkeys(
        &org,
        "Factors",
        json!({"friendly_name": "Laptop", "identity": "ada-0001",
               "config": {"user_verification": "always"}}),
    )
    .await;
    assert_twilio_error(&bad_level, 400, 60200);
    let not_json = passkeys(&org, "Factors", json!("a string")).await;
    assert_twilio_error(&not_json, 400, 60200);

    // A form body is refused: these endpoints take JSON.
    let path = format!("/v2/Services/{}/Passkeys/Factors", service_of(&org));
    let form = org
        .app
        .http
        .post(format!("{}{path}", org.app.address))
        .basic_auth(&org.app.account_id, Some(&org.service))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("friendly_name=Laptop&identity=ada-0001")
        .send()
        .await
        .unwrap();
    assert_twilio_error(&reply(form).await, 415, 20415);

    // The root key runs no factors; another account's key does not see this service.
    let root = twilio_json(
        &org,
        &path,
        ("root", ROOT_KEY),
        json!({"friendly_name": "Laptop", "identity": "ada-0001"}),
    )
    .await;
    assert_twilio_error(&root, 403, 20403);
    let (other_account, other_key) = org.app.create_account_with_key("service").await;
    let stranger = twilio_json(
        &org,
        &path,
        (&other_account, &other_key),
        json!({"friendly_name": "Laptop", "identity": "ada-0001"}),
    )
    .await;
    assert_twilio_error(&stranger, 404, 20404);

    // A credential for a challenge this gateway never issued registers nothing.
    let mut key = SoftKey::passkey();
    let made_up = json!({
        "rp": {"id": RP_ID, "name": "Example"},
        "user": {"id": "AAAAAAAAAAAAAAAAAAAAAA", "name": "ada-0001", "displayName": "ada-0001"},
        "challenge": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "authenticatorSelection": {"residentKey": "required"},
    });
    let forged = passkeys(
        &org,
        "VerifyFactor",
        key.register(&made_up, &Ceremony::at(ORIGIN)),
    )
    .await;
    assert_twilio_error(&forged, 403, 60311);
    assert!(forged.str("message").contains("unknown_challenge"));
    let missing = passkeys(&org, "VerifyFactor", json!({"id": "AAAA", "response": {}})).await;
    assert_twilio_error(&missing, 400, 60200);
    let no_attestation = passkeys(
        &org,
        "VerifyFactor",
        json!({"id": "AAAA", "response": {"clientDataJSON": "e30"}}),
    )
    .await;
    assert_twilio_error(&no_attestation, 400, 60200);

    let factor_alone = passkeys(
        &org,
        "Challenges",
        json!({"factor_sid": "YF0123456789abcdef0123456789abcdef"}),
    )
    .await;
    assert_twilio_error(&factor_alone, 400, 60200);
    let bad_factor = passkeys(
        &org,
        "Challenges",
        json!({"identity": "ada-0001", "factor_sid": "FA0123"}),
    )
    .await;
    assert_twilio_error(&bad_factor, 400, 60200);
    let bad_assertion = passkeys(&org, "ApproveChallenge", json!({"id": "AAAA"})).await;
    assert_twilio_error(&bad_assertion, 400, 60200);

    // Nothing was enrolled by any of these: ada's one factor is still her phone.
    let login = org.login("ada-0001", None).await;
    assert_eq!(login.body["decision"], "challenge", "{}", login.body);
    assert_eq!(
        login.body["factors"],
        json!([{"to": "+491*******201", "type": "sms"}])
    );
    org.app.stop().await;
}

#[tokio::test]
async fn twilio_passkeys_follow_the_accounts_policy() {
    let org = org(Backend::Memory).await;
    org.user("ada-0001", "member", Some("+4915112360201")).await;
    org.policy(json!({"channels": ["sms"], "sms_fallback": false}))
        .await;
    let created = passkeys(
        &org,
        "Factors",
        json!({"friendly_name": "Laptop", "identity": "ada-0001"}),
    )
    .await;
    assert_twilio_error(&created, 422, 20422);
    let challenge = passkeys(&org, "Challenges", json!({})).await;
    assert_twilio_error(&challenge, 422, 20422);
    org.app.stop().await;
}

on_every_store!(
    a_twilio_passkey_registers_and_approves_a_challenge_with_twilios_fields,
    a_challenge_for_an_identity_passes_only_that_users_passkey,
);
