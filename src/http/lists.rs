//! Handlers of the list endpoints (cursor-paged, `paging.rs`) and of key revocation: the
//! account's keys (`GET /v1/keys`, `DELETE /v1/keys/{id}`, and the same under
//! `/v1/accounts/{account}/keys` for the root key), users, a user's factors and trusted devices, the Graph PIN's phone numbers.

use hyper::body::Incoming;
use hyper::{Request, StatusCode};

use super::body::json_response;
use super::error::ApiError;
use super::paging::page_request;
use super::routes::{Call, Reply};
use super::wire_lists::{
    DeviceListedBody, DevicePageBody, FactorListedBody, FactorPageBody, KeyListedBody, KeyPageBody,
    KeyRevokedBody, NumberListedBody, NumberPageBody, UserListedBody, UserPageBody,
};
use crate::account::audit::Who;
use crate::account::store::KeyRevocation;
use crate::account::trust::DeviceId;
use crate::account::user::{Factor, UserId};
use crate::account::{is_key_id, AccountId};
use crate::clock::rfc3339;
use crate::pin::PhoneNumberId;
use crate::App;

/// `GET /v1/keys`: the calling key's account's keys.
pub(super) async fn keys(call: Call<'_>) -> Reply {
    let (app, _, request, grant) = call.keyed()?;
    let (account, _) = grant.into_key();
    key_page(app, &account, &request).await
}

/// `DELETE /v1/keys/{id}`: revokes one of the calling key's account's keys.
pub(super) async fn revoke_key(call: Call<'_>) -> Reply {
    let (app, matched, _, grant) = call.keyed()?;
    let who = grant.who();
    let (account, _) = grant.into_key();
    revoke(app, &account, who, matched.param.unwrap_or_default()).await
}

/// `GET /v1/accounts/{account}/keys`: the root key, or a key of that account allowed to.
pub(super) async fn account_keys(call: Call<'_>) -> Reply {
    let Call {
        app,
        matched,
        request,
        caller,
        ..
    } = call;
    let (_, account) = caller.in_account(matched.param)?;
    if app.find_account(&account).await?.is_none() {
        return Err(ApiError::NotFound("no such account"));
    }
    key_page(app, &account, &request).await
}

/// `DELETE /v1/accounts/{account}/keys/{id}`: the root key, or a key of that account allowed to.
pub(super) async fn revoke_account_key(call: Call<'_>) -> Reply {
    let Call {
        app,
        matched,
        caller,
        ..
    } = call;
    let (caller, account) = caller.in_account(matched.param)?;
    revoke(
        app,
        &account,
        caller.who(),
        matched.second.unwrap_or_default(),
    )
    .await
}

async fn key_page(app: &App, account: &AccountId, request: &Request<Incoming>) -> Reply {
    let page = page_request(request.uri().query(), is_key_id)?;
    let keys = app
        .account_records()
        .list_api_keys(account, page.after.as_deref(), page.fetch())
        .await?;
    let (keys, next_cursor) = page.finish(keys, |key| key.id.as_str());
    Ok(json_response(
        StatusCode::OK,
        &KeyPageBody {
            items: keys.iter().map(KeyListedBody::from).collect(),
            next_cursor,
        },
    ))
}

async fn revoke(app: &App, account: &AccountId, who: Who, id: &str) -> Reply {
    if !is_key_id(id) {
        return Err(ApiError::NotFound("no such key in this account"));
    }
    let outcome = app
        .accounts()
        .revoke_key(app.account_records().as_ref(), account, who, id)
        .await?;
    match outcome {
        KeyRevocation::Revoked(record) => {
            tracing::info!(account = %account, key = %record.id, role = record.role.as_str(), "key revoked");
            Ok(json_response(
                StatusCode::OK,
                &KeyRevokedBody {
                    id: &record.id,
                    role: record.role.as_str(),
                    revoked: true,
                },
            ))
        }
        KeyRevocation::NotFound => Err(ApiError::NotFound("no such key in this account")),
        KeyRevocation::LastOwner => Err(ApiError::Refused {
            rule: "last-owner-key",
            detail: "the account's last owner key cannot be revoked: mint another owner key first"
                .to_owned(),
            users: Vec::new(),
        }),
    }
}

/// The user named by the path, or 404.
fn user_param(param: Option<&str>) -> Result<UserId, ApiError> {
    param
        .and_then(UserId::parse)
        .ok_or(ApiError::NotFound("no such user in this account"))
}

/// `GET /v1/users`: the account's users, phones masked.
pub(super) async fn users(call: Call<'_>) -> Reply {
    let (app, _, request, grant) = call.keyed()?;
    let (account, _) = grant.into_key();
    let page = page_request(request.uri().query(), |id| UserId::parse(id).is_some())?;
    let after = page.after.as_deref().and_then(UserId::parse);
    let users = app
        .accounts()
        .list_users(&account, after.as_ref(), page.fetch())
        .await?;
    let policy = app.accounts().policy(&account).await?;
    let (users, next_cursor) = page.finish(users, |user| user.id.as_str());
    // The last console sign-in, recorded beside the console's sessions (docs/console.md).
    let ids: Vec<UserId> = users.iter().map(|user| user.id.clone()).collect();
    let sign_ins = app.console().last_sign_ins(&account, &ids).await?;
    Ok(json_response(
        StatusCode::OK,
        &UserPageBody {
            items: users
                .iter()
                .zip(sign_ins.into_iter().chain(std::iter::repeat(None)))
                .map(|(user, at)| UserListedBody::new(user, policy.require_2fa, at))
                .collect(),
            next_cursor,
        },
    ))
}

/// `GET /v1/users/{user}/factors`: the user's confirmed factors (bounded per user).
pub(super) async fn factors(call: Call<'_>) -> Reply {
    let (app, matched, request, grant) = call.keyed()?;
    let (account, _) = grant.into_key();
    let id = user_param(matched.param)?;
    let page = page_request(request.uri().query(), Factor::valid_id)?;
    let user = app.accounts().user(&account, &id).await?;
    let mut factors: Vec<&Factor> = user.factors.iter().collect();
    factors.sort_by(|a, b| a.id.cmp(&b.id));
    let factors = after_key(factors, page.after.as_deref(), page.fetch(), |factor| {
        factor.id.as_str()
    });
    let (factors, next_cursor) = page.finish(factors, |factor| factor.id.as_str());
    Ok(json_response(
        StatusCode::OK,
        &FactorPageBody {
            items: factors
                .iter()
                .map(|factor| FactorListedBody {
                    id: &factor.id,
                    kind: factor.kind.as_str(),
                })
                .collect(),
            next_cursor,
        },
    ))
}

/// `GET /v1/users/{user}/trusted-devices`: the devices trusted now (bounded per user).
pub(super) async fn trusted_devices(call: Call<'_>) -> Reply {
    let (app, matched, request, grant) = call.keyed()?;
    let (account, _) = grant.into_key();
    let id = user_param(matched.param)?;
    let page = page_request(request.uri().query(), |id| DeviceId::parse(id).is_some())?;
    let devices = app.accounts().trusted_devices(&account, &id).await?;
    let devices = after_key(
        devices,
        page.after.as_deref(),
        page.fetch(),
        |(device, _)| device.id.as_str(),
    );
    let (devices, next_cursor) = page.finish(devices, |(device, _)| device.id.as_str());
    Ok(json_response(
        StatusCode::OK,
        &DevicePageBody {
            items: devices
                .iter()
                .map(|(device, until)| DeviceListedBody {
                    id: device.id.as_str(),
                    created_at: rfc3339(device.created_ms),
                    trusted_until: rfc3339(*until),
                })
                .collect(),
            next_cursor,
        },
    ))
}

/// `GET /v1/phone-numbers`: the account's numbers, masked, with their PIN and lock state.
pub(super) async fn phone_numbers(call: Call<'_>) -> Reply {
    let (app, _, request, grant) = call.keyed()?;
    let key = grant.key;
    let page = page_request(request.uri().query(), |id| {
        PhoneNumberId::parse(id).is_some()
    })?;
    let after = page.after.as_deref().and_then(PhoneNumberId::parse);
    let numbers = app
        .pins()
        .numbers(&key.account, key.role, after.as_ref(), page.fetch())
        .await?;
    let (numbers, next_cursor) = page.finish(numbers, |number| number.id.as_str());
    let limits = &app.pins().settings().limits;
    Ok(json_response(
        StatusCode::OK,
        &NumberPageBody {
            items: numbers
                .iter()
                .map(|number| NumberListedBody::new(number, limits))
                .collect(),
            next_cursor,
        },
    ))
}

/// The items of a short list sorted by `key` that come after `after`, at most `take`.
fn after_key<T>(
    items: Vec<T>,
    after: Option<&str>,
    take: usize,
    key: impl Fn(&T) -> &str,
) -> Vec<T> {
    items
        .into_iter()
        .filter(|item| after.is_none_or(|after| key(item) > after))
        .take(take)
        .collect()
}
