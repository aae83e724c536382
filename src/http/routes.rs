//! What a route is: a row (`Entry`: path, name, methods with who may call them and their
//! handler), the `Call` a handler takes, and the one place path parameters are percent-decoded
//! and checked. The rows themselves are in `table.rs`.

use std::borrow::Cow;
use std::net::IpAddr;

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};

use serde::de::DeserializeOwned;

use super::auth::{Caller, Grant};
use super::body::json_body;
use super::doc::Doc;
use super::error::ApiError;
use crate::account::permission::Permission;
use crate::account::AccountId;
use crate::App;

/// One method of a row: who may call it, its handler, and what the OpenAPI document says of it
/// (`None` for the Twilio facade, which Twilio documents).
pub struct Method {
    verb: &'static str,
    access: Access,
    handler: Handler,
    doc: Option<Doc>,
}

/// One row of the route table: a path (matchit syntax: `{param}`, `{second}`), its name (the
/// route's identity and metrics label), and each method it accepts with who may call it and
/// its handler.
pub struct Entry {
    pub path: &'static str,
    pub name: &'static str,
    methods: &'static [Method],
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.name)
    }
}

impl Entry {
    /// The route found for no path.
    pub fn is_not_found(&self) -> bool {
        self.methods.is_empty()
    }

    /// Who may call the route with `method` and its handler; `None` for a method it does not
    /// accept.
    pub(super) fn method(&self, method: &str) -> Option<(Access, Handler)> {
        self.methods
            .iter()
            .find(|accepted| accepted.verb == method)
            .map(|found| (found.access, found.handler))
    }

    /// Every method the route accepts, in the table's order.
    pub fn methods(&self) -> impl Iterator<Item = &'static str> {
        self.methods.iter().map(|method| method.verb)
    }

    /// Every documented method with who may call it and its documentation, in the table's
    /// order.
    pub fn documented(&self) -> impl Iterator<Item = (&'static str, Access, &'static Doc)> {
        self.methods
            .iter()
            .filter_map(|method| Some((method.verb, method.access, method.doc.as_ref()?)))
    }

    /// Who may call the route with `method`; `None` for a method it does not accept.
    pub fn access(&self, method: &str) -> Option<Access> {
        self.method(method).map(|(access, _)| access)
    }

    pub fn accepts(&self, method: &str) -> bool {
        self.access(method).is_some()
    }

    /// Routes of the Graph API facade: Graph's token forms and error objects (`graph.rs`).
    pub fn is_graph(&self) -> bool {
        self.api() == Some(Access::Graph)
    }

    /// Routes of the Twilio Verify v2 facade: they authenticate with HTTP Basic, not Bearer.
    pub fn is_twilio(&self) -> bool {
        self.api() == Some(Access::Twilio)
    }

    /// The facade or the unauthenticated kind the route belongs to, when all its methods share it.
    fn api(&self) -> Option<Access> {
        let first = self.methods.first()?.access;
        self.methods
            .iter()
            .all(|method| method.access == first)
            .then_some(first)
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

impl Access {
    /// Whether the caller shows a key as a bearer token (the Graph facade takes one in the
    /// header too); open, receipt and link routes have their own credential or none.
    pub fn takes_bearer_key(self) -> bool {
        !matches!(self, Access::Open | Access::Receipt | Access::Link)
    }
}

/// A matched route and its path parameters (account, verification or user id; then a device or
/// factor id), if any.
#[derive(Debug, Clone, Copy)]
pub struct Matched<'a> {
    pub route: &'static Entry,
    pub param: Option<&'a str>,
    pub second: Option<&'a str>,
}

/// A route found for a path, owning its percent-decoded parameters.
#[derive(Debug)]
pub struct Found<'p> {
    pub route: &'static Entry,
    pub(super) param: Option<Cow<'p, str>>,
    pub(super) second: Option<Cow<'p, str>>,
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
pub(super) fn decode_segment(raw: &str) -> Result<Cow<'_, str>, &'static str> {
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

impl Authenticated {
    /// A `RootOrKey` route's caller and the account its path names (`param`), once the caller
    /// may act in that account: the root key, or a key of it whose role the permission allows.
    pub(super) fn in_account(self, param: Option<&str>) -> Result<(Caller, AccountId), ApiError> {
        let Authenticated::Caller(caller, permission) = self else {
            return Err(ApiError::Internal);
        };
        let account = AccountId::parse(param.unwrap_or_default())
            .ok_or(ApiError::NotFound("no such account"))?;
        caller.require_in(permission, &account)?;
        Ok((caller, account))
    }
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

    /// What a `Key` route's handler that checks nothing before the body takes: the app, the
    /// path's parameters, the key's grant and the JSON body (within the server's limit).
    pub async fn keyed_json<T: DeserializeOwned>(
        self,
    ) -> Result<(&'a App, Matched<'a>, Grant, T), ApiError> {
        let (app, matched, request, grant) = self.keyed()?;
        Ok((app, matched, grant, json_body(app, request).await?))
    }
}

/// A documented method of a row.
pub(super) const fn op(verb: &'static str, access: Access, handler: Handler, doc: Doc) -> Method {
    Method {
        verb,
        access,
        handler,
        doc: Some(doc),
    }
}

/// A method of a row that the document leaves out (the Twilio facade).
pub(super) const fn undocumented(verb: &'static str, access: Access, handler: Handler) -> Method {
    Method {
        verb,
        access,
        handler,
        doc: None,
    }
}

/// A row of the table (`table.rs` holds them).
pub(super) const fn row(
    path: &'static str,
    name: &'static str,
    methods: &'static [Method],
) -> Entry {
    Entry {
        path,
        name,
        methods,
    }
}
