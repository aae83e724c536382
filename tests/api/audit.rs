//! The audit trail: who (key id, role, acting user), what, when, for policy changes, overrides,
//! phone changes, revocations and keys minted; paged newest first; capped per account.

use reqwest::Method;
use serde_json::{json, Value};

use crate::accounts_support::Org;
use crate::helpers::Backend;
use crate::on_every_store;

on_every_store!(
    security_changes_are_audited_with_who_what_and_when,
    the_audit_trail_pages_newest_first_with_a_cursor,
    the_audit_trail_is_capped,
);

fn actions(page: &Value) -> Vec<String> {
    page["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|entry| entry["action"].as_str().unwrap().to_owned())
        .collect()
}

async fn security_changes_are_audited_with_who_what_and_when(backend: Backend) {
    let org = Org::new(backend).await;
    org.policy(json!({"trusted_device": "7d"})).await;
    org.user("ada", "admin", Some("+4915112370001")).await;
    org.patch_user("owner", "ada", json!({"two_factor": "off"}))
        .await;
    org.patch_user(
        "admin",
        "ada",
        json!({"phone": "+4915112370002", "acting_user": "ada"}),
    )
    .await;
    let (_, device) = org.trusted_device("ada", "+4915112370002").await;
    org.call(
        Method::DELETE,
        &format!("/v1/users/ada/trusted-devices/{device}"),
        "service",
        None,
    )
    .await;
    org.call(
        Method::DELETE,
        "/v1/users/ada/trusted-devices",
        "partner",
        None,
    )
    .await;

    let page = org.audit("?limit=100").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let got = actions(&page.body);
    assert_eq!(
        got,
        [
            "devices.revoked_all",
            "device.revoked",
            "device.trusted",
            "user.phone_changed",
            "user.two_factor_changed",
            "user.created",
            "policy.updated",
            "key.minted",
            "key.minted",
            "key.minted",
            "key.minted",
        ],
        "{}",
        page.body
    );
    let entries = page.body["entries"].as_array().unwrap();
    let policy = &entries[6];
    assert_eq!(policy["who"]["role"], "owner");
    assert!(policy["who"]["key_id"].as_str().unwrap().starts_with("KY"));
    assert_eq!(policy["details"]["before"]["trusted_device"], "none");
    assert_eq!(policy["details"]["after"]["trusted_device"], "7d");
    assert!(policy["at"].as_str().unwrap().ends_with('Z'));
    let override_entry = &entries[4];
    assert_eq!(override_entry["target"], "user:ada");
    assert_eq!(override_entry["details"]["before"], "account");
    assert_eq!(override_entry["details"]["after"], "off");
    let phone = &entries[3];
    assert_eq!(phone["who"]["acting_user"], "ada");
    assert_eq!(
        phone["details"]["after"], "+491*******002",
        "numbers are masked"
    );
    assert_eq!(entries[0]["who"]["role"], "partner");
    assert_eq!(entries[1]["who"]["role"], "service");
    let minted = &entries[10];
    assert_eq!(minted["who"]["key_id"], "root");
    assert_eq!(minted["details"]["role"], "service");
    let text = page.body.to_string();
    assert!(
        !text.contains("ogk_") && !text.contains("ogd_"),
        "no secret in the trail"
    );
    org.app.stop().await;
}

async fn the_audit_trail_pages_newest_first_with_a_cursor(backend: Backend) {
    let org = Org::new(backend).await;
    for days in ["1d", "7d", "30d"] {
        org.policy(json!({"trusted_device": days})).await;
    }
    let first = org.audit("?limit=2").await;
    assert_eq!(first.status, 200, "{}", first.body);
    let entries = first.body["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["details"]["after"]["trusted_device"], "30d");
    assert_eq!(entries[1]["details"]["after"]["trusted_device"], "7d");
    let cursor = first.str("next_cursor").to_owned();
    let second = org.audit(&format!("?limit=2&cursor={cursor}")).await;
    let entries = second.body["entries"].as_array().unwrap();
    assert_eq!(entries[0]["details"]["after"]["trusted_device"], "1d");
    assert_eq!(entries[1]["action"], "key.minted");
    let mut seen = 4;
    let mut next = second.body["next_cursor"].clone();
    while let Some(cursor) = next.as_str() {
        let page = org.audit(&format!("?limit=2&cursor={cursor}")).await;
        seen += page.body["entries"].as_array().unwrap().len();
        next = page.body["next_cursor"].clone();
    }
    assert_eq!(seen, 3 + 4, "three policy changes and four minted keys");
    org.audit("?cursor=nope")
        .await
        .assert_problem(400, "invalid-request");
    org.audit("?limit=0")
        .await
        .assert_problem(400, "invalid-request");
    org.app.stop().await;
}

async fn the_audit_trail_is_capped(backend: Backend) {
    let org = Org::with(backend, |settings| settings.directory.audit_max_entries = 5).await;
    for days in ["1d", "7d", "30d", "1d", "7d", "30d"] {
        org.policy(json!({"trusted_device": days})).await;
    }
    let page = org.audit("?limit=100").await;
    let entries = page.body["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 5, "{}", page.body);
    assert_eq!(entries[0]["details"]["after"]["trusted_device"], "30d");
    assert!(page.body["next_cursor"].is_null());
    org.app.stop().await;
}
