//! `GET /v1/usage`: the account's messages today (UTC), overall and per country, its daily
//! caps, and the abuse blocks running (docs/abuse.md).

use hyper::StatusCode;

use super::body::json_response;
use super::error::ApiError;
use super::routes::{Call, Reply};
use super::wire::UsageBody;

pub(super) async fn get_usage(call: Call<'_>) -> Reply {
    let (app, _, _, grant) = call.keyed()?;
    let (account, _) = grant.into_key();
    let verifier = app.verifier();
    let guard = verifier
        .abuse()
        .ok_or(ApiError::NotFound("abuse protection is not configured"))?;
    let policy = app.accounts().policy(&account).await?;
    let now_ms = verifier.now_ms();
    let usage = guard.usage(account.as_str(), now_ms).await?;
    let caps = guard.settings().caps(&policy.abuse);
    Ok(json_response(
        StatusCode::OK,
        &UsageBody::new(&usage, caps, now_ms),
    ))
}
