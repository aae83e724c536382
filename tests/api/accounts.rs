//! Accounts, users and the 2FA policy: every seed rule as its own test (MessageFlow 002,
//! Beefree 003, 1send 000), on every store, plus the whole role matrix in one table.

use reqwest::Method;
use serde_json::json;

use otpgate::account::user::FactorType;

use crate::accounts_support::{assert_refused, Org};
use crate::helpers::Backend;
use crate::on_every_store;

on_every_store!(
    a_new_account_requires_2fa_by_sms_and_trusts_no_device,
    enabling_sms_lists_the_users_without_a_phone_until_each_has_one,
    while_sms_is_active_a_user_cannot_be_added_or_left_without_a_phone,
    while_the_account_requires_2fa_new_users_have_it_on_by_default,
    the_owner_may_turn_2fa_off_for_a_user_while_the_account_requires_it,
    the_owner_may_turn_2fa_on_for_a_user_while_the_account_does_not_require_it,
    an_admin_may_turn_2fa_on_for_themselves_when_the_account_does_not_require_it,
    an_admin_may_not_turn_2fa_off_for_themselves_while_the_account_requires_it,
    an_admin_may_not_turn_2fa_off_for_another_user,
    a_member_may_change_only_their_own_2fa,
    a_user_may_not_undo_2fa_that_someone_else_turned_on,
    a_partner_never_weakens_protection_but_may_strengthen_it,
    only_the_owner_weakens_the_policy,
    only_the_owner_gives_the_owner_role,
    the_two_factor_matrix_holds_for_every_role_state_and_target,
    only_the_user_or_the_owner_changes_an_owners_or_an_admins_phone_and_factors,
    a_partner_adds_members_only_and_never_grants_the_admin_role,
);

async fn a_new_account_requires_2fa_by_sms_and_trusts_no_device(backend: Backend) {
    let org = Org::new(backend).await;
    let policy = org.call(Method::GET, "/v1/policy", "admin", None).await;
    assert_eq!(policy.status, 200, "{}", policy.body);
    assert_eq!(policy.body["require_2fa"], true);
    assert_eq!(policy.body["channels"], json!(["sms"]));
    assert_eq!(policy.body["sms_fallback"], false);
    assert_eq!(policy.body["trusted_device"], "none");
    assert_eq!(policy.body["customised"], false);
    org.policy(json!({"channels": ["sms", "totp"], "sms_fallback": true, "trusted_device": "7d"}))
        .await;
    let changed = org.call(Method::GET, "/v1/policy", "service", None).await;
    assert_eq!(changed.body["channels"], json!(["sms", "totp"]));
    assert_eq!(changed.body["trusted_device"], "7d");
    assert_eq!(changed.body["require_2fa"], true, "unchanged fields stay");
    assert_eq!(changed.body["customised"], true);
    org.app.stop().await;
}

async fn enabling_sms_lists_the_users_without_a_phone_until_each_has_one(backend: Backend) {
    let org = Org::new(backend).await;
    org.policy(json!({"channels": ["totp"]})).await;
    org.user("zoe", "member", None).await;
    org.user("adam", "admin", None).await;
    org.user("carol", "member", Some("+4915112340001")).await;

    let refused = org
        .put_policy("owner", json!({"channels": ["sms", "totp"]}))
        .await;
    assert_refused(&refused, "sms-needs-every-user-to-have-a-phone");
    assert_eq!(refused.body["users"], json!(["adam", "zoe"]));
    let unchanged = org.call(Method::GET, "/v1/policy", "owner", None).await;
    assert_eq!(
        unchanged.body["channels"],
        json!(["totp"]),
        "a refusal changes nothing"
    );

    let adam = org
        .patch_user("owner", "adam", json!({"phone": "+4915112340002"}))
        .await;
    assert_eq!(adam.status, 200, "{}", adam.body);
    let refused = org
        .put_policy("owner", json!({"channels": ["sms", "totp"]}))
        .await;
    assert_eq!(
        refused.body["users"],
        json!(["zoe"]),
        "422 until every user has one"
    );
    org.patch_user("owner", "zoe", json!({"phone": "+4915112340003"}))
        .await;
    org.policy(json!({"channels": ["sms", "totp"]})).await;
    org.app.stop().await;
}

async fn while_sms_is_active_a_user_cannot_be_added_or_left_without_a_phone(backend: Backend) {
    let org = Org::new(backend).await;
    let refused = org.add_user("owner", json!({"id": "nophone"})).await;
    assert_refused(&refused, "a-phone-is-required-while-sms-is-active");
    assert_eq!(
        org.get_user("nophone").await.status,
        404,
        "nothing was added"
    );

    org.user("ann", "member", Some("+4915112340011")).await;
    let cleared = org.patch_user("owner", "ann", json!({"phone": null})).await;
    assert_refused(&cleared, "a-phone-is-required-while-sms-is-active");

    org.policy(json!({"channels": ["totp"]})).await;
    let added = org.add_user("admin", json!({"id": "nophone"})).await;
    assert_eq!(
        added.status, 201,
        "without SMS a phone is optional: {}",
        added.body
    );
    assert_eq!(added.body["phone"], json!(null));
    org.app.stop().await;
}

async fn while_the_account_requires_2fa_new_users_have_it_on_by_default(backend: Backend) {
    let org = Org::new(backend).await;
    let on = org
        .add_user("admin", json!({"id": "new1", "phone": "+4915112340021"}))
        .await;
    assert_eq!(on.status, 201, "{}", on.body);
    assert_eq!(on.body["two_factor"]["enabled"], true);
    assert_eq!(on.body["two_factor"]["override"], json!(null));

    org.policy(json!({"require_2fa": false})).await;
    let off = org
        .add_user("admin", json!({"id": "new2", "phone": "+4915112340022"}))
        .await;
    assert_eq!(off.body["two_factor"]["enabled"], false);
    let follows = org.get_user("new1").await;
    assert_eq!(
        follows.body["two_factor"]["enabled"], false,
        "a user without an override follows the account"
    );
    org.app.stop().await;
}

async fn the_owner_may_turn_2fa_off_for_a_user_while_the_account_requires_it(backend: Backend) {
    let org = Org::new(backend).await;
    org.user("kim", "member", Some("+4915112340031")).await;
    let off = org
        .patch_user("owner", "kim", json!({"two_factor": "off"}))
        .await;
    assert_eq!(off.status, 200, "{}", off.body);
    assert_eq!(off.body["two_factor"]["enabled"], false);
    assert_eq!(off.body["two_factor"]["override"], "off");
    assert_eq!(off.body["two_factor"]["set_by"], "owner");
    let created_off = org
        .add_user(
            "owner",
            json!({"id": "lee", "phone": "+4915112340032", "two_factor": "off"}),
        )
        .await;
    assert_eq!(created_off.status, 201, "{}", created_off.body);
    assert_eq!(created_off.body["two_factor"]["enabled"], false);
    org.app.stop().await;
}

async fn the_owner_may_turn_2fa_on_for_a_user_while_the_account_does_not_require_it(
    backend: Backend,
) {
    let org = Org::new(backend).await;
    org.policy(json!({"require_2fa": false})).await;
    org.user("kim", "member", Some("+4915112340041")).await;
    let on = org
        .patch_user("owner", "kim", json!({"two_factor": "on"}))
        .await;
    assert_eq!(on.status, 200, "{}", on.body);
    assert_eq!(on.body["two_factor"]["enabled"], true);
    let back = org
        .patch_user("owner", "kim", json!({"two_factor": "account"}))
        .await;
    assert_eq!(back.body["two_factor"]["enabled"], false);
    assert_eq!(back.body["two_factor"]["override"], json!(null));
    org.app.stop().await;
}

async fn an_admin_may_turn_2fa_on_for_themselves_when_the_account_does_not_require_it(
    backend: Backend,
) {
    let org = Org::new(backend).await;
    org.policy(json!({"require_2fa": false})).await;
    org.user("ada", "admin", Some("+4915112340051")).await;
    let on = org
        .patch_user(
            "admin",
            "ada",
            json!({"two_factor": "on", "acting_user": "ada"}),
        )
        .await;
    assert_eq!(on.status, 200, "{}", on.body);
    assert_eq!(on.body["two_factor"]["enabled"], true);
    assert_eq!(on.body["two_factor"]["set_by"], "user:ada");
    let off = org
        .patch_user(
            "admin",
            "ada",
            json!({"two_factor": "off", "acting_user": "ada"}),
        )
        .await;
    assert_eq!(
        off.status, 200,
        "what they turned on they may turn off: {}",
        off.body
    );
    assert_eq!(off.body["two_factor"]["enabled"], false);
    org.app.stop().await;
}

async fn an_admin_may_not_turn_2fa_off_for_themselves_while_the_account_requires_it(
    backend: Backend,
) {
    let org = Org::new(backend).await;
    org.user("ada", "admin", Some("+4915112340061")).await;
    let refused = org
        .patch_user(
            "admin",
            "ada",
            json!({"two_factor": "off", "acting_user": "ada"}),
        )
        .await;
    assert_refused(&refused, "2fa-required-by-the-account");
    assert_eq!(
        org.get_user("ada").await.body["two_factor"]["enabled"],
        true
    );
    org.app.stop().await;
}

async fn an_admin_may_not_turn_2fa_off_for_another_user(backend: Backend) {
    let org = Org::new(backend).await;
    org.user("ada", "admin", Some("+4915112340071")).await;
    org.user("bob", "member", Some("+4915112340072")).await;
    let refused = org
        .patch_user(
            "admin",
            "bob",
            json!({"two_factor": "off", "acting_user": "ada"}),
        )
        .await;
    assert_refused(&refused, "only-the-owner-turns-2fa-off-for-others");
    org.policy(json!({"require_2fa": false})).await;
    let on = org
        .patch_user(
            "admin",
            "bob",
            json!({"two_factor": "on", "acting_user": "ada"}),
        )
        .await;
    assert_eq!(
        on.status, 200,
        "strengthening is open to admins: {}",
        on.body
    );
    let undo = org
        .patch_user(
            "admin",
            "bob",
            json!({"two_factor": "account", "acting_user": "ada"}),
        )
        .await;
    assert_refused(&undo, "only-the-owner-turns-2fa-off-for-others");
    org.app.stop().await;
}

async fn a_member_may_change_only_their_own_2fa(backend: Backend) {
    let org = Org::new(backend).await;
    org.policy(json!({"require_2fa": false})).await;
    org.user("mia", "member", Some("+4915112340081")).await;
    org.user("max", "member", Some("+4915112340082")).await;
    // The admin console's key, forwarding what the signed-in member asked for.
    let own = org
        .patch_user(
            "admin",
            "mia",
            json!({"two_factor": "on", "acting_user": "mia"}),
        )
        .await;
    assert_eq!(own.status, 200, "{}", own.body);
    let other = org
        .patch_user(
            "admin",
            "max",
            json!({"two_factor": "on", "acting_user": "mia"}),
        )
        .await;
    assert_refused(&other, "members-change-only-themselves");
    let through_owner_key = org
        .patch_user(
            "owner",
            "max",
            json!({"two_factor": "on", "acting_user": "mia"}),
        )
        .await;
    assert_refused(&through_owner_key, "members-change-only-themselves");
    let add = org
        .add_user(
            "owner",
            json!({"id": "x", "phone": "+4915112340083", "acting_user": "mia"}),
        )
        .await;
    assert_refused(&add, "members-do-not-manage-users");
    org.app.stop().await;
}

async fn a_user_may_not_undo_2fa_that_someone_else_turned_on(backend: Backend) {
    let org = Org::new(backend).await;
    org.policy(json!({"require_2fa": false})).await;
    org.user("ada", "admin", Some("+4915112340091")).await;
    org.patch_user("owner", "ada", json!({"two_factor": "on"}))
        .await;
    let refused = org
        .patch_user(
            "admin",
            "ada",
            json!({"two_factor": "off", "acting_user": "ada"}),
        )
        .await;
    assert_refused(&refused, "2fa-set-by-someone-else");
    let again = org
        .patch_user(
            "admin",
            "ada",
            json!({"two_factor": "on", "acting_user": "ada"}),
        )
        .await;
    assert_eq!(
        again.body["two_factor"]["set_by"], "owner",
        "asking for what holds keeps who set it"
    );
    org.app.stop().await;
}

async fn a_partner_never_weakens_protection_but_may_strengthen_it(backend: Backend) {
    let org = Org::new(backend).await;
    org.user("pat", "member", Some("+4915112340101")).await;
    assert_refused(
        &org.put_policy("partner", json!({"require_2fa": false}))
            .await,
        "partners-never-weaken-protection",
    );
    assert_refused(
        &org.put_policy("partner", json!({"trusted_device": "30d"}))
            .await,
        "partners-never-weaken-protection",
    );
    assert_refused(
        &org.put_policy("partner", json!({"channels": ["sms", "whatsapp"]}))
            .await,
        "partners-never-weaken-protection",
    );
    assert_refused(
        &org.patch_user("partner", "pat", json!({"two_factor": "off"}))
            .await,
        "partners-never-weaken-protection",
    );
    assert_refused(
        &org.patch_user("partner", "pat", json!({"phone": "+4915112340102"}))
            .await,
        "partners-never-weaken-protection",
    );
    let removal = org
        .call(Method::DELETE, "/v1/users/pat/factors/FA1", "partner", None)
        .await;
    assert_refused(&removal, "partners-never-weaken-protection");

    org.policy(json!({"require_2fa": false, "trusted_device": "7d"}))
        .await;
    let stricter = org
        .put_policy(
            "partner",
            json!({"require_2fa": true, "trusted_device": "1d"}),
        )
        .await;
    assert_eq!(stricter.status, 200, "{}", stricter.body);
    let on = org
        .patch_user("partner", "pat", json!({"two_factor": "on"}))
        .await;
    assert_eq!(on.status, 200, "{}", on.body);
    assert_refused(
        &org.patch_user("partner", "pat", json!({"two_factor": "account"}))
            .await,
        "partners-never-weaken-protection",
    );
    org.app.stop().await;
}

async fn only_the_owner_weakens_the_policy(backend: Backend) {
    let org = Org::new(backend).await;
    assert_refused(
        &org.put_policy("admin", json!({"require_2fa": false})).await,
        "only-the-owner-weakens-the-policy",
    );
    assert_refused(
        &org.put_policy("admin", json!({"trusted_device": "1d"}))
            .await,
        "only-the-owner-weakens-the-policy",
    );
    org.policy(json!({"trusted_device": "30d", "require_2fa": false}))
        .await;
    let stricter = org
        .put_policy(
            "admin",
            json!({"trusted_device": "1d", "require_2fa": true}),
        )
        .await;
    assert_eq!(stricter.status, 200, "{}", stricter.body);
    assert_refused(
        &org.put_policy("owner", json!({"sms_fallback": true})).await,
        "sms-fallback-needs-sms-and-an-app-or-key",
    );
    assert_refused(
        &org.put_policy("owner", json!({"channels": []})).await,
        "a-policy-allows-at-least-one-channel",
    );
    let service = org
        .put_policy("service", json!({"require_2fa": true}))
        .await;
    service.assert_problem(403, "forbidden");
    org.app.stop().await;
}

async fn only_the_owner_gives_the_owner_role(backend: Backend) {
    let org = Org::new(backend).await;
    org.user("boss", "owner", Some("+4915112340111")).await;
    org.user("bob", "member", Some("+4915112340112")).await;
    assert_refused(
        &org.add_user(
            "admin",
            json!({"id": "o2", "role": "owner", "phone": "+4915112340113"}),
        )
        .await,
        "only-the-owner-assigns-the-owner-role",
    );
    assert_refused(
        &org.patch_user("admin", "bob", json!({"role": "owner"}))
            .await,
        "only-the-owner-assigns-the-owner-role",
    );
    assert_refused(
        &org.patch_user("admin", "boss", json!({"role": "member"}))
            .await,
        "only-the-owner-assigns-the-owner-role",
    );
    let promoted = org
        .patch_user("admin", "bob", json!({"role": "admin"}))
        .await;
    assert_eq!(promoted.body["role"], "admin", "{}", promoted.body);
    assert_refused(
        &org.patch_user("partner", "bob", json!({"role": "member"}))
            .await,
        "only-owners-and-admins-change-roles",
    );
    org.app.stop().await;
}

/// owner / admin / member / partner x account requires or not x self or another user x on/off:
/// each row is one sentence of the rules.
async fn the_two_factor_matrix_holds_for_every_role_state_and_target(backend: Backend) {
    let org = Org::new(backend).await;
    org.user("own", "owner", Some("+4915112340121")).await;
    org.user("adm", "admin", Some("+4915112340122")).await;
    org.user("mem", "member", Some("+4915112340123")).await;
    org.user("tgt", "member", Some("+4915112340124")).await;
    // (actor key, acting user, requires, target, request, expected: Ok(enabled) or Err(rule))
    let rows: &[(&str, Option<&str>, bool, &str, &str, Result<bool, &str>)] = &[
        ("owner", None, true, "tgt", "off", Ok(false)),
        ("owner", None, false, "tgt", "on", Ok(true)),
        ("owner", Some("own"), true, "own", "off", Ok(false)),
        ("owner", Some("own"), false, "own", "on", Ok(true)),
        ("admin", Some("adm"), false, "adm", "on", Ok(true)),
        ("admin", Some("adm"), true, "adm", "on", Ok(true)),
        (
            "admin",
            Some("adm"),
            true,
            "adm",
            "off",
            Err("2fa-required-by-the-account"),
        ),
        ("admin", Some("adm"), false, "adm", "off", Ok(false)),
        (
            "admin",
            Some("adm"),
            true,
            "tgt",
            "off",
            Err("only-the-owner-turns-2fa-off-for-others"),
        ),
        (
            "admin",
            Some("adm"),
            false,
            "tgt",
            "off",
            Err("only-the-owner-turns-2fa-off-for-others"),
        ),
        ("admin", Some("adm"), false, "tgt", "on", Ok(true)),
        ("admin", None, false, "tgt", "on", Ok(true)),
        ("admin", Some("mem"), false, "mem", "on", Ok(true)),
        (
            "admin",
            Some("mem"),
            true,
            "mem",
            "off",
            Err("2fa-required-by-the-account"),
        ),
        ("admin", Some("mem"), false, "mem", "off", Ok(false)),
        (
            "admin",
            Some("mem"),
            false,
            "tgt",
            "on",
            Err("members-change-only-themselves"),
        ),
        (
            "admin",
            Some("mem"),
            true,
            "tgt",
            "off",
            Err("members-change-only-themselves"),
        ),
        ("partner", None, false, "tgt", "on", Ok(true)),
        ("partner", None, true, "tgt", "on", Ok(true)),
        (
            "partner",
            None,
            true,
            "tgt",
            "off",
            Err("partners-never-weaken-protection"),
        ),
        (
            "partner",
            None,
            false,
            "tgt",
            "off",
            Err("partners-never-weaken-protection"),
        ),
        (
            "partner",
            Some("own"),
            true,
            "own",
            "off",
            Err("partners-never-weaken-protection"),
        ),
    ];
    for (key, acting, requires, target, request, expected) in rows {
        org.policy(json!({"require_2fa": requires})).await;
        // Every row starts from a user who follows the account.
        for user in ["own", "adm", "mem", "tgt"] {
            let reset = org
                .patch_user("owner", user, json!({"two_factor": "account"}))
                .await;
            assert_eq!(reset.status, 200, "{}", reset.body);
        }
        let mut body = json!({"two_factor": request});
        if let Some(acting) = acting {
            body["acting_user"] = json!(acting);
        }
        let reply = org.patch_user(key, target, body).await;
        let row =
            format!("{key} key acting as {acting:?}, requires={requires}, {target} -> {request}");
        match expected {
            Ok(enabled) => {
                assert_eq!(reply.status, 200, "{row}: {}", reply.body);
                assert_eq!(reply.body["two_factor"]["enabled"], *enabled, "{row}");
            }
            Err(rule) => {
                assert_eq!(reply.status, 422, "{row}: {}", reply.body);
                assert_eq!(reply.body["rule"], *rule, "{row}");
            }
        }
    }
    org.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_reach_only_the_routes_of_their_role() {
    let org = Org::new(Backend::Memory).await;
    org.user("u1", "member", Some("+4915112340131")).await;
    for (role, method, path) in [
        ("service", Method::POST, "/v1/users"),
        ("service", Method::PATCH, "/v1/users/u1"),
        ("service", Method::GET, "/v1/users/u1"),
        ("service", Method::GET, "/v1/audit"),
        ("admin", Method::POST, "/v1/logins"),
        ("admin", Method::POST, "/v1/trusted-devices/check"),
    ] {
        let reply = org.call(method.clone(), path, role, Some(json!({}))).await;
        assert_eq!(reply.status, 403, "{role} {method} {path}: {}", reply.body);
    }
    let root = org
        .app
        .request(
            Method::GET,
            "/v1/policy",
            Some(crate::helpers::ROOT_KEY),
            None,
        )
        .await;
    root.assert_problem(403, "forbidden");
    let wrong_method = org.call(Method::POST, "/v1/policy", "owner", None).await;
    wrong_method.assert_problem(405, "method-not-allowed");
    assert_eq!(wrong_method.headers["allow"], "GET, PUT");
    org.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_at_the_edge() {
    let org = Org::new(Backend::Memory).await;
    for body in [
        json!({"channels": ["fax"]}),
        json!({"trusted_device": "2d"}),
        json!({"require_2fa": "yes"}),
        json!({"unknown": 1}),
    ] {
        let reply = org.put_policy("owner", body.clone()).await;
        reply.assert_problem(400, "invalid-request");
    }
    for body in [
        json!({"id": "a b", "phone": "+4915112340141"}),
        json!({"id": "ok", "phone": "0151 1234"}),
        json!({"id": "ok", "phone": "+4915112340141", "role": "boss"}),
        json!({"id": "ok", "phone": "+4915112340141", "two_factor": "maybe"}),
        json!({"id": "ok", "phone": "+4915112340141", "acting_user": "nobody"}),
    ] {
        let reply = org.add_user("owner", body.clone()).await;
        reply.assert_problem(400, "invalid-request");
    }
    org.user("dup", "member", Some("+4915112340142")).await;
    org.add_user("owner", json!({"id": "dup", "phone": "+4915112340142"}))
        .await
        .assert_problem(409, "conflict");
    org.patch_user("owner", "ghost", json!({"role": "admin"}))
        .await
        .assert_problem(404, "not-found");
    org.app.stop().await;
}

/// Issue 13 §9: an admin key took over the owner by moving the owner's phone to its own number
/// and removing the owner's app. Each cell of the rule, on phone and factor alike.
async fn only_the_user_or_the_owner_changes_an_owners_or_an_admins_phone_and_factors(
    backend: Backend,
) {
    let org = Org::new(backend).await;
    org.policy(json!({"channels": ["sms", "totp"]})).await;
    let people = [
        ("boss", "owner", "+4915112340201"),
        ("adam", "admin", "+4915112340202"),
        ("ada", "admin", "+4915112340203"),
        ("mel", "member", "+4915112340204"),
    ];
    for (id, role, phone) in people {
        org.user(id, role, Some(phone)).await;
        org.enrol(id, FactorType::Totp, &format!("FA{id}")).await;
    }
    let rule = "protected-users-manage-their-own-authenticators";
    let theirs = "+4915112340299";
    // Refused: the admin (acting as adam) on the owner and on another admin; nothing changes.
    for target in ["boss", "ada"] {
        let phone = org
            .patch_user(
                "admin",
                target,
                json!({"phone": theirs, "acting_user": "adam"}),
            )
            .await;
        assert_refused(&phone, rule);
        let removal = org
            .call(
                Method::DELETE,
                &format!("/v1/users/{target}/factors/FA{target}?acting_user=adam"),
                "admin",
                None,
            )
            .await;
        assert_refused(&removal, rule);
        let unchanged = org.get_user(target).await;
        assert_ne!(unchanged.body["phone"], theirs, "{}", unchanged.body);
        assert_eq!(
            unchanged.body["factors"].as_array().map(Vec::len),
            Some(1),
            "{}",
            unchanged.body
        );
    }
    // An admin key acting for nobody is no more than an admin.
    assert_refused(
        &org.patch_user("admin", "boss", json!({"phone": theirs}))
            .await,
        rule,
    );
    // Allowed: the admin on a member, the admin on themself, the owner on an admin.
    let allowed = [
        ("admin", "mel", Some("adam"), "+4915112340214"),
        ("admin", "adam", Some("adam"), "+4915112340212"),
        ("owner", "ada", None, "+4915112340213"),
    ];
    for (key, target, acting, phone) in allowed {
        let mut body = json!({"phone": phone});
        let mut query = String::new();
        if let Some(acting) = acting {
            body["acting_user"] = json!(acting);
            query = format!("?acting_user={acting}");
        }
        let changed = org.patch_user(key, target, body).await;
        assert_eq!(changed.status, 200, "{key} on {target}: {}", changed.body);
        assert_eq!(changed.body["phone"], phone);
        let removed = org
            .call(
                Method::DELETE,
                &format!("/v1/users/{target}/factors/FA{target}{query}"),
                key,
                None,
            )
            .await;
        assert_eq!(removed.status, 200, "{key} on {target}: {}", removed.body);
        assert_eq!(removed.body["factors"], json!([]), "{}", removed.body);
    }
    // An admin may not strip another admin's protection by demoting them first.
    assert_refused(
        &org.patch_user(
            "admin",
            "ada",
            json!({"role": "member", "acting_user": "adam"}),
        )
        .await,
        "only-the-owner-demotes-an-admin",
    );
    org.app.stop().await;
}

/// Issue 13 §13: a partner acts for the client and never grants admin rights, neither when it
/// adds a user nor by changing a role; it still adds members.
async fn a_partner_adds_members_only_and_never_grants_the_admin_role(backend: Backend) {
    let org = Org::new(backend).await;
    org.user("mel", "member", Some("+4915112340301")).await;
    let rule = "partners-never-grant-admin-rights";
    for role in ["admin", "owner"] {
        let added = org
            .add_user(
                "partner",
                json!({"id": format!("new-{role}"), "role": role, "phone": "+4915112340302"}),
            )
            .await;
        assert_refused(&added, rule);
        let absent = org.get_user(&format!("new-{role}")).await;
        assert_eq!(absent.status, 404, "nothing was added: {}", absent.body);
        assert_refused(
            &org.patch_user("partner", "mel", json!({"role": role}))
                .await,
            rule,
        );
    }
    assert_eq!(org.get_user("mel").await.body["role"], "member");
    let member = org
        .add_user(
            "partner",
            json!({"id": "new-member", "role": "member", "phone": "+4915112340303"}),
        )
        .await;
    assert_eq!(member.status, 201, "{}", member.body);
    org.app.stop().await;
}
