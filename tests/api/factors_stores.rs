//! Factors across instances and at rest: one code raced on two instances, secrets unreadable in
//! Redis, encryption-key rotation without re-enrolment.

use std::sync::Arc;
use std::time::Duration;

use otpgate::clock::{Clock, ManualClock};
use otpgate::config::Settings;
use otpgate::secret::Secret;
use otpgate::{App as Gateway, Overrides};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::accounts_support::Org;
use crate::factors::{active_totp, org};
use crate::helpers::{reply, settings_for, spawn_peer, Backend, Reply};

/// T-race: 50 concurrent submissions of one valid code, spread over two instances sharing one
/// Redis (or Cluster): exactly one is accepted, the others are refused as already used.
async fn fifty_concurrent_submissions_of_one_code_accept_exactly_one(backend: Backend) {
    let org = org(backend.clone()).await;
    org.user("alice", "member", Some("+4915112370001")).await;
    let (app, _) = active_totp(&org, "alice").await;
    let peer = match backend {
        Backend::Memory => None,
        _ => Some(spawn_peer(&org.app, backend.clone()).await),
    };
    let code = app.code(org.app.clock.now_ms());
    let mut tasks = Vec::new();
    for n in 0..50 {
        let instance = match (&peer, n % 2) {
            (Some(peer), 1) => peer.address.clone(),
            _ => org.app.address.clone(),
        };
        let http = org.app.http.clone();
        let key = org.service.clone();
        let code = code.clone();
        tasks.push(tokio::spawn(async move {
            let response = http
                .post(format!("{instance}/v1/users/alice/challenges"))
                .bearer_auth(key)
                .json(&json!({"type": "totp", "code": code}))
                .send()
                .await
                .unwrap();
            reply(response).await
        }));
    }
    let mut accepted = 0;
    let mut replayed = 0;
    for task in tasks {
        let answer = task.await.unwrap();
        assert_eq!(answer.status, 200, "{}", answer.body);
        if answer.body["valid"] == true {
            accepted += 1;
        } else {
            assert_eq!(
                answer.body["reason"], "code_already_used",
                "{}",
                answer.body
            );
            replayed += 1;
        }
    }
    println!("one code, 50 concurrent submissions on {backend:?}: {accepted} accepted, {replayed} refused");
    assert_eq!((accepted, replayed), (1, 49));
    if let Some(peer) = peer {
        peer.stop().await;
    }
    org.app.stop().await;
}

crate::on_every_store!(
    fifty_concurrent_submissions_of_one_code_accept_exactly_one,
    one_security_key_assertion_sent_a_hundred_times_passes_once,
);

/// T46: 100 concurrent submissions of one assertion (one stored ceremony) over two instances:
/// the ceremony is taken once (GETDEL), so exactly one passes.
async fn one_security_key_assertion_sent_a_hundred_times_passes_once(backend: Backend) {
    use crate::factors_authenticator::{Ceremony, SoftKey};
    // The default relying party (localhost), which the peer shares.
    let org = Org::new(backend.clone()).await;
    org.policy(json!({"channels": ["sms", "webauthn"]})).await;
    org.user("dora", "member", Some("+4915112370004")).await;
    let origin = "http://localhost:8080";
    let mut key = SoftKey::new();
    let enrolment = crate::factors::post(
        &org.app,
        &org.service,
        "/v1/users/dora/factors",
        json!({"type": "webauthn"}),
    )
    .await;
    let credential = key.register(&enrolment.body["public_key"], &Ceremony::at(origin));
    let confirmed = crate::factors::confirm(
        &org.app,
        &org.service,
        "dora",
        enrolment.str("id"),
        json!({"credential": credential}),
    )
    .await;
    assert_eq!(confirmed.status, 200, "{}", confirmed.body);
    let options = crate::factors::key_options(&org, "dora").await;
    let assertion = key.assert(&options, &Ceremony::at(origin));
    let peer = match backend {
        Backend::Memory => None,
        _ => Some(spawn_peer(&org.app, backend.clone()).await),
    };
    let mut tasks = Vec::new();
    for n in 0..100 {
        let instance = match (&peer, n % 2) {
            (Some(peer), 1) => peer.address.clone(),
            _ => org.app.address.clone(),
        };
        let http = org.app.http.clone();
        let service = org.service.clone();
        let assertion = assertion.clone();
        tasks.push(tokio::spawn(async move {
            let response = http
                .post(format!("{instance}/v1/users/dora/challenges"))
                .bearer_auth(service)
                .json(&json!({"type": "webauthn", "assertion": assertion}))
                .send()
                .await
                .unwrap();
            reply(response).await
        }));
    }
    let mut passed = 0;
    for task in tasks {
        let answer = task.await.unwrap();
        assert_eq!(answer.status, 200, "{}", answer.body);
        if answer.body["valid"] == true {
            passed += 1;
        } else {
            assert_eq!(
                answer.body["reason"], "unknown_challenge",
                "{}",
                answer.body
            );
        }
    }
    println!("one assertion, 100 concurrent submissions on {backend:?}: {passed} passed");
    assert_eq!(passed, 1);
    if let Some(peer) = peer {
        peer.stop().await;
    }
    org.app.stop().await;
}

/// Every value under the test's prefix, as bytes (hash fields and values, strings, set
/// members, stream entries), with the key names.
async fn everything_stored(prefix: &str) -> Vec<Vec<u8>> {
    let client = redis::Client::open(crate::redis_harness::shared_redis().url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut connection)
        .await
        .unwrap();
    let mut out = Vec::new();
    for key in keys {
        out.push(key.clone().into_bytes());
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(&mut connection)
            .await
            .unwrap();
        let values: Vec<Vec<u8>> = match kind.as_str() {
            "hash" => redis::cmd("HGETALL")
                .arg(&key)
                .query_async(&mut connection)
                .await
                .unwrap(),
            "string" => vec![redis::cmd("GET")
                .arg(&key)
                .query_async(&mut connection)
                .await
                .unwrap()],
            "set" => redis::cmd("SMEMBERS")
                .arg(&key)
                .query_async(&mut connection)
                .await
                .unwrap(),
            _ => {
                let value: redis::Value = redis::cmd("DUMP")
                    .arg(&key)
                    .query_async(&mut connection)
                    .await
                    .unwrap();
                vec![format!("{value:?}").into_bytes()]
            }
        };
        out.extend(values);
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_totp_secret_is_not_readable_in_redis() {
    let org = org(Backend::Redis).await;
    org.user("bob", "member", Some("+4915112370002")).await;
    let (app, _) = active_totp(&org, "bob").await;
    let stored = everything_stored(&org.app.prefix).await;
    assert!(
        stored.iter().any(|value| contains(value, b":fx:bob:")),
        "the factor is stored"
    );
    let needles: Vec<(&str, Vec<u8>)> = vec![
        ("raw bytes", app.secret.clone()),
        ("base32", app.secret_base32.clone().into_bytes()),
        (
            "base32 lower case",
            app.secret_base32.to_lowercase().into_bytes(),
        ),
        (
            "hex",
            data_encoding::HEXLOWER.encode(&app.secret).into_bytes(),
        ),
        (
            "base64",
            data_encoding::BASE64.encode(&app.secret).into_bytes(),
        ),
        (
            "base64url",
            data_encoding::BASE64URL_NOPAD
                .encode(&app.secret)
                .into_bytes(),
        ),
    ];
    for value in &stored {
        for (form, needle) in &needles {
            assert!(
                !contains(value, needle),
                "the secret ({form}) is readable in Redis"
            );
        }
    }
    org.app.stop().await;
}

/// An instance on `backend` sharing `org`'s prefix and clock, with `keys` as `factors.keys`.
async fn instance(
    org: &Org,
    backend: &Backend,
    keys: &[(&str, u8)],
) -> (String, Gateway, CancellationToken) {
    let mut settings: Settings = settings_for(
        backend,
        &org.app.prefix,
        &format!("{}/messages", org.app.provider.uri()),
    );
    settings.factors.keys = keys
        .iter()
        .map(|(id, fill)| (id.to_string(), Secret::new(vec![*fill; 32])))
        .collect();
    let clock: Arc<ManualClock> = org.app.clock.clone();
    let app = Gateway::build_with(
        settings,
        Overrides {
            clock: Some(clock),
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
    (address, app, stop)
}

async fn call(org: &Org, address: &str, path: &str, body: Value) -> Reply {
    let response = org
        .app
        .http
        .post(format!("{address}{path}"))
        .bearer_auth(&org.service)
        .json(&body)
        .send()
        .await
        .unwrap();
    reply(response).await
}

/// Factors sealed under the old key keep working after a restart with `[new, old]`; new ones
/// are sealed under the new key; dropping the old key too early makes old factors fail closed.
async fn rotating_the_encryption_key_keeps_old_factors_working(backend: Backend) {
    let org = Org::with(backend.clone(), |settings| {
        settings.factors.keys = vec![("k1".into(), Secret::new(vec![1u8; 32]))];
    })
    .await;
    org.policy(json!({"channels": ["sms", "totp"]})).await;
    org.user("carol", "member", Some("+4915112370003")).await;
    let (old, _) = active_totp(&org, "carol").await;
    // The first instance stays up but idle: the next ones play the restarted gateway.

    let (address, rotated, stop) = instance(&org, &backend, &[("k2", 2), ("k1", 1)]).await;
    let now = rotated.clock().now_ms();
    let passed = call(
        &org,
        &address,
        "/v1/users/carol/challenges",
        json!({"type": "totp", "code": old.code(now)}),
    )
    .await;
    assert_eq!(passed.body["valid"], true, "{}", passed.body);
    // A new enrolment is sealed under k2.
    let enrolled = call(
        &org,
        &address,
        "/v1/users/carol/factors",
        json!({"type": "totp"}),
    )
    .await;
    assert_eq!(enrolled.status, 201, "{}", enrolled.body);
    if matches!(backend, Backend::Redis) {
        let account = &org.app.account_id;
        let key = format!(
            "{}:{{a:{account}}}:fx:carol:{}",
            org.app.prefix,
            enrolled.str("id")
        );
        let sealed = crate::redis_harness::shared_redis().command(&["HGET", &key, "s"]);
        assert!(
            sealed.contains("\r\nk2:"),
            "sealed under the current key: {sealed}"
        );
    }
    stop.cancel();
    rotated.shutdown(Duration::from_secs(2)).await;

    let (address, dropped, stop) = instance(&org, &backend, &[("k2", 2)]).await;
    org.app.clock.advance(Duration::from_secs(30));
    let now = dropped.clock().now_ms();
    let failed = call(
        &org,
        &address,
        "/v1/users/carol/challenges",
        json!({"type": "totp", "code": old.code(now)}),
    )
    .await;
    failed.assert_problem(500, "internal");
    stop.cancel();
    dropped.shutdown(Duration::from_secs(2)).await;
    org.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_the_encryption_key_keeps_old_factors_working_on_redis() {
    rotating_the_encryption_key_keeps_old_factors_working(Backend::Redis).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_the_encryption_key_keeps_old_factors_working_on_redis_cluster() {
    rotating_the_encryption_key_keeps_old_factors_working(Backend::Cluster).await
}
