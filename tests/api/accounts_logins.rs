//! The login decision matrix: allow (2FA off, trusted device), challenge (factors strongest
//! first, SMS as the alternative where allowed), enroll (1send: no factor while required).

use otpgate::account::user::FactorType;
use serde_json::json;

use crate::accounts_support::{metric, Org};
use crate::helpers::Backend;
use crate::on_every_store;

on_every_store!(
    a_user_with_2fa_off_is_allowed,
    a_trusted_device_is_allowed_and_an_untrusted_one_challenged,
    a_user_with_a_phone_is_challenged_by_sms,
    an_app_or_key_comes_first_with_sms_as_the_alternative_where_the_policy_allows,
    a_user_without_a_usable_factor_must_enrol_while_the_account_requires_2fa,
    login_decisions_and_cache_use_are_counted,
);

async fn a_user_with_2fa_off_is_allowed(backend: Backend) {
    let org = Org::new(backend).await;
    org.policy(json!({"require_2fa": false})).await;
    org.user("ann", "member", Some("+4915112360001")).await;
    let decision = org.login("ann", None).await;
    assert_eq!(decision.status, 200, "{}", decision.body);
    assert_eq!(decision.body["decision"], "allow");
    assert_eq!(decision.body["reason"], "two_factor_off");

    org.patch_user("owner", "ann", json!({"two_factor": "on"}))
        .await;
    assert_eq!(org.login("ann", None).await.body["decision"], "challenge");
    org.policy(json!({"require_2fa": true})).await;
    org.patch_user("owner", "ann", json!({"two_factor": "off"}))
        .await;
    assert_eq!(
        org.login("ann", None).await.body["decision"],
        "allow",
        "the owner's exemption holds while the account requires 2FA"
    );
    org.login("nobody", None)
        .await
        .assert_problem(404, "not-found");
    org.app.stop().await;
}

async fn a_trusted_device_is_allowed_and_an_untrusted_one_challenged(backend: Backend) {
    let org = Org::new(backend).await;
    org.policy(json!({"trusted_device": "1d"})).await;
    org.user("ann", "member", Some("+4915112360011")).await;
    let (token, _) = org.trusted_device("ann", "+4915112360011").await;
    let allowed = org.login("ann", Some(&token)).await;
    assert_eq!(allowed.body["decision"], "allow", "{}", allowed.body);
    assert_eq!(allowed.body["reason"], "trusted_device");
    let stranger = "ogd_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    assert_eq!(
        org.login("ann", Some(stranger)).await.body["decision"],
        "challenge"
    );
    org.app.clock.advance(crate::accounts_support::DAY);
    assert_eq!(
        org.login("ann", Some(&token)).await.body["decision"],
        "challenge",
        "an expired device is challenged"
    );
    org.app.stop().await;
}

async fn a_user_with_a_phone_is_challenged_by_sms(backend: Backend) {
    let org = Org::new(backend).await;
    org.user("ann", "member", Some("+4915112360021")).await;
    let decision = org.login("ann", None).await;
    assert_eq!(decision.body["decision"], "challenge", "{}", decision.body);
    assert_eq!(
        decision.body["factors"],
        json!([{"type": "sms", "to": "+491*******021"}])
    );
    assert!(decision.body.get("fallback").is_none());
    org.app.stop().await;
}

async fn an_app_or_key_comes_first_with_sms_as_the_alternative_where_the_policy_allows(
    backend: Backend,
) {
    let org = Org::new(backend).await;
    org.policy(json!({"channels": ["sms", "totp", "webauthn"], "sms_fallback": true}))
        .await;
    org.user("ann", "member", Some("+4915112360031")).await;
    org.enrol("ann", FactorType::Totp, "FA-totp").await;
    org.enrol("ann", FactorType::Webauthn, "FA-key").await;
    let decision = org.login("ann", None).await;
    assert_eq!(decision.body["decision"], "challenge", "{}", decision.body);
    assert_eq!(
        decision.body["factors"],
        json!([{"type": "webauthn", "id": "FA-key"}, {"type": "totp", "id": "FA-totp"}])
    );
    assert_eq!(decision.body["fallback"]["type"], "sms");

    org.policy(json!({"sms_fallback": false})).await;
    let no_fallback = org.login("ann", None).await;
    assert!(
        no_fallback.body.get("fallback").is_none(),
        "{}",
        no_fallback.body
    );

    org.policy(json!({"channels": ["sms", "totp"]})).await;
    let no_keys = org.login("ann", None).await;
    assert_eq!(
        no_keys.body["factors"],
        json!([{"type": "totp", "id": "FA-totp"}]),
        "factors the policy does not allow are not offered"
    );
    org.app.stop().await;
}

async fn a_user_without_a_usable_factor_must_enrol_while_the_account_requires_2fa(
    backend: Backend,
) {
    let org = Org::new(backend).await;
    org.policy(json!({"channels": ["totp", "webauthn"]})).await;
    org.user("ann", "member", Some("+4915112360041")).await;
    let decision = org.login("ann", None).await;
    assert_eq!(decision.body["decision"], "enroll", "{}", decision.body);
    assert_eq!(decision.body["channels"], json!(["totp", "webauthn"]));
    org.enrol("ann", FactorType::Totp, "FA1").await;
    assert_eq!(org.login("ann", None).await.body["decision"], "challenge");
    org.app.stop().await;
}

async fn login_decisions_and_cache_use_are_counted(backend: Backend) {
    let org = Org::new(backend).await;
    org.user("ann", "member", Some("+4915112360051")).await;
    // The link to Redis comes up in the background; poll the counters instead of guessing.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        assert_eq!(org.login("ann", None).await.body["decision"], "challenge");
        let scrape = org.app.metrics().await;
        let hits = metric(
            &scrape,
            "otpgate_cache_lookups_total{cache=\"user\",result=\"hit\"}",
        );
        if hits >= 1.0 {
            assert!(
                metric(
                    &scrape,
                    "otpgate_login_decisions_total{decision=\"challenge\",reason=\"second_factor\"}"
                ) >= 2.0,
                "{scrape}"
            );
            assert!(
                metric(
                    &scrape,
                    "otpgate_cache_lookups_total{cache=\"user\",result=\"miss\"}"
                ) + metric(
                    &scrape,
                    "otpgate_cache_lookups_total{cache=\"user\",result=\"bypass\"}"
                ) >= 1.0
            );
            assert_eq!(metric(&scrape, "otpgate_invalidation_link_up"), 1.0);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{scrape}");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    org.app.stop().await;
}
