//! The console's Phone numbers, Audit and Operator pages (issue 18) without a browser, on every
//! store: who may open each page, the PIN forms as the API's PIN rules, the audit trail filtered
//! by action, and the operator's accounts and keys (a minted key shown once and working on the
//! API, a revoked key refused, the last owner key kept with the rule's sentence).

use reqwest::Method;
use serde_json::json;

use crate::accounts_support::Org;
use crate::console::{accept, console, get, invite, signed_in, Body, Page};
use crate::factors::org;
use crate::factors_authenticator::SoftKey;
use crate::helpers::Backend;
use crate::helpers::{TestApp, ROOT_KEY};
use crate::on_every_store;

/// A form post from the session's page: the CSRF token first, then `fields`.
async fn form(
    app: &TestApp,
    path: &str,
    session: &str,
    csrf: &str,
    fields: &[(&str, &str)],
) -> Page {
    let mut all = vec![("csrf", csrf)];
    all.extend_from_slice(fields);
    console(
        app,
        Method::POST,
        path,
        Some(session),
        Some(Body::Form(&all)),
    )
    .await
}

fn location(page: &Page) -> String {
    page.headers
        .get("location")
        .map(|value| value.to_str().unwrap().to_owned())
        .unwrap_or_else(|| panic!("no redirect ({}): {}", page.status, page.text))
}

/// The operator signed in through a root invitation: the session token.
async fn operator(app: &TestApp) -> String {
    let root = app
        .request(
            Method::POST,
            "/v1/console-invitations",
            Some(ROOT_KEY),
            Some(json!({"root": true})),
        )
        .await;
    assert_eq!(root.status, 201, "{}", root.body);
    accept(app, root.str("url"), &mut SoftKey::passkey()).await
}

/// A number of the org's account, added with the owner key: its id.
async fn number(org: &Org, e164: &str, pin: &str) -> String {
    let added = org
        .call(
            Method::POST,
            "/v1/phone-numbers",
            "owner",
            Some(json!({"phone_number": e164, "pin": pin})),
        )
        .await;
    assert_eq!(added.status, 201, "{}", added.body);
    added.str("id").to_owned()
}

/// What a text between `marker` and the next quote is (a value attribute).
fn value_after(text: &str, marker: &str) -> String {
    let start = text
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} not in {text}"))
        + marker.len();
    text[start..].split('"').next().unwrap().to_owned()
}

async fn only_owners_and_admins_open_phone_numbers_and_audit_and_only_the_operator_opens_operator(
    backend: Backend,
) {
    let (org, _, owner) = signed_in(backend, "ada", "owner").await;
    org.user("ben", "admin", Some("+4915112360102")).await;
    org.user("cy", "member", Some("+4915112360103")).await;
    let admin = accept(
        &org.app,
        &invite(&org, "ben").await,
        &mut SoftKey::passkey(),
    )
    .await;
    let member = accept(&org.app, &invite(&org, "cy").await, &mut SoftKey::passkey()).await;
    let root = operator(&org.app).await;

    for session in [&owner, &admin] {
        for path in ["/console/phone-numbers", "/console/audit"] {
            let page = get(&org.app, path, Some(session)).await;
            assert_eq!(page.status, 200, "{path}: {}", page.text);
        }
        let refused = get(&org.app, "/console/operator", Some(session)).await;
        assert_eq!(refused.status, 403, "{}", refused.text);
        assert!(refused
            .text
            .contains("Only the operator may open this page."));
    }
    for path in [
        "/console/phone-numbers",
        "/console/audit",
        "/console/operator",
    ] {
        let page = get(&org.app, path, Some(&member)).await;
        assert_eq!(page.status, 403, "a member on {path}: {}", page.text);
    }
    // The operator acts in no account: the account pages are not theirs.
    for path in ["/console/phone-numbers", "/console/audit"] {
        let page = get(&org.app, path, Some(&root)).await;
        assert_eq!(page.status, 403, "the operator on {path}: {}", page.text);
    }
    let page = get(&org.app, "/console/operator", Some(&root)).await;
    assert_eq!(page.status, 200, "{}", page.text);
    for label in [
        "Create account",
        "Providers",
        "Queue depth",
        "Dead letters (messages)",
    ] {
        assert!(page.text.contains(label), "{label}: {}", page.text);
    }
    // Not signed in: to the sign-in page.
    let anonymous = get(&org.app, "/console/operator", None).await;
    assert_eq!(anonymous.status, 303);
    assert_eq!(location(&anonymous), "/console/sign-in");
    // A form of the operator page from an account's owner changes nothing.
    let csrf = get(&org.app, "/console/", Some(&owner)).await.csrf();
    let posted = form(
        &org.app,
        "/console/operator/accounts",
        &owner,
        &csrf,
        &[("name", "Sneaky")],
    )
    .await;
    assert_eq!(posted.status, 403, "{}", posted.text);
    org.app.stop().await;
}

async fn a_pin_set_on_the_phone_numbers_page_is_the_pin_the_api_checks(backend: Backend) {
    let (org, _, owner) = signed_in(backend, "ada", "owner").await;
    let id = number(&org, "+4915112389001", "246813").await;
    let page = get(&org.app, "/console/phone-numbers", Some(&owner)).await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(page.text.contains(&id), "{}", page.text);
    assert!(
        !page.text.contains("+4915112389001"),
        "masked: {}",
        page.text
    );
    assert!(page.text.contains("Change PIN"), "{}", page.text);
    assert!(page.text.contains("Request disable link"), "{}", page.text);
    assert!(page.text.contains("Not locked"), "{}", page.text);
    let csrf = page.csrf();

    // Without the token, a short PIN, a common PIN: refused, nothing changed.
    let forged = console(
        &org.app,
        Method::POST,
        "/console/phone-numbers/pin",
        Some(&owner),
        Some(Body::Form(&[("number", id.as_str()), ("pin", "582914")])),
    )
    .await;
    assert_eq!(forged.status, 403, "{}", forged.text);
    let short = form(
        &org.app,
        "/console/phone-numbers/pin",
        &owner,
        &csrf,
        &[("number", &id), ("pin", "58291")],
    )
    .await;
    assert_eq!(short.status, 400, "{}", short.text);
    assert!(short.text.contains("exactly 6 digits"), "{}", short.text);
    let common = form(
        &org.app,
        "/console/phone-numbers/pin",
        &owner,
        &csrf,
        &[("number", &id), ("pin", "123456")],
    )
    .await;
    assert_eq!(common.status, 422, "{}", common.text);
    assert!(
        common.text.contains("Choose another PIN"),
        "{}",
        common.text
    );
    let register = |pin: &'static str| {
        let org = &org;
        let id = id.clone();
        async move {
            org.call(
                Method::POST,
                &format!("/v1/phone-numbers/{id}/register"),
                "owner",
                Some(json!({"messaging_product": "whatsapp", "pin": pin})),
            )
            .await
        }
    };
    let still = register("246813").await;
    assert_eq!(still.status, 200, "the old PIN still holds: {}", still.body);

    let set = form(
        &org.app,
        "/console/phone-numbers/pin",
        &owner,
        &csrf,
        &[("number", &id), ("pin", "582914")],
    )
    .await;
    assert_eq!(set.status, 303, "{}", set.text);
    assert_eq!(location(&set), "/console/phone-numbers?pin=set");
    let after = get(&org.app, "/console/phone-numbers?pin=set", Some(&owner)).await;
    assert!(after.text.contains("PIN saved."), "{}", after.text);

    let listed = org
        .call(Method::GET, "/v1/phone-numbers", "owner", None)
        .await;
    assert_eq!(
        listed.body["items"][0]["id"],
        id.as_str(),
        "{}",
        listed.body
    );
    assert_eq!(listed.body["items"][0]["pin_set"], true, "{}", listed.body);
    let new = register("582914").await;
    assert_eq!(new.status, 200, "the console's PIN registers: {}", new.body);
    let old = register("246813").await;
    assert_ne!(old.status, 200, "the old PIN no longer does: {}", old.body);
    let audit = org.audit("?limit=100").await;
    let trail = audit.body.to_string();
    assert!(trail.contains("two_step.pin_changed"), "{trail}");
    assert!(trail.contains("\"acting_user\":\"ada\""), "{trail}");

    // The account has no e-mail address: the link is refused with the rule's sentence.
    let link = form(
        &org.app,
        "/console/phone-numbers/disable-link",
        &owner,
        &csrf,
        &[("number", &id)],
    )
    .await;
    assert_eq!(link.status, 422, "{}", link.text);
    assert!(link.text.contains("no e-mail address"), "{}", link.text);
    // A number id that is not this account's: not found.
    let unknown = form(
        &org.app,
        "/console/phone-numbers/pin",
        &owner,
        &csrf,
        &[("number", "not-a-number"), ("pin", "582914")],
    )
    .await;
    assert_eq!(unknown.status, 404, "{}", unknown.text);
    org.app.stop().await;
}

async fn a_person_of_one_account_never_sees_another_accounts_numbers_or_audit(backend: Backend) {
    let (org, _, ada) = signed_in(backend, "ada", "owner").await;
    let id = number(&org, "+4915112389002", "246813").await;
    // A second account in the same gateway, with its own owner signed in.
    let created = org
        .app
        .request(
            Method::POST,
            "/v1/accounts",
            Some(ROOT_KEY),
            Some(json!({"name": "Other"})),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let other = created.str("id").to_owned();
    let key = org
        .app
        .request(
            Method::POST,
            &format!("/v1/accounts/{other}/keys"),
            Some(ROOT_KEY),
            Some(json!({"role": "owner"})),
        )
        .await;
    assert_eq!(key.status, 201, "{}", key.body);
    let key = key.str("key").to_owned();
    let user = org
        .app
        .request(
            Method::POST,
            "/v1/users",
            Some(&key),
            Some(json!({"id": "bea", "role": "owner", "phone": "+4915112360199"})),
        )
        .await;
    assert_eq!(user.status, 201, "{}", user.body);
    let invitation = org
        .app
        .request(
            Method::POST,
            "/v1/users/bea/console-invitations",
            Some(&key),
            Some(json!({})),
        )
        .await;
    assert_eq!(invitation.status, 201, "{}", invitation.body);
    let bea = accept(&org.app, invitation.str("url"), &mut SoftKey::passkey()).await;

    let theirs = get(&org.app, "/console/phone-numbers", Some(&bea)).await;
    assert_eq!(theirs.status, 200, "{}", theirs.text);
    assert!(!theirs.text.contains(&id), "{}", theirs.text);
    assert!(
        theirs.text.contains("no phone numbers yet"),
        "{}",
        theirs.text
    );
    let trail = get(&org.app, "/console/audit", Some(&bea)).await;
    assert_eq!(trail.status, 200, "{}", trail.text);
    assert!(!trail.text.contains("user:ada"), "{}", trail.text);
    assert!(trail.text.contains("user:bea"), "{}", trail.text);
    // Posting ada's number from bea's session finds nothing, and ada's PIN holds.
    let csrf = theirs.csrf();
    let posted = form(
        &org.app,
        "/console/phone-numbers/pin",
        &bea,
        &csrf,
        &[("number", &id), ("pin", "582914")],
    )
    .await;
    assert_eq!(posted.status, 404, "{}", posted.text);
    let held = org
        .call(
            Method::POST,
            &format!("/v1/phone-numbers/{id}/register"),
            "owner",
            Some(json!({"messaging_product": "whatsapp", "pin": "246813"})),
        )
        .await;
    assert_eq!(held.status, 200, "{}", held.body);
    // And ada's own pages still show her account only.
    let mine = get(&org.app, "/console/audit", Some(&ada)).await;
    assert!(!mine.text.contains("user:bea"), "{}", mine.text);
    org.app.stop().await;
}

async fn the_audit_page_shows_the_newest_first_and_filters_by_action(backend: Backend) {
    let (org, _, owner) = signed_in(backend, "ada", "owner").await;
    org.user("bob", "member", Some("+4915112360104")).await;
    org.user("cyd", "member", Some("+4915112360105")).await;
    let all = get(&org.app, "/console/audit", Some(&owner)).await;
    assert_eq!(all.status, 200, "{}", all.text);
    assert!(all.text.contains("policy.updated"), "{}", all.text);
    let (bob, cyd) = (
        all.text.find("user:bob").expect("bob's entry"),
        all.text.find("user:cyd").expect("cyd's entry"),
    );
    assert!(cyd < bob, "newest first");

    let filtered = get(&org.app, "/console/audit?action=user.created", Some(&owner)).await;
    assert_eq!(filtered.status, 200, "{}", filtered.text);
    assert!(filtered.text.contains("user:bob") && filtered.text.contains("user:cyd"));
    assert!(
        !filtered.text.contains("<code>policy.updated</code>"),
        "{}",
        filtered.text
    );
    let none = get(&org.app, "/console/audit?action=key.revoked", Some(&owner)).await;
    assert_eq!(none.status, 200, "{}", none.text);
    assert!(
        none.text.contains("No entries with the action"),
        "{}",
        none.text
    );
    for query in ["action=DROP%20TABLE", "cursor=abc", "sort=asc"] {
        let bad = get(&org.app, &format!("/console/audit?{query}"), Some(&owner)).await;
        assert_eq!(bad.status, 400, "{query}: {}", bad.text);
    }
    org.app.stop().await;
}

async fn the_audit_filter_pages_through_older_entries(backend: Backend) {
    let (org, _, owner) = signed_in(backend, "ada", "owner").await;
    // 55 new users: more than one page of user.created between the policy entries.
    for n in 0..55 {
        org.user(
            &format!("u{n:02}"),
            "member",
            Some(&format!("+4915112361{n:03}")),
        )
        .await;
    }
    let first = get(&org.app, "/console/audit?action=user.created", Some(&owner)).await;
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(first.text.matches("<code>user.created</code>").count(), 50);
    let older = value_after(&first.text, "href=\"/console/audit?");
    let second = get(
        &org.app,
        &format!(
            "/console/audit?{}",
            older.replace("&#38;", "&").replace("&amp;", "&")
        ),
        Some(&owner),
    )
    .await;
    assert_eq!(second.status, 200, "{}", second.text);
    // The other five, and ada herself (created by the owner key before she signed in).
    assert_eq!(
        second.text.matches("<code>user.created</code>").count(),
        6,
        "{}",
        second.text
    );
    assert!(second.text.contains("user:u00") && !first.text.contains("user:u00"));
    org.app.stop().await;
}

async fn the_operator_creates_an_account_and_mints_a_key_shown_once_that_works_until_revoked(
    backend: Backend,
) {
    let org = org(backend).await;
    let root = operator(&org.app).await;
    let page = get(&org.app, "/console/operator", Some(&root)).await;
    let csrf = page.csrf();

    let bad = form(
        &org.app,
        "/console/operator/accounts",
        &root,
        &csrf,
        &[("name", "  ")],
    )
    .await;
    assert_eq!(bad.status, 400, "{}", bad.text);
    let created = form(
        &org.app,
        "/console/operator/accounts",
        &root,
        &csrf,
        &[("name", "Acme Bank")],
    )
    .await;
    assert_eq!(created.status, 303, "{}", created.text);
    let opened = location(&created);
    let account = value_after(&opened, "account=")
        .split('&')
        .next()
        .unwrap()
        .to_owned();
    assert!(account.starts_with("AC"), "{opened}");
    let shown = get(&org.app, &opened, Some(&root)).await;
    assert_eq!(shown.status, 200, "{}", shown.text);
    assert!(shown.text.contains("Account created."), "{}", shown.text);
    assert!(shown.text.contains("Acme Bank"), "{}", shown.text);
    assert!(
        shown.text.contains("This account has no keys."),
        "{}",
        shown.text
    );
    // The list of accounts has the new one and the gateway's first, each opening its page.
    let listed = get(&org.app, "/console/operator", Some(&root)).await;
    for id in [account.as_str(), org.app.account_id.as_str()] {
        let link = format!("href=\"/console/operator?account={id}\"");
        assert!(listed.text.contains(&link), "{id}: {}", listed.text);
    }
    let bad_page = get(
        &org.app,
        "/console/operator?accounts_after=nope",
        Some(&root),
    )
    .await;
    assert_eq!(bad_page.status, 404, "{}", bad_page.text);

    // Mint an owner key: shown on this answer, and it works on the API.
    let minted = form(
        &org.app,
        "/console/operator/keys",
        &root,
        &csrf,
        &[("account", &account), ("role", "owner")],
    )
    .await;
    assert_eq!(minted.status, 200, "{}", minted.text);
    let owner_key = value_after(
        &minted.text,
        "id=\"minted-secret\" class=\"secret\" value=\"",
    );
    let owner_id = value_after(&minted.text, "New owner key <code>");
    let owner_id = owner_id.split('<').next().unwrap().to_owned();
    let policy = org
        .app
        .request(Method::GET, "/v1/policy", Some(&owner_key), None)
        .await;
    assert_eq!(policy.status, 200, "the minted key works: {}", policy.body);
    let again = get(
        &org.app,
        &format!("/console/operator?account={account}"),
        Some(&root),
    )
    .await;
    assert!(again.text.contains(&owner_id), "{}", again.text);
    assert!(
        !again.text.contains(&owner_key),
        "shown once: {}",
        again.text
    );

    let service = form(
        &org.app,
        "/console/operator/keys",
        &root,
        &csrf,
        &[("account", &account), ("role", "service")],
    )
    .await;
    assert_eq!(service.status, 200, "{}", service.text);
    let service_key = value_after(
        &service.text,
        "id=\"minted-secret\" class=\"secret\" value=\"",
    );
    let service_id = value_after(&service.text, "New service key <code>");
    let service_id = service_id.split('<').next().unwrap().to_owned();
    let bad_role = form(
        &org.app,
        "/console/operator/keys",
        &root,
        &csrf,
        &[("account", &account), ("role", "root")],
    )
    .await;
    assert_eq!(bad_role.status, 400, "{}", bad_role.text);

    // The last owner key stays, with the rule's sentence; the service key goes.
    let kept = form(
        &org.app,
        "/console/operator/keys/revoke",
        &root,
        &csrf,
        &[("account", &account), ("key", &owner_id)],
    )
    .await;
    assert_eq!(kept.status, 422, "{}", kept.text);
    assert!(
        kept.text.contains("last owner key cannot be revoked"),
        "{}",
        kept.text
    );
    let revoked = form(
        &org.app,
        "/console/operator/keys/revoke",
        &root,
        &csrf,
        &[("account", &account), ("key", &service_id)],
    )
    .await;
    assert_eq!(revoked.status, 303, "{}", revoked.text);
    let refused = org
        .app
        .request(Method::GET, "/v1/policy", Some(&service_key), None)
        .await;
    assert_eq!(
        refused.status, 401,
        "a revoked key is refused: {}",
        refused.body
    );
    let still = org
        .app
        .request(Method::GET, "/v1/policy", Some(&owner_key), None)
        .await;
    assert_eq!(still.status, 200, "{}", still.body);
    let trail = org
        .app
        .request(Method::GET, "/v1/audit", Some(&owner_key), None)
        .await;
    let trail = trail.body.to_string();
    assert!(
        trail.contains("key.minted") && trail.contains("key.revoked"),
        "{trail}"
    );

    // A key of another account, or no such account: not found, nothing revoked.
    let elsewhere = form(
        &org.app,
        "/console/operator/keys/revoke",
        &root,
        &csrf,
        &[
            ("account", &account),
            ("key", "KY00000000000000000000000000000000"),
        ],
    )
    .await;
    assert_eq!(elsewhere.status, 404, "{}", elsewhere.text);
    let nowhere = get(
        &org.app,
        "/console/operator?account=AC00000000000000000000000000000000",
        Some(&root),
    )
    .await;
    assert_eq!(nowhere.status, 404, "{}", nowhere.text);
    let forged = console(
        &org.app,
        Method::POST,
        "/console/operator/keys",
        Some(&root),
        Some(Body::Form(&[
            ("account", account.as_str()),
            ("role", "owner"),
        ])),
    )
    .await;
    assert_eq!(forged.status, 403, "{}", forged.text);
    org.app.stop().await;
}

on_every_store!(
    only_owners_and_admins_open_phone_numbers_and_audit_and_only_the_operator_opens_operator,
    a_pin_set_on_the_phone_numbers_page_is_the_pin_the_api_checks,
    a_person_of_one_account_never_sees_another_accounts_numbers_or_audit,
    the_audit_page_shows_the_newest_first_and_filters_by_action,
    the_audit_filter_pages_through_older_entries,
    the_operator_creates_an_account_and_mints_a_key_shown_once_that_works_until_revoked,
);
