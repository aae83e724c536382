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
use super::routes::{Access, Matched, Route};
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
    let access = route
        .access(request.method().as_str())
        .ok_or(ApiError::MethodNotAllowed(route.allow()))?;
    if access != Access::Open {
        app.limits().check_ip(ip).map_err(|retry| {
            app.metrics().rate_limited("ip");
            ApiError::rate_limited("ip", retry.seconds())
        })?;
    }
    let param = matched.param;
    match access {
        Access::Open => operations(app, route).await,
        // Vendors cannot hold our keys: receipts are checked by signature or token instead.
        Access::Receipt => webhooks::receipt(app, param.unwrap_or_default(), request).await,
        // Opened from an e-mail: the single-use token in the link is the credential.
        Access::Link => pins::link(app, ip, matched, request).await,
        // The Graph facade: Graph's token forms (header, query, form field) and error objects.
        Access::Graph => Ok(graph::handle(app, ip, matched, request).await),
        // The Twilio facade authenticates with HTTP Basic (account id and key), as Twilio does.
        Access::Twilio => Ok(twilio::handle(app, ip, matched, request).await),
        Access::Root(permission) => {
            authenticate(app, ip, &request)
                .await?
                .require_root(permission)?;
            match route {
                Route::AccountEmail => keys::set_account_email(app, param, request).await,
                _ => keys::create_account(app, request).await,
            }
        }
        Access::RootOrKey(permission) => {
            let caller = authenticate(app, ip, &request).await?;
            keys::create_key(app, caller, permission, param.unwrap_or_default(), request).await
        }
        Access::Key(permission) => {
            let grant = authenticate(app, ip, &request)
                .await?
                .require(app, permission)
                .await?;
            match route {
                Route::StartVerification => verifications::start(app, grant, request).await,
                Route::CheckVerification => verifications::check(app, grant, request).await,
                Route::GetVerification => verifications::get(app, grant, param).await,
                Route::CancelVerification => verifications::cancel(app, grant, param).await,
                Route::UserFactors
                | Route::ConfirmFactor
                | Route::Challenges
                | Route::RecoveryCodes => factors::handle(app, grant, matched, request).await,
                Route::PhoneNumbers
                | Route::PhoneNumber
                | Route::RegisterPhoneNumber
                | Route::DisableRequests
                | Route::ResetRequests => pins::handle(app, grant, matched, request).await,
                _ => accounts::handle(app, grant, matched, request).await,
            }
        }
    }
}

/// Health, readiness, metrics and the OpenAPI document: no caller, no limit.
async fn operations(app: &App, route: Route) -> Result<Response<Full<Bytes>>, ApiError> {
    match route {
        Route::Healthz => {
            // Liveness: the process is up, and its store client has not been stuck while
            // Redis answers (then only a restart helps).
            app.store().liveness()?;
            Ok(text(
                StatusCode::OK,
                "text/plain; charset=utf-8",
                "ok\n".into(),
            ))
        }
        Route::Readyz => {
            app.store().ping().await?;
            // The outbox: reads failing for longer than the configured window.
            app.verifier()
                .dispatcher()
                .readiness()
                .map_err(ApiError::Unavailable)?;
            Ok(text(
                StatusCode::OK,
                "text/plain; charset=utf-8",
                "ready\n".into(),
            ))
        }
        Route::Metrics => Ok(text(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            app.metrics().render(),
        )),
        _ => Ok(openapi::response()),
    }
}
