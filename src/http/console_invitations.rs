//! Console invitations (issue 18): `POST /v1/users/{user}/console-invitations` (the account's
//! owner key) and `POST /v1/console-invitations` (the root key: a user of any account, or the
//! operator). The link is answered once; only its digest is stored.

use hyper::StatusCode;

use super::body::{json_body, json_response};
use super::error::ApiError;
use super::routes::{Call, Reply};
use super::wire::{ConsoleInvitationBody, RootInvitationBody};
use crate::account::audit::Who;
use crate::account::user::UserId;
use crate::account::AccountId;
use crate::clock::rfc3339;
use crate::console::store::Principal;
use crate::App;

async fn mint(app: &App, principal: Principal, who: Who) -> Reply {
    if !app.settings().console.enabled {
        return Err(ApiError::NotFound("the console is off (console.enabled)"));
    }
    let console = app.console();
    let (token, expires_ms) = console.invite(&principal, who).await?;
    Ok(json_response(
        StatusCode::CREATED,
        &ConsoleInvitationBody {
            url: console.invitation_url(&token),
            expires_at: rfc3339(expires_ms),
        },
    ))
}

/// `POST /v1/users/{user}/console-invitations`: an owner key invites one of its account's users.
pub(super) async fn for_user(call: Call<'_>) -> Reply {
    let (app, matched, _request, grant) = call.keyed()?;
    let who = grant.who();
    let (account, _) = grant.into_key();
    let user = matched
        .param
        .and_then(UserId::parse)
        .ok_or(ApiError::NotFound("no such user in this account"))?;
    mint(app, Principal::User { account, user }, who).await
}

/// `POST /v1/console-invitations`: the root key invites the operator (`{"root": true}`) or a
/// user of any account (`{"account": "AC…", "user": "ada"}`).
pub(super) async fn by_root(call: Call<'_>) -> Reply {
    let app = call.app;
    let body: RootInvitationBody = json_body(app, call.request).await?;
    let principal = match (body.root, body.account, body.user) {
        (true, None, None) => Principal::Root,
        (false, Some(account), Some(user)) => {
            let account = AccountId::parse(&account)
                .ok_or_else(|| ApiError::invalid("account must be an account id (AC…)"))?;
            if app.find_account(&account).await?.is_none() {
                return Err(ApiError::NotFound("no such account"));
            }
            let user = UserId::parse(&user).ok_or_else(|| {
                ApiError::invalid("user must be 1 to 64 letters, digits or . _ - @ +")
            })?;
            Principal::User { account, user }
        }
        _ => {
            return Err(ApiError::invalid(
                "give either {\"root\": true} or {\"account\": \"AC…\", \"user\": \"…\"}",
            ))
        }
    };
    mint(app, principal, Who::root()).await
}
