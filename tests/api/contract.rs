//! The verification contract, held by every store.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{spawn_app, wrong_code, Backend};
use crate::on_every_store;

on_every_store!(
    a_sent_code_is_approved_once_and_then_consumed,
    five_wrong_codes_kill_the_verification,
    a_code_expires_when_the_clock_passes_its_lifetime,
    a_resend_replaces_the_code_and_keeps_the_id,
    the_sixth_send_of_one_verification_is_refused,
    the_per_number_send_quota_holds_across_verifications,
    an_idempotent_retry_returns_the_first_answer_without_a_second_message,
    a_check_by_number_finds_the_pending_verification,
    a_canceled_verification_cannot_be_approved,
    accounts_cannot_see_each_others_verifications,
    an_idempotency_key_for_another_number_of_the_same_shard_starts_a_new_verification,
    a_keyed_check_records_its_outcome_and_its_retries_answer_it_counting_nothing,
    a_keyed_check_by_number_replays_its_approval_after_the_number_is_released,
);

async fn a_sent_code_is_approved_once_and_then_consumed(backend: Backend) {
    let app = spawn_app(backend).await;
    let sent = app.send("+4915112345678").await;
    assert_eq!(sent.status, 201, "{}", sent.body);
    assert_eq!(sent.body["status"], "pending");
    assert_eq!(sent.body["channel"], "sms");
    assert_eq!(sent.body["attempts_left"], 5);
    let id = sent.str("id").to_owned();
    assert!(id.starts_with("VE") && id.len() == 34);

    let code = app.code_sent_to("+4915112345678", 1).await;
    assert_eq!(code.len(), 6);
    let message = &app.messages().await[0];
    assert_eq!(message["channel"], "sms");
    assert!(message["message_id"].as_str().unwrap().starts_with("MS"));

    let approved = app.check_id(&id, &code).await;
    assert_eq!(approved.status, 200, "{}", approved.body);
    assert_eq!(approved.body["status"], "approved");
    assert_eq!(approved.body["valid"], true);

    // A replayed code never looks like an approval: 409, and nothing counted.
    let again = app.check_id(&id, &code).await;
    again.assert_problem(409, "verification-already-approved");
    assert_ne!(again.body["status"], "approved");

    let read = app.get(&format!("/v1/verifications/{id}")).await;
    assert_eq!(read.body["status"], "approved");
    app.stop().await;
}

async fn five_wrong_codes_kill_the_verification(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app.send("+4915112345679").await.str("id").to_owned();
    let code = app.code_sent_to("+4915112345679", 1).await;
    let wrong = wrong_code(&code);
    for attempt in 1..=5 {
        let checked = app.check_id(&id, &wrong).await;
        assert_eq!(checked.status, 200);
        assert_eq!(checked.body["valid"], false);
        assert_eq!(checked.body["attempts_left"], 5 - attempt);
        let expected = if attempt < 5 {
            "pending"
        } else {
            "max_attempts_reached"
        };
        assert_eq!(
            checked.body["status"], expected,
            "after {attempt} wrong codes"
        );
    }
    let right = app.check_id(&id, &code).await;
    right.assert_problem(409, "verification-max-attempts-reached");
    let read = app.get(&format!("/v1/verifications/{id}")).await;
    assert_eq!(read.body["status"], "max_attempts_reached");
    app.stop().await;
}

async fn a_code_expires_when_the_clock_passes_its_lifetime(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app.send("+4915112345680").await.str("id").to_owned();
    let code = app.code_sent_to("+4915112345680", 1).await;

    app.clock.advance(Duration::from_secs(599));
    assert_eq!(
        app.get(&format!("/v1/verifications/{id}")).await.body["status"],
        "pending"
    );
    app.clock.advance(Duration::from_secs(1));
    assert_eq!(
        app.get(&format!("/v1/verifications/{id}")).await.body["status"],
        "expired"
    );

    // By number only a pending verification is found; by id the expired one answers.
    app.check_to("+4915112345680", &code)
        .await
        .assert_problem(404, "not-found");
    // The check that finds the lifetime over records the expiry and answers it; later ones
    // find a final verification.
    let late = app.check_id(&id, &code).await;
    assert_eq!(late.status, 200);
    assert_eq!(late.body["status"], "expired");
    assert_eq!(
        late.body["valid"], false,
        "an expired code is never approved"
    );
    app.check_id(&id, &code)
        .await
        .assert_problem(409, "verification-expired");

    // A new send after expiry starts a new verification.
    let fresh = app.send("+4915112345680").await;
    assert_eq!(fresh.status, 201);
    assert_ne!(fresh.str("id"), id);
    app.stop().await;
}

async fn a_resend_replaces_the_code_and_keeps_the_id(backend: Backend) {
    let app = spawn_app(backend).await;
    let first = app.send("+4915112345681").await;
    let id = first.str("id").to_owned();
    let old_code = app.code_sent_to("+4915112345681", 1).await;

    let resent = app.send("+4915112345681").await;
    assert_eq!(
        resent.status, 200,
        "a resend answers 200 with the same verification"
    );
    assert_eq!(resent.str("id"), id);
    assert_eq!(resent.body["send_count"], 2);
    let new_code = app.code_sent_to("+4915112345681", 2).await;

    if old_code != new_code {
        let stale = app.check_id(&id, &old_code).await;
        assert_eq!(
            stale.body["valid"], false,
            "the old code is dead after a resend"
        );
        assert_eq!(
            stale.body["attempts_left"], 4,
            "and counts as a wrong attempt"
        );
    }
    let approved = app.check_id(&id, &new_code).await;
    assert_eq!(approved.body["status"], "approved");
    app.stop().await;
}

async fn the_sixth_send_of_one_verification_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    for send in 1..=5 {
        let sent = app.send("+4915112345682").await;
        // The first send creates the verification (201); the others are resends of it (200).
        let expected = if send == 1 { 201 } else { 200 };
        assert_eq!(sent.status, expected, "send {send}: {}", sent.body);
        assert_eq!(sent.body["send_count"], send);
    }
    let refused = app.send("+4915112345682").await;
    refused.assert_problem(429, "max-sends-reached");
    assert!(refused.headers.contains_key("retry-after"));
    assert_eq!(app.wait_for_messages(5).await.len(), 5);
    app.stop().await;
}

async fn the_per_number_send_quota_holds_across_verifications(backend: Backend) {
    let app = spawn_app(backend).await;
    let to = "+4915112345683";
    for _ in 0..5 {
        let id = app.send(to).await.str("id").to_owned();
        let canceled = app
            .post(&format!("/v1/verifications/{id}/cancel"), json!({}))
            .await;
        assert_eq!(canceled.body["status"], "canceled");
    }
    let refused = app.send(to).await;
    refused.assert_problem(429, "send-quota-exceeded");
    let retry_after: u64 = refused.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1..=600).contains(&retry_after),
        "Retry-After {retry_after}"
    );
    // Another number is not affected, and the window reopens after ten minutes.
    assert_eq!(app.send("+4915112345684").await.status, 201);
    // Every store keeps the window's end by the gateway's clock, so it follows the moved clock.
    app.clock.advance(Duration::from_secs(599));
    app.send(to)
        .await
        .assert_problem(429, "send-quota-exceeded");
    app.clock.advance(Duration::from_secs(1));
    assert_eq!(app.send(to).await.status, 201);
    app.stop().await;
}

async fn an_idempotent_retry_returns_the_first_answer_without_a_second_message(backend: Backend) {
    let app = spawn_app(backend).await;
    let send = || async {
        let response = app
            .http
            .post(format!("{}/v1/verifications", app.address))
            .bearer_auth(&app.key)
            .header("Idempotency-Key", "login-attempt-42")
            .json(&json!({"to": "+4915112345685"}))
            .send()
            .await
            .unwrap();
        crate::helpers::reply(response).await
    };
    let first = send().await;
    assert_eq!(first.status, 201);
    let retry = send().await;
    assert_eq!(retry.status, 200);
    assert_eq!(retry.headers["idempotent-replayed"], "true");
    assert_eq!(retry.str("id"), first.str("id"));
    assert_eq!(retry.body["send_count"], 1, "a replay is not a resend");
    app.wait_for_messages(1).await;
    // A plain send (no key) is a resend, which proves the replay did not count a send.
    assert_eq!(app.send("+4915112345685").await.body["send_count"], 2);
    assert_eq!(app.wait_for_messages(2).await.len(), 2);
    app.stop().await;
}

async fn a_check_by_number_finds_the_pending_verification(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app.send("+4915112345686").await.str("id").to_owned();
    let code = app.code_sent_to("+4915112345686", 1).await;
    let checked = app.check_to("+4915112345686", &code).await;
    assert_eq!(checked.status, 200);
    assert_eq!(checked.str("id"), id);
    assert_eq!(checked.body["status"], "approved");
    let after = app.check_to("+4915112345686", &code).await;
    after.assert_problem(404, "not-found");
    app.stop().await;
}

async fn a_canceled_verification_cannot_be_approved(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app.send("+4915112345687").await.str("id").to_owned();
    let code = app.code_sent_to("+4915112345687", 1).await;
    let canceled = app
        .post(&format!("/v1/verifications/{id}/cancel"), json!({}))
        .await;
    assert_eq!(canceled.status, 200);
    assert_eq!(canceled.body["status"], "canceled");
    let again = app
        .post(&format!("/v1/verifications/{id}/cancel"), json!({}))
        .await;
    again.assert_problem(409, "conflict");
    app.check_id(&id, &code)
        .await
        .assert_problem(409, "verification-canceled");
    let read = app.get(&format!("/v1/verifications/{id}")).await;
    assert_eq!(read.body["status"], "canceled");
    app.stop().await;
}

async fn accounts_cannot_see_each_others_verifications(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app.send("+4915112345688").await.str("id").to_owned();
    let code = app.code_sent_to("+4915112345688", 1).await;
    let (_, other_key) = app.create_account_with_key("service").await;
    let path = format!("/v1/verifications/{id}");
    app.request(reqwest::Method::GET, &path, Some(&other_key), None)
        .await
        .assert_problem(404, "not-found");
    let stolen = app
        .request(
            reqwest::Method::POST,
            "/v1/verifications/check",
            Some(&other_key),
            Some(json!({"id": id, "code": code})),
        )
        .await;
    stolen.assert_problem(404, "not-found");
    // The owner's check still works: the other account's attempt counted nothing.
    let mine = app.check_id(&id, &code).await;
    assert_eq!(mine.body["status"], "approved");
    assert_eq!(mine.body["valid"], true);
    app.stop().await;
}

/// In Redis a finished verification releases its number's pointer (the quota stays), whether
/// it finished by id (where the script derives the key base from the record's key) or by number.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_verification_releases_its_number_in_redis() {
    let app = spawn_app(Backend::Redis).await;
    let redis = crate::redis_harness::shared_redis();
    let pointer_of = |e164: &str| {
        let keys = redis.command(&["KEYS", &format!("{}:*:n:*{e164}", app.prefix)]);
        let keys: Vec<&str> = keys.lines().filter(|line| line.contains(":n:")).collect();
        assert_eq!(keys.len(), 1, "one pointer for {e164}: {keys:?}");
        keys[0].to_owned()
    };
    // The pointer is a packed string (`POINTER` in src/redis/scripts/prelude.lua): the sends in
    // its quota window (4 bytes), the window's end (6), then the pending id; Redis's own
    // `struct` reads it here as `<sends> <pending id or nothing>`.
    let pointer_read = "local p = redis.call('GET', KEYS[1]) \
        return struct.unpack('<I4', p) .. ' ' .. string.sub(p, 11)";
    let pointed = |key: &str| redis.command(&["EVAL", pointer_read, "1", key]);
    let released = |key: &str| pointed(key).ends_with(" \r\n");

    // Approved by id.
    let id = app.send("+4915112345690").await.str("id").to_owned();
    let pointer = pointer_of("+4915112345690");
    assert!(
        pointed(&pointer).contains(&id),
        "pending: the pointer names it"
    );
    let code = app.code_sent_to("+4915112345690", 1).await;
    assert_eq!(app.check_id(&id, &code).await.body["status"], "approved");
    assert!(released(&pointer), "approved by id: released");
    assert_eq!(pointed(&pointer), "$2\r\n1 \r\n", "the quota stays");

    // Out of attempts by id.
    let id = app.send("+4915112345691").await.str("id").to_owned();
    let code = app.code_sent_to("+4915112345691", 2).await;
    for _ in 0..5 {
        app.check_id(&id, &wrong_code(&code)).await;
    }
    assert!(
        released(&pointer_of("+4915112345691")),
        "out of attempts: released"
    );

    // Approved by number.
    app.send("+4915112345692").await;
    let code = app.code_sent_to("+4915112345692", 3).await;
    let approved = app.check_to("+4915112345692", &code).await;
    assert_eq!(approved.body["status"], "approved", "{}", approved.body);
    assert!(
        released(&pointer_of("+4915112345692")),
        "approved by number: released"
    );
    app.stop().await;
}

/// Two numbers whose verifications share one shard (and so one Redis Cluster slot), by the
/// crate's own shard function.
fn two_numbers_of_one_shard() -> (String, String) {
    let number = |n: u32| format!("+49151123{n:05}");
    let shard = |text: &str| otpgate::phone::PhoneNumber::parse(text).unwrap().shard();
    let first = number(57000);
    let second = (57001..)
        .map(number)
        .find(|candidate| shard(candidate) == shard(&first))
        .unwrap();
    (first, second)
}

async fn send_with_key(
    app: &crate::helpers::TestApp,
    to: &str,
    key: &str,
) -> crate::helpers::Reply {
    let response = app
        .http
        .post(format!("{}/v1/verifications", app.address))
        .bearer_auth(&app.key)
        .header("Idempotency-Key", key)
        .json(&json!({"to": to}))
        .send()
        .await
        .unwrap();
    crate::helpers::reply(response).await
}

async fn check_with_key(
    app: &crate::helpers::TestApp,
    body: serde_json::Value,
    key: &str,
) -> crate::helpers::Reply {
    let response = app
        .http
        .post(format!("{}/v1/verifications/check", app.address))
        .bearer_auth(&app.key)
        .header("Idempotency-Key", key)
        .json(&body)
        .send()
        .await
        .unwrap();
    crate::helpers::reply(response).await
}

async fn an_idempotency_key_for_another_number_of_the_same_shard_starts_a_new_verification(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let (first, second) = two_numbers_of_one_shard();
    let to_first = send_with_key(&app, &first, "login-42").await;
    assert_eq!(to_first.status, 201, "{}", to_first.body);
    let to_second = send_with_key(&app, &second, "login-42").await;
    assert_eq!(to_second.status, 201, "{}", to_second.body);
    assert!(!to_second.headers.contains_key("idempotent-replayed"));
    assert_ne!(to_second.str("id"), to_first.str("id"));
    assert_eq!(to_second.body["to"], second.as_str());
    let messages = app.wait_for_messages(2).await;
    assert!(messages
        .iter()
        .any(|message| message["to"] == second.as_str()));
    // The key still replays for its own number.
    let retry = send_with_key(&app, &first, "login-42").await;
    assert_eq!(retry.headers["idempotent-replayed"], "true");
    assert_eq!(retry.str("id"), to_first.str("id"));
    app.stop().await;
}

async fn a_keyed_check_records_its_outcome_and_its_retries_answer_it_counting_nothing(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let to = "+4915112345693";
    let id = app.send(to).await.str("id").to_owned();
    let code = app.code_sent_to(to, 1).await;

    // A malformed key is bad input, and changes nothing.
    check_with_key(&app, json!({"id": id, "code": code}), "two words")
        .await
        .assert_problem(400, "invalid-request");

    // A wrong code with a key counts once, however often it is retried.
    let wrong = json!({"id": id, "code": wrong_code(&code)});
    let first = check_with_key(&app, wrong.clone(), "check-1").await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.body["attempts_left"], 4);
    assert!(!first.headers.contains_key("idempotent-replayed"));
    for _ in 0..3 {
        let retry = check_with_key(&app, wrong.clone(), "check-1").await;
        assert_eq!(retry.status, 200);
        assert_eq!(retry.headers["idempotent-replayed"], "true");
        assert_eq!(retry.body["status"], "pending");
        assert_eq!(retry.body["attempts_left"], 4);
    }

    // The approving check, retried with its key, answers the approval again: exactly once per
    // key, and the verification is approved once.
    let right = json!({"id": id, "code": code});
    let approved = check_with_key(&app, right.clone(), "check-2").await;
    assert_eq!(approved.body["status"], "approved", "{}", approved.body);
    assert_eq!(approved.body["valid"], true);
    let replayed = check_with_key(&app, right.clone(), "check-2").await;
    assert_eq!(replayed.status, 200, "{}", replayed.body);
    assert_eq!(replayed.headers["idempotent-replayed"], "true");
    assert_eq!(replayed.body["status"], "approved");
    assert_eq!(replayed.body["valid"], true);
    assert_eq!(replayed.str("id"), id);
    // Without the key, or with a new one, the code is spent.
    app.check_id(&id, &code)
        .await
        .assert_problem(409, "verification-already-approved");
    check_with_key(&app, right, "check-3")
        .await
        .assert_problem(409, "verification-already-approved");

    // A key is one check: used again for another verification of the number, it is refused.
    let other = app.send(to).await;
    assert_eq!(other.status, 201, "{}", other.body);
    let reused = check_with_key(
        &app,
        json!({"id": other.str("id"), "code": code}),
        "check-2",
    )
    .await;
    reused.assert_problem(422, "refused");
    let fresh = app
        .get(&format!("/v1/verifications/{}", other.str("id")))
        .await;
    assert_eq!(
        fresh.body["attempts_left"], 5,
        "the refused check counted nothing"
    );
    app.stop().await;
}

async fn a_keyed_check_by_number_replays_its_approval_after_the_number_is_released(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let to = "+4915112345694";
    let id = app.send(to).await.str("id").to_owned();
    let code = app.code_sent_to(to, 1).await;
    let body = json!({"to": to, "code": code});
    let approved = check_with_key(&app, body.clone(), "by-number").await;
    assert_eq!(approved.body["status"], "approved", "{}", approved.body);
    let retry = check_with_key(&app, body, "by-number").await;
    assert_eq!(retry.status, 200, "{}", retry.body);
    assert_eq!(retry.headers["idempotent-replayed"], "true");
    assert_eq!(retry.body["valid"], true);
    assert_eq!(retry.str("id"), id);
    // Without the key, the number has no pending verification any more.
    app.check_to(to, &code)
        .await
        .assert_problem(404, "not-found");
    app.stop().await;
}

/// §13: the account's length is a floor; a request may ask for more digits, never fewer, and
/// accounts get fewer than 6 only where the operator lowered the floor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_may_ask_for_more_digits_than_its_account_never_fewer() {
    let app = spawn_app(Backend::Memory).await;
    let longer = app
        .post(
            "/v1/verifications",
            json!({"to": "+4915112345695", "code_length": 8}),
        )
        .await;
    assert_eq!(longer.status, 201, "{}", longer.body);
    assert_eq!(longer.body["code_length"], 8);
    assert_eq!(app.code_sent_to("+4915112345695", 1).await.len(), 8);
    for fewer in [4, 5] {
        let refused = app
            .post(
                "/v1/verifications",
                json!({"to": "+4915112345696", "code_length": fewer}),
            )
            .await;
        refused.assert_problem(400, "invalid-request");
        assert!(
            refused.str("detail").contains("at least 6"),
            "{}",
            refused.body
        );
    }
    // Accounts: 6 digits at least by default.
    for (length, status) in [(4, 400), (5, 400), (6, 201), (8, 201)] {
        let created = app
            .request(
                reqwest::Method::POST,
                "/v1/accounts",
                Some(crate::helpers::ROOT_KEY),
                Some(json!({"name": "Short", "code_length": length})),
            )
            .await;
        assert_eq!(
            created.status, status,
            "code_length {length}: {}",
            created.body
        );
    }
    assert_eq!(
        app.messages().await.len(),
        1,
        "nothing sent for a refused send"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_may_lower_the_code_length_floor_to_four() {
    let app = crate::helpers::spawn_app_with(Backend::Memory, |settings| {
        settings.verification.min_code_length = 4;
    })
    .await;
    let created = app
        .request(
            reqwest::Method::POST,
            "/v1/accounts",
            Some(crate::helpers::ROOT_KEY),
            Some(json!({"name": "Legacy", "code_length": 4})),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let key = app.mint_key(created.str("id"), "service").await;
    let sent = app
        .request(
            reqwest::Method::POST,
            "/v1/verifications",
            Some(&key),
            Some(json!({"to": "+4915112345697"})),
        )
        .await;
    assert_eq!(sent.status, 201, "{}", sent.body);
    assert_eq!(app.code_sent_to("+4915112345697", 1).await.len(), 4);
    // The default account of the test app still has 6 digits, and holds them.
    app.post(
        "/v1/verifications",
        json!({"to": "+4915112345698", "code_length": 4}),
    )
    .await
    .assert_problem(400, "invalid-request");
    app.stop().await;
}
