//! Handlers of the second-factor API: TOTP and security-key enrolment and confirmation,
//! challenges (TOTP code, WebAuthn assertion, recovery code), recovery-code regeneration.
//! They parse, check the key's role, call `FactorService`, and shape JSON.
//!
//! Login services run these (owner, service and partner keys), as they run logins and trust
//! devices; admin keys manage people and policy, not logins. Removing a factor is on the
//! accounts routes (`DELETE /v1/users/{user}/factors/{factor}`).

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::Value;

use super::auth::Grant;
use super::body::{json_body, json_response};
use super::error::ApiError;
use super::fields::optional;
use super::routes::{Call, Reply};
use super::wire_factors::{
    ChallengeBody, ChallengeOutcome, ConfirmBody, ConfirmedBody, EnrolBody, Enrolment,
    RecoveryCodesBody,
};
use crate::account::audit::Who;
use crate::account::user::{Factor, FactorType, UserId};
use crate::account::Account;
use crate::clock::rfc3339;
use crate::factors::totp::Algorithm;
use crate::factors::{ChallengeResult, Confirmed, CredentialJson};
use crate::App;

/// What every factor route takes: the app, the path's second parameter (a factor), the
/// request, the grant, and the user of the path.
type Parts<'a> = (&'a App, Option<&'a str>, Request<Incoming>, Grant, UserId);

fn parts(call: Call<'_>) -> Result<Parts<'_>, ApiError> {
    let (app, matched, request, grant) = call.keyed()?;
    let user = matched
        .param
        .and_then(UserId::parse)
        .ok_or(ApiError::NotFound("no such user in this account"))?;
    Ok((app, matched.second, request, grant, user))
}

/// `POST /v1/users/{user}/factors`.
pub(super) async fn enrolment(call: Call<'_>) -> Reply {
    let (app, _, request, grant, user) = parts(call)?;
    enrol(app, &grant.account, &user, json_body(app, request).await?).await
}

/// `POST /v1/users/{user}/factors/{factor}/confirm`.
pub(super) async fn confirmation(call: Call<'_>) -> Reply {
    let (app, factor, request, grant, user) = parts(call)?;
    let factor = factor
        .filter(|factor| Factor::valid_id(factor))
        .ok_or(ApiError::NotFound("no such factor for this user"))?;
    let body = json_body(app, request).await?;
    confirm(app, &grant.account, grant.who(), &user, factor, body).await
}

/// `POST /v1/users/{user}/challenges`.
pub(super) async fn challenges(call: Call<'_>) -> Reply {
    let (app, _, request, grant, user) = parts(call)?;
    let body = json_body(app, request).await?;
    challenge(app, &grant.account, grant.who(), &user, body).await
}

/// `POST /v1/users/{user}/recovery-codes`.
pub(super) async fn recovery_codes(call: Call<'_>) -> Reply {
    let (app, _, _, grant, user) = parts(call)?;
    let codes = app
        .factors()
        .regenerate_recovery_codes(&grant.account.id, grant.who(), &user)
        .await?;
    Ok(json_response(
        StatusCode::CREATED,
        &RecoveryCodesBody {
            user: &user,
            recovery_codes: &codes,
        },
    ))
}

fn factor_type(input: &str) -> Result<FactorType, ApiError> {
    FactorType::parse(input)
        .ok_or_else(|| ApiError::invalid("type must be one of totp, webauthn, passkey"))
}

async fn enrol(
    app: &App,
    account: &Account,
    user: &UserId,
    body: EnrolBody,
) -> Result<Response<Full<Bytes>>, ApiError> {
    match factor_type(&body.kind)? {
        FactorType::Totp => {
            let algorithm = optional(
                body.algorithm.as_deref(),
                Algorithm::parse,
                "algorithm must be one of SHA1, SHA256, SHA512",
            )?;
            if body.digits.is_some_and(|digits| !matches!(digits, 6 | 8)) {
                return Err(ApiError::invalid("digits must be 6 or 8"));
            }
            let enrolment = app
                .factors()
                .enrol_totp(account, user, algorithm, body.digits)
                .await?;
            Ok(json_response(
                StatusCode::CREATED,
                &Enrolment {
                    secret: Some(&enrolment.secret),
                    otpauth_uri: Some(&enrolment.uri),
                    qr_svg: Some(&enrolment.qr_svg),
                    algorithm: Some(enrolment.algorithm),
                    digits: Some(enrolment.digits),
                    period: Some(enrolment.period),
                    ..Enrolment::pending(&enrolment.factor_id, "totp", user, enrolment.expires_ms)
                },
            ))
        }
        kind @ (FactorType::Webauthn | FactorType::Passkey) => {
            if body.algorithm.is_some() || body.digits.is_some() {
                return Err(ApiError::invalid(
                    "algorithm and digits apply to totp factors only",
                ));
            }
            let enrolment = app.factors().enrol_webauthn(account, user, kind).await?;
            Ok(json_response(
                StatusCode::CREATED,
                &Enrolment {
                    public_key: Some(&enrolment.options),
                    ..Enrolment::pending(
                        &enrolment.factor_id,
                        kind.as_str(),
                        user,
                        enrolment.expires_ms,
                    )
                },
            ))
        }
    }
}

fn confirmed_response(user: &UserId, confirmed: &Confirmed) -> Response<Full<Bytes>> {
    json_response(
        StatusCode::OK,
        &ConfirmedBody {
            id: &confirmed.factor.id,
            kind: confirmed.factor.kind.as_str(),
            user,
            status: "active",
            factors: &confirmed.user.factors,
            recovery_codes: confirmed.recovery_codes.as_deref(),
        },
    )
}

pub(super) fn parse_credential(value: Value, field: &str) -> Result<CredentialJson, ApiError> {
    serde_json::from_value(value).map_err(|error| {
        ApiError::invalid(format!(
            "{field} must be a PublicKeyCredential as JSON (id, response.clientDataJSON, …): {error}"
        ))
    })
}

fn totp_code(code: &str) -> Result<&str, ApiError> {
    if (6..=8).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_digit()) {
        Ok(code)
    } else {
        Err(ApiError::invalid("code must be 6 or 8 digits"))
    }
}

async fn confirm(
    app: &App,
    account: &Account,
    who: Who,
    user: &UserId,
    factor: &str,
    body: ConfirmBody,
) -> Result<Response<Full<Bytes>>, ApiError> {
    match (body.code, body.credential) {
        (Some(code), None) => {
            let code = totp_code(&code)?;
            match app
                .factors()
                .confirm_totp(&account.id, who, user, factor, code)
                .await?
            {
                Ok(confirmed) => Ok(confirmed_response(user, &confirmed)),
                // A wrong first code: the factor stays pending; answered like a challenge.
                Err(result) => Ok(challenge_response(&result)),
            }
        }
        (None, Some(credential)) => {
            let credential = parse_credential(credential, "credential")?;
            match app
                .factors()
                .confirm_webauthn(&account.id, who, user, factor, &credential)
                .await?
            {
                Ok(confirmed) => Ok(confirmed_response(user, &confirmed)),
                Err(reason) => Err(ApiError::Refused {
                    // Also for passkeys: one rule for every WebAuthn registration.
                    rule: "security-key-registration-refused",
                    detail: format!("the registration was refused: {reason}"),
                    users: Vec::new(),
                }),
            }
        }
        _ => Err(ApiError::invalid(
            "give code (totp) or credential (webauthn)",
        )),
    }
}

fn challenge_response(result: &ChallengeResult) -> Response<Full<Bytes>> {
    let passed = result.passed.as_ref();
    json_response(
        StatusCode::OK,
        &ChallengeOutcome {
            valid: Some(result.valid),
            kind: Some(result.kind),
            factor_id: Some(result.factor_id.as_deref()),
            reason: result.reason,
            attempts_left: result.attempts_left,
            retry_after_seconds: result.retry_after_ms.map(|wait| wait.div_ceil(1000)),
            recovery_codes_left: result.recovery_codes_left,
            challenge_id: passed.map(|passed| passed.id.as_str()),
            user: None,
            public_key: None,
            expires_at: passed.map(|passed| rfc3339(passed.expires_ms)),
        },
    )
}

async fn challenge(
    app: &App,
    account: &Account,
    who: Who,
    user: &UserId,
    body: ChallengeBody,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let factors = app.factors();
    let result = match body.kind.as_str() {
        "totp" => {
            if body.assertion.is_some() {
                return Err(ApiError::invalid("assertion applies to webauthn only"));
            }
            let code = body
                .code
                .as_deref()
                .ok_or_else(|| ApiError::invalid("code is required for totp"))?;
            let factor_id = body
                .factor_id
                .as_deref()
                .map(|id| {
                    Factor::valid_id(id)
                        .then_some(id)
                        .ok_or(ApiError::NotFound("no such TOTP factor for this user"))
                })
                .transpose()?;
            factors
                .challenge_totp(&account.id, who, user, factor_id, totp_code(code)?)
                .await?
        }
        "webauthn" => {
            if body.code.is_some() || body.factor_id.is_some() {
                return Err(ApiError::invalid(
                    "webauthn takes an assertion, not a code or factor_id",
                ));
            }
            match body.assertion {
                None => {
                    let (options, expires_ms) = factors.begin_webauthn(&account.id, user).await?;
                    return Ok(json_response(
                        StatusCode::OK,
                        &ChallengeOutcome::options(user, &options, expires_ms),
                    ));
                }
                Some(assertion) => {
                    let assertion = parse_credential(assertion, "assertion")?;
                    factors
                        .finish_webauthn(&account.id, who, user, &assertion)
                        .await?
                }
            }
        }
        "recovery_code" => {
            if body.assertion.is_some() || body.factor_id.is_some() {
                return Err(ApiError::invalid("recovery_code takes a code only"));
            }
            let code = body
                .code
                .as_deref()
                .ok_or_else(|| ApiError::invalid("code is required for recovery_code"))?;
            factors
                .challenge_recovery(&account.id, who, user, code)
                .await?
        }
        _ => {
            return Err(ApiError::invalid(
                "type must be one of totp, webauthn, recovery_code",
            ))
        }
    };
    Ok(challenge_response(&result))
}
