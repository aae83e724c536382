//! Handlers of accounts and their keys: create an account (root), mint a key (root or the
//! account's owner), set the account's e-mail address (root). `new_account` is the one account
//! insert, also the Twilio facade's `POST /v2/Services`.

use hyper::StatusCode;

use super::body::{json_body, json_response};
use super::error::ApiError;
use super::fields::{check_code_length, optional, AccountName, EmailAddress};
use super::routes::{Call, Reply};
use super::wire::{AccountBody, CreateAccountBody, CreateKeyBody, KeyBody};
use super::wire_pins::{EmailBody, EmailSetBody};
use crate::account::{Account, AccountId, Role};
use crate::clock::rfc3339;
use crate::App;

/// Draws an id for a new account named `name` and stores it.
pub(super) async fn new_account(
    app: &App,
    name: AccountName,
    code_length: u8,
) -> Result<Account, ApiError> {
    let account = Account {
        id: AccountId::random(app.rng()).map_err(|_| ApiError::Internal)?,
        name: name.into_string(),
        created_ms: app.clock().now_ms(),
        code_length,
    };
    app.account_records().insert_account(&account).await?;
    Ok(account)
}

/// `POST /v1/accounts`, for the root key (the dispatcher checked it).
pub(super) async fn create_account(Call { app, request, .. }: Call<'_>) -> Reply {
    let body: CreateAccountBody = json_body(app, request).await?;
    let name = AccountName::parse(&body.name)
        .ok_or_else(|| ApiError::invalid(format!("name must be {}", AccountName::RULE)))?;
    let settings = app.verifier().settings();
    let code_length = body.code_length.unwrap_or(settings.code_length);
    // The operator's floor: accounts with 4 or 5 digits only where the operator lowered it.
    check_code_length(code_length, settings.min_code_length)?;
    let email = optional(
        body.email.as_deref(),
        EmailAddress::parse,
        EmailAddress::EXPECTED,
    )?;
    let account = new_account(app, name, code_length).await?;
    if let Some(email) = &email {
        app.pins().set_email(&account.id, email.as_str()).await?;
    }
    tracing::info!(account = %account.id, "account created");
    Ok(json_response(
        StatusCode::CREATED,
        &AccountBody {
            id: account.id.as_str(),
            name: &account.name,
            code_length: account.code_length,
            created_at: rfc3339(account.created_ms),
            email: email.as_ref().map(EmailAddress::as_str),
        },
    ))
}

/// `POST /v1/accounts/{id}/keys`: the root key, or a key of that account `permission` allows.
pub(super) async fn create_key(call: Call<'_>) -> Reply {
    let Call {
        app,
        matched,
        request,
        caller,
        ..
    } = call;
    let (caller, account_id) = caller.in_account(matched.param)?;
    let body: CreateKeyBody = json_body(app, request).await?;
    let role: Role = body
        .role
        .parse()
        .map_err(|()| ApiError::invalid("role must be one of owner, admin, service, partner"))?;
    if app.find_account(&account_id).await?.is_none() {
        return Err(ApiError::NotFound("no such account"));
    }
    let minted = app
        .accounts()
        .mint_key(
            app.account_records().as_ref(),
            &account_id,
            caller.who(),
            role,
        )
        .await?;
    tracing::info!(account = %account_id, key = %minted.record.id, role = role.as_str(), "key minted");
    Ok(json_response(
        StatusCode::CREATED,
        &KeyBody {
            id: &minted.record.id,
            account_id: account_id.as_str(),
            role: role.as_str(),
            key: &minted.secret,
            created_at: rfc3339(minted.record.created_ms),
        },
    ))
}

/// `PUT /v1/accounts/{id}/email`: the root key (the operator; the dispatcher checked it) sets
/// where two-step links go. An owner key may not: redirecting the links is the first step of
/// taking the protection off.
pub(super) async fn set_account_email(
    Call {
        app,
        matched,
        request,
        ..
    }: Call<'_>,
) -> Reply {
    let account = matched
        .param
        .and_then(AccountId::parse)
        .ok_or(ApiError::NotFound("no such account"))?;
    let body: EmailBody = json_body(app, request).await?;
    let email = EmailAddress::parse(&body.email)
        .ok_or_else(|| ApiError::invalid(EmailAddress::EXPECTED))?;
    if app.find_account(&account).await?.is_none() {
        return Err(ApiError::NotFound("no such account"));
    }
    app.pins().set_email(&account, email.as_str()).await?;
    tracing::info!(account = %account, email = %crate::pin::service::mask_email(email.as_str()), "account e-mail set");
    Ok(json_response(
        StatusCode::OK,
        &EmailSetBody {
            id: account.as_str(),
            email: email.as_str(),
        },
    ))
}
