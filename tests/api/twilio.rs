//! The Twilio Verify v2 facade over HTTP: form bodies, Basic auth, Twilio's field names, SID
//! shapes and error codes, on the same store as the v1 API.

use serde_json::Value;

use crate::helpers::{
    reply, spawn_app, spawn_app_with, wrong_code, Backend, Reply, TestApp, ROOT_KEY,
};

/// A form request with Basic credentials, as the Twilio SDKs send it.
async fn twilio(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    credentials: (&str, &str),
    form: &[(&str, &str)],
) -> Reply {
    let mut request = app
        .http
        .request(method, format!("{}{path}", app.address))
        .basic_auth(credentials.0, Some(credentials.1));
    if !form.is_empty() {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        request = request
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
    }
    reply(request.send().await.expect("the server answers")).await
}

fn service_of(app: &TestApp) -> String {
    format!("VA{}", &app.account_id[2..])
}

fn assert_twilio_error(reply: &Reply, status: u16, code: u64) {
    assert_eq!(reply.status, status, "{}", reply.body);
    assert_eq!(reply.body["code"], code, "{}", reply.body);
    assert_eq!(reply.body["status"], status, "{}", reply.body);
    assert!(reply.body["message"].is_string(), "{}", reply.body);
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

async fn start(app: &TestApp, to: &str) -> Reply {
    let path = format!("/v2/Services/{}/Verifications", service_of(app));
    twilio(
        app,
        reqwest::Method::POST,
        &path,
        (&app.account_id, &app.key),
        &[("To", to), ("Channel", "sms")],
    )
    .await
}

async fn check(app: &TestApp, form: &[(&str, &str)]) -> Reply {
    let path = format!("/v2/Services/{}/VerificationCheck", service_of(app));
    twilio(
        app,
        reqwest::Method::POST,
        &path,
        (&app.account_id, &app.key),
        form,
    )
    .await
}

#[tokio::test]
async fn services_are_created_with_the_root_key_and_read_with_a_key_of_their_account() {
    let app = spawn_app(Backend::Memory).await;
    let created = twilio(
        &app,
        reqwest::Method::POST,
        "/v2/Services",
        ("root", ROOT_KEY),
        &[("FriendlyName", "My Login"), ("CodeLength", "8")],
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert!(is_sid(&created.body["sid"], "VA"), "{}", created.body);
    assert!(is_sid(&created.body["account_sid"], "AC"));
    assert_eq!(created.str("sid")[2..], created.str("account_sid")[2..]);
    assert_eq!(created.body["friendly_name"], "My Login");
    assert_eq!(created.body["code_length"], 8);
    assert!(created
        .str("url")
        .ends_with(&format!("/v2/Services/{}", created.str("sid"))));
    assert!(created.body["links"]["verifications"].is_string());
    assert!(created.str("date_created").ends_with('Z'));

    // The service is an account: a key minted for it on the v1 API reads it through the facade.
    let account = created.str("account_sid").to_owned();
    let key = app.mint_key(&account, "service").await;
    let path = format!("/v2/Services/{}", created.str("sid"));
    let read = twilio(&app, reqwest::Method::GET, &path, (&account, &key), &[]).await;
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(read.body["friendly_name"], "My Login");
    let listed = twilio(
        &app,
        reqwest::Method::GET,
        "/v2/Services",
        (&account, &key),
        &[],
    )
    .await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(listed.body["services"][0]["sid"], created.body["sid"]);
    assert_eq!(listed.body["meta"]["key"], "services");

    // An account key does not create services; another account's service is not found.
    let refused = twilio(
        &app,
        reqwest::Method::POST,
        "/v2/Services",
        (&account, &key),
        &[("FriendlyName", "x")],
    )
    .await;
    assert_twilio_error(&refused, 403, 20403);
    let other = twilio(
        &app,
        reqwest::Method::GET,
        &format!("/v2/Services/{}", service_of(&app)),
        (&account, &key),
        &[],
    )
    .await;
    assert_twilio_error(&other, 404, 20404);
    app.stop().await;
}

#[tokio::test]
async fn a_form_encoded_send_is_approved_by_its_code_with_twilio_field_names() {
    let app = spawn_app(Backend::Memory).await;
    let to = "+4915112345670";
    let started = start(&app, to).await;
    assert_eq!(started.status, 201, "{}", started.body);
    assert!(is_sid(&started.body["sid"], "VE"), "{}", started.body);
    assert_eq!(started.body["service_sid"], service_of(&app));
    assert_eq!(started.body["account_sid"], app.account_id);
    assert_eq!(started.body["to"], to);
    assert_eq!(started.body["channel"], "sms");
    assert_eq!(started.body["status"], "pending");
    assert_eq!(started.body["valid"], false);
    assert!(started.body["send_code_attempts"].is_array());
    assert!(started.body["lookup"].is_object());
    assert!(started.str("url").ends_with(&format!(
        "/v2/Services/{}/Verifications/{}",
        service_of(&app),
        started.str("sid")
    )));

    // The facade's verification id is the v1 id: the v1 API reads it too.
    let v1 = app
        .get(&format!("/v1/verifications/{}", started.str("sid")))
        .await;
    assert_eq!(v1.status, 200, "{}", v1.body);

    let code = app.code_sent_to(to, 1).await;
    let checked = check(&app, &[("To", to), ("Code", &code)]).await;
    assert_eq!(checked.status, 200, "{}", checked.body);
    assert_eq!(checked.body["status"], "approved");
    assert_eq!(checked.body["valid"], true);
    assert_eq!(checked.body["sid"], started.body["sid"]);

    let path = format!(
        "/v2/Services/{}/Verifications/{}",
        service_of(&app),
        started.str("sid")
    );
    let fetched = twilio(
        &app,
        reqwest::Method::GET,
        &path,
        (&app.account_id, &app.key),
        &[],
    )
    .await;
    assert_eq!(fetched.status, 200, "{}", fetched.body);
    assert_eq!(fetched.body["status"], "approved");

    // Twilio forgets approved verifications: checking again is a 404 (20404).
    let again = check(
        &app,
        &[("VerificationSid", started.str("sid")), ("Code", &code)],
    )
    .await;
    assert_twilio_error(&again, 404, 20404);
    app.stop().await;
}

#[tokio::test]
async fn wrong_codes_stay_pending_until_the_last_which_answers_60202() {
    let app = spawn_app(Backend::Memory).await;
    let to = "+4915112345671";
    let started = start(&app, to).await;
    let code = app.code_sent_to(to, 1).await;
    let wrong = wrong_code(&code);
    for _ in 0..4 {
        let checked = check(
            &app,
            &[("VerificationSid", started.str("sid")), ("Code", &wrong)],
        )
        .await;
        assert_eq!(checked.status, 200, "{}", checked.body);
        assert_eq!(checked.body["status"], "pending");
        assert_eq!(checked.body["valid"], false);
    }
    let last = check(&app, &[("To", to), ("Code", &wrong)]).await;
    assert_twilio_error(&last, 429, 60202);
    let after = check(
        &app,
        &[("VerificationSid", started.str("sid")), ("Code", &code)],
    )
    .await;
    assert_twilio_error(&after, 429, 60202);
    app.stop().await;
}

#[tokio::test]
async fn the_sixth_send_to_a_pending_verification_answers_60203() {
    let app = spawn_app_with(Backend::Memory, |settings| {
        settings.limits.send_per_number = 100;
    })
    .await;
    let to = "+4915112345672";
    let first = start(&app, to).await;
    for _ in 0..4 {
        let resent = start(&app, to).await;
        assert_eq!(resent.status, 201, "{}", resent.body);
        assert_eq!(
            resent.body["sid"], first.body["sid"],
            "a resend keeps the SID"
        );
    }
    let sixth = start(&app, to).await;
    assert_twilio_error(&sixth, 429, 60203);
    assert!(sixth.headers.contains_key("retry-after"));
    app.stop().await;
}

#[tokio::test]
async fn bad_parameters_answer_60200_and_name_the_parameter() {
    let app = spawn_app(Backend::Memory).await;
    let path = format!("/v2/Services/{}/Verifications", service_of(&app));
    let creds = (app.account_id.as_str(), app.key.as_str());
    for (form, parameter) in [
        (
            vec![("To", "+4915112345673"), ("Channel", "fax")],
            "Channel",
        ),
        // E-mail is a channel, and it takes an address, not a number.
        (vec![("To", "+4915112345673"), ("Channel", "email")], "To"),
        (vec![("To", "12345"), ("Channel", "sms")], "To"),
        (vec![("Channel", "sms")], "To"),
        (
            vec![
                ("To", "+4915112345673"),
                ("Channel", "sms"),
                ("CodeLength", "3"),
            ],
            "CodeLength",
        ),
        (
            vec![
                ("To", "+4915112345673"),
                ("Channel", "sms"),
                ("Locale", "EN_us"),
            ],
            "Locale",
        ),
    ] {
        let refused = twilio(&app, reqwest::Method::POST, &path, creds, &form).await;
        assert_twilio_error(&refused, 400, 60200);
        assert!(
            refused.str("message").contains(&format!("`{parameter}`")),
            "{}",
            refused.body
        );
    }
    let no_code = check(&app, &[("To", "+4915112345673")]).await;
    assert_twilio_error(&no_code, 400, 60200);
    // A JSON body is not what Twilio's API takes.
    let json = app
        .http
        .post(format!("{}{path}", app.address))
        .basic_auth(creds.0, Some(creds.1))
        .json(&serde_json::json!({"To": "+4915112345673"}))
        .send()
        .await
        .unwrap();
    assert_eq!(json.status(), 415);
    assert!(app.messages().await.is_empty(), "nothing was sent");
    app.stop().await;
}

#[tokio::test]
async fn basic_auth_needs_the_account_id_and_one_of_its_keys() {
    let app = spawn_app(Backend::Memory).await;
    let path = format!("/v2/Services/{}/Verifications", service_of(&app));
    let form = [("To", "+4915112345674"), ("Channel", "sms")];
    let wrong_key = twilio(
        &app,
        reqwest::Method::POST,
        &path,
        (&app.account_id, "ogk_nope"),
        &form,
    )
    .await;
    assert_twilio_error(&wrong_key, 401, 20003);
    assert!(wrong_key.headers["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Basic"));
    // A valid key under another account's id is refused like a wrong key.
    let (other_account, other_key) = app.create_account_with_key("service").await;
    let mismatched = twilio(
        &app,
        reqwest::Method::POST,
        &path,
        (&app.account_id, &other_key),
        &form,
    )
    .await;
    assert_twilio_error(&mismatched, 401, 20003);
    // Its own account id with its key authenticates, but this service is not its own.
    let foreign = twilio(
        &app,
        reqwest::Method::POST,
        &path,
        (&other_account, &other_key),
        &form,
    )
    .await;
    assert_twilio_error(&foreign, 404, 20404);
    // Bearer is the v1 scheme, not the facade's.
    let bearer = app
        .http
        .post(format!("{}{path}", app.address))
        .bearer_auth(&app.key)
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), 401);
    // Admin keys manage people, not logins.
    let admin = app.mint_key(&app.account_id, "admin").await;
    let forbidden = twilio(
        &app,
        reqwest::Method::POST,
        &path,
        (&app.account_id, &admin),
        &form,
    )
    .await;
    assert_twilio_error(&forbidden, 403, 20403);
    assert!(app.messages().await.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn status_canceled_cancels_and_unknown_sids_are_404() {
    let app = spawn_app(Backend::Memory).await;
    let started = start(&app, "+4915112345675").await;
    let path = format!(
        "/v2/Services/{}/Verifications/{}",
        service_of(&app),
        started.str("sid")
    );
    let creds = (app.account_id.as_str(), app.key.as_str());
    let approve = twilio(
        &app,
        reqwest::Method::POST,
        &path,
        creds,
        &[("Status", "approved")],
    )
    .await;
    assert_twilio_error(&approve, 400, 60200);
    let canceled = twilio(
        &app,
        reqwest::Method::POST,
        &path,
        creds,
        &[("Status", "canceled")],
    )
    .await;
    assert_eq!(canceled.status, 200, "{}", canceled.body);
    assert_eq!(canceled.body["status"], "canceled");
    let twice = twilio(
        &app,
        reqwest::Method::POST,
        &path,
        creds,
        &[("Status", "canceled")],
    )
    .await;
    assert_twilio_error(&twice, 404, 20404);
    let unknown = format!(
        "/v2/Services/{}/Verifications/VE{}",
        service_of(&app),
        "0".repeat(32)
    );
    let missing = twilio(&app, reqwest::Method::GET, &unknown, creds, &[]).await;
    assert_twilio_error(&missing, 404, 20404);
    let bad_service = twilio(
        &app,
        reqwest::Method::GET,
        "/v2/Services/VAnot-a-sid/Verifications/x",
        creds,
        &[],
    )
    .await;
    assert_twilio_error(&bad_service, 404, 20404);
    app.stop().await;
}

#[tokio::test]
async fn facade_requests_are_counted_under_their_own_route_names() {
    let app = spawn_app(Backend::Memory).await;
    start(&app, "+4915112345676").await;
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(
            "otpgate_http_requests_total{route=\"twilio_start_verification\",status=\"201\"} 1"
        ),
        "{metrics}"
    );
    app.stop().await;
}

/// Twilio's CodeLength asks for more digits than the service's, never fewer; and a service
/// gets fewer than 6 only where the operator lowered the floor.
#[tokio::test]
async fn code_length_may_exceed_the_service_length_but_never_fall_below_it() {
    let app = spawn_app(Backend::Memory).await;
    let path = format!("/v2/Services/{}/Verifications", service_of(&app));
    let creds = (app.account_id.as_str(), app.key.as_str());
    for fewer in ["4", "5"] {
        let refused = twilio(
            &app,
            reqwest::Method::POST,
            &path,
            creds,
            &[
                ("To", "+4915112345675"),
                ("Channel", "sms"),
                ("CodeLength", fewer),
            ],
        )
        .await;
        assert_twilio_error(&refused, 400, 60200);
        assert!(
            refused.str("message").contains("`CodeLength`"),
            "{}",
            refused.body
        );
    }
    assert!(app.messages().await.is_empty(), "nothing was sent");
    let longer = twilio(
        &app,
        reqwest::Method::POST,
        &path,
        creds,
        &[
            ("To", "+4915112345675"),
            ("Channel", "sms"),
            ("CodeLength", "8"),
        ],
    )
    .await;
    assert_eq!(longer.status, 201, "{}", longer.body);
    assert_eq!(app.code_sent_to("+4915112345675", 1).await.len(), 8);
    let short_service = twilio(
        &app,
        reqwest::Method::POST,
        "/v2/Services",
        ("root", ROOT_KEY),
        &[("FriendlyName", "Legacy"), ("CodeLength", "4")],
    )
    .await;
    assert_twilio_error(&short_service, 400, 60200);
    app.stop().await;
}
