//! The session cookie, the signed-in principal each page asks for, and the checks on what a
//! browser posts: the CSRF token on every form, the origin on the ceremonies' JSON.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE, COOKIE, ORIGIN, SET_COOKIE};
use hyper::{Request, Response, StatusCode};
use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq;

use super::layout::{Layout, PageError};
use super::service::Session;
use super::store::Principal;
use crate::account::rules::Actor;
use crate::account::user::{User, UserRole};
use crate::account::{AccountId, Role};
use crate::App;

/// The cookie's name: `__Host-` makes the browser insist on Secure, Path=/ and no Domain.
pub const COOKIE_NAME: &str = "__Host-otpgate-console";

/// What the audit trail names as the "key" of a console action (the acting user is beside it).
pub const CONSOLE_KEY_ID: &str = "console";

/// The header the console's modules send the CSRF token in with JSON posts.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The cookie that carries a new session's token (no Max-Age: the store enforces the limits).
pub fn set_cookie(response: &mut Response<Full<Bytes>>, token: &str) {
    let value = format!("{COOKIE_NAME}={token}; HttpOnly; Secure; SameSite=Strict; Path=/");
    if let Ok(value) = HeaderValue::from_str(&value) {
        response.headers_mut().append(SET_COOKIE, value);
    }
}

pub fn clear_cookie(response: &mut Response<Full<Bytes>>) {
    let value = format!("{COOKIE_NAME}=; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=0");
    if let Ok(value) = HeaderValue::from_str(&value) {
        response.headers_mut().append(SET_COOKIE, value);
    }
}

/// The session token the request's cookie carries, if any.
fn cookie_token(request: &Request<Incoming>) -> Option<String> {
    request
        .headers()
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value.to_owned())
}

/// A signed-in person: the session, and for an account's user, the user as stored now (their
/// role may have changed since they signed in).
pub struct Signed {
    pub session: Session,
    pub user: Option<User>,
}

impl Signed {
    pub fn principal(&self) -> &Principal {
        &self.session.record.principal
    }

    pub fn is_operator(&self) -> bool {
        self.user.is_none()
    }

    pub fn role(&self) -> Option<UserRole> {
        self.user.as_ref().map(|user| user.role)
    }

    /// Owner or admin: may open the Security and Users pages.
    pub fn manages(&self) -> bool {
        matches!(self.role(), Some(UserRole::Owner | UserRole::Admin))
    }

    pub fn layout(&self, title: &str, current: &'static str) -> Layout {
        let (who, role, account) = match (self.principal(), &self.user) {
            (Principal::User { account, user }, Some(found)) => (
                user.to_string(),
                found.role.as_str().to_owned(),
                account.to_string(),
            ),
            _ => ("operator".to_owned(), "operator".to_owned(), String::new()),
        };
        Layout {
            title: title.to_owned(),
            current,
            signed_in: true,
            who,
            role,
            account,
            csrf: self.session.record.csrf.clone(),
            manages: self.manages(),
            operator: self.is_operator(),
        }
    }

    /// The actor the account's rules judge: the console acting for the signed-in user, with
    /// that user's own role (`None` for the operator, who acts in no account).
    pub fn actor(&self) -> Option<(AccountId, Actor)> {
        let (Principal::User { account, user }, Some(found)) = (self.principal(), &self.user)
        else {
            return None;
        };
        let actor = Actor::new(
            CONSOLE_KEY_ID.to_owned(),
            Role::Owner,
            Some((user.clone(), found.role)),
        );
        Some((account.clone(), actor))
    }

    /// The token's check, in constant time.
    pub fn csrf_ok(&self, presented: &str) -> bool {
        let expected = self.session.record.csrf.as_bytes();
        !presented.is_empty() && bool::from(presented.as_bytes().ct_eq(expected))
    }
}

/// The signed-in person, if the cookie names a live session (of a user who still exists).
pub async fn signed_in(
    app: &App,
    request: &Request<Incoming>,
) -> Result<Option<Signed>, PageError> {
    let Some(token) = cookie_token(request) else {
        return Ok(None);
    };
    let console = app.console();
    let Some(session) = console.session(&token).await? else {
        return Ok(None);
    };
    let user = match &session.record.principal {
        Principal::Root => None,
        Principal::User { account, user } => {
            match console.accounts().user(account, user).await {
                Ok(user) => Some(user),
                Err(crate::account::service::AccountError::NotFound(_)) => {
                    // The user was removed: their sessions end with them.
                    console.sign_out(&session).await?;
                    return Ok(None);
                }
                Err(error) => return Err(error.into()),
            }
        }
    };
    Ok(Some(Signed { session, user }))
}

/// The signed-in person, or the way to the sign-in page.
pub async fn require(app: &App, request: &Request<Incoming>) -> Result<Signed, PageError> {
    signed_in(app, request)
        .await?
        .ok_or_else(PageError::sign_in)
}

/// An owner or admin of an account (the Security and Users pages).
pub async fn require_manager(app: &App, request: &Request<Incoming>) -> Result<Signed, PageError> {
    let signed = require(app, request).await?;
    if !signed.manages() {
        return Err(PageError::forbidden(
            "Only the account's owner and admins may open this page.",
        ));
    }
    Ok(signed)
}

/// The body, within the server's limit and body deadline.
async fn body(app: &App, request: Request<Incoming>) -> Result<Bytes, PageError> {
    let server = &app.settings().server;
    let limit = server.request_body_limit;
    let read = tokio::time::timeout(
        server.body_read_timeout,
        Limited::new(request.into_body(), limit).collect(),
    )
    .await
    .map_err(|_| {
        PageError::new(
            StatusCode::REQUEST_TIMEOUT,
            "The form took too long to arrive.",
        )
    })?;
    Ok(read
        .map_err(|_| PageError::new(StatusCode::PAYLOAD_TOO_LARGE, "The form is too large."))?
        .to_bytes())
}

/// A posted form's fields.
pub struct Form(Vec<(String, String)>);

impl Form {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// A checkbox: present (any value) or not.
    pub fn checked(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// The refusal of a post without the session's CSRF token.
pub fn csrf_refused() -> PageError {
    PageError::forbidden(
        "This form did not come from your console session (its security token is missing or wrong). Nothing was changed; reload the page and try again.",
    )
}

/// A form posted by the signed-in person: url-encoded, carrying the session's CSRF token.
pub async fn read_form(
    app: &App,
    request: Request<Incoming>,
    signed: &Signed,
) -> Result<Form, PageError> {
    let is_form = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|media| media.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return Err(csrf_refused());
    }
    let bytes = body(app, request).await?;
    let form = Form(form_urlencoded::parse(&bytes).into_owned().collect());
    if !signed.csrf_ok(form.get("csrf").unwrap_or_default()) {
        return Err(csrf_refused());
    }
    Ok(form)
}

/// Whether the request's `Origin` (browsers send it with every POST) is one the relying party
/// lists: the ceremonies' JSON is posted by the console's own pages only.
fn origin_ok(app: &App, request: &Request<Incoming>) -> bool {
    let Some(origin) = request.headers().get(ORIGIN).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let origin = origin.trim_end_matches('/');
    app.console()
        .relying_party()
        .origins
        .iter()
        .any(|allowed| allowed.trim_end_matches('/') == origin)
}

/// A JSON body posted by one of the console's modules before anyone signed in (a ceremony):
/// from a listed origin.
pub async fn read_json<T: DeserializeOwned>(
    app: &App,
    request: Request<Incoming>,
) -> Result<T, PageError> {
    if !origin_ok(app, &request) {
        return Err(PageError::forbidden("This request did not come from the console.").as_json());
    }
    let bytes = body(app, request).await.map_err(PageError::as_json)?;
    serde_json::from_slice(&bytes).map_err(|error| {
        PageError::new(
            StatusCode::BAD_REQUEST,
            format!("invalid JSON body: {error}"),
        )
        .as_json()
    })
}

/// A JSON body posted by a signed-in page's module: from a listed origin, with the session's
/// CSRF token in `X-CSRF-Token`.
pub async fn read_signed_json<T: DeserializeOwned>(
    app: &App,
    request: Request<Incoming>,
    signed: &Signed,
) -> Result<T, PageError> {
    let token = request
        .headers()
        .get(CSRF_HEADER)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    if !signed.csrf_ok(token) {
        return Err(csrf_refused().as_json());
    }
    read_json(app, request).await
}
