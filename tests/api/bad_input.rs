//! Every bad input gets a clear 4xx problem body and changes nothing: nothing stored, nothing sent.

use serde_json::{json, Value};

use crate::helpers::{spawn_app, Backend, TestApp, ROOT_KEY};

const NUMBER: &str = "+4915112345690";

/// Posts a raw body to `path` with the given content type and key.
async fn raw(
    app: &TestApp,
    path: &str,
    body: Vec<u8>,
    content_type: &str,
    key: Option<&str>,
) -> crate::helpers::Reply {
    let mut request = app
        .http
        .post(format!("{}{path}", app.address))
        .header("content-type", content_type)
        .body(body);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    crate::helpers::reply(request.send().await.unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_sends_are_refused_with_problem_bodies_and_change_nothing() {
    for backend in [Backend::Memory, Backend::Redis] {
        let app = spawn_app(backend).await;
        let key = app.key.clone();
        let json_body = |value: Value| serde_json::to_vec(&value).unwrap();
        let cases: Vec<(&str, Vec<u8>, &str, Option<&str>, u16, &str)> = vec![
            (
                "malformed JSON",
                b"{\"to\": ".to_vec(),
                "application/json",
                Some(&key),
                400,
                "invalid-request",
            ),
            (
                "wrong type",
                json_body(json!({"to": 4915112345690u64})),
                "application/json",
                Some(&key),
                400,
                "invalid-request",
            ),
            (
                "unknown field",
                json_body(json!({"to": NUMBER, "chanel": "sms"})),
                "application/json",
                Some(&key),
                400,
                "invalid-request",
            ),
            (
                "unknown channel",
                json_body(json!({"to": NUMBER, "channel": "fax"})),
                "application/json",
                Some(&key),
                400,
                "invalid-request",
            ),
            (
                "not E.164",
                json_body(json!({"to": "015112345690"})),
                "application/json",
                Some(&key),
                400,
                "invalid-request",
            ),
            (
                "spaces in number",
                json_body(json!({"to": "+49 151 12345690"})),
                "application/json",
                Some(&key),
                400,
                "invalid-request",
            ),
            (
                "code too short",
                json_body(json!({"to": NUMBER, "code_length": 3})),
                "application/json",
                Some(&key),
                400,
                "invalid-request",
            ),
            (
                "code too long",
                json_body(json!({"to": NUMBER, "code_length": 11})),
                "application/json",
                Some(&key),
                400,
                "invalid-request",
            ),
            (
                "bad locale",
                json_body(json!({"to": NUMBER, "locale": "English"})),
                "application/json",
                Some(&key),
                400,
                "invalid-request",
            ),
            (
                "form body",
                b"to=%2B4915112345690".to_vec(),
                "application/x-www-form-urlencoded",
                Some(&key),
                415,
                "unsupported-media-type",
            ),
            (
                "missing key",
                json_body(json!({"to": NUMBER})),
                "application/json",
                None,
                401,
                "unauthorized",
            ),
            (
                "wrong key",
                json_body(json!({"to": NUMBER})),
                "application/json",
                Some("ogk_not-a-real-key"),
                401,
                "unauthorized",
            ),
            (
                "root key",
                json_body(json!({"to": NUMBER})),
                "application/json",
                Some(ROOT_KEY),
                403,
                "forbidden",
            ),
        ];
        for (case, body, content_type, key, status, slug) in cases {
            let reply = raw(&app, "/v1/verifications", body, content_type, key).await;
            assert_eq!(reply.status, status, "{case}: {}", reply.body);
            reply.assert_problem(status, slug);
        }

        let checks: Vec<(&str, Value, u16, &str)> = vec![
            (
                "letters in code",
                json!({"to": NUMBER, "code": "12a456"}),
                400,
                "invalid-request",
            ),
            (
                "code too short",
                json!({"to": NUMBER, "code": "123"}),
                400,
                "invalid-request",
            ),
            (
                "neither id nor to",
                json!({"code": "123456"}),
                400,
                "invalid-request",
            ),
            (
                "both id and to",
                json!({"id": "VE00000000000000000000000000000000", "to": NUMBER, "code": "123456"}),
                400,
                "invalid-request",
            ),
            (
                "unknown id",
                json!({"id": "VE00000000000000000000000000000000", "code": "123456"}),
                404,
                "not-found",
            ),
            (
                "nothing pending",
                json!({"to": NUMBER, "code": "123456"}),
                404,
                "not-found",
            ),
        ];
        for (case, body, status, slug) in checks {
            let reply = app.post("/v1/verifications/check", body).await;
            assert_eq!(reply.status, status, "{case}: {}", reply.body);
            reply.assert_problem(status, slug);
        }

        // A 1 MiB body is refused from its announced length, before it is read. Over a raw
        // socket, so the test sees the answer even though the body is never sent (an HTTP
        // client still uploading would see the connection end instead).
        let head = announce_large_body(&app.address, &key, 1 << 20).await;
        assert!(head.starts_with("HTTP/1.1 413"), "{head}");
        assert!(
            head.contains("application/problem+json") && head.contains("payload-too-large"),
            "{head}"
        );

        // Nothing was sent, and nothing stored: the first valid send is a fresh verification
        // whose per-number quota is untouched.
        assert!(
            app.messages().await.is_empty(),
            "no message left for a refused request"
        );
        let fresh = app.send(NUMBER).await;
        assert_eq!(fresh.status, 201);
        assert_eq!(fresh.body["send_count"], 1);
        app.stop().await;
    }
}

/// Sends only the head of a POST announcing `length` bytes of JSON and returns the raw answer.
async fn announce_large_body(address: &str, key: &str, length: usize) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let authority = address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(authority).await.unwrap();
    let head = format!(
        "POST /v1/verifications HTTP/1.1\r\nHost: {authority}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut answer))
        .await
        .expect("the server answers without waiting for the body")
        .unwrap();
    String::from_utf8_lossy(&answer[..read]).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_and_wrong_methods_are_problems_too() {
    let app = spawn_app(Backend::Memory).await;
    app.get("/v1/nothing-here")
        .await
        .assert_problem(404, "not-found");
    let wrong_method = app
        .request(
            reqwest::Method::DELETE,
            "/v1/verifications",
            Some(&app.key),
            None,
        )
        .await;
    wrong_method.assert_problem(405, "method-not-allowed");
    assert_eq!(wrong_method.headers["allow"], "POST");
    app.get("/v1/verifications/not-an-id")
        .await
        .assert_problem(404, "not-found");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_can_only_do_what_their_role_allows() {
    let app = spawn_app(Backend::Memory).await;
    let admin = app.mint_key(&app.account_id, "admin").await;
    let owner = app.mint_key(&app.account_id, "owner").await;
    let send = json!({"to": NUMBER});
    let as_admin = app
        .request(
            reqwest::Method::POST,
            "/v1/verifications",
            Some(&admin),
            Some(send.clone()),
        )
        .await;
    as_admin.assert_problem(403, "forbidden");
    let as_owner = app
        .request(
            reqwest::Method::POST,
            "/v1/verifications",
            Some(&owner),
            Some(send),
        )
        .await;
    assert_eq!(as_owner.status, 201);

    let service_mints = app
        .request(
            reqwest::Method::POST,
            &format!("/v1/accounts/{}/keys", app.account_id),
            Some(&app.key),
            Some(json!({"role": "owner"})),
        )
        .await;
    service_mints.assert_problem(403, "forbidden");
    let owner_mints = app
        .request(
            reqwest::Method::POST,
            &format!("/v1/accounts/{}/keys", app.account_id),
            Some(&owner),
            Some(json!({"role": "partner"})),
        )
        .await;
    assert_eq!(owner_mints.status, 201);
    assert!(owner_mints.str("key").starts_with("ogk_"));

    let (other_account, _) = app.create_account_with_key("service").await;
    let foreign = app
        .request(
            reqwest::Method::POST,
            &format!("/v1/accounts/{other_account}/keys"),
            Some(&owner),
            Some(json!({"role": "owner"})),
        )
        .await;
    foreign.assert_problem(403, "forbidden");
    let bad_role = app
        .request(
            reqwest::Method::POST,
            &format!("/v1/accounts/{}/keys", app.account_id),
            Some(ROOT_KEY),
            Some(json!({"role": "superuser"})),
        )
        .await;
    bad_role.assert_problem(400, "invalid-request");
    let accounts_by_key = app
        .request(
            reqwest::Method::POST,
            "/v1/accounts",
            Some(&owner),
            Some(json!({"name": "Other"})),
        )
        .await;
    accounts_by_key.assert_problem(403, "forbidden");
    app.stop().await;
}
