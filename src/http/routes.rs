//! The route table: paths to handlers, with the methods each accepts.

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
    /// A provider\'s delivery receipt (unauthenticated: checked by signature or token).
    Receipt,
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
            Route::Receipt => "receipt",
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
            Route::CreateAccount
            | Route::CreateKey
            | Route::StartVerification
            | Route::CheckVerification
            | Route::CancelVerification
            | Route::Users
            | Route::UserDevices
            | Route::CheckDevice
            | Route::Logins
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
            Route::TwilioServices | Route::TwilioVerification => "GET, POST",
            other => other.method(),
        }
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
            ("/v1/users/{param}/trusted-devices", Route::UserDevices),
            (
                "/v1/users/{param}/trusted-devices/{second}",
                Route::UserDevice,
            ),
            ("/v1/trusted-devices/check", Route::CheckDevice),
            ("/v1/logins", Route::Logins),
            ("/v1/audit", Route::Audit),
            ("/v1/receipts/{param}", Route::Receipt),
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

pub fn find(path: &str) -> Matched<'_> {
    match router().at(path) {
        Ok(matched) => Matched {
            route: *matched.value,
            param: matched.params.get("param"),
            second: matched.params.get("second"),
        },
        Err(_) => Matched {
            route: Route::NotFound,
            param: None,
            second: None,
        },
    }
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
        let matched = find("/v1/verifications/VE00abc");
        assert_eq!(matched.route, Route::GetVerification);
        assert_eq!(matched.param, Some("VE00abc"));
    }

    #[test]
    fn account_routes_carry_both_ids_and_accept_their_methods() {
        let matched = find("/v1/users/alice@example.com/trusted-devices/TD00");
        assert_eq!(matched.route, Route::UserDevice);
        assert_eq!(matched.param, Some("alice@example.com"));
        assert_eq!(matched.second, Some("TD00"));
        assert!(Route::Policy.accepts("PUT") && Route::Policy.accepts("GET"));
        assert!(!Route::Policy.accepts("POST"));
        assert_eq!(find("/v1/trusted-devices/check").route, Route::CheckDevice);
    }

    #[test]
    fn unknown_paths_are_not_found() {
        assert_eq!(find("/v2/nothing").route, Route::NotFound);
        assert_eq!(find("/v1/verifications/a/b/c").route, Route::NotFound);
    }
}
