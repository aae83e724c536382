//! Tests of the route table (`table.rs`): matching, parameters, the rows' documentation.

use super::*;
use crate::http::doc::Place;
use crate::http::routes::*;

fn named(name: &str) -> &'static Entry {
    TABLE.iter().find(|entry| entry.name == name).expect(name)
}

#[test]
fn static_segments_win_over_parameters() {
    assert_eq!(
        find("/v1/verifications/check").route.name,
        "check_verification"
    );
    let found = find("/v1/verifications/VE00abc");
    let matched = found.matched();
    assert_eq!(matched.route.name, "get_verification");
    assert_eq!(matched.param, Some("VE00abc"));
}

#[test]
fn account_routes_carry_both_ids_and_accept_their_methods() {
    let found = find("/v1/users/alice@example.com/trusted-devices/TD00");
    let matched = found.matched();
    assert_eq!(matched.route.name, "user_trusted_device");
    assert_eq!(matched.param, Some("alice@example.com"));
    assert_eq!(matched.second, Some("TD00"));
    assert!(named("policy").accepts("PUT") && named("policy").accepts("GET"));
    assert!(!named("policy").accepts("POST"));
    assert_eq!(
        find("/v1/trusted-devices/check").route.name,
        "check_trusted_device"
    );
}

#[test]
fn the_graph_route_never_shadows_the_others() {
    let found = find("/v24.0/106540352242922");
    let matched = found.matched();
    assert_eq!(matched.route.name, "graph_phone_number");
    assert_eq!(matched.second, Some("106540352242922"));
    assert_eq!(find("/v1/audit").route.name, "audit");
    assert_eq!(find("/v1/policy").route.name, "policy");
    assert_eq!(find("/v1/users").route.name, "users");
    assert_eq!(find("/v1/logins").route.name, "logins");
    assert_eq!(find("/v1/verifications").route.name, "start_verification");
    assert_eq!(find("/healthz").route.name, "healthz");
    assert_eq!(find("/v1/phone-numbers").route.name, "phone_numbers");
    assert_eq!(
        find("/v1/phone-numbers/106540352242922").route.name,
        "phone_number"
    );
    for not_graph in [
        "/v1/106540352242922",
        "/v2/nothing",
        "/healthz/x",
        "/x/y",
        "/v24/1",
    ] {
        assert_eq!(find(not_graph).route.name, "not_found", "{not_graph}");
    }
}

#[test]
fn factor_routes_carry_the_user_and_the_factor() {
    let found = find("/v1/users/alice/factors/FA01/confirm");
    let matched = found.matched();
    assert_eq!(matched.route.name, "confirm_factor");
    assert_eq!(matched.param, Some("alice"));
    assert_eq!(matched.second, Some("FA01"));
    assert_eq!(find("/v1/users/alice/factors").route.name, "user_factors");
    assert_eq!(
        find("/v1/users/alice/factors/FA01").route.name,
        "user_factor"
    );
    assert_eq!(find("/v1/users/alice/challenges").route.name, "challenges");
    assert_eq!(
        find("/v1/users/alice/recovery-codes").route.name,
        "recovery_codes"
    );
}

#[test]
fn parameters_are_percent_decoded_once() {
    let found = find("/v1/users/ada.lovelace%2B2fa%40example.com/factors/FA%30%31");
    assert_eq!(found.refused, None);
    let matched = found.matched();
    assert_eq!(matched.route.name, "user_factor");
    assert_eq!(matched.param, Some("ada.lovelace+2fa@example.com"));
    assert_eq!(matched.second, Some("FA01"));
    assert_eq!(
        find("/v1/users/plain%2Euser").matched().param,
        Some("plain.user")
    );
    // Once: an encoded percent sign stays a percent sign.
    assert_eq!(find("/v1/users/a%252Eb").matched().param, Some("a%2Eb"));
    assert!(matches!(
        find("/v1/users/plain").matched().param,
        Some("plain")
    ));
}

#[test]
fn parameters_that_decode_to_dot_segments_slashes_controls_or_non_utf8_are_refused() {
    for path in [
        "/v1/users/%2E",
        "/v1/users/%2e%2E",
        "/v1/users/.",
        "/v1/users/..",
        "/v1/users/a%2Fb",
        "/v1/users/a%00b",
        "/v1/users/a%0Ab",
        "/v1/users/a%7Fb",
        "/v1/users/a%C2%85b",
        "/v1/users/%FF",
        "/v1/users/alice/factors/%2E%2E",
        "/v2/Services/VA%2F..",
    ] {
        let found = find(path);
        assert_ne!(found.route.name, "not_found", "{path}");
        assert_eq!(found.refused, Some(REFUSED_PARAMETER), "{path}");
    }
    assert_eq!(find("/v1/users/alice").refused, None);
}

#[test]
fn every_route_has_one_row_and_allows_its_methods() {
    for entry in TABLE {
        let rows = TABLE.iter().filter(|other| other.name == entry.name);
        assert_eq!(rows.count(), 1, "{}", entry.name);
        assert!(!entry.is_not_found(), "{}", entry.name);
    }
    assert_eq!(NOT_FOUND.name, "not_found");
    assert_eq!(allow(named("policy")), "GET, PUT");
    assert_eq!(allow(named("user_trusted_devices")), "GET, POST, DELETE");
    assert_eq!(allow(named("check_verification")), "POST");
    assert_eq!(allow(named("get_verification")), "GET");
    assert!(named("twilio_verification").is_twilio() && named("graph_register").is_graph());
}

#[test]
fn each_documented_method_names_its_path_parameters_and_has_a_unique_id() {
    let mut ids = std::collections::HashSet::new();
    for entry in TABLE {
        let in_path = entry.path.matches('{').count();
        for (verb, _, doc) in entry.documented() {
            let named = doc.params.iter().filter(|param| param.place == Place::Path);
            assert_eq!(named.count(), in_path, "{verb} {}", entry.path);
            assert!(ids.insert(doc.id), "{} twice", doc.id);
        }
        // Only the Twilio facade is left out, and it is left out whole.
        assert_eq!(
            entry.documented().count() == 0,
            entry.is_twilio(),
            "{}",
            entry.name
        );
    }
}

#[test]
fn the_document_is_openapi_3_1_with_the_bearer_scheme_and_open_routes_need_no_key() {
    let document: serde_json::Value = serde_json::from_str(document()).unwrap();
    assert!(document["openapi"].as_str().unwrap().starts_with("3.1"));
    assert_eq!(
        document["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert!(document["paths"]["/v1/verifications"]["post"].is_object());
    let open = &document["paths"]["/healthz"]["get"]["security"];
    assert_eq!(open, &serde_json::json!([{}]));
    assert!(document["paths"]["/v1/users/{user}/factors/{factor}"]["delete"]["security"].is_null());
    for schema in ["Problem", "Verification", "GraphErrorBody", "SendAttempt"] {
        assert!(
            document["components"]["schemas"][schema].is_object(),
            "{schema}"
        );
    }
}

#[test]
fn unknown_paths_are_not_found() {
    assert_eq!(find("/v2/nothing").route.name, "not_found");
    assert_eq!(find("/v1/verifications/a/b/c").route.name, "not_found");
}
