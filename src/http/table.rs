//! The route table: every path, its name, and per method who may call it and its handler.
//! Adding a route is one row here, its handler and its wire types.

use std::collections::HashMap;
use std::sync::OnceLock;

use matchit::Router;

use super::routes::{decode_segment, row, Access, Entry, Found};
use crate::account::permission::Permission;

/// A handler of the table: an `async fn(Call) -> Reply`, boxed.
macro_rules! to {
    ($handler:path) => {
        |call| Box::pin($handler(call))
    };
}

use super::{accounts, factors, graph, keys, operations, pins, twilio, verifications, webhooks};
use Access::{Graph, Key, Link, Open, Receipt, Root, RootOrKey, Twilio};
use Permission::{
    AskTwoStepLinks, CreateAccounts, ManagePeople, ManagePhoneNumbers, MintKeys, ReadAudit,
    ReadPolicy, RegisterNumbers, RevokeDevices, RunLogins, SendCodes, SetAccountEmail, SetPins,
    UseFactors,
};

static NOT_FOUND: Entry = row("", "not_found", &[]);

/// The routes. Adding one: a row here and its handler. Static segments win over parameters
/// (`/v2/Services` over `/{param}/{second}`).
#[rustfmt::skip]
pub static TABLE: &[Entry] = &[
    row("/healthz", "healthz", &[("GET", Open, to!(operations::healthz))]),
    row("/readyz", "readyz", &[("GET", Open, to!(operations::readyz))]),
    row("/metrics", "metrics", &[("GET", Open, to!(operations::metrics))]),
    row("/openapi.json", "openapi", &[("GET", Open, to!(operations::document))]),
    row("/v1/accounts", "create_account", &[("POST", Root(CreateAccounts), to!(keys::create_account))]),
    row("/v1/accounts/{param}/keys", "create_key", &[("POST", RootOrKey(MintKeys), to!(keys::create_key))]),
    row("/v1/accounts/{param}/email", "account_email", &[("PUT", Root(SetAccountEmail), to!(keys::set_account_email))]),
    row("/v1/verifications", "start_verification", &[("POST", Key(SendCodes), to!(verifications::start))]),
    row("/v1/verifications/check", "check_verification", &[("POST", Key(SendCodes), to!(verifications::check))]),
    row("/v1/verifications/{param}", "get_verification", &[("GET", Key(SendCodes), to!(verifications::get))]),
    row("/v1/verifications/{param}/cancel", "cancel_verification", &[("POST", Key(SendCodes), to!(verifications::cancel))]),
    row("/v1/policy", "policy", &[("GET", Key(ReadPolicy), to!(accounts::get_policy)), ("PUT", Key(ManagePeople), to!(accounts::put_policy))]),
    row("/v1/users", "users", &[("POST", Key(ManagePeople), to!(accounts::create_user))]),
    row("/v1/users/{param}", "user", &[("GET", Key(ManagePeople), to!(accounts::get_user)), ("PATCH", Key(ManagePeople), to!(accounts::patch_user))]),
    row("/v1/users/{param}/factors/{second}", "user_factor", &[("DELETE", Key(ManagePeople), to!(accounts::remove_factor))]),
    row("/v1/users/{param}/factors", "user_factors", &[("POST", Key(UseFactors), to!(factors::enrolment))]),
    row("/v1/users/{param}/factors/{second}/confirm", "confirm_factor", &[("POST", Key(UseFactors), to!(factors::confirmation))]),
    row("/v1/users/{param}/challenges", "challenges", &[("POST", Key(UseFactors), to!(factors::challenges))]),
    row("/v1/users/{param}/recovery-codes", "recovery_codes", &[("POST", Key(UseFactors), to!(factors::recovery_codes))]),
    row("/v1/users/{param}/trusted-devices", "user_trusted_devices", &[("POST", Key(RunLogins), to!(accounts::trust_device)), ("DELETE", Key(RevokeDevices), to!(accounts::revoke_devices))]),
    row("/v1/users/{param}/trusted-devices/{second}", "user_trusted_device", &[("DELETE", Key(RevokeDevices), to!(accounts::revoke_device))]),
    row("/v1/trusted-devices/check", "check_trusted_device", &[("POST", Key(RunLogins), to!(accounts::check_device))]),
    row("/v1/logins", "logins", &[("POST", Key(RunLogins), to!(accounts::login))]),
    row("/v1/audit", "audit", &[("GET", Key(ReadAudit), to!(accounts::audit))]),
    row("/v1/receipts/{param}", "receipt", &[("GET", Receipt, to!(webhooks::receipt)), ("POST", Receipt, to!(webhooks::receipt))]),
    row("/v1/phone-numbers", "phone_numbers", &[("POST", Key(ManagePhoneNumbers), to!(pins::add_number))]),
    row("/v1/phone-numbers/{param}", "phone_number", &[("GET", Key(ManagePhoneNumbers), to!(pins::get_number)), ("POST", Key(SetPins), to!(pins::set_pin))]),
    row("/v1/phone-numbers/{param}/register", "register_phone_number", &[("POST", Key(RegisterNumbers), to!(pins::register))]),
    row("/v1/phone-numbers/{param}/two-step/disable-requests", "two_step_disable_requests", &[("POST", Key(AskTwoStepLinks), to!(pins::disable_request))]),
    row("/v1/phone-numbers/{param}/two-step/reset-requests", "two_step_reset_requests", &[("POST", Key(AskTwoStepLinks), to!(pins::reset_request))]),
    row("/v1/two-step/confirm", "two_step_confirm", &[("GET", Link, to!(pins::confirm_link)), ("POST", Link, to!(pins::confirm_link))]),
    row("/v1/two-step/reset", "two_step_reset", &[("GET", Link, to!(pins::peek_reset_link)), ("POST", Link, to!(pins::reset_link))]),
    // Any other two-segment path: `find` keeps it only when the first segment is a Graph version
    // (`v24.0`); static routes win over it.
    row("/{param}/{second}", "graph_phone_number", &[("GET", Graph, to!(graph::get_number)), ("POST", Graph, to!(graph::set_pin))]),
    row("/{param}/{second}/register", "graph_register", &[("POST", Graph, to!(graph::register))]),
    row("/v2/Services", "twilio_services", &[("GET", Twilio, to!(twilio::get_services)), ("POST", Twilio, to!(twilio::post_services))]),
    row("/v2/Services/{param}", "twilio_service", &[("GET", Twilio, to!(twilio::get_service))]),
    row("/v2/Services/{param}/Verifications", "twilio_start_verification", &[("POST", Twilio, to!(twilio::post_verifications))]),
    row("/v2/Services/{param}/Verifications/{second}", "twilio_verification", &[("GET", Twilio, to!(twilio::get_verification)), ("POST", Twilio, to!(twilio::post_verification))]),
    row("/v2/Services/{param}/VerificationCheck", "twilio_check_verification", &[("POST", Twilio, to!(twilio::post_verification_check))]),
];

/// Every method `entry` accepts, for 405 and `Allow` (`GET, POST`): joined once for the whole
/// table, beside the matcher.
pub fn allow(entry: &Entry) -> &'static str {
    static ALLOW: OnceLock<HashMap<&'static str, String>> = OnceLock::new();
    let allow = ALLOW.get_or_init(|| {
        TABLE
            .iter()
            .map(|row| (row.name, row.methods().collect::<Vec<_>>().join(", ")))
            .collect()
    });
    allow.get(entry.name).map_or("GET", String::as_str)
}

/// Every path of the route table with its row, for the OpenAPI document's completeness test
/// and for benches.
pub fn table() -> &'static [(&'static str, &'static Entry)] {
    static PATHS: OnceLock<Vec<(&'static str, &'static Entry)>> = OnceLock::new();
    PATHS.get_or_init(|| TABLE.iter().map(|entry| (entry.path, entry)).collect())
}

fn router() -> &'static Router<&'static Entry> {
    static ROUTER: OnceLock<Router<&'static Entry>> = OnceLock::new();
    ROUTER.get_or_init(|| {
        let mut router = Router::new();
        for entry in TABLE {
            router
                .insert(entry.path, entry)
                .expect("the route table is a constant without conflicts; the unit tests hold it");
        }
        router
    })
}

/// The route of `path` (as it came, percent-encoded) with its parameters decoded once.
pub fn find(path: &str) -> Found<'_> {
    match router().at(path) {
        Ok(matched) if graph_version_or_other(&matched) => {
            let mut refused = None;
            let mut decode = |name: &str| {
                let raw = matched.params.get(name)?;
                match decode_segment(raw) {
                    Ok(decoded) => Some(decoded),
                    Err(reason) => {
                        refused = Some(reason);
                        None
                    }
                }
            };
            let param = decode("param");
            let second = decode("second");
            Found {
                route: matched.value,
                param,
                second,
                refused,
            }
        }
        _ => Found {
            route: &NOT_FOUND,
            param: None,
            second: None,
            refused: None,
        },
    }
}

/// The Graph routes match any first segment; they exist only for `v<digits>.<digits>`
/// versions (which of those Graph serves is `graph.rs`'s concern: it answers Graph's error).
fn graph_version_or_other(matched: &matchit::Match<'_, '_, &&'static Entry>) -> bool {
    !matched.value.is_graph()
        || matched
            .params
            .get("param")
            .is_some_and(crate::pin::is_graph_version)
}

#[cfg(test)]
mod tests {
    use super::*;
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
        assert_eq!(allow(named("user_trusted_devices")), "POST, DELETE");
        assert_eq!(allow(named("check_verification")), "POST");
        assert_eq!(allow(named("get_verification")), "GET");
        assert!(named("twilio_verification").is_twilio() && named("graph_register").is_graph());
    }

    #[test]
    fn unknown_paths_are_not_found() {
        assert_eq!(find("/v2/nothing").route.name, "not_found");
        assert_eq!(find("/v1/verifications/a/b/c").route.name, "not_found");
    }
}
