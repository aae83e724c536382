//! The route table: paths to handlers, with the methods each accepts, and the one place path
//! parameters are percent-decoded and checked.

use std::borrow::Cow;
use std::sync::OnceLock;

use matchit::Router;

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
    pub fn name(self) -> &'static str {
        match self {
            Route::Healthz => "healthz",
            Route::Readyz => "readyz",
            Route::Metrics => "metrics",
            Route::CreateAccount => "create_account",
            Route::CreateKey => "create_key",
            Route::StartVerification => "start_verification",
            Route::CheckVerification => "check_verification",
            Route::GetVerification => "get_verification",
            Route::CancelVerification => "cancel_verification",
            Route::Policy => "policy",
            Route::Users => "users",
            Route::User => "user",
            Route::UserFactor => "user_factor",
            Route::UserDevices => "user_trusted_devices",
            Route::UserDevice => "user_trusted_device",
            Route::CheckDevice => "check_trusted_device",
            Route::Logins => "logins",
            Route::Audit => "audit",
            Route::UserFactors => "user_factors",
            Route::ConfirmFactor => "confirm_factor",
            Route::Challenges => "challenges",
            Route::RecoveryCodes => "recovery_codes",
            Route::Receipt => "receipt",
            Route::PhoneNumbers => "phone_numbers",
            Route::PhoneNumber => "phone_number",
            Route::RegisterPhoneNumber => "register_phone_number",
            Route::DisableRequests => "two_step_disable_requests",
            Route::ResetRequests => "two_step_reset_requests",
            Route::GraphPhoneNumber => "graph_phone_number",
            Route::GraphRegister => "graph_register",
            Route::TwoStepConfirm => "two_step_confirm",
            Route::TwoStepReset => "two_step_reset",
            Route::AccountEmail => "account_email",
            Route::OpenApi => "openapi",
            Route::TwilioServices => "twilio_services",
            Route::TwilioService => "twilio_service",
            Route::TwilioVerifications => "twilio_start_verification",
            Route::TwilioVerification => "twilio_verification",
            Route::TwilioVerificationCheck => "twilio_check_verification",
            Route::NotFound => "not_found",
        }
    }

    /// The one method each route accepts, for 405 and `Allow`.
    pub fn method(self) -> &'static str {
        match self {
            Route::Healthz
            | Route::Readyz
            | Route::Metrics
            | Route::GetVerification
            | Route::Policy
            | Route::User
            | Route::Audit
            | Route::OpenApi
            | Route::TwilioService
            | Route::NotFound => "GET",
            Route::UserFactor | Route::UserDevice => "DELETE",
            Route::AccountEmail => "PUT",
            Route::PhoneNumbers
            | Route::PhoneNumber
            | Route::RegisterPhoneNumber
            | Route::DisableRequests
            | Route::ResetRequests
            | Route::GraphPhoneNumber
            | Route::GraphRegister
            | Route::TwoStepConfirm
            | Route::TwoStepReset => "POST",
            Route::CreateAccount
            | Route::CreateKey
            | Route::StartVerification
            | Route::CheckVerification
            | Route::CancelVerification
            | Route::Users
            | Route::UserDevices
            | Route::CheckDevice
            | Route::Logins
            | Route::UserFactors
            | Route::ConfirmFactor
            | Route::Challenges
            | Route::RecoveryCodes
            | Route::Receipt
            | Route::TwilioServices
            | Route::TwilioVerifications
            | Route::TwilioVerification
            | Route::TwilioVerificationCheck => "POST",
        }
    }

    /// Every method a route accepts, for 405 and `Allow`.
    pub fn allow(self) -> &'static str {
        match self {
            Route::Policy => "GET, PUT",
            Route::User => "GET, PATCH",
            Route::UserDevices => "POST, DELETE",
            Route::Receipt => "GET, POST",
            Route::PhoneNumber
            | Route::GraphPhoneNumber
            | Route::TwoStepConfirm
            | Route::TwoStepReset => "GET, POST",
            Route::TwilioServices | Route::TwilioVerification => "GET, POST",
            other => other.method(),
        }
    }

    /// Routes of the Graph API facade: Graph's token forms and error objects (`graph.rs`).
    pub fn is_graph(self) -> bool {
        matches!(self, Route::GraphPhoneNumber | Route::GraphRegister)
    }

    /// Routes of the Twilio Verify v2 facade: they authenticate with HTTP Basic, not Bearer.
    pub fn is_twilio(self) -> bool {
        matches!(
            self,
            Route::TwilioServices
                | Route::TwilioService
                | Route::TwilioVerifications
                | Route::TwilioVerification
                | Route::TwilioVerificationCheck
        )
    }

    pub fn accepts(self, method: &str) -> bool {
        self.allow().split(", ").any(|allowed| allowed == method)
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

static TABLE: OnceLock<Vec<(&'static str, Route)>> = OnceLock::new();

/// Every path of the route table with its route (matchit syntax: `{param}`, `{second}`), for the
/// OpenAPI document's completeness test and for benches.
pub fn table() -> &'static [(&'static str, Route)] {
    router();
    TABLE.get().map(Vec::as_slice).unwrap_or_default()
}

fn router() -> &'static Router<Route> {
    static ROUTER: OnceLock<Router<Route>> = OnceLock::new();
    ROUTER.get_or_init(|| {
        let mut router = Router::new();
        let table = [
            ("/healthz", Route::Healthz),
            ("/readyz", Route::Readyz),
            ("/metrics", Route::Metrics),
            ("/v1/accounts", Route::CreateAccount),
            ("/v1/accounts/{param}/keys", Route::CreateKey),
            ("/v1/verifications", Route::StartVerification),
            ("/v1/verifications/check", Route::CheckVerification),
            ("/v1/verifications/{param}", Route::GetVerification),
            (
                "/v1/verifications/{param}/cancel",
                Route::CancelVerification,
            ),
            ("/v1/policy", Route::Policy),
            ("/v1/users", Route::Users),
            ("/v1/users/{param}", Route::User),
            ("/v1/users/{param}/factors/{second}", Route::UserFactor),
            ("/v1/users/{param}/factors", Route::UserFactors),
            (
                "/v1/users/{param}/factors/{second}/confirm",
                Route::ConfirmFactor,
            ),
            ("/v1/users/{param}/challenges", Route::Challenges),
            ("/v1/users/{param}/recovery-codes", Route::RecoveryCodes),
            ("/v1/users/{param}/trusted-devices", Route::UserDevices),
            (
                "/v1/users/{param}/trusted-devices/{second}",
                Route::UserDevice,
            ),
            ("/v1/trusted-devices/check", Route::CheckDevice),
            ("/v1/logins", Route::Logins),
            ("/v1/audit", Route::Audit),
            ("/v1/receipts/{param}", Route::Receipt),
            ("/v1/accounts/{param}/email", Route::AccountEmail),
            ("/v1/phone-numbers", Route::PhoneNumbers),
            ("/v1/phone-numbers/{param}", Route::PhoneNumber),
            (
                "/v1/phone-numbers/{param}/register",
                Route::RegisterPhoneNumber,
            ),
            (
                "/v1/phone-numbers/{param}/two-step/disable-requests",
                Route::DisableRequests,
            ),
            (
                "/v1/phone-numbers/{param}/two-step/reset-requests",
                Route::ResetRequests,
            ),
            ("/v1/two-step/confirm", Route::TwoStepConfirm),
            ("/v1/two-step/reset", Route::TwoStepReset),
            // Any other two-segment path: `find` keeps it only when the first segment is a
            // Graph version (`v24.0`); static routes win over it.
            ("/{param}/{second}", Route::GraphPhoneNumber),
            ("/{param}/{second}/register", Route::GraphRegister),
            ("/openapi.json", Route::OpenApi),
            // Static prefixes (`/v2/Services`) win over any `/{version}/...` parameter route.
            ("/v2/Services", Route::TwilioServices),
            ("/v2/Services/{param}", Route::TwilioService),
            (
                "/v2/Services/{param}/Verifications",
                Route::TwilioVerifications,
            ),
            (
                "/v2/Services/{param}/Verifications/{second}",
                Route::TwilioVerification,
            ),
            (
                "/v2/Services/{param}/VerificationCheck",
                Route::TwilioVerificationCheck,
            ),
        ];
        TABLE.get_or_init(|| table.to_vec());
        for (path, route) in table {
            router
                .insert(path, route)
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
    fn unknown_paths_are_not_found() {
        assert_eq!(find("/v2/nothing").route, Route::NotFound);
        assert_eq!(find("/v1/verifications/a/b/c").route, Route::NotFound);
    }
}
