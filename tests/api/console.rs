//! The web console without a browser (issue 18), on every store: invitations (owner and root
//! keys, single use, 24 h), passkey registration and usernameless sign-in with the software
//! authenticator, the session cookie and its idle and absolute limits, CSRF on every form, the
//! security headers, and signing out (here, everywhere, and on every instance).

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::accounts_support::Org;
use crate::factors::{org, post, ORIGIN};
use crate::factors_authenticator::{Ceremony, SoftKey};
use crate::helpers::{spawn_peer_with, Backend, TestApp};
use crate::on_every_store;

const COOKIE: &str = "__Host-otpgate-console";

/// A raw console answer: status, headers, body text.
pub struct Page {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Page {
    /// The session token a `Set-Cookie` carries, checking its attributes.
    pub fn session_cookie(&self) -> String {
        let set = self
            .headers
            .get_all("set-cookie")
            .iter()
            .map(|value| value.to_str().unwrap().to_owned())
            .find(|value| value.starts_with(&format!("{COOKIE}=")))
            .unwrap_or_else(|| panic!("no session cookie in {:?}", self.headers));
        for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
            assert!(set.contains(attribute), "{attribute} missing from {set}");
        }
        assert!(
            !set.contains("Domain"),
            "a __Host- cookie has no Domain: {set}"
        );
        set.split(';').next().unwrap()[COOKIE.len() + 1..].to_owned()
    }

    /// The CSRF token the page's forms carry.
    pub fn csrf(&self) -> String {
        let marker = "name=\"csrf\" value=\"";
        let start = self
            .text
            .find(marker)
            .expect("the page has a form with a token")
            + marker.len();
        self.text[start..].split('"').next().unwrap().to_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|_| panic!("not JSON: {}", self.text))
    }
}

/// A console request: an optional session cookie, JSON (with the origin) or a form body.
pub async fn console(
    app: &TestApp,
    method: Method,
    path: &str,
    session: Option<&str>,
    body: Option<Body<'_>>,
) -> Page {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut request = client.request(method, format!("{}{path}", app.address));
    if let Some(session) = session {
        request = request.header("cookie", format!("{COOKIE}={session}"));
    }
    match body {
        Some(Body::Json(value)) => {
            request = request.header("origin", ORIGIN).json(&value);
        }
        Some(Body::Form(fields)) => {
            let encoded: String = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(fields)
                .finish();
            request = request
                .header("origin", ORIGIN)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(encoded);
        }
        None => {}
    }
    let response = request.send().await.expect("the console answers");
    Page {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        text: response.text().await.unwrap(),
    }
}

pub enum Body<'a> {
    Json(Value),
    Form(&'a [(&'a str, &'a str)]),
}

pub async fn get(app: &TestApp, path: &str, session: Option<&str>) -> Page {
    console(app, Method::GET, path, session, None).await
}

/// The token of an invitation link.
fn token_of(url: &str) -> String {
    url.rsplit('/').next().unwrap().to_owned()
}

/// Registers `key` through the invitation `url`: the new session's token.
pub async fn accept(app: &TestApp, url: &str, key: &mut SoftKey) -> String {
    let base = format!("/console/invitations/{}", token_of(url));
    let options = console(
        app,
        Method::POST,
        &format!("{base}/options"),
        None,
        Some(Body::Json(json!({}))),
    )
    .await;
    assert_eq!(options.status, 200, "{}", options.text);
    let credential = key.register(&options.json(), &Ceremony::at(ORIGIN));
    let done = console(app, Method::POST, &base, None, Some(Body::Json(credential))).await;
    assert_eq!(done.status, 200, "{}", done.text);
    assert_eq!(done.json()["redirect"], "/console/");
    done.session_cookie()
}

/// Signs in with `key` (usernameless): the answer.
pub async fn sign_in(app: &TestApp, key: &mut SoftKey) -> Page {
    let options = console(
        app,
        Method::POST,
        "/console/sign-in/options",
        None,
        Some(Body::Json(json!({}))),
    )
    .await;
    assert_eq!(options.status, 200, "{}", options.text);
    assert!(
        options.json().get("allowCredentials").is_none(),
        "usernameless: {}",
        options.text
    );
    let assertion = key.assert(&options.json(), &Ceremony::at(ORIGIN));
    console(
        app,
        Method::POST,
        "/console/sign-in",
        None,
        Some(Body::Json(assertion)),
    )
    .await
}

/// An invitation for `user` minted with the account's owner key: its link.
pub async fn invite(org: &Org, user: &str) -> String {
    let minted = post(
        &org.app,
        &org.owner,
        &format!("/v1/users/{user}/console-invitations"),
        json!({}),
    )
    .await;
    assert_eq!(minted.status, 201, "{}", minted.body);
    minted.str("url").to_owned()
}

/// `user` (with `role`) of a fresh account, signed in to the console: the org, their key and
/// the session token.
pub async fn signed_in(backend: Backend, user: &str, role: &str) -> (Org, SoftKey, String) {
    let org = org(backend).await;
    org.user(user, role, Some("+4915112360101")).await;
    let url = invite(&org, user).await;
    let mut key = SoftKey::passkey();
    let session = accept(&org.app, &url, &mut key).await;
    (org, key, session)
}

fn assert_secure_headers(page: &Page) {
    let header = |name: &str| {
        page.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    assert_eq!(
        header("content-security-policy").as_deref(),
        Some("default-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
    );
    assert_eq!(header("x-content-type-options").as_deref(), Some("nosniff"));
    assert_eq!(header("referrer-policy").as_deref(), Some("no-referrer"));
    assert_eq!(header("cache-control").as_deref(), Some("no-store"));
}

async fn an_invited_owner_registers_a_passkey_and_lands_on_home_signed_in(backend: Backend) {
    let org = org(backend).await;
    org.user("ada", "owner", Some("+4915112360101")).await;
    let minted = post(
        &org.app,
        &org.owner,
        "/v1/users/ada/console-invitations",
        json!({}),
    )
    .await;
    assert_eq!(minted.status, 201, "{}", minted.body);
    let url = minted.str("url");
    assert!(
        url.starts_with("https://login.example.com/console/invitations/"),
        "{url}"
    );
    let page = get(
        &org.app,
        &format!("/console/invitations/{}", token_of(url)),
        None,
    )
    .await;
    assert_eq!(page.status, 200);
    assert!(page.text.contains("ada of account"), "{}", page.text);
    assert_secure_headers(&page);

    let options = console(
        &org.app,
        Method::POST,
        &format!("/console/invitations/{}/options", token_of(url)),
        None,
        Some(Body::Json(json!({}))),
    )
    .await;
    let selection = &options.json()["authenticatorSelection"];
    assert_eq!(selection["residentKey"], "required");
    assert_eq!(selection["userVerification"], "required");

    let mut key = SoftKey::passkey();
    let session = accept(&org.app, url, &mut key).await;
    let home = get(&org.app, "/console/", Some(&session)).await;
    assert_eq!(home.status, 200, "{}", home.text);
    assert!(
        home.text.contains("<strong>ada</strong>, owner"),
        "{}",
        home.text
    );
    assert_secure_headers(&home);

    // Single use: the page and a second registration both refuse the used link.
    let again = get(
        &org.app,
        &format!("/console/invitations/{}", token_of(url)),
        None,
    )
    .await;
    assert_eq!(again.status, 404);
    let audit = org.audit("?limit=100").await;
    assert_eq!(audit.status, 200, "{}", audit.body);
    assert!(
        audit.body.to_string().contains("user:ada"),
        "{}",
        audit.body
    );
}

async fn a_registered_passkey_signs_in_without_a_username(backend: Backend) {
    let (org, mut key, _) = signed_in(backend, "ada", "admin").await;
    let answer = sign_in(&org.app, &mut key).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let session = answer.session_cookie();
    let home = get(&org.app, "/console/", Some(&session)).await;
    assert!(
        home.text.contains("<strong>ada</strong>, admin"),
        "{}",
        home.text
    );

    // A key nobody registered signs no one in.
    let mut stranger = SoftKey::passkey();
    let options = console(
        &org.app,
        Method::POST,
        "/console/sign-in/options",
        None,
        Some(Body::Json(json!({}))),
    )
    .await;
    let assertion = stranger.assert(&options.json(), &Ceremony::at(ORIGIN));
    let refused = console(
        &org.app,
        Method::POST,
        "/console/sign-in",
        None,
        Some(Body::Json(assertion)),
    )
    .await;
    assert_eq!(refused.status, 400, "{}", refused.text);
    assert!(refused.headers.get("set-cookie").is_none());
}

async fn invitations_expire_after_a_day_and_only_owner_or_root_keys_mint_them(backend: Backend) {
    let org = org(backend).await;
    org.user("ada", "member", Some("+4915112360101")).await;
    for role in ["admin", "service", "partner"] {
        let refused = post(
            &org.app,
            org.key(role),
            "/v1/users/ada/console-invitations",
            json!({}),
        )
        .await;
        refused.assert_problem(403, "forbidden");
    }
    let unknown = post(
        &org.app,
        &org.owner,
        "/v1/users/nobody/console-invitations",
        json!({}),
    )
    .await;
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    let url = invite(&org, "ada").await;
    org.app.clock.advance(Duration::from_secs(24 * 3600));
    let page = get(
        &org.app,
        &format!("/console/invitations/{}", token_of(&url)),
        None,
    )
    .await;
    assert_eq!(page.status, 404, "an invitation lasts 24 hours");

    let root = org
        .app
        .request(
            Method::POST,
            "/v1/console-invitations",
            Some(crate::helpers::ROOT_KEY),
            Some(json!({"root": true})),
        )
        .await;
    assert_eq!(root.status, 201, "{}", root.body);
    let page = get(
        &org.app,
        &format!("/console/invitations/{}", token_of(root.str("url"))),
        None,
    )
    .await;
    assert!(page.text.contains("the operator"), "{}", page.text);
    let by_owner = post(
        &org.app,
        &org.owner,
        "/v1/console-invitations",
        json!({"root": true}),
    )
    .await;
    assert_eq!(by_owner.status, 403, "{}", by_owner.body);
    let bad = org
        .app
        .request(
            Method::POST,
            "/v1/console-invitations",
            Some(crate::helpers::ROOT_KEY),
            Some(json!({"root": true, "user": "ada"})),
        )
        .await;
    bad.assert_problem(400, "invalid-request");
    let for_user = org
        .app
        .request(
            Method::POST,
            "/v1/console-invitations",
            Some(crate::helpers::ROOT_KEY),
            Some(json!({"account": org.app.account_id, "user": "ada"})),
        )
        .await;
    assert_eq!(for_user.status, 201, "{}", for_user.body);
}

async fn a_session_ends_after_thirty_idle_minutes_and_twelve_hours_in_all(backend: Backend) {
    let (org, mut key, session) = signed_in(backend, "ada", "owner").await;
    org.app.clock.advance(Duration::from_secs(29 * 60));
    assert_eq!(get(&org.app, "/console/", Some(&session)).await.status, 200);
    org.app.clock.advance(Duration::from_secs(30 * 60));
    let idle = get(&org.app, "/console/", Some(&session)).await;
    assert_eq!(idle.status, 303, "idle for 30 minutes");
    assert_eq!(idle.headers["location"], "/console/sign-in");

    let fresh = sign_in(&org.app, &mut key).await.session_cookie();
    for _ in 0..35 {
        org.app.clock.advance(Duration::from_secs(20 * 60));
        assert_eq!(get(&org.app, "/console/", Some(&fresh)).await.status, 200);
    }
    org.app.clock.advance(Duration::from_secs(20 * 60));
    assert_eq!(
        get(&org.app, "/console/", Some(&fresh)).await.status,
        303,
        "12 hours after sign-in"
    );
}

async fn a_form_without_the_csrf_token_is_refused_and_changes_nothing(backend: Backend) {
    let (org, _, session) = signed_in(backend, "ada", "owner").await;
    let home = get(&org.app, "/console/", Some(&session)).await;
    for fields in [&[][..], &[("csrf", "forged")][..]] {
        let refused = console(
            &org.app,
            Method::POST,
            "/console/sign-out",
            Some(&session),
            Some(Body::Form(fields)),
        )
        .await;
        assert_eq!(refused.status, 403, "{}", refused.text);
        assert!(refused.text.contains("security token"), "{}", refused.text);
        assert_secure_headers(&refused);
    }
    assert_eq!(
        get(&org.app, "/console/", Some(&session)).await.status,
        200,
        "still signed in"
    );
    let csrf = home.csrf();
    let out = console(
        &org.app,
        Method::POST,
        "/console/sign-out",
        Some(&session),
        Some(Body::Form(&[("csrf", &csrf)])),
    )
    .await;
    assert_eq!(out.status, 303);
    assert!(out.headers["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    assert_eq!(
        get(&org.app, "/console/", Some(&session)).await.status,
        303,
        "signed out"
    );
}

async fn signing_out_everywhere_ends_the_sessions_on_every_instance(backend: Backend) {
    let (org, mut key, first) = signed_in(backend.clone(), "ada", "owner").await;
    let second = sign_in(&org.app, &mut key).await.session_cookie();
    let peer = match backend {
        Backend::Memory => None,
        _ => Some(
            spawn_peer_with(&org.app, backend, |settings| {
                settings.factors.relying_party.id = crate::factors::RP_ID.to_owned();
                settings.factors.relying_party.origins = vec![ORIGIN.to_owned()];
            })
            .await,
        ),
    };
    let other = peer.as_ref().unwrap_or(&org.app);
    assert_eq!(
        get(other, "/console/", Some(&second)).await.status,
        200,
        "any instance serves a session"
    );
    let csrf = get(&org.app, "/console/", Some(&first)).await.csrf();
    let out = console(
        &org.app,
        Method::POST,
        "/console/sign-out-everywhere",
        Some(&first),
        Some(Body::Form(&[("csrf", &csrf)])),
    )
    .await;
    assert_eq!(out.status, 303);
    for session in [&first, &second] {
        assert_eq!(get(other, "/console/", Some(session)).await.status, 303);
        assert_eq!(get(&org.app, "/console/", Some(session)).await.status, 303);
    }
}

async fn console_answers_carry_the_security_headers_and_assets_are_embedded(backend: Backend) {
    let org = org(backend).await;
    for path in [
        "/console/",
        "/console/sign-in",
        "/console/nowhere",
        "/console/assets/console.css",
        "/console/assets/sign-in.js",
    ] {
        let page = get(&org.app, path, None).await;
        assert_secure_headers(&page);
        match path {
            "/console/" => assert_eq!(page.status, 303),
            "/console/nowhere" => assert_eq!(page.status, 404),
            _ => assert_eq!(page.status, 200, "{path}"),
        }
    }
    let script = get(&org.app, "/console/assets/sign-in.js", None).await;
    assert!(script.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    assert!(script.text.contains("/sdk/webauthn.js"));
    // JSON ceremonies come from a listed origin only.
    let foreign = org
        .app
        .http
        .post(format!("{}/console/sign-in/options", org.app.address))
        .header("origin", "https://evil.example")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 403);
}

async fn a_session_never_reaches_another_account(backend: Backend) {
    let (org, _, session) = signed_in(backend.clone(), "ada", "owner").await;
    let home = get(&org.app, "/console/", Some(&session)).await;
    assert!(home.text.contains(&org.app.account_id));
    // A second account on the same gateway: its invitation and its user's session are its own.
    let (other_account, owner) = org.app.create_account_with_key("owner").await;
    let other = org
        .app
        .request(
            Method::POST,
            "/v1/users",
            Some(&owner),
            Some(json!({"id": "ada", "role": "owner", "phone": "+4915112360109"})),
        )
        .await;
    assert_eq!(other.status, 201, "{}", other.body);
    let minted = post(
        &org.app,
        &owner,
        "/v1/users/ada/console-invitations",
        json!({}),
    )
    .await;
    let mut key = SoftKey::passkey();
    let theirs = accept(&org.app, minted.str("url"), &mut key).await;
    let their_home = get(&org.app, "/console/", Some(&theirs)).await;
    assert!(their_home.text.contains(&other_account));
    assert!(!their_home.text.contains(&org.app.account_id));
    let mine = get(&org.app, "/console/", Some(&session)).await;
    assert!(!mine.text.contains(&other_account));
}

/// Posts a form of the signed-in page at `page` to `action` with its CSRF token and `fields`.
pub async fn submit(
    app: &TestApp,
    session: &str,
    page: &str,
    action: &str,
    fields: &[(&str, &str)],
) -> Page {
    let csrf = get(app, page, Some(session)).await.csrf();
    let mut all = vec![("csrf", csrf.as_str())];
    all.extend_from_slice(fields);
    console(
        app,
        Method::POST,
        action,
        Some(session),
        Some(Body::Form(&all)),
    )
    .await
}

async fn the_security_form_saves_the_policy_the_api_then_returns(backend: Backend) {
    let (org, _, session) = signed_in(backend, "ada", "owner").await;
    let page = get(&org.app, "/console/security", Some(&session)).await;
    assert_eq!(page.status, 200, "{}", page.text);
    for label in [
        "Require two-factor authentication at login",
        "SMS",
        "WhatsApp",
        "Authenticator app",
        "Security key",
        "Voice call",
        "E-mail",
        "Use SMS as an alternative",
        "Every login",
        "1 day",
        "1 week",
        "30 days",
        "Save",
    ] {
        assert!(page.text.contains(label), "{label} missing");
    }
    let saved = submit(
        &org.app,
        &session,
        "/console/security",
        "/console/security",
        &[
            ("require_2fa", "on"),
            ("channel", "sms"),
            ("channel", "totp"),
            ("trusted_device", "7d"),
        ],
    )
    .await;
    assert_eq!(saved.status, 303, "{}", saved.text);
    let policy = org.call(Method::GET, "/v1/policy", "owner", None).await;
    assert_eq!(policy.body["require_2fa"], true);
    assert_eq!(policy.body["channels"], json!(["sms", "totp"]));
    assert_eq!(policy.body["sms_fallback"], false);
    assert_eq!(policy.body["trusted_device"], "7d");
    let audit = org.audit("?limit=100").await;
    assert!(
        audit.body.to_string().contains("\"acting_user\":\"ada\""),
        "{}",
        audit.body
    );
}

async fn sms_with_a_phoneless_user_names_that_user_and_changes_nothing(backend: Backend) {
    let (org, _, session) = signed_in(backend, "ada", "owner").await;
    org.policy(json!({"channels": ["totp"], "sms_fallback": false}))
        .await;
    org.user("grace", "member", None).await;
    let refused = submit(
        &org.app,
        &session,
        "/console/security",
        "/console/security",
        &[
            ("require_2fa", "on"),
            ("channel", "sms"),
            ("trusted_device", "none"),
        ],
    )
    .await;
    assert_eq!(refused.status, 422, "{}", refused.text);
    assert!(refused.text.contains("<li>grace</li>"), "{}", refused.text);
    let policy = org.call(Method::GET, "/v1/policy", "owner", None).await;
    assert_eq!(policy.body["channels"], json!(["totp"]));
}

async fn an_admin_cannot_turn_the_requirement_off_but_turns_two_factor_on_for_themselves(
    backend: Backend,
) {
    let (org, _, session) = signed_in(backend, "alan", "admin").await;
    let refused = submit(
        &org.app,
        &session,
        "/console/security",
        "/console/security",
        &[
            ("channel", "sms"),
            ("channel", "totp"),
            ("channel", "webauthn"),
            ("sms_fallback", "on"),
            ("trusted_device", "7d"),
        ],
    )
    .await;
    assert_eq!(refused.status, 422, "{}", refused.text);
    assert!(refused.text.contains("role=\"alert\""), "{}", refused.text);
    assert_eq!(
        org.call(Method::GET, "/v1/policy", "owner", None)
            .await
            .body["require_2fa"],
        true
    );

    org.policy(json!({"require_2fa": false})).await;
    let me = get(&org.app, "/console/me", Some(&session)).await;
    assert!(
        me.text.contains("Turn on two-factor authentication"),
        "{}",
        me.text
    );
    let on = submit(
        &org.app,
        &session,
        "/console/me",
        "/console/me/two-factor",
        &[],
    )
    .await;
    assert_eq!(on.status, 303, "{}", on.text);
    let me = get(&org.app, "/console/me?two-factor=on", Some(&session)).await;
    assert!(
        me.text.contains("is <strong>on</strong> for you"),
        "{}",
        me.text
    );
    assert!(!me
        .text
        .contains("Turn on two-factor authentication</button>"));
    let user = org.get_user("alan").await;
    assert_eq!(user.body["two_factor"]["enabled"], true, "{}", user.body);
}

async fn a_member_reaches_my_security_but_not_the_security_page(backend: Backend) {
    let (org, _, session) = signed_in(backend, "mia", "member").await;
    assert_eq!(
        get(&org.app, "/console/security", Some(&session))
            .await
            .status,
        403
    );
    assert_eq!(
        get(&org.app, "/console/me", Some(&session)).await.status,
        200
    );
    let refused = submit(
        &org.app,
        &session,
        "/console/me",
        "/console/security",
        &[("channel", "sms")],
    )
    .await;
    assert_eq!(refused.status, 403);
}

async fn a_user_adds_an_authenticator_app_and_sees_recovery_codes_once(backend: Backend) {
    let (org, _, session) = signed_in(backend, "ada", "member").await;
    let enrol = submit(&org.app, &session, "/console/me", "/console/me/totp", &[]).await;
    assert_eq!(enrol.status, 200, "{}", enrol.text);
    assert!(enrol.text.contains("<svg"), "the QR code is inline");
    let secret = enrol
        .text
        .split("id=\"totp-secret\">")
        .nth(1)
        .unwrap()
        .split('<')
        .next()
        .unwrap()
        .to_owned();
    let factor = enrol
        .text
        .split("name=\"factor\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let totp = otpgate::factors::totp::Totp::new(
        &data_encoding::BASE32_NOPAD
            .decode(secret.as_bytes())
            .unwrap(),
        otpgate::factors::totp::TotpParams {
            algorithm: otpgate::factors::totp::Algorithm::Sha1,
            digits: 6,
            period: 30,
        },
    );
    use otpgate::clock::Clock;
    let wrong = submit(
        &org.app,
        &session,
        "/console/me",
        "/console/me/totp/confirm",
        &[("factor", &factor), ("code", "000000")],
    )
    .await;
    assert_eq!(wrong.status, 422);
    let code = totp.code_at(org.app.clock.now_ms());
    let done = submit(
        &org.app,
        &session,
        "/console/me",
        "/console/me/totp/confirm",
        &[("factor", &factor), ("code", &code)],
    )
    .await;
    assert_eq!(done.status, 200, "{}", done.text);
    assert_eq!(done.text.matches("<li><code>").count(), 10, "{}", done.text);
    let me = get(&org.app, "/console/me", Some(&session)).await;
    assert!(me.text.contains("Authenticator app") && me.text.contains(&factor));
    assert!(!me.text.contains("<li><code>"), "codes are shown once");
    let again = submit(
        &org.app,
        &session,
        "/console/me",
        "/console/me/recovery-codes",
        &[],
    )
    .await;
    assert_eq!(again.status, 200);
    assert!(again.text.contains("old ones no longer work"));
}

async fn a_user_adds_a_security_key_and_revokes_a_trusted_device(backend: Backend) {
    let (org, _, session) = signed_in(backend, "ada", "member").await;
    let csrf = get(&org.app, "/console/me", Some(&session)).await.csrf();
    let client = reqwest::Client::new();
    let options = client
        .post(format!("{}/console/me/keys/options", org.app.address))
        .header("cookie", format!("{COOKIE}={session}"))
        .header("origin", ORIGIN)
        .json(&json!({"kind": "webauthn"}))
        .send()
        .await
        .unwrap();
    assert_eq!(options.status(), 403, "the JSON needs the CSRF header");
    let options: Value = client
        .post(format!("{}/console/me/keys/options", org.app.address))
        .header("cookie", format!("{COOKIE}={session}"))
        .header("origin", ORIGIN)
        .header("x-csrf-token", &csrf)
        .json(&json!({"kind": "webauthn"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut key = SoftKey::new();
    let credential = key.register(&options["options"], &Ceremony::at(ORIGIN));
    let factor = options["factor"].as_str().unwrap();
    let done: Value = client
        .post(format!("{}/console/me/keys/{factor}", org.app.address))
        .header("cookie", format!("{COOKIE}={session}"))
        .header("origin", ORIGIN)
        .header("x-csrf-token", &csrf)
        .json(&credential)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        done["recovery_codes"].as_array().map(Vec::len),
        Some(10),
        "{done}"
    );
    let me = get(&org.app, "/console/me", Some(&session)).await;
    assert!(me.text.contains("Security key"), "{}", me.text);

    let (_, device) = org.trusted_device("ada", "+4915112360101").await;
    let me = get(&org.app, "/console/me", Some(&session)).await;
    assert!(me.text.contains(&device), "{}", me.text);
    let revoked = submit(
        &org.app,
        &session,
        "/console/me",
        "/console/me/devices/revoke",
        &[("device", &device)],
    )
    .await;
    assert_eq!(revoked.status, 303, "{}", revoked.text);
    let me = get(&org.app, "/console/me", Some(&session)).await;
    assert!(!me.text.contains(&device));
    assert!(me.text.contains("No device is trusted now."));
}

async fn console_posts_count_against_the_address_limit_and_pages_do_not(backend: Backend) {
    let app = crate::helpers::spawn_app_with(backend, |settings| {
        settings.limits.per_ip_per_second = 5;
    })
    .await;
    let mut limited = None;
    for _ in 0..20 {
        let page = console(
            &app,
            Method::POST,
            "/console/sign-in/options",
            None,
            Some(Body::Json(json!({}))),
        )
        .await;
        if page.status == 429 {
            limited = Some(page);
            break;
        }
    }
    let limited = limited.expect("a flood of posts is limited");
    assert!(limited.headers.contains_key("retry-after"));
    assert_secure_headers(&limited);
    for _ in 0..10 {
        assert_eq!(
            get(&app, "/console/sign-in", None).await.status,
            200,
            "pages are not limited"
        );
    }
}

async fn a_disabled_console_answers_nothing_and_mints_no_invitation(backend: Backend) {
    let org = Org::with(backend, |settings| settings.console.enabled = false).await;
    org.user("ada", "owner", Some("+4915112360101")).await;
    for path in [
        "/console/",
        "/console/sign-in",
        "/console/assets/console.css",
    ] {
        assert_eq!(get(&org.app, path, None).await.status, 404, "{path}");
    }
    let refused = post(
        &org.app,
        &org.owner,
        "/v1/users/ada/console-invitations",
        json!({}),
    )
    .await;
    refused.assert_problem(404, "not-found");
}

on_every_store!(
    an_invited_owner_registers_a_passkey_and_lands_on_home_signed_in,
    a_registered_passkey_signs_in_without_a_username,
    invitations_expire_after_a_day_and_only_owner_or_root_keys_mint_them,
    a_session_ends_after_thirty_idle_minutes_and_twelve_hours_in_all,
    a_form_without_the_csrf_token_is_refused_and_changes_nothing,
    signing_out_everywhere_ends_the_sessions_on_every_instance,
    console_answers_carry_the_security_headers_and_assets_are_embedded,
    a_session_never_reaches_another_account,
    the_security_form_saves_the_policy_the_api_then_returns,
    sms_with_a_phoneless_user_names_that_user_and_changes_nothing,
    an_admin_cannot_turn_the_requirement_off_but_turns_two_factor_on_for_themselves,
    a_member_reaches_my_security_but_not_the_security_page,
    a_user_adds_an_authenticator_app_and_sees_recovery_codes_once,
    a_user_adds_a_security_key_and_revokes_a_trusted_device,
    console_posts_count_against_the_address_limit_and_pages_do_not,
    a_disabled_console_answers_nothing_and_mints_no_invitation,
);
