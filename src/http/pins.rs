//! Handlers of phone numbers and their two-step PINs: parse, call `PinService`, shape JSON.
//! Who may do what is decided in `pin::service`; statuses are chosen in `error.rs`.
//!
//! - `POST /v1/phone-numbers` `{phone_number, pin}`: adds a number, two-step on.
//! - `GET /v1/phone-numbers/{id}`: the number, its two-step state, failures and lock.
//! - `POST /v1/phone-numbers/{id}` and `POST /{version}/{id}` (Graph API) `{pin}`: sets or
//!   changes the PIN; the answer is exactly `{"success":true}`.
//! - `POST /v1/phone-numbers/{id}/register` `{pin}`: registration needs the PIN.
//! - `POST /v1/phone-numbers/{id}/two-step/disable-requests` and `/reset-requests`: e-mails a
//!   single-use link (owner and admin keys only).
//! - `GET|POST /v1/two-step/confirm?token=` (disable) and `GET|POST /v1/two-step/reset?token=`
//!   (`POST {pin}`): the links themselves, unauthenticated: the token is the credential.
//!
//! `PUT /v1/accounts/{id}/email` (where links go) is the root key's, in `keys.rs`.

use std::net::IpAddr;

use hyper::body::Incoming;

use hyper::{Request, StatusCode};

use super::body::{json_body, json_response, read_bytes, success};
use super::error::ApiError;
use super::routes::{Call, Reply};
use super::wire_pins::{AddBody, LinkOutcomeBody, LinkSentBody, NumberBody, PinBody, RegisterBody};
use crate::clock::rfc3339;
use crate::phone::PhoneNumber;
use crate::pin::service::Registered;
use crate::pin::{LinkPurpose, PhoneNumberId, Pin};
use crate::App;

/// `POST /v1/phone-numbers`.
pub(super) async fn add_number(call: Call<'_>) -> Reply {
    let (app, _, grant, body) = call.keyed_json::<AddBody>().await?;
    let key = &grant.key;
    let number = PhoneNumber::parse(&body.phone_number)
        .map_err(|error| ApiError::invalid(format!("phone_number {error}")))?;
    let pin = parse_pin(body.pin.as_deref())?;
    let record = app
        .pins()
        .add_number(&key.account, grant.who(), key.role, &number, &pin)
        .await?;
    Ok(json_response(
        StatusCode::CREATED,
        &NumberBody::new(&record, &app.pins().settings().limits),
    ))
}

/// `GET /v1/phone-numbers/{id}`.
pub(super) async fn get_number(call: Call<'_>) -> Reply {
    let (app, matched, _, grant) = call.keyed()?;
    let key = grant.key;
    let id = number_param(matched.param)?;
    let record = app.pins().number(&key.account, key.role, &id).await?;
    Ok(json_response(
        StatusCode::OK,
        &NumberBody::new(&record, &app.pins().settings().limits),
    ))
}

/// `POST /v1/phone-numbers/{id}` `{pin}`.
pub(super) async fn set_pin(call: Call<'_>) -> Reply {
    let (app, matched, request, grant) = call.keyed()?;
    let key = &grant.key;
    let id = number_param(matched.param)?;
    let body: PinBody = json_body(app, request).await?;
    let pin = parse_pin(body.pin.as_deref())?;
    app.pins()
        .set_pin(&key.account, grant.who(), key.role, &id, &pin, "api")
        .await?;
    Ok(success())
}

/// `POST /v1/phone-numbers/{id}/register` `{messaging_product, pin}`.
pub(super) async fn register(call: Call<'_>) -> Reply {
    let (app, matched, request, grant) = call.keyed()?;
    let key = &grant.key;
    let id = number_param(matched.param)?;
    let body: RegisterBody = json_body(app, request).await?;
    if body
        .messaging_product
        .as_deref()
        .is_some_and(|product| product != "whatsapp")
    {
        return Err(ApiError::invalid("messaging_product must be whatsapp"));
    }
    let pin = parse_pin(body.pin.as_deref())?;
    match app
        .pins()
        .register(&key.account, grant.who(), key.role, &id, &pin)
        .await?
    {
        Registered::PinMatched | Registered::TwoStepEnabled => Ok(success()),
    }
}

/// `POST /v1/phone-numbers/{id}/two-step/disable-requests`.
pub(super) async fn disable_request(call: Call<'_>) -> Reply {
    request_link(call, LinkPurpose::Disable).await
}

/// `POST /v1/phone-numbers/{id}/two-step/reset-requests`.
pub(super) async fn reset_request(call: Call<'_>) -> Reply {
    request_link(call, LinkPurpose::Reset).await
}

async fn request_link(call: Call<'_>, purpose: LinkPurpose) -> Reply {
    let (app, matched, request, grant) = call.keyed()?;
    let key = &grant.key;
    let id = number_param(matched.param)?;
    empty_or_json_object(request, app.settings().server.request_body_limit).await?;
    let sent = app
        .pins()
        .request_link(&key.account, grant.who(), key.role, &id, purpose)
        .await?;
    Ok(json_response(
        StatusCode::ACCEPTED,
        &LinkSentBody {
            phone_number_id: id.as_str(),
            action: purpose.as_str(),
            sent_to: &sent.sent_to,
            expires_at: rfc3339(sent.expires_ms),
        },
    ))
}

/// The single-use token of an e-mailed link: `?token=`.
fn link_token(request: &Request<Incoming>) -> String {
    request
        .uri()
        .query()
        .and_then(|query| {
            query
                .split('&')
                .find_map(|pair| pair.strip_prefix("token="))
        })
        .unwrap_or_default()
        .to_owned()
}

/// Tokens are 256-bit random, so guessing is hopeless; still, probing costs like a failed
/// authentication.
fn refuse_unknown(app: &App, ip: IpAddr, error: ApiError) -> ApiError {
    if matches!(error, ApiError::NotFound(_)) {
        if let Err(retry) = app.limits().check_failed_auth(ip) {
            app.metrics().rate_limited("failed_auth");
            return ApiError::Limited {
                kind: "rate-limited",
                detail: "too many unknown links from this address; slow down".to_owned(),
                retry_after_secs: retry.seconds(),
            };
        }
    }
    error
}

/// `GET|POST /v1/two-step/confirm?token=`.
pub(super) async fn confirm_link(
    Call {
        app, ip, request, ..
    }: Call<'_>,
) -> Reply {
    let token = link_token(&request);
    let done = app
        .pins()
        .use_disable_link(&token)
        .await
        .map_err(|error| refuse_unknown(app, ip, error.into()))?;
    Ok(json_response(
        StatusCode::OK,
        &LinkOutcomeBody {
            two_step: Some("disabled"),
            ..LinkOutcomeBody::of(done.number.as_str(), &done.masked)
        },
    ))
}

/// `GET /v1/two-step/reset?token=`: what the link would reset.
pub(super) async fn peek_reset_link(
    Call {
        app, ip, request, ..
    }: Call<'_>,
) -> Reply {
    let token = link_token(&request);
    let (info, masked) = app
        .pins()
        .peek_link(&token)
        .await
        .map_err(|error| refuse_unknown(app, ip, error.into()))?;
    if info.purpose != LinkPurpose::Reset {
        return Err(refuse_unknown(app, ip, ApiError::NotFound("no such link")));
    }
    Ok(json_response(
        StatusCode::OK,
        &LinkOutcomeBody {
            action: Some("reset"),
            expires_at: Some(rfc3339(info.expires_ms)),
            detail: Some("POST {\"pin\":\"<6 digits>\"} to this same URL to set the new PIN"),
            ..LinkOutcomeBody::of(info.number.as_str(), &masked)
        },
    ))
}

/// `POST /v1/two-step/reset?token=` `{pin}`.
pub(super) async fn reset_link(
    Call {
        app, ip, request, ..
    }: Call<'_>,
) -> Reply {
    let token = link_token(&request);
    let pins = app.pins();
    // The token is the credential: an unknown or spent link is refused from the query alone,
    // before the body is read (edge, issue 13 item 3).
    pins.peek_link(&token)
        .await
        .map_err(|error| refuse_unknown(app, ip, error.into()))?;
    let body: PinBody = json_body(app, request).await?;
    let pin = parse_pin(body.pin.as_deref())?;
    let done = pins
        .use_reset_link(&token, &pin)
        .await
        .map_err(|error| refuse_unknown(app, ip, error.into()))?;
    Ok(json_response(
        StatusCode::OK,
        &LinkOutcomeBody {
            two_step: Some("enabled"),
            locked: Some(false),
            ..LinkOutcomeBody::of(done.number.as_str(), &done.masked)
        },
    ))
}

fn number_param(param: Option<&str>) -> Result<PhoneNumberId, ApiError> {
    param
        .and_then(PhoneNumberId::parse)
        .ok_or(ApiError::NotFound("no such phone number in this account"))
}

fn parse_pin(pin: Option<&str>) -> Result<Pin, ApiError> {
    let pin = pin.ok_or_else(|| ApiError::invalid("pin is required: exactly 6 digits"))?;
    Pin::parse(pin).map_err(|refusal| crate::pin::service::PinError::BadPin(refusal).into())
}

/// Link requests take no fields: an empty body, or `{}`.
async fn empty_or_json_object(request: Request<Incoming>, limit: usize) -> Result<(), ApiError> {
    let body = read_bytes(request, limit).await?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(serde_json::Value::Object(fields)) if fields.is_empty() => Ok(()),
        _ => Err(ApiError::invalid(
            "this request takes no fields: send no body or {}",
        )),
    }
}
