//! Who is calling, resolved once per request, and whether they may: `Caller` and
//! `Caller::require(Permission)`. The v1 API (Bearer), the Twilio facade (Basic) and the Graph
//! facade (a token in the header, query or body) find their caller through `identify`; which
//! role may do what is `account::permission`'s table.

use std::net::IpAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::AUTHORIZATION;
use hyper::Request;
use subtle::ConstantTimeEq;

use super::error::ApiError;
use crate::account::audit::Who;
use crate::account::permission::Permission;
use crate::account::{key_digest, Account, AccountId, ApiKeyRecord};
use crate::App;

/// Who is calling.
pub(super) enum Caller {
    /// The operator's root key: manages accounts and their keys, nothing else.
    Root,
    /// Shared with the key cache: a hit copies nothing.
    Key(Arc<ApiKeyRecord>),
}

/// A key allowed to act, and its account (which still exists).
pub(super) struct Grant {
    pub account: Arc<Account>,
    pub key: Arc<ApiKeyRecord>,
}

impl Grant {
    /// The key as the audit trail names it.
    pub fn who(&self) -> Who {
        Who::key(&self.key.id, self.key.role.as_str())
    }

    /// The account's id and the key, for handlers that need no more of the account.
    pub fn into_key(self) -> (AccountId, Arc<ApiKeyRecord>) {
        (self.account.id.clone(), self.key)
    }
}

/// Why no caller was found; each API words it its own way.
pub(super) enum AuthFailure {
    /// Too many failed authentications from this address: retry after this many seconds.
    Limited(u64),
    Unauthorized,
    /// The store failed while looking the key up.
    Failed(ApiError),
}

/// The caller behind `secret`: the root key, or a key (of `account` when the API names the
/// account beside the secret, as Twilio's Basic user name does; a key of another account is
/// refused like a wrong key). Failed attempts count against the address, and a limited address
/// is answered before its key is looked up: a flood of wrong keys then costs no store read.
pub(super) async fn identify(
    app: &App,
    ip: IpAddr,
    secret: Option<&str>,
    account: Option<&str>,
) -> Result<Caller, AuthFailure> {
    app.limits().failed_auth_limited(ip).map_err(|retry| {
        app.metrics().rate_limited("failed_auth");
        AuthFailure::Limited(retry.seconds())
    })?;
    let refuse = || {
        if let Err(retry) = app.limits().check_failed_auth(ip) {
            app.metrics().rate_limited("failed_auth");
            return AuthFailure::Limited(retry.seconds());
        }
        AuthFailure::Unauthorized
    };
    let Some(secret) = secret.filter(|secret| !secret.is_empty() && secret.len() <= 256) else {
        return Err(refuse());
    };
    let digest = key_digest(secret);
    if bool::from(digest.ct_eq(app.root_key_digest())) {
        return Ok(Caller::Root);
    }
    let found = app
        .find_key(&digest)
        .await
        .map_err(|error| AuthFailure::Failed(error.into()))?;
    match found {
        Some(key) if account.is_none_or(|account| key.account.as_str() == account) => {
            Ok(Caller::Key(key))
        }
        _ => Err(refuse()),
    }
}

/// The per-key request rate: `Err(seconds)` when this key must slow down.
pub(super) fn key_rate(app: &App, key: &ApiKeyRecord) -> Result<(), u64> {
    app.limits().check_key(&key.digest).map_err(|retry| {
        app.metrics().rate_limited("key");
        retry.seconds()
    })
}

/// The v1 API's caller: a Bearer key within its rate, or the root key.
pub(super) async fn authenticate(
    app: &App,
    ip: IpAddr,
    request: &Request<Incoming>,
) -> Result<Caller, ApiError> {
    let caller = identify(app, ip, credentials(request, "Bearer"), None)
        .await
        .map_err(|failure| match failure {
            AuthFailure::Limited(seconds) => {
                ApiError::rate_limited("address after failed authentications", seconds)
            }
            AuthFailure::Unauthorized => ApiError::Unauthorized,
            AuthFailure::Failed(error) => error,
        })?;
    if let Caller::Key(key) = &caller {
        key_rate(app, key).map_err(|seconds| ApiError::rate_limited("key", seconds))?;
    }
    Ok(caller)
}

/// The credentials of an `Authorization` header in `scheme`, trimmed. The scheme is matched
/// without regard to case (RFC 9110 §11.1: `bearer`, `BASIC` and `Bearer` are one scheme).
pub(super) fn credentials<'r>(request: &'r Request<Incoming>, scheme: &str) -> Option<&'r str> {
    let value = request.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (given, rest) = value.trim_start().split_once(' ')?;
    given.eq_ignore_ascii_case(scheme).then(|| rest.trim())
}

impl Caller {
    /// A key whose role may take `permission`, with its account.
    pub async fn require(self, app: &App, permission: Permission) -> Result<Grant, ApiError> {
        let key = match self {
            Caller::Root => return Err(ApiError::Forbidden(permission.root_refusal())),
            Caller::Key(key) => key,
        };
        if !permission.allows(key.role) {
            return Err(ApiError::Forbidden(permission.refusal()));
        }
        let account = app
            .find_account(&key.account)
            .await?
            .ok_or(ApiError::Forbidden("the key's account no longer exists"))?;
        Ok(Grant { account, key })
    }

    /// The root key, for what only the operator does.
    pub fn require_root(&self, permission: Permission) -> Result<(), ApiError> {
        match self {
            Caller::Root if permission.allows_root() => Ok(()),
            _ => Err(ApiError::Forbidden(permission.refusal())),
        }
    }

    /// The root key, or a key of `account` whose role may take `permission`.
    pub fn require_in(&self, permission: Permission, account: &AccountId) -> Result<(), ApiError> {
        match self {
            Caller::Root if permission.allows_root() => Ok(()),
            Caller::Key(key) if permission.allows(key.role) && key.account == *account => Ok(()),
            _ => Err(ApiError::Forbidden(permission.refusal())),
        }
    }

    /// The audit trail's name for this caller.
    pub fn who(&self) -> Who {
        match self {
            Caller::Root => Who::root(),
            Caller::Key(key) => Who::key(&key.id, key.role.as_str()),
        }
    }
}
