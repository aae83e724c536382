//! The route table: paths to handlers, with the methods each accepts, and the one place path
//! parameters are percent-decoded and checked.

use std::borrow::Cow;
use std::sync::OnceLock;

use matchit::Router;

use crate::account::permission::Permission;

/// Every route, named for metrics labels (bounded: one value per variant).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Healthz,
    Readyz,
    Metrics,
    CreateAccount,
    CreateKey,
    StartVerification,
    CheckVerification,
    GetVerification,
    CancelVerification,
    // Accounts (issue 5): several methods per path; the handler in `accounts.rs` picks by method.
    Policy,
    Users,
    User,
    UserFactor,
    UserDevices,
    UserDevice,
    CheckDevice,
    Logins,
    Audit,
    // Second factors (`factors.rs`): enrolment, confirmation, challenges, recovery codes.
    UserFactors,
    ConfirmFactor,
    Challenges,
    RecoveryCodes,
    /// A provider\'s delivery receipt (unauthenticated: checked by signature or token).
    Receipt,
    // Phone-number two-step PINs (`pins.rs`).
    PhoneNumbers,
    PhoneNumber,
    RegisterPhoneNumber,
    DisableRequests,
    ResetRequests,
    /// `POST /{version}/{phone_number_id}` `{pin}` and `GET`: the Graph API's PIN call and
    /// the number's fields, for Graph clients (`graph.rs`).
    GraphPhoneNumber,
    /// `POST /{version}/{phone_number_id}/register` `{messaging_product, pin}` (Graph).
    GraphRegister,
    /// The e-mailed links (unauthenticated: the single-use token is the credential).
    TwoStepConfirm,
    TwoStepReset,
    AccountEmail,
    /// `GET /openapi.json`: the OpenAPI document of the v1 API (`openapi.rs`).
    OpenApi,
    // The Twilio Verify v2 facade (`twilio.rs`): HTTP Basic auth, form bodies, Twilio's JSON.
    TwilioServices,
    TwilioService,
    TwilioVerifications,
    TwilioVerification,
    TwilioVerificationCheck,
    NotFound,
}

impl Route {
    /// The route's row of the table.
    pub fn entry(self) -> &'static Entry {
        TABLE
            .iter()
            .find(|entry| entry.route == self)
            .unwrap_or(&NOT_FOUND)
    }

    /// The metrics label.
    pub fn name(self) -> &'static str {
        self.entry().name
    }

    /// Every method the route accepts, for 405 and `Allow` (`GET, POST`).
    pub fn allow(self) -> &'static str {
        static ALLOW: OnceLock<Vec<String>> = OnceLock::new();
        let allow = ALLOW.get_or_init(|| {
            let methods = |entry: &Entry| -> Vec<&str> {
                entry.methods.iter().map(|(method, _)| *method).collect()
            };
            TABLE
                .iter()
                .map(|entry| methods(entry).join(", "))
                .collect()
        });
        TABLE
            .iter()
            .position(|entry| entry.route == self)
            .map_or("GET", |index| allow[index].as_str())
    }

    /// Who may call the route with `method`; `None` for a method it does not accept.
    pub fn access(self, method: &str) -> Option<Access> {
        self.entry()
            .methods
            .iter()
            .find(|(accepted, _)| *accepted == method)
            .map(|(_, access)| *access)
    }

    /// Routes of the Graph API facade: Graph's token forms and error objects (`graph.rs`).
    pub fn is_graph(self) -> bool {
        self.entry().api() == Some(Access::Graph)
    }

    /// Routes of the Twilio Verify v2 facade: they authenticate with HTTP Basic, not Bearer.
    pub fn is_twilio(self) -> bool {
        self.entry().api() == Some(Access::Twilio)
    }

    pub fn accepts(self, method: &str) -> bool {
        self.access(method).is_some()
    }
}

/// Who may call a route, and so which code authenticates the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, before any limit: health, readiness, metrics, the OpenAPI document.
    Open,
    /// A provider's delivery receipt: checked by the vendor's signature or the receipt token.
    Receipt,
    /// An e-mailed link: the single-use token in it is the credential.
    Link,
    /// The Graph facade: a token in the header, the query or the body.
    Graph,
    /// The Twilio facade: HTTP Basic (account id and key).
    Twilio,
    /// The root key, for what only the operator does.
    Root(Permission),
    /// The root key or a key of the account in the path (the handler checks which account).
    RootOrKey(Permission),
    /// A key whose role the permission table allows.
    Key(Permission),
}

/// One row of the route table: a path (matchit syntax: `{param}`, `{second}`), its route, its
/// metrics name, and each method it accepts with who may call it.
pub struct Entry {
    pub path: &'static str,
    pub route: Route,
    pub name: &'static str,
    pub methods: &'static [(&'static str, Access)],
}

impl Entry {
    /// The facade or the unauthenticated kind the route belongs to, when all its methods share it.
    fn api(&self) -> Option<Access> {
        let (_, first) = self.methods.first()?;
        self.methods
            .iter()
            .all(|(_, access)| access == first)
            .then_some(*first)
    }
}

/// A matched route and its path parameters (account, verification or user id; then a device or
/// factor id), if any.
#[derive(Debug, Clone, Copy)]
pub struct Matched<'a> {
    pub route: Route,
    pub param: Option<&'a str>,
    pub second: Option<&'a str>,
}

/// A route found for a path, owning its percent-decoded parameters.
#[derive(Debug)]
pub struct Found<'p> {
    pub route: Route,
    param: Option<Cow<'p, str>>,
    second: Option<Cow<'p, str>>,
    /// Why a parameter was refused, if one was: the request then gets 400 before any handler
    /// sees it.
    pub refused: Option<&'static str>,
}

impl Found<'_> {
    /// The route and its decoded parameters, as the handlers take them.
    pub fn matched(&self) -> Matched<'_> {
        Matched {
            route: self.route,
            param: self.param.as_deref(),
            second: self.second.as_deref(),
        }
    }
}

/// The detail of the 400 for a refused path parameter.
pub const REFUSED_PARAMETER: &str = "a path parameter, once percent-decoded, must be valid UTF-8 and must not be '.' or '..' nor contain '/' or control characters";

/// Decodes one path segment (`%2B` is `+`, `%40` is `@`) exactly once, as every HTTP client
/// encodes ids it puts in a path, and refuses what no id may be: a dot segment, a slash that
/// would change the path's shape, control characters, bytes that are not UTF-8.
fn decode_segment(raw: &str) -> Result<Cow<'_, str>, &'static str> {
    let decoded = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| REFUSED_PARAMETER)?;
    if decoded == "."
        || decoded == ".."
        || decoded.contains('/')
        || decoded.contains(char::is_control)
    {
        return Err(REFUSED_PARAMETER);
    }
    Ok(decoded)
}

const fn row(
    path: &'static str,
    route: Route,
    name: &'static str,
    methods: &'static [(&'static str, Access)],
) -> Entry {
    Entry {
        path,
        route,
        name,
        methods,
    }
}

use Access::{Graph, Key, Link, Open, Receipt, Root, RootOrKey, Twilio};
use Permission::{
    AskTwoStepLinks, CreateAccounts, ManagePeople, ManagePhoneNumbers, MintKeys, ReadAudit,
    ReadPolicy, RegisterNumbers, RevokeDevices, RunLogins, SendCodes, SetAccountEmail, SetPins,
    UseFactors,
};

const NOT_FOUND: Entry = row("", Route::NotFound, "not_found", &[]);

/// The routes. Adding one: a `Route` variant, a row here, its arm in `router.rs`, its handler.
/// Static segments win over parameters (`/v2/Services` over `/{param}/{second}`).
#[rustfmt::skip]
pub const TABLE: &[Entry] = &[
    row("/healthz", Route::Healthz, "healthz", &[("GET", Open)]),
    row("/readyz", Route::Readyz, "readyz", &[("GET", Open)]),
    row("/metrics", Route::Metrics, "metrics", &[("GET", Open)]),
    row("/openapi.json", Route::OpenApi, "openapi", &[("GET", Open)]),
    row("/v1/accounts", Route::CreateAccount, "create_account", &[("POST", Root(CreateAccounts))]),
    row("/v1/accounts/{param}/keys", Route::CreateKey, "create_key", &[("POST", RootOrKey(MintKeys))]),
    row("/v1/accounts/{param}/email", Route::AccountEmail, "account_email", &[("PUT", Root(SetAccountEmail))]),
    row("/v1/verifications", Route::StartVerification, "start_verification", &[("POST", Key(SendCodes))]),
    row("/v1/verifications/check", Route::CheckVerification, "check_verification", &[("POST", Key(SendCodes))]),
    row("/v1/verifications/{param}", Route::GetVerification, "get_verification", &[("GET", Key(SendCodes))]),
    row("/v1/verifications/{param}/cancel", Route::CancelVerification, "cancel_verification", &[("POST", Key(SendCodes))]),
    row("/v1/policy", Route::Policy, "policy", &[("GET", Key(ReadPolicy)), ("PUT", Key(ManagePeople))]),
    row("/v1/users", Route::Users, "users", &[("POST", Key(ManagePeople))]),
    row("/v1/users/{param}", Route::User, "user", &[("GET", Key(ManagePeople)), ("PATCH", Key(ManagePeople))]),
    row("/v1/users/{param}/factors/{second}", Route::UserFactor, "user_factor", &[("DELETE", Key(ManagePeople))]),
    row("/v1/users/{param}/factors", Route::UserFactors, "user_factors", &[("POST", Key(UseFactors))]),
    row("/v1/users/{param}/factors/{second}/confirm", Route::ConfirmFactor, "confirm_factor", &[("POST", Key(UseFactors))]),
    row("/v1/users/{param}/challenges", Route::Challenges, "challenges", &[("POST", Key(UseFactors))]),
    row("/v1/users/{param}/recovery-codes", Route::RecoveryCodes, "recovery_codes", &[("POST", Key(UseFactors))]),
    row("/v1/users/{param}/trusted-devices", Route::UserDevices, "user_trusted_devices", &[("POST", Key(RunLogins)), ("DELETE", Key(RevokeDevices))]),
    row("/v1/users/{param}/trusted-devices/{second}", Route::UserDevice, "user_trusted_device", &[("DELETE", Key(RevokeDevices))]),
    row("/v1/trusted-devices/check", Route::CheckDevice, "check_trusted_device", &[("POST", Key(RunLogins))]),
    row("/v1/logins", Route::Logins, "logins", &[("POST", Key(RunLogins))]),
    row("/v1/audit", Route::Audit, "audit", &[("GET", Key(ReadAudit))]),
    row("/v1/receipts/{param}", Route::Receipt, "receipt", &[("GET", Receipt), ("POST", Receipt)]),
    row("/v1/phone-numbers", Route::PhoneNumbers, "phone_numbers", &[("POST", Key(ManagePhoneNumbers))]),
    row("/v1/phone-numbers/{param}", Route::PhoneNumber, "phone_number", &[("GET", Key(ManagePhoneNumbers)), ("POST", Key(SetPins))]),
    row("/v1/phone-numbers/{param}/register", Route::RegisterPhoneNumber, "register_phone_number", &[("POST", Key(RegisterNumbers))]),
    row("/v1/phone-numbers/{param}/two-step/disable-requests", Route::DisableRequests, "two_step_disable_requests", &[("POST", Key(AskTwoStepLinks))]),
    row("/v1/phone-numbers/{param}/two-step/reset-requests", Route::ResetRequests, "two_step_reset_requests", &[("POST", Key(AskTwoStepLinks))]),
    row("/v1/two-step/confirm", Route::TwoStepConfirm, "two_step_confirm", &[("GET", Link), ("POST", Link)]),
    row("/v1/two-step/reset", Route::TwoStepReset, "two_step_reset", &[("GET", Link), ("POST", Link)]),
    // Any other two-segment path: `find` keeps it only when the first segment is a Graph version
    // (`v24.0`); static routes win over it.
    row("/{param}/{second}", Route::GraphPhoneNumber, "graph_phone_number", &[("GET", Graph), ("POST", Graph)]),
    row("/{param}/{second}/register", Route::GraphRegister, "graph_register", &[("POST", Graph)]),
    row("/v2/Services", Route::TwilioServices, "twilio_services", &[("GET", Twilio), ("POST", Twilio)]),
    row("/v2/Services/{param}", Route::TwilioService, "twilio_service", &[("GET", Twilio)]),
    row("/v2/Services/{param}/Verifications", Route::TwilioVerifications, "twilio_start_verification", &[("POST", Twilio)]),
    row("/v2/Services/{param}/Verifications/{second}", Route::TwilioVerification, "twilio_verification", &[("GET", Twilio), ("POST", Twilio)]),
    row("/v2/Services/{param}/VerificationCheck", Route::TwilioVerificationCheck, "twilio_check_verification", &[("POST", Twilio)]),
];

/// Every path of the route table with its route, for the OpenAPI document's completeness test
/// and for benches.
pub fn table() -> &'static [(&'static str, Route)] {
    static PATHS: OnceLock<Vec<(&'static str, Route)>> = OnceLock::new();
    PATHS.get_or_init(|| {
        TABLE
            .iter()
            .map(|entry| (entry.path, entry.route))
            .collect()
    })
}

fn router() -> &'static Router<Route> {
    static ROUTER: OnceLock<Router<Route>> = OnceLock::new();
    ROUTER.get_or_init(|| {
        let mut router = Router::new();
        for entry in TABLE {
            router
                .insert(entry.path, entry.route)
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
                route: *matched.value,
                param,
                second,
                refused,
            }
        }
        _ => Found {
            route: Route::NotFound,
            param: None,
            second: None,
            refused: None,
        },
    }
}

/// The Graph routes match any first segment; they exist only for `v<digits>.<digits>`
/// versions (which of those Graph serves is `graph.rs`'s concern: it answers Graph's error).
fn graph_version_or_other(matched: &matchit::Match<'_, '_, &Route>) -> bool {
    !matched.value.is_graph()
        || matched
            .params
            .get("param")
            .is_some_and(crate::pin::is_graph_version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_segments_win_over_parameters() {
        assert_eq!(
            find("/v1/verifications/check").route,
            Route::CheckVerification
        );
        let found = find("/v1/verifications/VE00abc");
        let matched = found.matched();
        assert_eq!(matched.route, Route::GetVerification);
        assert_eq!(matched.param, Some("VE00abc"));
    }

    #[test]
    fn account_routes_carry_both_ids_and_accept_their_methods() {
        let found = find("/v1/users/alice@example.com/trusted-devices/TD00");
        let matched = found.matched();
        assert_eq!(matched.route, Route::UserDevice);
        assert_eq!(matched.param, Some("alice@example.com"));
        assert_eq!(matched.second, Some("TD00"));
        assert!(Route::Policy.accepts("PUT") && Route::Policy.accepts("GET"));
        assert!(!Route::Policy.accepts("POST"));
        assert_eq!(find("/v1/trusted-devices/check").route, Route::CheckDevice);
    }

    #[test]
    fn the_graph_route_never_shadows_the_others() {
        let found = find("/v24.0/106540352242922");
        let matched = found.matched();
        assert_eq!(matched.route, Route::GraphPhoneNumber);
        assert_eq!(matched.second, Some("106540352242922"));
        assert_eq!(find("/v1/audit").route, Route::Audit);
        assert_eq!(find("/v1/policy").route, Route::Policy);
        assert_eq!(find("/v1/users").route, Route::Users);
        assert_eq!(find("/v1/logins").route, Route::Logins);
        assert_eq!(find("/v1/verifications").route, Route::StartVerification);
        assert_eq!(find("/healthz").route, Route::Healthz);
        assert_eq!(find("/v1/phone-numbers").route, Route::PhoneNumbers);
        assert_eq!(
            find("/v1/phone-numbers/106540352242922").route,
            Route::PhoneNumber
        );
        for not_graph in [
            "/v1/106540352242922",
            "/v2/nothing",
            "/healthz/x",
            "/x/y",
            "/v24/1",
        ] {
            assert_eq!(find(not_graph).route, Route::NotFound, "{not_graph}");
        }
    }

    #[test]
    fn factor_routes_carry_the_user_and_the_factor() {
        let found = find("/v1/users/alice/factors/FA01/confirm");
        let matched = found.matched();
        assert_eq!(matched.route, Route::ConfirmFactor);
        assert_eq!(matched.param, Some("alice"));
        assert_eq!(matched.second, Some("FA01"));
        assert_eq!(find("/v1/users/alice/factors").route, Route::UserFactors);
        assert_eq!(
            find("/v1/users/alice/factors/FA01").route,
            Route::UserFactor
        );
        assert_eq!(find("/v1/users/alice/challenges").route, Route::Challenges);
        assert_eq!(
            find("/v1/users/alice/recovery-codes").route,
            Route::RecoveryCodes
        );
    }

    #[test]
    fn parameters_are_percent_decoded_once() {
        let found = find("/v1/users/ada.lovelace%2B2fa%40example.com/factors/FA%30%31");
        assert_eq!(found.refused, None);
        let matched = found.matched();
        assert_eq!(matched.route, Route::UserFactor);
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
            assert_ne!(found.route, Route::NotFound, "{path}");
            assert_eq!(found.refused, Some(REFUSED_PARAMETER), "{path}");
        }
        assert_eq!(find("/v1/users/alice").refused, None);
    }

    #[test]
    fn every_route_has_one_row_and_allows_its_methods() {
        for entry in TABLE {
            let rows = TABLE.iter().filter(|other| other.route == entry.route);
            assert_eq!(rows.count(), 1, "{:?}", entry.route);
            assert!(!entry.methods.is_empty(), "{:?}", entry.route);
        }
        assert_eq!(Route::NotFound.name(), "not_found");
        assert_eq!(Route::Policy.allow(), "GET, PUT");
        assert_eq!(Route::UserDevices.allow(), "POST, DELETE");
        assert_eq!(Route::CheckVerification.allow(), "POST");
        assert_eq!(Route::GetVerification.allow(), "GET");
        assert!(Route::TwilioVerification.is_twilio() && Route::GraphRegister.is_graph());
    }

    #[test]
    fn unknown_paths_are_not_found() {
        assert_eq!(find("/v2/nothing").route, Route::NotFound);
        assert_eq!(find("/v1/verifications/a/b/c").route, Route::NotFound);
    }
}
