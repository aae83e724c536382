//! The dispatcher: a matched route's method checked, the address limited, the caller
//! authenticated as the route's access kind says, and the request handed to the row's handler.

use std::net::IpAddr;

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};

use super::auth::{authenticate, Caller, Grant};
use super::error::ApiError;
use super::routes::{Access, Matched};
use crate::account::permission::Permission;
use crate::App;

/// What every handler answers.
pub(super) type Reply = Result<Response<Full<Bytes>>, ApiError>;

/// A row's handler for one method: the request with its route, parameters and caller.
pub(super) type Handler = for<'a> fn(Call<'a>) -> BoxFuture<'a, Reply>;

/// One request as a handler takes it.
pub(super) struct Call<'a> {
    pub app: &'a App,
    pub ip: IpAddr,
    pub matched: Matched<'a>,
    pub request: Request<Incoming>,
    pub caller: Authenticated,
}

/// Who the dispatcher found calling, by the route's access kind.
pub(super) enum Authenticated {
    /// Open, receipt, link and facade routes: no one yet (the handler checks what it takes).
    Nobody,
    /// `RootOrKey`: the caller and the permission, the handler checking the path's account.
    Caller(Caller, Permission),
    /// `Key`: a key its role allows.
    Key(Grant),
}

impl<'a> Call<'a> {
    /// What a `Key` route's handler takes: the app, the path's parameters, the request and the
    /// key's grant.
    pub fn keyed(self) -> Result<(&'a App, Matched<'a>, Request<Incoming>, Grant), ApiError> {
        match self.caller {
            Authenticated::Key(grant) => Ok((self.app, self.matched, self.request, grant)),
            _ => Err(ApiError::Internal),
        }
    }
}

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
        .ok_or(ApiError::MethodNotAllowed(entry.allow()))?;
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
