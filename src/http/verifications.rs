//! Handlers of the v1 verifications: send a code, check it, read and cancel a verification.

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Request, Response, StatusCode};

use super::auth::Grant;
use super::body::{json_body, json_response};
use super::error::ApiError;
use super::fields::{check_code_length, destination, destination_for, optional, workflow, Locale};
use super::routes::{Call, Reply};
use super::wire::{AttemptBody, CheckBody, StartBody, VerificationBody};
use super::wire_workflows::WorkflowBody;
use crate::destination::EmailAddress;
use crate::verify::code::{MAX_CODE_LENGTH, MIN_CODE_LENGTH};
use crate::verify::model::{Channel, CheckTarget, VerificationId};
use crate::verify::{Channels, Code, StartRequest, Started};

/// `POST /v1/verifications`: sends a code (or resends, or replays an idempotent send).
pub(super) async fn start(call: Call<'_>) -> Reply {
    let (app, _, request, grant) = call.keyed()?;
    let Grant { account, .. } = grant;
    let idempotency_key = idempotency_key(&request)?;
    let body: StartBody = json_body(app, request).await?;
    let channels = match (body.channel.as_deref(), &body.channels) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "give channel or channels, not both: channels is an ordered workflow",
            ))
        }
        (Some(name), None) => Channels::One(Channel::parse(name).ok_or_else(|| {
            ApiError::invalid(format!("channel must be one of {}", Channel::names()))
        })?),
        (None, Some(names)) => Channels::Workflow {
            channels: workflow(names, body.fallback_after_seconds)?,
            fallback_after_seconds: body.fallback_after_seconds,
        },
        (None, None) => Channels::AccountDefault,
    };
    if body.fallback_after_seconds.is_some() && body.channels.is_none() {
        return Err(ApiError::invalid(
            "fallback_after_seconds goes with channels, an ordered workflow",
        ));
    }
    // One channel says which kind `to` must be; a workflow's channels are matched to it by the
    // verifier (WrongDestination, StepDestination).
    let to = match &channels {
        Channels::One(channel) => destination_for(*channel, &body.to, "to"),
        _ => destination(&body.to, "to"),
    }
    .map_err(ApiError::invalid)?;
    // The address of a workflow's e-mail step beside a phone number in `to`; whether the
    // workflow has such a step is the verifier's to say (an account's default workflow is
    // known there only).
    let email =
        match (&channels, body.email.as_deref()) {
            (_, None) => None,
            (Channels::One(_), Some(_)) => return Err(ApiError::invalid(
                "email goes with channels, a workflow with an email step; one channel sends to to",
            )),
            (_, Some(address)) => Some(
                EmailAddress::parse(address)
                    .map_err(|error| ApiError::invalid(format!("email {error}")))?,
            ),
        };
    let locale = optional(
        body.locale.as_deref(),
        Locale::parse,
        "locale must be a language tag such as en, de or pt-BR",
    )?;
    if let Some(length) = body.code_length {
        // The account's own floor is the verifier's to hold; this is the API's range.
        check_code_length(length, MIN_CODE_LENGTH)?;
    }
    let started = app
        .verifier()
        .start_with_email(
            &account,
            StartRequest {
                to,
                channels,
                code_length: body.code_length,
                idempotency_key,
                locale: locale.map(Locale::into_string),
            },
            email,
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

/// `POST /v1/verifications/check`.
pub(super) async fn check(call: Call<'_>) -> Reply {
    let (app, _, request, grant) = call.keyed()?;
    let Grant { account, .. } = grant;
    let idempotency_key = idempotency_key(&request)?;
    let body: CheckBody = json_body(app, request).await?;
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
        (None, Some(to)) => CheckTarget::To(destination(to, "to").map_err(ApiError::invalid)?),
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

/// `GET /v1/verifications/{id}`: the verification with every message sent for it.
pub(super) async fn get(call: Call<'_>) -> Reply {
    let (app, matched, _, grant) = call.keyed()?;
    let Grant { account, .. } = grant;
    let id = verification_id(matched.param)?;
    let verification = app.verifier().get(&account, &id).await?;
    let attempts = app.store().send_attempts(&id).await?;
    let workflow = app.verifier().workflow(&verification, &attempts).await?;
    let mut body = VerificationBody::new(&verification, None);
    body.send_attempts = Some(attempts.iter().map(AttemptBody::from).collect());
    body.workflow = workflow
        .map(|(workflow, statuses)| WorkflowBody::new(&workflow, &statuses, &verification.to));
    Ok(json_response(StatusCode::OK, &body))
}

/// `POST /v1/verifications/{id}/cancel`.
pub(super) async fn cancel(call: Call<'_>) -> Reply {
    let (app, matched, _, grant) = call.keyed()?;
    let Grant { account, .. } = grant;
    let id = verification_id(matched.param)?;
    let verification = app.verifier().cancel(&account, &id).await?;
    Ok(json_response(
        StatusCode::OK,
        &VerificationBody::new(&verification, None),
    ))
}

fn verification_id(param: Option<&str>) -> Result<VerificationId, ApiError> {
    param
        .and_then(VerificationId::parse)
        .ok_or(ApiError::NotFound("no such verification in this account"))
}
