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

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;

use hyper::{Method, Request, Response, StatusCode};

use super::auth::Grant;
use super::body::{json_response, read_bytes, read_json, success};
use super::error::ApiError;
use super::routes::{Matched, Route};
use super::wire_pins::{AddBody, LinkOutcomeBody, LinkSentBody, NumberBody, PinBody, RegisterBody};
use crate::clock::rfc3339;
use crate::phone::PhoneNumber;
use crate::pin::service::Registered;
use crate::pin::{LinkPurpose, PhoneNumberId, Pin};
use crate::App;

pub(super) async fn handle(
    app: &App,
    grant: Grant,
    matched: Matched<'_>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let who = grant.who();
    let key = grant.key;
    let account = &key.account;
    let pins = app.pins();
    match (matched.route, request.method().clone()) {
        (Route::PhoneNumbers, _) => {
            let body: AddBody =
                read_json(request, app.settings().server.request_body_limit).await?;
            let number = PhoneNumber::parse(&body.phone_number)
                .map_err(|error| ApiError::invalid(format!("phone_number {error}")))?;
            let pin = parse_pin(body.pin.as_deref())?;
            let record = pins
                .add_number(account, who, key.role, &number, &pin)
                .await?;
            Ok(json_response(
                StatusCode::CREATED,
                &NumberBody::new(&record, &app.pins().settings().limits),
            ))
        }
        (Route::PhoneNumber, Method::GET) => {
            let id = number_param(matched.param)?;
            let record = pins.number(account, key.role, &id).await?;
            Ok(json_response(
                StatusCode::OK,
                &NumberBody::new(&record, &app.pins().settings().limits),
            ))
        }
        (Route::PhoneNumber, _) | (Route::GraphPhoneNumber, _) => {
            let id = number_param(if matched.route == Route::GraphPhoneNumber {
                matched.second
            } else {
                matched.param
            })?;
            let via = if matched.route == Route::GraphPhoneNumber {
                "graph-api"
            } else {
                "api"
            };
            let body: PinBody =
                read_json(request, app.settings().server.request_body_limit).await?;
            let pin = parse_pin(body.pin.as_deref())?;
            pins.set_pin(account, who, key.role, &id, &pin, via).await?;
            Ok(success())
        }
        (Route::RegisterPhoneNumber, _) => {
            let id = number_param(matched.param)?;
            let body: RegisterBody =
                read_json(request, app.settings().server.request_body_limit).await?;
            if body
                .messaging_product
                .as_deref()
                .is_some_and(|product| product != "whatsapp")
            {
                return Err(ApiError::invalid("messaging_product must be whatsapp"));
            }
            let pin = parse_pin(body.pin.as_deref())?;
            match pins.register(account, who, key.role, &id, &pin).await? {
                Registered::PinMatched | Registered::TwoStepEnabled => Ok(success()),
            }
        }
        (Route::DisableRequests, _) | (Route::ResetRequests, _) => {
            let id = number_param(matched.param)?;
            let purpose = if matched.route == Route::DisableRequests {
                LinkPurpose::Disable
            } else {
                LinkPurpose::Reset
            };
            empty_or_json_object(request, app.settings().server.request_body_limit).await?;
            let sent = pins
                .request_link(account, who, key.role, &id, purpose)
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
        _ => Err(ApiError::Internal),
    }
}

/// `GET|POST /v1/two-step/confirm?token=` and `GET|POST /v1/two-step/reset?token=`.
pub(super) async fn link(
    app: &App,
    ip: IpAddr,
    matched: Matched<'_>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let token = request
        .uri()
        .query()
        .and_then(|query| {
            query
                .split('&')
                .find_map(|pair| pair.strip_prefix("token="))
        })
        .unwrap_or_default()
        .to_owned();
    let refuse_unknown = |error: ApiError| {
        // Tokens are 256-bit random, so guessing is hopeless; still, probing costs like a
        // failed authentication.
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
    };
    let pins = app.pins();
    match (matched.route, request.method().clone()) {
        (Route::TwoStepConfirm, _) => {
            let done = pins
                .use_disable_link(&token)
                .await
                .map_err(|error| refuse_unknown(error.into()))?;
            Ok(json_response(
                StatusCode::OK,
                &LinkOutcomeBody {
                    two_step: Some("disabled"),
                    ..LinkOutcomeBody::of(done.number.as_str(), &done.masked)
                },
            ))
        }
        (Route::TwoStepReset, Method::GET) => {
            let (info, masked) = pins
                .peek_link(&token)
                .await
                .map_err(|error| refuse_unknown(error.into()))?;
            if info.purpose != LinkPurpose::Reset {
                return Err(refuse_unknown(ApiError::NotFound("no such link")));
            }
            Ok(json_response(
                StatusCode::OK,
                &LinkOutcomeBody {
                    action: Some("reset"),
                    expires_at: Some(rfc3339(info.expires_ms)),
                    detail: Some(
                        "POST {\"pin\":\"<6 digits>\"} to this same URL to set the new PIN",
                    ),
                    ..LinkOutcomeBody::of(info.number.as_str(), &masked)
                },
            ))
        }
        (Route::TwoStepReset, _) => {
            // The token is the credential: an unknown or spent link is refused from the query
            // alone, before the body is read (edge, issue 13 item 3).
            pins.peek_link(&token)
                .await
                .map_err(|error| refuse_unknown(error.into()))?;
            let body: PinBody =
                read_json(request, app.settings().server.request_body_limit).await?;
            let pin = parse_pin(body.pin.as_deref())?;
            let done = pins
                .use_reset_link(&token, &pin)
                .await
                .map_err(|error| refuse_unknown(error.into()))?;
            Ok(json_response(
                StatusCode::OK,
                &LinkOutcomeBody {
                    two_step: Some("enabled"),
                    locked: Some(false),
                    ..LinkOutcomeBody::of(done.number.as_str(), &done.masked)
                },
            ))
        }
        _ => Err(ApiError::Internal),
    }
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
