//! The dispatcher: a matched route's method checked, the address limited, the caller
//! authenticated as the route's access kind says, and the request handed to the row's handler.

use std::net::IpAddr;

use hyper::body::Incoming;
use hyper::Request;

use super::auth::authenticate;
use super::error::ApiError;
use super::routes::{Access, Authenticated, Call, Matched, Reply};
use crate::App;

pub(super) async fn dispatch(
    app: &App,
    ip: IpAddr,
    matched: Matched<'_>,
    request: Request<Incoming>,
) -> Reply {
    let entry = matched.route;
    if entry.is_not_found() {
        return Err(ApiError::NotFound("no such path"));
    }
    let (access, handler) = entry
        .method(request.method().as_str())
        .ok_or(ApiError::MethodNotAllowed(super::table::allow(entry)))?;
    if access != Access::Open {
        app.limits().check_ip(ip).map_err(|retry| {
            app.metrics().rate_limited("ip");
            ApiError::rate_limited("ip", retry.seconds())
        })?;
    }
    let caller = match access {
        // Open: health, readiness, metrics, the document. Vendors cannot hold our keys: receipts
        // are checked by signature or token. E-mailed links: the single-use token is the
        // credential. The Graph facade has its token forms (header, query, form field) and error
        // objects; the Twilio facade authenticates with HTTP Basic, as Twilio does.
        Access::Open | Access::Receipt | Access::Link | Access::Graph | Access::Twilio => {
            Authenticated::Nobody
        }
        Access::Root(permission) => {
            authenticate(app, ip, &request)
                .await?
                .require_root(permission)?;
            Authenticated::Nobody
        }
        Access::RootOrKey(permission) => {
            Authenticated::Caller(authenticate(app, ip, &request).await?, permission)
        }
        Access::Key(permission) => Authenticated::Key(
            authenticate(app, ip, &request)
                .await?
                .require(app, permission)
                .await?,
        ),
    };
    handler(Call {
        app,
        ip,
        matched,
        request,
        caller,
    })
    .await
}
