//! The dispatcher: a matched route's method checked, the operations endpoints answered, the
//! address limited, the caller authenticated, and the request handed to its API's handler.

use std::net::IpAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use super::auth::authenticate;
use super::body::text;
use super::error::ApiError;
use super::routes::{Matched, Route};
use super::{accounts, factors, graph, keys, openapi, pins, twilio, verifications, webhooks};
use crate::App;

pub(super) async fn dispatch(
    app: &App,
    ip: IpAddr,
    matched: Matched<'_>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let route = matched.route;
    if route == Route::NotFound {
        return Err(ApiError::NotFound("no such path"));
    }
    if !route.accepts(request.method().as_str()) {
        return Err(ApiError::MethodNotAllowed(route.allow()));
    }
    match route {
        Route::Healthz => {
            // Liveness: the process is up, and its store client has not been stuck while
            // Redis answers (then only a restart helps).
            app.store().liveness()?;
            return Ok(text(
                StatusCode::OK,
                "text/plain; charset=utf-8",
                "ok\n".into(),
            ));
        }
        Route::Readyz => {
            app.store().ping().await?;
            // The outbox: reads failing for longer than the configured window.
            app.verifier()
                .dispatcher()
                .readiness()
                .map_err(ApiError::Unavailable)?;
            return Ok(text(
                StatusCode::OK,
                "text/plain; charset=utf-8",
                "ready\n".into(),
            ));
        }
        Route::Metrics => {
            return Ok(text(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                app.metrics().render(),
            ))
        }
        Route::OpenApi => return Ok(openapi::response()),
        _ => {}
    }
    app.limits().check_ip(ip).map_err(|retry| {
        app.metrics().rate_limited("ip");
        ApiError::rate_limited("ip", retry.seconds())
    })?;
    if route == Route::Receipt {
        // Vendors cannot hold our keys: receipts are checked by signature or token instead.
        return webhooks::receipt(app, matched.param.unwrap_or_default(), request).await;
    }
    if matches!(route, Route::TwoStepConfirm | Route::TwoStepReset) {
        // Opened from an e-mail: the single-use token in the link is the credential.
        return pins::link(app, ip, matched, request).await;
    }
    if route.is_graph() {
        // The Graph facade: Graph's token forms (header, query, form field) and error objects.
        return Ok(graph::handle(app, ip, matched, request).await);
    }
    if route.is_twilio() {
        // The Twilio facade authenticates with HTTP Basic (account id and key), as Twilio does.
        return Ok(twilio::handle(app, ip, matched, request).await);
    }
    let caller = authenticate(app, ip, &request).await?;
    match route {
        Route::CreateAccount => keys::create_account(app, caller, request).await,
        Route::CreateKey => {
            keys::create_key(app, caller, matched.param.unwrap_or_default(), request).await
        }
        Route::AccountEmail => keys::set_account_email(app, caller, matched.param, request).await,
        Route::StartVerification => verifications::start_verification(app, caller, request).await,
        Route::CheckVerification => verifications::check_verification(app, caller, request).await,
        Route::GetVerification => verifications::get_verification(app, caller, matched.param).await,
        Route::CancelVerification => {
            verifications::cancel_verification(app, caller, matched.param).await
        }
        Route::UserFactors | Route::ConfirmFactor | Route::Challenges | Route::RecoveryCodes => {
            factors::handle(app, caller, matched, request).await
        }
        Route::Policy
        | Route::Users
        | Route::User
        | Route::UserFactor
        | Route::UserDevices
        | Route::UserDevice
        | Route::CheckDevice
        | Route::Logins
        | Route::Audit => accounts::handle(app, caller, matched, request).await,
        Route::PhoneNumbers
        | Route::PhoneNumber
        | Route::RegisterPhoneNumber
        | Route::DisableRequests
        | Route::ResetRequests => pins::handle(app, caller, matched, request).await,
        Route::TwoStepConfirm | Route::TwoStepReset => Err(ApiError::Internal),
        Route::Healthz
        | Route::Readyz
        | Route::Metrics
        | Route::NotFound
        | Route::Receipt
        | Route::OpenApi
        | Route::GraphPhoneNumber
        | Route::GraphRegister
        | Route::TwilioServices
        | Route::TwilioService
        | Route::TwilioVerifications
        | Route::TwilioVerification
        | Route::TwilioVerificationCheck => Err(ApiError::Internal),
    }
}
