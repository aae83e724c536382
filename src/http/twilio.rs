//! The Twilio Verify v2 facade: Twilio's paths, form bodies, HTTP Basic auth, JSON field names
//! and error bodies, on the same verifier and store as the v1 API, so that a login service
//! written against a Twilio SDK switches to otpgate by changing the base URL.
//!
//! The mapping (README, "Switching from Twilio Verify"):
//! - a Twilio Service is an otpgate account: `ServiceSid` is `VA` followed by the account id's 32
//!   hex digits (`AC…`), so the mapping needs no table and survives any store;
//! - a Twilio verification SID (`VE…`, 34 characters) is exactly otpgate's verification id;
//! - the Basic user name is the account id (Twilio's Account SID) and the password one of that
//!   account's keys (Twilio's Auth Token); `POST /v2/Services` creates an account and takes the
//!   root key as password (any user name), as the Twilio console would;
//! - errors are `{code, message, more_info, status}` with Twilio's codes: 60200 invalid parameter,
//!   60202 max check attempts, 60203 max send attempts, 20404 not found, 20003 authentication.
//!
//! Deviations from Twilio a caller may meet are listed in docs/decisions.md. The Passkeys
//! endpoints (`/v2/Services/{sid}/Passkeys/…`) are in `twilio_passkeys.rs`, on these helpers.

use std::net::IpAddr;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::HOST;
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Value};

use super::auth::{credentials, identify, key_rate, AuthFailure, Caller};
use super::body::{json_response, media_type, read_bytes};
use super::error::ApiError;
use super::fields::{code_length_allowed, destination, destination_for, AccountName, Locale};
use super::keys::new_account;
use super::routes::{Call, Reply};
use super::twilio_error::TwilioError;
use crate::account::permission::Permission;
use crate::account::{is_sid, Account, AccountId};
use crate::destination::Destination;
use crate::verify::code::{MAX_CODE_LENGTH, MIN_CODE_LENGTH};
use crate::verify::model::{Channel, CheckTarget, Status, Verification, VerificationId};
use crate::verify::{Channels, Code, StartRequest};
use crate::App;

/// Prefix of a Twilio Verify Service SID; the rest is the account id's hex digits.
pub const SERVICE_PREFIX: &str = "VA";

/// The Service SID of an account.
pub fn service_sid(account: &AccountId) -> String {
    format!("{SERVICE_PREFIX}{}", &account.as_str()[2..])
}

/// The account behind a Service SID, when the SID has Twilio's shape.
pub fn service_account(sid: &str) -> Option<AccountId> {
    if is_sid(sid, SERVICE_PREFIX) {
        AccountId::parse(&format!("AC{}", &sid[2..]))
    } else {
        None
    }
}

/// A facade answer: Twilio's error object on failure.
pub(super) fn answer(result: Result<Response<Full<Bytes>>, TwilioError>) -> Reply {
    Ok(result.unwrap_or_else(|error| error.into_response()))
}

/// `POST /v2/Services`.
pub(super) async fn post_services(call: Call<'_>) -> Reply {
    answer(
        async {
            let caller = authenticate(call.app, call.ip, &call.request).await?;
            let base = base_url(&call.request);
            let form = read_form(call.app, call.request).await?;
            create_service(call.app, caller, &form, &base).await
        }
        .await,
    )
}

/// `GET /v2/Services`.
pub(super) async fn get_services(call: Call<'_>) -> Reply {
    answer(
        async {
            let caller = authenticate(call.app, call.ip, &call.request).await?;
            list_services(call.app, caller, &base_url(&call.request)).await
        }
        .await,
    )
}

/// `GET /v2/Services/{sid}`.
pub(super) async fn get_service(call: Call<'_>) -> Reply {
    answer(
        async {
            let caller = authenticate(call.app, call.ip, &call.request).await?;
            let sid = call.matched.param.unwrap_or_default();
            let account = service(call.app, &caller, sid, Permission::ReadServices).await?;
            Ok(json(
                StatusCode::OK,
                &service_json(&account, &base_url(&call.request)),
            ))
        }
        .await,
    )
}

/// The Service of the path, for a caller who may send codes with it, and the request's base URL.
async fn sending_service(
    call: &Call<'_>,
) -> Result<(std::sync::Arc<Account>, String), TwilioError> {
    let caller = authenticate(call.app, call.ip, &call.request).await?;
    let sid = call.matched.param.unwrap_or_default();
    let account = service(call.app, &caller, sid, Permission::SendCodes).await?;
    Ok((account, base_url(&call.request)))
}

/// `POST /v2/Services/{sid}/Verifications`.
pub(super) async fn post_verifications(call: Call<'_>) -> Reply {
    answer(
        async {
            let (account, base) = sending_service(&call).await?;
            let form = read_form(call.app, call.request).await?;
            start(call.app, &account, &form, &base).await
        }
        .await,
    )
}

/// `POST /v2/Services/{sid}/VerificationCheck`.
pub(super) async fn post_verification_check(call: Call<'_>) -> Reply {
    answer(
        async {
            let (account, base) = sending_service(&call).await?;
            let form = read_form(call.app, call.request).await?;
            check(call.app, &account, &form, &base).await
        }
        .await,
    )
}

/// `POST /v2/Services/{sid}/Verifications/{sid}`: approve or cancel.
pub(super) async fn post_verification(call: Call<'_>) -> Reply {
    answer(
        async {
            let (account, base) = sending_service(&call).await?;
            let id = verification_param(call.matched.second)?;
            let form = read_form(call.app, call.request).await?;
            update(call.app, &account, &id, &form, &base).await
        }
        .await,
    )
}

/// `GET /v2/Services/{sid}/Verifications/{sid}`.
pub(super) async fn get_verification(call: Call<'_>) -> Reply {
    answer(
        async {
            let (account, base) = sending_service(&call).await?;
            let id = verification_param(call.matched.second)?;
            let verification = call.app.verifier().get(&account, &id).await?;
            Ok(json(
                StatusCode::OK,
                &verification_json(call.app, &verification, &base, &Extras::default()).await?,
            ))
        }
        .await,
    )
}

fn verification_param(second: Option<&str>) -> Result<VerificationId, TwilioError> {
    second
        .and_then(VerificationId::parse)
        .ok_or_else(|| TwilioError::not_found("verification"))
}

/// HTTP Basic: the user name is the account id, the password one of its keys; or any user name
/// with the root key. A key presented under another account's id is refused like a wrong key.
pub(super) async fn authenticate(
    app: &App,
    ip: IpAddr,
    request: &Request<Incoming>,
) -> Result<Caller, TwilioError> {
    let credentials = credentials(request, "Basic")
        .and_then(|encoded| data_encoding::BASE64.decode(encoded.as_bytes()).ok())
        .and_then(|decoded| String::from_utf8(decoded).ok());
    let (user, password) = credentials
        .as_deref()
        .and_then(|both| both.split_once(':'))
        .map_or((None, None), |(user, password)| {
            (Some(user), Some(password))
        });
    let caller = identify(app, ip, password, user)
        .await
        .map_err(|failure| match failure {
            AuthFailure::Limited(seconds) => {
                TwilioError::limited(20429, "Too many requests", seconds)
            }
            AuthFailure::Unauthorized => TwilioError::unauthorized(),
            AuthFailure::Failed(error) => error.into(),
        })?;
    if let Caller::Key(key) = &caller {
        key_rate(app, key)
            .map_err(|seconds| TwilioError::limited(20429, "Too many requests", seconds))?;
    }
    Ok(caller)
}

/// The account of a Service SID the caller may use for `permission`. Another account's service
/// is a 404, so that services cannot be probed.
pub(super) async fn service(
    app: &App,
    caller: &Caller,
    sid: &str,
    permission: Permission,
) -> Result<std::sync::Arc<Account>, TwilioError> {
    let not_found = || TwilioError::not_found(&format!("/v2/Services/{sid}"));
    let account_id = service_account(sid).ok_or_else(not_found)?;
    match caller {
        Caller::Root if permission.allows_root() => {}
        Caller::Root => {
            return Err(TwilioError::forbidden(
                "the root key only manages services; use a key of the service's account",
            ))
        }
        Caller::Key(key) if key.account != account_id => return Err(not_found()),
        Caller::Key(key) if !permission.allows(key.role) => {
            return Err(TwilioError::forbidden(permission.refusal()))
        }
        Caller::Key(_) => {}
    }
    app.find_account(&account_id)
        .await
        .map_err(ApiError::from)?
        .ok_or_else(not_found)
}

/// A form body (`application/x-www-form-urlencoded`), as Twilio's SDKs send it.
struct Form(Vec<(String, String)>);

impl Form {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

async fn read_form(app: &App, request: Request<Incoming>) -> Result<Form, TwilioError> {
    let content_type = media_type(&request);
    let body = read_bytes(request, app.settings().server.request_body_limit).await?;
    match content_type.as_deref() {
        Some("application/x-www-form-urlencoded") => {}
        None if body.is_empty() => {}
        _ => {
            return Err(TwilioError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                20415,
                "Send parameters as application/x-www-form-urlencoded",
            ))
        }
    }
    Ok(Form(
        form_urlencoded::parse(&body)
            .map(|(key, value)| (key.into_owned(), value.into_owned()))
            .collect(),
    ))
}

/// `http://host` as the client addressed us, for the `url` fields; `https` behind a proxy that
/// says so. A Host header that is not a plain authority is replaced, so nothing odd is echoed.
pub(super) fn base_url(request: &Request<Incoming>) -> String {
    let headers = request.headers();
    let scheme = match headers
        .get("x-forwarded-proto")
        .and_then(|value| value.to_str().ok())
    {
        Some("https") => "https",
        _ => "http",
    };
    let host = headers
        .get(HOST)
        .and_then(|value| value.to_str().ok())
        .filter(|host| {
            !host.is_empty()
                && host.len() <= 255
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
        })
        .unwrap_or("localhost");
    format!("{scheme}://{host}")
}

/// Twilio's date format: RFC 3339 in UTC, to the second.
pub(super) fn twilio_date(epoch_ms: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(epoch_ms)).to_string()
}

pub(super) fn json(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    json_response(status, body)
}

/// `CodeLength`, when given: `floor` to 10 digits (the operator's floor for a new service; the
/// verifier then holds a send to its service's length).
fn code_length(form: &Form, name: &str, floor: u8) -> Result<Option<u8>, TwilioError> {
    let Some(value) = form.get(name) else {
        return Ok(None);
    };
    value
        .parse::<u8>()
        .ok()
        .filter(|length| code_length_allowed(*length, floor))
        .map(Some)
        .ok_or_else(|| {
            TwilioError::invalid(
                name,
                &format!("must be between {floor} and {MAX_CODE_LENGTH}"),
            )
        })
}

async fn create_service(
    app: &App,
    caller: Caller,
    form: &Form,
    base: &str,
) -> Result<Response<Full<Bytes>>, TwilioError> {
    if caller.require_root(Permission::CreateAccounts).is_err() {
        return Err(TwilioError::forbidden(
            "services are created with the root key as password",
        ));
    }
    let name = form
        .get("FriendlyName")
        .and_then(AccountName::parse)
        .ok_or_else(|| TwilioError::invalid("FriendlyName", AccountName::RULE))?;
    let settings = app.verifier().settings();
    let code_length =
        code_length(form, "CodeLength", settings.min_code_length)?.unwrap_or(settings.code_length);
    let account = new_account(app, name, code_length).await?;
    tracing::info!(account = %account.id, "account created through the Twilio facade");
    Ok(json(StatusCode::CREATED, &service_json(&account, base)))
}

async fn list_services(
    app: &App,
    caller: Caller,
    base: &str,
) -> Result<Response<Full<Bytes>>, TwilioError> {
    let Caller::Key(key) = caller else {
        return Err(TwilioError::forbidden(
            "list services with a key of their account",
        ));
    };
    let services: Vec<Value> = app
        .find_account(&key.account)
        .await
        .map_err(ApiError::from)?
        .iter()
        .map(|account| service_json(account, base))
        .collect();
    let url = format!("{base}/v2/Services?PageSize=50&Page=0");
    Ok(json(
        StatusCode::OK,
        &json!({
            "services": services,
            "meta": {
                "page": 0,
                "page_size": 50,
                "first_page_url": url,
                "previous_page_url": null,
                "url": url,
                "next_page_url": null,
                "key": "services",
            },
        }),
    ))
}

/// A Service as Twilio shows it; the features otpgate does not have are off.
fn service_json(account: &Account, base: &str) -> Value {
    let sid = service_sid(&account.id);
    let url = format!("{base}/v2/Services/{sid}");
    let date = twilio_date(account.created_ms);
    json!({
        "sid": sid,
        "account_sid": account.id.as_str(),
        "friendly_name": account.name,
        "code_length": account.code_length,
        "lookup_enabled": false,
        "psd2_enabled": false,
        "skip_sms_to_landlines": false,
        "dtmf_input_required": false,
        "tts_name": null,
        "mailer_sid": null,
        "do_not_share_warning_enabled": false,
        "custom_code_enabled": false,
        "push": {"include_date": false, "apn_credential_sid": null, "fcm_credential_sid": null},
        "totp": {"issuer": null, "time_step": 30, "code_length": 6, "skew": 1},
        "default_template_sid": null,
        "whatsapp": {"msg_service_sid": null, "from": null},
        "passkeys": null,
        "verify_event_subscription_enabled": false,
        "date_created": date,
        "date_updated": date,
        "url": url,
        "links": {
            "verification_checks": format!("{url}/VerificationCheck"),
            "verifications": format!("{url}/Verifications"),
            "access_tokens": format!("{url}/AccessTokens"),
            "rate_limits": format!("{url}/RateLimits"),
            "messaging_configurations": format!("{url}/MessagingConfigurations"),
            "entities": format!("{url}/Entities"),
            "webhooks": format!("{url}/Webhooks"),
        },
    })
}

/// PSD2 fields are echoed, not stored: Twilio returns them on the call that gave them.
#[derive(Default)]
struct Extras {
    amount: Option<String>,
    payee: Option<String>,
}

impl Extras {
    fn from_form(form: &Form) -> Self {
        Self {
            amount: form.get("Amount").map(str::to_owned),
            payee: form.get("Payee").map(str::to_owned),
        }
    }
}

/// A Verification as Twilio shows it. `send_code_attempts` lists the messages dispatch recorded
/// (a fresh verification's first message may still be on its way).
async fn verification_json(
    app: &App,
    verification: &Verification,
    base: &str,
    extras: &Extras,
) -> Result<Value, TwilioError> {
    let attempts = app
        .store()
        .send_attempts(&verification.id)
        .await
        .map_err(ApiError::from)?;
    // One per message: a message's failed tries at several providers are one attempt to Twilio.
    let mut messages: Vec<&crate::verify::model::SendAttempt> = Vec::new();
    for attempt in &attempts {
        if !messages
            .iter()
            .any(|known| known.message_id == attempt.message_id)
        {
            messages.push(attempt);
        }
    }
    let service = service_sid(&verification.account);
    Ok(json!({
        "sid": verification.id.as_str(),
        "service_sid": service,
        "account_sid": verification.account.as_str(),
        "to": verification.to,
        "channel": verification.channel.as_str(),
        "status": verification.status.as_str(),
        "valid": verification.status == Status::Approved,
        "lookup": {},
        "amount": extras.amount,
        "payee": extras.payee,
        "send_code_attempts": messages.iter().map(|attempt| json!({
            "attempt_sid": attempt.message_id,
            "channel": verification.channel.as_str(),
            "time": twilio_date(attempt.created_ms),
        })).collect::<Vec<_>>(),
        "date_created": twilio_date(verification.created_ms),
        "date_updated": twilio_date(verification.created_ms),
        "sna": null,
        "url": format!("{base}/v2/Services/{service}/Verifications/{}", verification.id.as_str()),
    }))
}

fn check_json(verification: &Verification, valid: bool, extras: &Extras) -> Value {
    json!({
        "sid": verification.id.as_str(),
        "service_sid": service_sid(&verification.account),
        "account_sid": verification.account.as_str(),
        "to": verification.to,
        "channel": verification.channel.as_str(),
        "status": verification.status.as_str(),
        "valid": valid,
        "amount": extras.amount,
        "payee": extras.payee,
        "date_created": twilio_date(verification.created_ms),
        "date_updated": twilio_date(verification.created_ms),
        "sna_attempts_error_codes": [],
    })
}

/// `To`: for a send, the kind the channel takes (an e-mail address for `Channel=email`, as
/// Twilio has it, else a number in E.164); for a check, either.
fn parse_to(form: &Form, channel: Option<Channel>) -> Result<Destination, TwilioError> {
    let to = form
        .get("To")
        .ok_or_else(|| TwilioError::invalid("To", "required"))?;
    let parsed = match channel {
        Some(channel) => destination_for(channel, to, "To"),
        None => destination(to, "To"),
    };
    parsed.map_err(|detail| TwilioError::invalid("To", detail.trim_start_matches("To ")))
}

async fn start(
    app: &App,
    account: &Account,
    form: &Form,
    base: &str,
) -> Result<Response<Full<Bytes>>, TwilioError> {
    let channel = match form.get("Channel") {
        None => return Err(TwilioError::invalid("Channel", "required")),
        Some(name) => Channel::parse(name).ok_or_else(|| {
            TwilioError::invalid("Channel", &format!("otpgate sends by {}", Channel::names()))
        })?,
    };
    let to = parse_to(form, Some(channel))?;
    let locale = match form.get("Locale") {
        None => None,
        Some(locale) => Some(
            Locale::parse(locale)
                .ok_or_else(|| {
                    TwilioError::invalid("Locale", "a language tag such as en, de or pt-BR")
                })?
                .into_string(),
        ),
    };
    if form.get("CustomCode").is_some() {
        return Err(TwilioError::invalid(
            "CustomCode",
            "otpgate always draws the code itself",
        ));
    }
    let code_length = code_length(form, "CodeLength", MIN_CODE_LENGTH)?;
    let started = app
        .verifier()
        .start(
            account,
            StartRequest {
                to,
                // Twilio requires Channel (above): a facade send is never a workflow.
                channels: Channels::One(channel),
                code_length,
                idempotency_key: None,
                locale,
            },
        )
        .await?;
    let verification = match &started {
        crate::verify::Started::Created(v)
        | crate::verify::Started::Resent(v)
        | crate::verify::Started::Replayed(v) => v,
    };
    Ok(json(
        StatusCode::CREATED,
        &verification_json(app, verification, base, &Extras::from_form(form)).await?,
    ))
}

async fn check(
    app: &App,
    account: &Account,
    form: &Form,
    _base: &str,
) -> Result<Response<Full<Bytes>>, TwilioError> {
    let code = form
        .get("Code")
        .ok_or_else(|| TwilioError::invalid("Code", "required"))?;
    let code = Code::parse(code).ok_or_else(|| {
        TwilioError::invalid(
            "Code",
            &format!("{MIN_CODE_LENGTH} to {MAX_CODE_LENGTH} digits"),
        )
    })?;
    let target = match (form.get("VerificationSid"), form.get("To")) {
        (Some(sid), _) => CheckTarget::Id(
            VerificationId::parse(sid).ok_or_else(|| TwilioError::not_found("verification"))?,
        ),
        (None, Some(_)) => CheckTarget::To(parse_to(form, None)?),
        (None, None) => {
            return Err(TwilioError::invalid(
                "To",
                "give either To or VerificationSid",
            ))
        }
    };
    let checked = app.verifier().check(account, target, &code, None).await?;
    let verification = &checked.verification;
    match verification.status {
        Status::Pending => {}
        Status::Approved if checked.valid => {}
        // Twilio answers 60202 once the attempts are used up (here already on the last wrong
        // code, since otpgate closes the verification then).
        Status::MaxAttemptsReached => {
            return Err(TwilioError::limited(
                60202,
                "Max check attempts reached",
                60,
            ))
        }
        // Twilio deletes final verifications: a check of one is a 404.
        Status::Approved | Status::Expired | Status::Canceled => {
            return Err(TwilioError::not_found("verification"))
        }
    }
    Ok(json(
        StatusCode::OK,
        &check_json(verification, checked.valid, &Extras::from_form(form)),
    ))
}

async fn update(
    app: &App,
    account: &Account,
    id: &VerificationId,
    form: &Form,
    base: &str,
) -> Result<Response<Full<Bytes>>, TwilioError> {
    match form.get("Status") {
        Some("canceled") => {
            let verification = app.verifier().cancel(account, id).await?;
            Ok(json(
                StatusCode::OK,
                &verification_json(app, &verification, base, &Extras::default()).await?,
            ))
        }
        Some("approved") => Err(TwilioError::invalid(
            "Status",
            "approved is for custom codes, which otpgate does not issue; check the code instead",
        )),
        Some(_) => Err(TwilioError::invalid("Status", "canceled or approved")),
        None => Err(TwilioError::invalid("Status", "required")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_sids_and_account_ids_map_both_ways() {
        let account = AccountId::parse("AC0123456789abcdef0123456789abcdef").unwrap();
        let sid = service_sid(&account);
        assert_eq!(sid, "VA0123456789abcdef0123456789abcdef");
        assert_eq!(sid.len(), 34);
        assert_eq!(service_account(&sid), Some(account));
        assert_eq!(service_account("VA0123"), None);
        assert_eq!(service_account("AC0123456789abcdef0123456789abcdef"), None);
    }

    #[test]
    fn twilio_dates_are_utc_to_the_second() {
        assert_eq!(twilio_date(1_700_000_000_123), "2023-11-14T22:13:20Z");
    }
}
