//! The list endpoints (cursor-paged) and key revocation: every item once and in order over
//! several pages, bad paging input refused changing nothing, who may list, a revoked key dead at
//! once on every instance, and the last owner key kept.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use otpgate::account::user::FactorType;

use crate::accounts_support::{assert_refused, metric, Org, DAY};
use crate::helpers::{spawn_peer, Backend, TestApp, ROOT_KEY};
use crate::on_every_store;

on_every_store!(
    keys_page_over_every_key_once_in_order_with_a_small_limit,
    a_bad_cursor_or_limit_is_a_400_and_changes_nothing,
    only_owner_and_root_keys_list_and_revoke_keys,
    a_revoked_key_answers_401_at_once_on_every_instance,
    the_last_owner_key_cannot_be_revoked,
    users_page_over_every_user_once_in_order_with_phones_masked,
    a_users_factors_and_trusted_devices_page_and_follow_revocation_and_expiry,
    only_keys_that_manage_people_list_users_factors_and_devices,
    phone_numbers_page_masked_with_their_pin_and_lock_state,
);

/// Mints a key of `role` in `org`'s account with the root key: its id and its secret.
async fn mint(org: &Org, role: &str) -> (String, String) {
    let reply = org
        .app
        .request(
            Method::POST,
            &format!("/v1/accounts/{}/keys", org.app.account_id),
            Some(ROOT_KEY),
            Some(json!({"role": role})),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    (reply.str("id").to_owned(), reply.str("key").to_owned())
}

/// Follows `next_cursor` from the first page of `path` (a query with `limit`) to the last:
/// every page's items, in order, and how many pages there were.
pub async fn every_page(app: &TestApp, key: &str, path: &str) -> (Vec<Value>, usize) {
    let mut items = Vec::new();
    let mut pages = 0;
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(cursor) => format!("{path}&cursor={cursor}"),
            None => path.to_owned(),
        };
        let page = app.request(Method::GET, &url, Some(key), None).await;
        assert_eq!(page.status, 200, "{url}: {}", page.body);
        pages += 1;
        assert!(pages < 1000, "the cursor never ends");
        items.extend(
            page.body["items"]
                .as_array()
                .expect("items")
                .iter()
                .cloned(),
        );
        match &page.body["next_cursor"] {
            Value::Null => return (items, pages),
            Value::String(next) => cursor = Some(next.clone()),
            other => panic!("next_cursor is a string or null: {other}"),
        }
    }
}

fn ids(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|item| item["id"].as_str().expect("id").to_owned())
        .collect()
}

async fn keys_page_over_every_key_once_in_order_with_a_small_limit(backend: Backend) {
    let org = Org::new(backend).await;
    let mut minted = HashSet::new();
    for role in ["service", "admin", "owner", "partner", "service"] {
        minted.insert(mint(&org, role).await.0);
    }
    let (items, pages) = every_page(&org.app, &org.owner, "/v1/keys?limit=2").await;
    let listed = ids(&items);
    // Org's four keys and the five above.
    assert_eq!(listed.len(), 9, "{listed:?}");
    assert_eq!(pages, 5, "9 keys in pages of 2");
    let mut sorted = listed.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(listed, sorted, "each key once, in the order of their ids");
    assert!(minted.iter().all(|id| listed.contains(id)));
    for item in &items {
        assert!(item.get("key").is_none(), "never a key's secret: {item}");
        assert!(item["role"].is_string() && item["created_at"].is_string());
    }
    // The default limit holds them all in one page, the same as the pages together.
    let whole = org.call(Method::GET, "/v1/keys", "owner", None).await;
    assert_eq!(ids(whole.body["items"].as_array().unwrap()), listed);
    assert!(whole.body["next_cursor"].is_null());
    // A key revoked between pages: the next page goes on after the cursor, nothing repeats.
    let first = org
        .call(Method::GET, "/v1/keys?limit=3", "owner", None)
        .await;
    let cursor = first.str("next_cursor").to_owned();
    // Through the root key: the key revoked may be the owner key this test lists with.
    let gone = &listed[4];
    let account_keys = format!("/v1/accounts/{}/keys", org.app.account_id);
    let revoked = org
        .app
        .request(
            Method::DELETE,
            &format!("{account_keys}/{gone}"),
            Some(ROOT_KEY),
            None,
        )
        .await;
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    let rest = org
        .app
        .request(
            Method::GET,
            &format!("{account_keys}?limit=50&cursor={cursor}"),
            Some(ROOT_KEY),
            None,
        )
        .await;
    let expected: Vec<String> = listed[3..]
        .iter()
        .filter(|id| *id != gone)
        .cloned()
        .collect();
    assert_eq!(ids(rest.body["items"].as_array().unwrap()), expected);
    org.app.stop().await;
}

async fn a_bad_cursor_or_limit_is_a_400_and_changes_nothing(backend: Backend) {
    let org = Org::new(backend).await;
    let before = org.call(Method::GET, "/v1/keys", "owner", None).await;
    for query in [
        "limit=0",
        "limit=201",
        "limit=-1",
        "limit=ten",
        "cursor=not-a-cursor",
        // base64url of "c1:nope": well-formed, but no key id.
        "cursor=YzE6bm9wZQ",
        "cursor=",
        "page=2",
    ] {
        let reply = org
            .call(Method::GET, &format!("/v1/keys?{query}"), "owner", None)
            .await;
        reply.assert_problem(400, "invalid-request");
    }
    let after = org.call(Method::GET, "/v1/keys", "owner", None).await;
    assert_eq!(before.body, after.body, "nothing changed");
    org.app.stop().await;
}

async fn only_owner_and_root_keys_list_and_revoke_keys(backend: Backend) {
    let org = Org::new(backend).await;
    let (victim, _) = mint(&org, "service").await;
    for role in ["admin", "service", "partner"] {
        let listed = org.call(Method::GET, "/v1/keys", role, None).await;
        listed.assert_problem(403, "forbidden");
        let revoked = org
            .call(Method::DELETE, &format!("/v1/keys/{victim}"), role, None)
            .await;
        revoked.assert_problem(403, "forbidden");
    }
    // The root key through the account's path; another account's owner not at all.
    let account_path = format!("/v1/accounts/{}/keys", org.app.account_id);
    let by_root = org
        .app
        .request(Method::GET, &account_path, Some(ROOT_KEY), None)
        .await;
    assert_eq!(by_root.status, 200, "{}", by_root.body);
    assert!(ids(by_root.body["items"].as_array().unwrap()).contains(&victim));
    let (_, stranger) = org.app.create_account_with_key("owner").await;
    let foreign = org
        .app
        .request(Method::GET, &account_path, Some(&stranger), None)
        .await;
    foreign.assert_problem(403, "forbidden");
    let foreign = org
        .app
        .request(
            Method::DELETE,
            &format!("/v1/keys/{victim}"),
            Some(&stranger),
            None,
        )
        .await;
    foreign.assert_problem(404, "not-found");
    let unknown = org
        .call(
            Method::DELETE,
            "/v1/keys/KY00000000000000000000000000000000",
            "owner",
            None,
        )
        .await;
    unknown.assert_problem(404, "not-found");
    let by_root = org
        .app
        .request(
            Method::DELETE,
            &format!("{account_path}/{victim}"),
            Some(ROOT_KEY),
            None,
        )
        .await;
    assert_eq!(by_root.status, 200, "{}", by_root.body);
    assert_eq!(by_root.body["revoked"], true);
    org.app.stop().await;
}

async fn wait_for_link(app: &TestApp) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&app.metrics().await, "otpgate_invalidation_link_up") < 1.0 {
        assert!(
            Instant::now() < deadline,
            "the invalidation link never came up"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn a_revoked_key_answers_401_at_once_on_every_instance(backend: Backend) {
    let org = Org::new(backend.clone()).await;
    let peer = match backend {
        Backend::Memory => None,
        _ => {
            let peer = spawn_peer(&org.app, backend.clone()).await;
            wait_for_link(&peer).await;
            Some(peer)
        }
    };
    let (id, secret) = mint(&org, "admin").await;
    let instances: Vec<&TestApp> = std::iter::once(&org.app).chain(peer.as_ref()).collect();
    for app in &instances {
        // Twice: the second answer comes from the instance's cache.
        for _ in 0..2 {
            let policy = app
                .request(Method::GET, "/v1/policy", Some(&secret), None)
                .await;
            assert_eq!(policy.status, 200, "{}", policy.body);
        }
    }
    let started = Instant::now();
    let revoked = org
        .call(Method::DELETE, &format!("/v1/keys/{id}"), "owner", None)
        .await;
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    assert_eq!(
        (revoked.str("id"), revoked.str("role")),
        (id.as_str(), "admin")
    );
    // The instance that revoked it refuses it on the next request.
    let here = org
        .app
        .request(Method::GET, "/v1/policy", Some(&secret), None)
        .await;
    here.assert_problem(401, "unauthorized");
    if let Some(peer) = &peer {
        // The other instance heard it on the invalidation link: within its delivery time.
        loop {
            let there = peer
                .request(Method::GET, "/v1/policy", Some(&secret), None)
                .await;
            if there.status == 401 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_millis(200),
                "the peer still takes the revoked key"
            );
        }
    }
    let listed = org.call(Method::GET, "/v1/keys", "owner", None).await;
    assert!(!ids(listed.body["items"].as_array().unwrap()).contains(&id));
    let again = org
        .call(Method::DELETE, &format!("/v1/keys/{id}"), "owner", None)
        .await;
    again.assert_problem(404, "not-found");
    let audit = org.audit("?limit=5").await;
    let entry = &audit.body["entries"][0];
    assert_eq!(entry["action"], "key.revoked", "{}", audit.body);
    assert_eq!(entry["target"], format!("key:{id}"));
    assert_eq!(entry["who"]["role"], "owner");
    if let Some(peer) = peer {
        peer.stop().await;
    }
    org.app.stop().await;
}

async fn the_last_owner_key_cannot_be_revoked(backend: Backend) {
    let org = Org::new(backend).await;
    let listed = org.call(Method::GET, "/v1/keys", "owner", None).await;
    let owners: Vec<String> = listed.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|item| item["role"] == "owner")
        .map(|item| item["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(owners.len(), 1, "{}", listed.body);
    let refused = org
        .call(
            Method::DELETE,
            &format!("/v1/keys/{}", owners[0]),
            "owner",
            None,
        )
        .await;
    assert_refused(&refused, "last-owner-key");
    let by_root = org
        .app
        .request(
            Method::DELETE,
            &format!("/v1/accounts/{}/keys/{}", org.app.account_id, owners[0]),
            Some(ROOT_KEY),
            None,
        )
        .await;
    assert_refused(&by_root, "last-owner-key");
    let still = org.call(Method::GET, "/v1/policy", "owner", None).await;
    assert_eq!(still.status, 200, "the owner key still works");
    // With a second owner key, the first may go (even revoking itself), then the second may not.
    let (second, second_secret) = mint(&org, "owner").await;
    let revoked = org
        .call(
            Method::DELETE,
            &format!("/v1/keys/{}", owners[0]),
            "owner",
            None,
        )
        .await;
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    let refused = org
        .app
        .request(
            Method::DELETE,
            &format!("/v1/keys/{second}"),
            Some(&second_secret),
            None,
        )
        .await;
    assert_refused(&refused, "last-owner-key");
    org.app.stop().await;
}

async fn users_page_over_every_user_once_in_order_with_phones_masked(backend: Backend) {
    let org = Org::new(backend).await;
    let names = ["mia", "ada", "zoe", "bob", "eve", "kim", "lea"];
    for (n, name) in names.iter().enumerate() {
        let role = if n == 0 { "admin" } else { "member" };
        org.user(name, role, Some(&format!("+491511234{n:04}")))
            .await;
    }
    org.enrol("ada", FactorType::Totp, "FAtotp1").await;
    org.patch_user("owner", "bob", json!({"two_factor": "off"}))
        .await;
    let (items, pages) = every_page(&org.app, &org.owner, "/v1/users?limit=3").await;
    let mut expected: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
    expected.sort();
    assert_eq!(
        ids(&items),
        expected,
        "each user once, in the order of their ids"
    );
    assert_eq!(pages, 3, "7 users in pages of 3");
    let by_id = |id: &str| items.iter().find(|item| item["id"] == id).unwrap().clone();
    let ada = by_id("ada");
    assert_eq!(ada["phone"], "+491*******001", "masked: {ada}");
    assert!(
        !ada.to_string().contains("+4915112340001"),
        "never the number in full"
    );
    assert_eq!(ada["factor_count"], 1);
    assert_eq!(ada["two_factor"]["enabled"], true);
    assert_eq!(ada["role"], "member");
    assert!(ada["last_sign_in_at"].is_null() && ada["email"].is_null());
    let bob = by_id("bob");
    assert_eq!(bob["two_factor"]["enabled"], false);
    assert_eq!(bob["two_factor"]["override"], "off");
    assert_eq!(by_id("mia")["role"], "admin");
    // Bad paging input on this list too: 400, and the list is as it was.
    for query in ["limit=0", "limit=1000", "cursor=YzE6e2JhZH0"] {
        let reply = org
            .call(Method::GET, &format!("/v1/users?{query}"), "owner", None)
            .await;
        reply.assert_problem(400, "invalid-request");
    }
    let (again, _) = every_page(&org.app, &org.owner, "/v1/users?limit=200").await;
    assert_eq!(again, items);
    org.app.stop().await;
}

async fn a_users_factors_and_trusted_devices_page_and_follow_revocation_and_expiry(
    backend: Backend,
) {
    let org = Org::new(backend).await;
    org.policy(json!({"trusted_device": "7d"})).await;
    org.user("dan", "member", Some("+4915112360001")).await;
    for id in ["FAc", "FAa", "FAb"] {
        org.enrol("dan", FactorType::Webauthn, id).await;
    }
    let (factors, pages) = every_page(&org.app, &org.owner, "/v1/users/dan/factors?limit=2").await;
    assert_eq!(ids(&factors), ["FAa", "FAb", "FAc"]);
    assert_eq!(pages, 2);
    assert!(factors.iter().all(|factor| factor["type"] == "webauthn"));

    let mut trusted = Vec::new();
    for _ in 0..3 {
        trusted.push(org.trusted_device("dan", "+4915112360001").await.1);
    }
    trusted.sort();
    let (devices, pages) = every_page(
        &org.app,
        &org.owner,
        "/v1/users/dan/trusted-devices?limit=2",
    )
    .await;
    assert_eq!(ids(&devices), trusted);
    assert_eq!(pages, 2);
    for device in &devices {
        assert!(device.get("token").is_none(), "never a device's token");
        assert!(device["trusted_until"].is_string(), "{device}");
    }
    let revoked = org
        .call(
            Method::DELETE,
            &format!("/v1/users/dan/trusted-devices/{}", trusted[1]),
            "owner",
            None,
        )
        .await;
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    let (devices, _) = every_page(
        &org.app,
        &org.owner,
        "/v1/users/dan/trusted-devices?limit=2",
    )
    .await;
    assert_eq!(ids(&devices), [trusted[0].clone(), trusted[2].clone()]);
    org.app.clock.advance(DAY * 7);
    let (devices, _) = every_page(
        &org.app,
        &org.owner,
        "/v1/users/dan/trusted-devices?limit=2",
    )
    .await;
    assert!(
        devices.is_empty(),
        "expired devices are not listed: {devices:?}"
    );

    let unknown = org
        .call(
            Method::GET,
            "/v1/users/nobody/trusted-devices",
            "owner",
            None,
        )
        .await;
    unknown.assert_problem(404, "not-found");
    let unknown = org
        .call(Method::GET, "/v1/users/nobody/factors", "owner", None)
        .await;
    unknown.assert_problem(404, "not-found");
    org.app.stop().await;
}

async fn only_keys_that_manage_people_list_users_factors_and_devices(backend: Backend) {
    let org = Org::new(backend).await;
    org.user("ann", "member", Some("+4915112370001")).await;
    for path in [
        "/v1/users",
        "/v1/users/ann/factors",
        "/v1/users/ann/trusted-devices",
    ] {
        for role in ["owner", "admin", "partner"] {
            let reply = org.call(Method::GET, path, role, None).await;
            assert_eq!(reply.status, 200, "{role} {path}: {}", reply.body);
        }
        let service = org.call(Method::GET, path, "service", None).await;
        service.assert_problem(403, "forbidden");
        let root = org
            .app
            .request(Method::GET, path, Some(ROOT_KEY), None)
            .await;
        root.assert_problem(403, "forbidden");
    }
    // Another account's users are not this key's.
    let (_, stranger) = org.app.create_account_with_key("owner").await;
    let foreign = org
        .app
        .request(Method::GET, "/v1/users/ann/factors", Some(&stranger), None)
        .await;
    foreign.assert_problem(404, "not-found");
    let theirs = org
        .app
        .request(Method::GET, "/v1/users", Some(&stranger), None)
        .await;
    assert_eq!(theirs.body["items"], json!([]), "{}", theirs.body);
    org.app.stop().await;
}

async fn phone_numbers_page_masked_with_their_pin_and_lock_state(backend: Backend) {
    let org = Org::new(backend).await;
    let mut added = Vec::new();
    for n in 0..5 {
        let reply = org
            .call(
                Method::POST,
                "/v1/phone-numbers",
                "owner",
                Some(json!({"phone_number": format!("+491511238{n:04}"), "pin": "246813"})),
            )
            .await;
        assert_eq!(reply.status, 201, "{}", reply.body);
        added.push(reply.str("id").to_owned());
    }
    added.sort();
    let (items, pages) = every_page(&org.app, &org.admin, "/v1/phone-numbers?limit=2").await;
    assert_eq!(
        ids(&items),
        added,
        "each number once, in the order of their ids"
    );
    assert_eq!(pages, 3);
    for item in &items {
        let shown = item["phone_number"].as_str().unwrap();
        assert!(
            shown.starts_with("+491") && shown.contains('*'),
            "masked: {item}"
        );
        assert_eq!(item["pin_set"], true);
        assert_eq!(item["two_step"], "enabled");
        assert_eq!(item["locked"], false, "{item}");
    }
    for role in ["owner", "partner"] {
        let reply = org.call(Method::GET, "/v1/phone-numbers", role, None).await;
        assert_eq!(reply.status, 200, "{role}: {}", reply.body);
    }
    let service = org
        .call(Method::GET, "/v1/phone-numbers", "service", None)
        .await;
    service.assert_problem(403, "forbidden");
    for query in ["limit=0", "cursor=abc", "cursor=YzE6MTIz"] {
        let reply = org
            .call(
                Method::GET,
                &format!("/v1/phone-numbers?{query}"),
                "owner",
                None,
            )
            .await;
        reply.assert_problem(400, "invalid-request");
    }
    let (_, stranger) = org.app.create_account_with_key("owner").await;
    let theirs = org
        .app
        .request(Method::GET, "/v1/phone-numbers", Some(&stranger), None)
        .await;
    assert_eq!(theirs.body["items"], json!([]), "{}", theirs.body);
    org.app.stop().await;
}
