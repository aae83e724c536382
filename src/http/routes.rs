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
            | Route::NotFound => "GET",
            Route::CreateAccount
            | Route::CreateKey
            | Route::StartVerification
            | Route::CheckVerification
            | Route::CancelVerification => "POST",
        }
    }
}

/// A matched route and its one path parameter (account or verification id), if any.
#[derive(Debug, Clone, Copy)]
pub struct Matched<'a> {
    pub route: Route,
    pub param: Option<&'a str>,
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
        ];
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
        },
        Err(_) => Matched {
            route: Route::NotFound,
            param: None,
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
    fn unknown_paths_are_not_found() {
        assert_eq!(find("/v2/nothing").route, Route::NotFound);
        assert_eq!(find("/v1/verifications/a/b/c").route, Route::NotFound);
    }
}
