//! The console's Users page without a browser (issue 18), on every store: the list a page at a
//! time with phones masked and the last console sign-in, "Add user" under the phone rule,
//! role changes and per-user two-factor authentication as the API's service calls (refusals
//! show the rule's sentence), "Send invitation" showing its link once, what an admin may not
//! do, and that another account's users are never listed or reached.

use reqwest::Method;
use serde_json::json;

use crate::console::{accept, console, get, invite, signed_in, submit, Body, Page};
use crate::factors::post;
use crate::factors_authenticator::SoftKey;
use crate::helpers::Backend;
use crate::on_every_store;

/// The ids the list page links to, in the order shown.
fn listed(page: &Page) -> Vec<String> {
    page.text
        .split("<a href=\"/console/users/")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().to_owned())
        .collect()
}

/// The href of the page's "Next page" link, if any (`&amp;` would be escaped; cursors have none).
fn next_page(page: &Page) -> Option<String> {
    let marker = "rel=\"next\"";
    let end = page.text.find(marker)?;
    let start = page.text[..end].rfind("href=\"")? + "href=\"".len();
    Some(page.text[start..].split('"').next().unwrap().to_owned())
}

/// The invitation link an answer shows.
fn invitation_link(page: &Page) -> String {
    let marker = "id=\"invitation-link\" class=\"secret\" value=\"";
    let start = page.text.find(marker).expect("the link is shown") + marker.len();
    page.text[start..].split('"').next().unwrap().to_owned()
}

/// The table row of `user` on a list page.
fn row<'a>(page: &'a Page, user: &str) -> &'a str {
    let start = page
        .text
        .find(&format!("<a href=\"/console/users/{user}\">"))
        .unwrap_or_else(|| panic!("{user} is not listed: {}", page.text));
    let end = page.text[start..].find("</tr>").unwrap() + start;
    &page.text[start..end]
}

async fn the_users_page_lists_the_account_a_page_at_a_time_with_phones_masked(backend: Backend) {
    let (org, _, session) = signed_in(backend, "ada", "owner").await;
    for (id, phone) in [
        ("bea", "+4915112360102"),
        ("cyd", "+4915112360103"),
        ("dan", "+4915112360104"),
        ("eve", "+4915112360105"),
    ] {
        org.user(id, "member", Some(phone)).await;
    }
    let mut seen = Vec::new();
    let mut path = "/console/users?limit=2".to_owned();
    let mut pages = 0;
    loop {
        let page = get(&org.app, &path, Some(&session)).await;
        assert_eq!(page.status, 200, "{}", page.text);
        let ids = listed(&page);
        assert!(ids.len() <= 2, "{ids:?}");
        seen.extend(ids);
        pages += 1;
        match next_page(&page) {
            Some(next) => path = format!("{next}&limit=2"),
            None => break,
        }
    }
    assert_eq!(
        seen,
        ["ada", "bea", "cyd", "dan", "eve"],
        "in id order, once each"
    );
    assert_eq!(pages, 3);

    let page = get(&org.app, "/console/users", Some(&session)).await;
    for label in [
        "Role",
        "Phone",
        "Two-factor authentication",
        "Factors",
        "Last sign-in",
        "Add user",
    ] {
        assert!(page.text.contains(label), "{label} missing");
    }
    let bea = row(&page, "bea");
    assert!(bea.contains("+491*******102"), "masked: {bea}");
    assert!(
        !page.text.contains("+4915112360102"),
        "never the whole number"
    );
    assert!(bea.contains("member") && bea.contains("Never"), "{bea}");
    // ada signed in to the console when she accepted her invitation.
    let ada = row(&page, "ada");
    assert!(!ada.contains("Never"), "{ada}");
    assert!(ada.contains("Z</td>"), "a time: {ada}");

    // The API lists the same sign-in time.
    let api = org
        .call(Method::GET, "/v1/users?limit=2", "owner", None)
        .await;
    assert_eq!(api.body["items"][0]["id"], "ada");
    assert!(
        api.body["items"][0]["last_sign_in_at"].is_string(),
        "{}",
        api.body
    );
    assert!(
        api.body["items"][1]["last_sign_in_at"].is_null(),
        "{}",
        api.body
    );

    for broken in ["?cursor=zz", "?limit=0", "?limit=201", "?after=bea"] {
        let refused = get(&org.app, &format!("/console/users{broken}"), Some(&session)).await;
        assert_eq!(refused.status, 400, "{broken}: {}", refused.text);
    }
}

async fn adding_a_user_needs_a_phone_while_sms_is_on_and_a_refusal_shows_the_rule(
    backend: Backend,
) {
    let (org, _, session) = signed_in(backend, "ada", "owner").await;
    let refused = submit(
        &org.app,
        &session,
        "/console/users",
        "/console/users",
        &[("id", "grace"), ("role", "member"), ("phone", "")],
    )
    .await;
    assert_eq!(refused.status, 422, "{}", refused.text);
    assert!(refused.text.contains("role=\"alert\""), "{}", refused.text);
    assert!(
        refused.text.contains("a new user needs a phone number"),
        "the rule's sentence: {}",
        refused.text
    );
    assert!(
        refused.text.contains("value=\"grace\""),
        "what was entered stays"
    );
    assert_eq!(org.get_user("grace").await.status, 404, "nothing added");

    let bad = submit(
        &org.app,
        &session,
        "/console/users",
        "/console/users",
        &[("id", "grace"), ("role", "member"), ("phone", "12")],
    )
    .await;
    assert_eq!(bad.status, 400, "{}", bad.text);
    assert_eq!(org.get_user("grace").await.status, 404);

    let added = submit(
        &org.app,
        &session,
        "/console/users",
        "/console/users",
        &[
            ("id", "grace"),
            ("role", "admin"),
            ("phone", "+4915112360107"),
        ],
    )
    .await;
    assert_eq!(added.status, 303, "{}", added.text);
    assert_eq!(
        added.headers["location"].to_str().unwrap(),
        "/console/users/grace?added=1"
    );
    let user = org.get_user("grace").await;
    assert_eq!(user.status, 200, "{}", user.body);
    assert_eq!(user.body["role"], "admin");
    let shown = get(&org.app, "/console/users/grace?added=1", Some(&session)).await;
    assert!(shown.text.contains("User added."), "{}", shown.text);
    let audit = org.audit("?limit=100").await;
    assert!(
        audit.body.to_string().contains("\"acting_user\":\"ada\""),
        "the console acts as ada: {}",
        audit.body
    );

    // Without SMS (an app only), a phoneless user is added.
    org.policy(json!({"channels": ["totp"], "sms_fallback": false}))
        .await;
    let phoneless = submit(
        &org.app,
        &session,
        "/console/users",
        "/console/users",
        &[("id", "hal"), ("role", "member")],
    )
    .await;
    assert_eq!(phoneless.status, 303, "{}", phoneless.text);
    assert_eq!(org.get_user("hal").await.body["phone"], json!(null));
}

async fn a_role_change_follows_the_rules_and_a_refusal_shows_the_sentence(backend: Backend) {
    let (org, _, session) = signed_in(backend, "alan", "admin").await;
    org.user("grace", "member", Some("+4915112360107")).await;
    let refused = submit(
        &org.app,
        &session,
        "/console/users/grace",
        "/console/users/grace/role",
        &[("role", "owner")],
    )
    .await;
    assert_eq!(refused.status, 422, "{}", refused.text);
    assert!(
        refused
            .text
            .contains("only the account owner may give or take the owner role"),
        "{}",
        refused.text
    );
    assert_eq!(org.get_user("grace").await.body["role"], "member");

    let promoted = submit(
        &org.app,
        &session,
        "/console/users/grace",
        "/console/users/grace/role",
        &[("role", "admin")],
    )
    .await;
    assert_eq!(promoted.status, 303, "{}", promoted.text);
    assert_eq!(org.get_user("grace").await.body["role"], "admin");
    let shown = get(&org.app, "/console/users/grace?saved=role", Some(&session)).await;
    assert!(shown.text.contains("Role changed."), "{}", shown.text);

    let unknown = submit(
        &org.app,
        &session,
        "/console/users/grace",
        "/console/users/grace/role",
        &[("role", "root")],
    )
    .await;
    assert_eq!(unknown.status, 400, "{}", unknown.text);
    assert_eq!(org.get_user("grace").await.body["role"], "admin");
}

async fn the_owner_sets_a_users_two_factor_on_off_or_to_the_account_default(backend: Backend) {
    let (org, _, session) = signed_in(backend, "ada", "owner").await;
    org.user("grace", "member", Some("+4915112360107")).await;
    let page = get(&org.app, "/console/users/grace", Some(&session)).await;
    for label in [
        "Two-factor authentication",
        "> On</label>",
        "> Off</label>",
        "> Account default</label>",
        "Change role",
        "Send invitation",
    ] {
        assert!(page.text.contains(label), "{label} missing: {}", page.text);
    }
    for (choice, enabled, over) in [
        ("off", false, json!("off")),
        ("on", true, json!("on")),
        ("account", true, json!(null)),
    ] {
        let saved = submit(
            &org.app,
            &session,
            "/console/users/grace",
            "/console/users/grace/two-factor",
            &[("two_factor", choice)],
        )
        .await;
        assert_eq!(saved.status, 303, "{choice}: {}", saved.text);
        let user = org.get_user("grace").await;
        assert_eq!(user.body["two_factor"]["enabled"], enabled, "{}", user.body);
        assert_eq!(user.body["two_factor"]["override"], over, "{}", user.body);
    }

    // An id with `+` and `@` is percent-encoded in the page's paths, and read back from them.
    org.user("ann+1@x.io", "member", Some("+4915112360108"))
        .await;
    let list = get(&org.app, "/console/users", Some(&session)).await;
    assert!(
        list.text
            .contains("<a href=\"/console/users/ann%2B1%40x.io\">ann+1@x.io</a>"),
        "{}",
        list.text
    );
    let saved = submit(
        &org.app,
        &session,
        "/console/users/ann%2B1%40x.io",
        "/console/users/ann%2B1%40x.io/two-factor",
        &[("two_factor", "off")],
    )
    .await;
    assert_eq!(saved.status, 303, "{}", saved.text);
    assert_eq!(
        saved.headers["location"].to_str().unwrap(),
        "/console/users/ann%2B1%40x.io?saved=two-factor"
    );
    let ann = org.get_user("ann+1@x.io").await;
    assert_eq!(ann.body["two_factor"]["override"], "off", "{}", ann.body);
}

async fn send_invitation_shows_a_link_once_that_signs_the_user_in(backend: Backend) {
    let (org, _, session) = signed_in(backend, "ada", "owner").await;
    org.user("grace", "member", Some("+4915112360107")).await;
    let minted = submit(
        &org.app,
        &session,
        "/console/users/grace",
        "/console/users/grace/invitation",
        &[],
    )
    .await;
    assert_eq!(minted.status, 201, "{}", minted.text);
    let link = invitation_link(&minted);
    assert!(link.contains("/console/invitations/"), "{link}");
    let token = link.rsplit('/').next().unwrap();
    let again = get(&org.app, "/console/users/grace", Some(&session)).await;
    assert!(!again.text.contains(token), "shown once only");
    let second = submit(
        &org.app,
        &session,
        "/console/users/grace",
        "/console/users/grace/invitation",
        &[],
    )
    .await;
    assert_ne!(invitation_link(&second), link, "each invitation is new");

    let list = get(&org.app, "/console/users", Some(&session)).await;
    assert!(row(&list, "grace").contains("Never"));
    let mut key = SoftKey::passkey();
    let theirs = accept(&org.app, &link, &mut key).await;
    let home = get(&org.app, "/console/", Some(&theirs)).await;
    assert!(home.text.contains("grace"), "{}", home.text);
    let list = get(&org.app, "/console/users", Some(&session)).await;
    assert!(!row(&list, "grace").contains("Never"), "signed in now");

    // The link worked once.
    let token_path = format!("/console/invitations/{token}/options");
    let used = console(
        &org.app,
        Method::POST,
        &token_path,
        None,
        Some(Body::Json(json!({}))),
    )
    .await;
    assert_eq!(used.status, 404, "{}", used.text);
    let audit = org.audit("?limit=100").await;
    let for_grace: Vec<_> = audit.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| {
            entry["action"] == "console.invitation_minted" && entry["target"] == "user:grace"
        })
        .collect();
    assert_eq!(for_grace.len(), 2, "{}", audit.body);
    assert_eq!(for_grace[0]["who"]["acting_user"], "ada", "{}", audit.body);
}

async fn an_admin_cannot_do_the_owner_only_actions(backend: Backend) {
    let (org, _, session) = signed_in(backend, "alan", "admin").await;
    org.user("grace", "member", Some("+4915112360107")).await;
    let page = get(&org.app, "/console/users/grace", Some(&session)).await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(!page.text.contains("Send invitation"), "{}", page.text);
    assert!(!page.text.contains("Account default"), "{}", page.text);
    assert!(page.text.contains("Change role"), "roles follow the rules");

    let two_factor = submit(
        &org.app,
        &session,
        "/console/users/grace",
        "/console/users/grace/two-factor",
        &[("two_factor", "off")],
    )
    .await;
    assert_eq!(two_factor.status, 403, "{}", two_factor.text);
    assert!(
        two_factor.text.contains("Only the account&#x27;s owner")
            || two_factor.text.contains("Only the account&#39;s owner")
            || two_factor.text.contains("Only the account's owner"),
        "{}",
        two_factor.text
    );
    let user = org.get_user("grace").await;
    assert_eq!(user.body["two_factor"]["override"], json!(null));

    let invitation = submit(
        &org.app,
        &session,
        "/console/users/grace",
        "/console/users/grace/invitation",
        &[],
    )
    .await;
    assert_eq!(invitation.status, 403, "{}", invitation.text);
    assert!(!invitation.text.contains("/console/invitations/"));
    let audit = org.audit("?limit=100").await;
    let for_grace = audit.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| {
            entry["action"] == "console.invitation_minted" && entry["target"] == "user:grace"
        })
        .count();
    assert_eq!(for_grace, 0, "no invitation minted: {}", audit.body);
}

async fn another_accounts_users_are_never_listed_or_reached(backend: Backend) {
    let (org, _, session) = signed_in(backend, "ada", "owner").await;
    let (_, owner) = org.app.create_account_with_key("owner").await;
    let zed = org
        .app
        .request(
            Method::POST,
            "/v1/users",
            Some(&owner),
            Some(json!({"id": "zed", "role": "member", "phone": "+4915112360109"})),
        )
        .await;
    assert_eq!(zed.status, 201, "{}", zed.body);
    let list = get(&org.app, "/console/users", Some(&session)).await;
    assert_eq!(listed(&list), ["ada"]);
    assert!(!list.text.contains("zed"));
    assert_eq!(
        get(&org.app, "/console/users/zed", Some(&session))
            .await
            .status,
        404
    );
    for action in ["role", "two-factor", "invitation"] {
        let refused = submit(
            &org.app,
            &session,
            "/console/users",
            &format!("/console/users/zed/{action}"),
            &[("role", "admin"), ("two_factor", "off")],
        )
        .await;
        assert_eq!(refused.status, 404, "{action}: {}", refused.text);
    }
    let theirs = org
        .app
        .request(Method::GET, "/v1/users/zed", Some(&owner), None)
        .await;
    assert_eq!(theirs.body["role"], "member");
    assert_eq!(theirs.body["two_factor"]["override"], json!(null));
    let minted = post(
        &org.app,
        &owner,
        "/v1/users/zed/console-invitations",
        json!({}),
    )
    .await;
    assert_eq!(minted.status, 201);

    // A member never opens the page, and a form without the token changes nothing.
    org.user("mia", "member", Some("+4915112360110")).await;
    let url = invite(&org, "mia").await;
    let mut key = SoftKey::passkey();
    let mia = accept(&org.app, &url, &mut key).await;
    assert_eq!(
        get(&org.app, "/console/users", Some(&mia)).await.status,
        403
    );
    let forged = console(
        &org.app,
        Method::POST,
        "/console/users",
        Some(&session),
        Some(Body::Form(&[
            ("id", "eve"),
            ("role", "member"),
            ("phone", "+4915112360111"),
        ])),
    )
    .await;
    assert_eq!(forged.status, 403, "{}", forged.text);
    assert_eq!(org.get_user("eve").await.status, 404);
}

on_every_store!(
    the_users_page_lists_the_account_a_page_at_a_time_with_phones_masked,
    adding_a_user_needs_a_phone_while_sms_is_on_and_a_refusal_shows_the_rule,
    a_role_change_follows_the_rules_and_a_refusal_shows_the_sentence,
    the_owner_sets_a_users_two_factor_on_off_or_to_the_account_default,
    send_invitation_shows_a_link_once_that_signs_the_user_in,
    an_admin_cannot_do_the_owner_only_actions,
    another_accounts_users_are_never_listed_or_reached,
);
