//! Request handlers: parse into domain types, call the domain, shape the JSON answer.

use std::net::IpAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::routes::{Matched, Route};
use super::{json_response, read_json};
use crate::account::{key_digest, mint_key, Account, AccountId, ApiKeyRecord, Role};
use crate::clock::rfc3339;
use crate::phone::PhoneNumber;
use crate::verify::code::{MAX_CODE_LENGTH, MIN_CODE_LENGTH};
use crate::verify::model::{Channel, CheckTarget, SendAttempt, Verification, VerificationId};
use crate::verify::{Code, StartRequest, Started};
use crate::App;

/// Who is calling.
pub(crate) enum Caller {
    /// The operator's root key: manages accounts and their keys, nothing else.
    Root,
    Key(ApiKeyRecord),
}

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
    if !route.accepts(request.method().as_str()) {
        return Err(ApiError::MethodNotAllowed(route.allow()));
    }
    match route {
        Route::Healthz => {
            // Liveness: the process is up, and its store client has not been stuck while
            // Redis answers (then only a restart helps).
            app.store().liveness()?;
            return Ok(text(
                StatusCode::OK,
                "text/plain; charset=utf-8",
                "ok\n".into(),
            ));
        }
        Route::Readyz => {
            app.store().ping().await?;
            // The outbox: reads failing for longer than the configured window.
            app.verifier()
                .dispatcher()
                .readiness()
                .map_err(ApiError::Unavailable)?;
            return Ok(text(
                StatusCode::OK,
                "text/plain; charset=utf-8",
                "ready\n".into(),
            ));
        }
        Route::Metrics => {
            return Ok(text(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                app.metrics().render(),
            ))
        }
        Route::OpenApi => return Ok(super::openapi::response()),
        _ => {}
    }
    app.limits().check_ip(ip).map_err(|retry| {
        app.metrics().rate_limited("ip");
        limited("ip", retry.seconds())
    })?;
    if route == Route::Receipt {
        // Vendors cannot hold our keys: receipts are checked by signature or token instead.
        return super::webhooks::receipt(app, matched.param.unwrap_or_default(), request).await;
    }
    if matches!(route, Route::TwoStepConfirm | Route::TwoStepReset) {
        // Opened from an e-mail: the single-use token in the link is the credential.
        return super::pins::link(app, ip, matched, request).await;
    }
    if route.is_graph() {
        // The Graph facade: Graph's token forms (header, query, form field) and error objects.
        return Ok(super::graph::handle(app, ip, matched, request).await);
    }
    if route.is_twilio() {
        // The Twilio facade authenticates with HTTP Basic (account id and key), as Twilio does.
        return Ok(super::twilio::handle(app, ip, matched, request).await);
    }
    let caller = authenticate(app, ip, &request).await?;
    if let Caller::Key(key) = &caller {
        app.limits().check_key(&key.digest).map_err(|retry| {
            app.metrics().rate_limited("key");
            limited("key", retry.seconds())
        })?;
    }
    match route {
        Route::CreateAccount => create_account(app, caller, request).await,
        Route::CreateKey => {
            create_key(app, caller, matched.param.unwrap_or_default(), request).await
        }
        Route::StartVerification => start_verification(app, caller, request).await,
        Route::CheckVerification => check_verification(app, caller, request).await,
        Route::GetVerification => {
            let (account, id) = verification_target(app, caller, matched.param).await?;
            let verification = app.verifier().get(&account, &id).await?;
            let attempts = app.store().send_attempts(&id).await?;
            let mut body = VerificationBody::new(&verification, None);
            body.send_attempts = Some(attempts.iter().map(AttemptBody::from).collect());
            Ok(json_response(StatusCode::OK, &body))
        }
        Route::CancelVerification => {
            let (account, id) = verification_target(app, caller, matched.param).await?;
            let verification = app.verifier().cancel(&account, &id).await?;
            Ok(json_response(
                StatusCode::OK,
                &VerificationBody::new(&verification, None),
            ))
        }
        Route::UserFactors | Route::ConfirmFactor | Route::Challenges | Route::RecoveryCodes => {
            super::factors::handle(app, caller, matched, request).await
        }
        Route::Policy
        | Route::Users
        | Route::User
        | Route::UserFactor
        | Route::UserDevices
        | Route::UserDevice
        | Route::CheckDevice
        | Route::Logins
        | Route::Audit => super::accounts::handle(app, caller, matched, request).await,
        Route::PhoneNumbers
        | Route::PhoneNumber
        | Route::RegisterPhoneNumber
        | Route::DisableRequests
        | Route::ResetRequests
        | Route::AccountEmail => super::pins::handle(app, caller, matched, request).await,
        Route::TwoStepConfirm | Route::TwoStepReset => Err(ApiError::Internal),
        Route::Healthz
        | Route::Readyz
        | Route::Metrics
        | Route::NotFound
        | Route::Receipt
        | Route::OpenApi
        | Route::GraphPhoneNumber
        | Route::GraphRegister
        | Route::TwilioServices
        | Route::TwilioService
        | Route::TwilioVerifications
        | Route::TwilioVerification
        | Route::TwilioVerificationCheck => Err(ApiError::Internal),
    }
}

fn limited(scope: &str, retry_after_secs: u64) -> ApiError {
    ApiError::Limited {
        kind: "rate-limited",
        detail: format!("too many requests from this {scope}; slow down"),
        retry_after_secs,
    }
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

async fn authenticate(
    app: &App,
    ip: IpAddr,
    request: &Request<Incoming>,
) -> Result<Caller, ApiError> {
    // A limited address is answered before its key is looked up: a flood of wrong keys then costs
    // no store read.
    app.limits().failed_auth_limited(ip).map_err(|retry| {
        app.metrics().rate_limited("failed_auth");
        limited("address after failed authentications", retry.seconds())
    })?;
    let token = credentials(request, "Bearer");
    let refuse = || {
        if let Err(retry) = app.limits().check_failed_auth(ip) {
            app.metrics().rate_limited("failed_auth");
            return limited("address after failed authentications", retry.seconds());
        }
        ApiError::Unauthorized
    };
    let Some(token) = token.filter(|token| !token.is_empty() && token.len() <= 256) else {
        return Err(refuse());
    };
    let digest = key_digest(token);
    if bool::from(digest.ct_eq(app.root_key_digest())) {
        return Ok(Caller::Root);
    }
    match app.find_key(&digest).await? {
        Some(key) => Ok(Caller::Key(key)),
        None => Err(refuse()),
    }
}

/// The credentials of an `Authorization` header in `scheme`, trimmed. The scheme is matched
/// without regard to case (RFC 9110 §11.1: `bearer`, `BASIC` and `Bearer` are one scheme).
pub(super) fn credentials<'r>(request: &'r Request<Incoming>, scheme: &str) -> Option<&'r str> {
    let value = request.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (given, rest) = value.trim_start().split_once(' ')?;
    given.eq_ignore_ascii_case(scheme).then(|| rest.trim())
}

/// The account a key acts for, when its role may call the route.
async fn account_for(
    app: &App,
    caller: Caller,
    allowed: &[Role],
    what: &'static str,
) -> Result<Account, ApiError> {
    let key = match caller {
        Caller::Root => {
            return Err(ApiError::Forbidden(
                "the root key only manages accounts and their keys",
            ))
        }
        Caller::Key(key) => key,
    };
    if !allowed.contains(&key.role) {
        return Err(ApiError::Forbidden(what));
    }
    app.find_account(&key.account)
        .await?
        .ok_or(ApiError::Forbidden("the key's account no longer exists"))
}

/// Roles that may send and check codes: the account's owner, its login services and partners
/// acting for it. Admins manage people and policy, not logins.
const VERIFICATION_ROLES: &[Role] = &[Role::Owner, Role::Service, Role::Partner];
const VERIFICATION_FORBIDDEN: &str =
    "only owner, service and partner keys may send and check codes";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateAccountBody {
    name: String,
    code_length: Option<u8>,
    /// Where two-step disable and reset links are e-mailed (optional).
    email: Option<String>,
}

#[derive(Serialize)]
struct AccountBody<'a> {
    id: &'a str,
    name: &'a str,
    code_length: u8,
    created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
}

async fn create_account(
    app: &App,
    caller: Caller,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    if !matches!(caller, Caller::Root) {
        return Err(ApiError::Forbidden("only the root key creates accounts"));
    }
    let body: CreateAccountBody =
        read_json(request, app.settings().server.request_body_limit).await?;
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "name must be 1 to 100 printable characters",
        ));
    }
    let settings = app.verifier().settings();
    let code_length = body.code_length.unwrap_or(settings.code_length);
    // The operator's floor: accounts with 4 or 5 digits only where the operator lowered it.
    check_code_length(code_length, settings.min_code_length)?;
    let email = match body.email.as_deref().map(str::trim) {
        None => None,
        Some(email) if crate::mail::valid_address(email) => Some(email.to_owned()),
        Some(_) => {
            return Err(ApiError::invalid(
                "email must be an address such as owner@example.com",
            ))
        }
    };
    let account = Account {
        id: AccountId::random(app.rng()).map_err(|_| ApiError::Internal)?,
        name: name.to_owned(),
        created_ms: app.clock().now_ms(),
        code_length,
    };
    app.store().insert_account(&account).await?;
    if let Some(email) = &email {
        app.pins().set_email(&account.id, email).await?;
    }
    tracing::info!(account = %account.id, "account created");
    Ok(json_response(
        StatusCode::CREATED,
        &AccountBody {
            id: account.id.as_str(),
            name: &account.name,
            code_length: account.code_length,
            created_at: rfc3339(account.created_ms),
            email: email.as_deref(),
        },
    ))
}

fn check_code_length(length: u8, floor: u8) -> Result<(), ApiError> {
    if (floor..=MAX_CODE_LENGTH).contains(&length) {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "code_length must be between {floor} and {MAX_CODE_LENGTH}"
        )))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKeyBody {
    role: String,
}

#[derive(Serialize)]
struct KeyBody<'a> {
    id: &'a str,
    account_id: &'a str,
    role: &'static str,
    /// The key itself: shown in this answer only.
    key: &'a str,
    created_at: String,
}

async fn create_key(
    app: &App,
    caller: Caller,
    account_param: &str,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let account_id =
        AccountId::parse(account_param).ok_or(ApiError::NotFound("no such account"))?;
    match &caller {
        Caller::Root => {}
        Caller::Key(key) if key.role == Role::Owner && key.account == account_id => {}
        Caller::Key(_) => {
            return Err(ApiError::Forbidden(
                "only the root key or the account's owner mints keys",
            ))
        }
    }
    let body: CreateKeyBody = read_json(request, app.settings().server.request_body_limit).await?;
    let role: Role = body
        .role
        .parse()
        .map_err(|()| ApiError::invalid("role must be one of owner, admin, service, partner"))?;
    if app.find_account(&account_id).await?.is_none() {
        return Err(ApiError::NotFound("no such account"));
    }
    let minted = mint_key(app.rng(), &account_id, role, app.clock().now_ms())
        .map_err(|_| ApiError::Internal)?;
    // The audit entry goes first: a key never exists without its entry (a failed insert leaves
    // an entry for a key nobody received, which the entry's key id shows).
    let who = match &caller {
        Caller::Root => crate::audit::Who::root(),
        Caller::Key(key) => crate::audit::Who::key(&key.id, key.role.as_str()),
    };
    app.accounts()
        .key_minted(&account_id, who, &minted.record)
        .await?;
    app.store().insert_api_key(&minted.record).await?;
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartBody {
    to: String,
    channel: Option<String>,
    locale: Option<String>,
    code_length: Option<u8>,
}

/// A verification as the API shows it.
#[derive(Serialize)]
struct VerificationBody<'a> {
    id: &'a str,
    account_id: &'a str,
    to: &'a str,
    channel: &'static str,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    valid: Option<bool>,
    attempts_left: u32,
    send_count: u32,
    code_length: u8,
    created_at: String,
    expires_at: String,
    /// Only on `GET`: every message sent for this verification and what became of it.
    #[serde(skip_serializing_if = "Option::is_none")]
    send_attempts: Option<Vec<AttemptBody<'a>>>,
}

/// One message of a verification: which provider took it and its delivery status.
#[derive(Serialize)]
struct AttemptBody<'a> {
    message_id: &'a str,
    provider: &'a str,
    status: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    provider_message_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    created_at: String,
    updated_at: String,
}

impl<'a> From<&'a SendAttempt> for AttemptBody<'a> {
    fn from(attempt: &'a SendAttempt) -> Self {
        Self {
            message_id: &attempt.message_id,
            provider: &attempt.provider,
            status: &attempt.status,
            provider_message_id: attempt.provider_message_id.as_deref(),
            error: attempt.error.as_deref(),
            created_at: rfc3339(attempt.created_ms),
            updated_at: rfc3339(attempt.updated_ms),
        }
    }
}

impl<'a> VerificationBody<'a> {
    fn new(verification: &'a Verification, valid: Option<bool>) -> Self {
        Self {
            id: verification.id.as_str(),
            account_id: verification.account.as_str(),
            to: &verification.to,
            channel: verification.channel.as_str(),
            status: verification.status.as_str(),
            valid,
            attempts_left: verification.attempts_left(),
            send_count: verification.sends,
            code_length: verification.code_length,
            created_at: rfc3339(verification.created_ms),
            expires_at: rfc3339(verification.expires_ms),
            send_attempts: None,
        }
    }
}

fn parse_phone(input: &str, field: &str) -> Result<PhoneNumber, ApiError> {
    PhoneNumber::parse(input).map_err(|error| ApiError::invalid(format!("{field} {error}")))
}

/// A locale such as `en`, `de-DE` or `pt-BR`; templates per locale come with dispatch.
fn valid_locale(locale: &str) -> bool {
    let mut parts = locale.split('-');
    let language = parts.next().unwrap_or_default();
    (2..=3).contains(&language.len())
        && language.bytes().all(|b| b.is_ascii_lowercase())
        && parts.all(|part| {
            (2..=8).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_alphanumeric())
        })
}

async fn start_verification(
    app: &App,
    caller: Caller,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let account = account_for(app, caller, VERIFICATION_ROLES, VERIFICATION_FORBIDDEN).await?;
    let idempotency_key = idempotency_key(&request)?;
    let body: StartBody = read_json(request, app.settings().server.request_body_limit).await?;
    let to = parse_phone(&body.to, "to")?;
    let channel = match body.channel.as_deref() {
        None => Channel::Sms,
        Some(name) => Channel::parse(name)
            .ok_or_else(|| ApiError::invalid("channel must be one of sms, whatsapp"))?,
    };
    if let Some(locale) = &body.locale {
        if !valid_locale(locale) {
            return Err(ApiError::invalid(
                "locale must be a language tag such as en, de or pt-BR",
            ));
        }
    }
    if let Some(length) = body.code_length {
        // The account's own floor is the verifier's to hold; this is the API's range.
        check_code_length(length, MIN_CODE_LENGTH)?;
    }
    let started = app
        .verifier()
        .start(
            &account,
            StartRequest {
                to,
                channel,
                code_length: body.code_length,
                idempotency_key,
                locale: body.locale,
            },
        )
        .await?;
    let (status, replayed, verification) = match &started {
        Started::Created(v) => (StatusCode::CREATED, false, v),
        Started::Resent(v) => (StatusCode::OK, false, v),
        Started::Replayed(v) => (StatusCode::OK, true, v),
    };
    let mut response = json_response(status, &VerificationBody::new(verification, None));
    if replayed {
        mark_replayed(&mut response);
    }
    Ok(response)
}

/// The `Idempotency-Key` header of a send or a check, when there is one.
fn idempotency_key(request: &Request<Incoming>) -> Result<Option<String>, ApiError> {
    let Some(value) = request.headers().get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|key| (1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            ApiError::invalid("Idempotency-Key must be 1 to 255 visible ASCII characters")
        })?;
    Ok(Some(key.to_owned()))
}

fn mark_replayed(response: &mut Response<Full<Bytes>>) {
    response
        .headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckBody {
    id: Option<String>,
    to: Option<String>,
    code: String,
}

async fn check_verification(
    app: &App,
    caller: Caller,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let account = account_for(app, caller, VERIFICATION_ROLES, VERIFICATION_FORBIDDEN).await?;
    let idempotency_key = idempotency_key(&request)?;
    let body: CheckBody = read_json(request, app.settings().server.request_body_limit).await?;
    let code = Code::parse(&body.code).ok_or_else(|| {
        ApiError::invalid(format!(
            "code must be {MIN_CODE_LENGTH} to {MAX_CODE_LENGTH} digits"
        ))
    })?;
    let target = match (&body.id, &body.to) {
        (Some(id), None) => CheckTarget::Id(
            VerificationId::parse(id)
                .ok_or(ApiError::NotFound("no such verification in this account"))?,
        ),
        (None, Some(to)) => CheckTarget::To(parse_phone(to, "to")?),
        _ => return Err(ApiError::invalid("give exactly one of id and to")),
    };
    let checked = app
        .verifier()
        .check(&account, target, &code, idempotency_key.as_deref())
        .await?;
    let mut response = json_response(
        StatusCode::OK,
        &VerificationBody::new(&checked.verification, Some(checked.valid)),
    );
    if checked.replayed {
        mark_replayed(&mut response);
    }
    Ok(response)
}

async fn verification_target(
    app: &App,
    caller: Caller,
    param: Option<&str>,
) -> Result<(Account, VerificationId), ApiError> {
    let account = account_for(app, caller, VERIFICATION_ROLES, VERIFICATION_FORBIDDEN).await?;
    let id = param
        .and_then(VerificationId::parse)
        .ok_or(ApiError::NotFound("no such verification in this account"))?;
    Ok((account, id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::Method;

    #[test]
    fn locales_are_language_tags() {
        for good in ["en", "de", "pt-BR", "zh-Hant-TW", "fil"] {
            assert!(valid_locale(good), "{good}");
        }
        for bad in ["", "EN", "e", "english", "de_DE", "de-", "de-D"] {
            assert!(!valid_locale(bad), "{bad}");
        }
    }

    #[test]
    fn only_the_route_method_is_accepted() {
        assert_eq!(Route::CheckVerification.method(), Method::POST.as_str());
        assert_eq!(Route::GetVerification.method(), Method::GET.as_str());
    }
}
