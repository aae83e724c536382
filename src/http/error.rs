//! Where every status code is chosen: errors from any layer become problem+json (RFC 9457) here.
//!
//! Expected refusals get a precise `type` and `detail`; failures (store down, a bug) get an
//! opaque body, and their cause goes to the log, whole, instead of to the client.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use hyper::{Response, StatusCode};
use serde::Serialize;
use utoipa::ToSchema;

use crate::abuse::Refusal;
use crate::store::StoreError;
use crate::verify::model::Status;
use crate::verify::VerifyError;

/// Prefix of every problem `type`; the slugs are listed in docs/decisions.md.
pub const PROBLEM_BASE: &str = "urn:otpgate:problem:";

#[derive(Debug)]
pub enum ApiError {
    /// Malformed or invalid input: the detail says which field and why.
    InvalidRequest(String),
    Unauthorized,
    Forbidden(&'static str),
    NotFound(&'static str),
    MethodNotAllowed(&'static str),
    Conflict(String),
    PayloadTooLarge(usize),
    /// The body did not arrive within `server.body_read_timeout_ms` of the head (408); the
    /// connection is closed after the answer.
    BodyTimeout,
    UnsupportedMediaType,
    /// A limit was hit; `kind` becomes the problem type.
    Limited {
        kind: &'static str,
        detail: String,
        retry_after_secs: u64,
    },
    /// Well-formed but refused by a named account rule (422): `rule` is also in `detail`;
    /// `users` lists the users concerned (those without a phone), when the rule is about them.
    Refused {
        rule: &'static str,
        detail: String,
        users: Vec<String>,
    },
    /// A two-step PIN did not match (422): how many attempts are left before the lock, and how
    /// long the next one must wait (`Retry-After` when non-zero).
    PinMismatch {
        attempts_left: u32,
        retry_after_secs: u64,
    },
    /// The resource is locked until its owner acts (423).
    Locked(&'static str),
    /// A link that was used, expired or replaced (410).
    Gone(&'static str),
    /// An account reached one of its bounds (`limit` names it); nothing was changed. 429 with
    /// `Retry-After` when the bound frees itself with time, else 422.
    AccountLimit(crate::account::limits::LimitReached),
    /// The store could not answer: fail closed, never guess.
    Unavailable(&'static str),
    /// The request may have reached the store and taken effect, or not (503): the client
    /// learns that it must not assume either, and how to find out.
    OutcomeUnknown,
    /// A check of a verification that was already final (409): the slug names its status.
    VerificationFinal(Status),
    /// A send refused by abuse protection: 422 `refused` for a destination the channel may not
    /// reach (geo permission, number type), 429 with `Retry-After` for a block (a pumping
    /// cool-down, a daily cap), its type the rule. Nothing was stored, sent or counted.
    Abuse(Refusal),
    Internal,
}

/// An RFC 9457 problem.
#[derive(Serialize, ToSchema)]
pub struct Problem<'a> {
    /// `urn:otpgate:problem:<slug>`: invalid-request, unauthorized, forbidden, not-found,
    /// method-not-allowed, request-timeout, conflict, payload-too-large, unsupported-media-type,
    /// rate-limited, send-quota-exceeded, max-sends-reached, suspected-pumping,
    /// daily-message-cap, refused (a rule, also geo-permission, number-type and
    /// channel-not-configured), account-limit-reached,
    /// internal, unavailable (nothing was changed), outcome-unknown (the request may or may not
    /// have taken effect: retry it with the same Idempotency-Key), verification-already-approved,
    /// verification-expired, verification-canceled, verification-max-attempts-reached (a check of
    /// a final verification, which counts nothing).
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: String,
    /// The account rule that refused a request (422 `refused`).
    #[serde(skip_serializing_if = "Option::is_none")]
    rule: Option<&'static str>,
    /// Users concerned by a refusal (those without a phone).
    #[serde(skip_serializing_if = "Option::is_none")]
    users: Option<&'a [String]>,
    /// The PIN attempts left before the number is locked (`pin-mismatch`).
    #[serde(skip_serializing_if = "Option::is_none")]
    attempts_left: Option<u32>,
    /// The account's bound that was reached (`account-limit-reached`): users, phone_numbers,
    /// factors_per_user, pending_ceremonies, verifications, factor_entries.
    #[serde(skip_serializing_if = "Option::is_none")]
    limit: Option<&'static str>,
    /// That bound's value (`account-limit-reached`).
    #[serde(skip_serializing_if = "Option::is_none")]
    max: Option<u64>,
    /// The destination's country (ISO 3166-1 alpha-2, `001` non-geographic, `ZZ` unknown) of a
    /// send refused by abuse protection.
    #[serde(skip_serializing_if = "Option::is_none")]
    country: Option<&'static str>,
    /// The destination's number type (rule `number-type`): mobile, fixed_line,
    /// fixed_line_or_mobile, toll_free, premium_rate, shared_cost, voip, personal, pager, uan,
    /// voicemail, unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    number_type: Option<&'static str>,
    /// What a block holds (suspected-pumping, daily-message-cap): prefix, country, account.
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<&'static str>,
}

impl ApiError {
    pub fn invalid(detail: impl Into<String>) -> Self {
        ApiError::InvalidRequest(detail.into())
    }

    /// 429 for too many requests from one `scope` (an address, a key).
    pub fn rate_limited(scope: &str, retry_after_secs: u64) -> Self {
        ApiError::Limited {
            kind: "rate-limited",
            detail: format!("too many requests from this {scope}; slow down"),
            retry_after_secs,
        }
    }

    /// The system random generator failed: logged, and the client gets an opaque 500.
    fn random_failed() -> Self {
        tracing::error!("the system random generator failed");
        ApiError::Internal
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Limited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Refused { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::PinMismatch { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Locked(_) => StatusCode::LOCKED,
            ApiError::Gone(_) => StatusCode::GONE,
            ApiError::AccountLimit(reached) if reached.limit.frees_with_time() => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ApiError::AccountLimit(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::OutcomeUnknown => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::VerificationFinal(_) => StatusCode::CONFLICT,
            ApiError::Abuse(Refusal::Blocked(_)) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Abuse(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The problem's `title`: the status's reason, except where the type needs its own words.
    fn title(&self) -> &'static str {
        match self {
            ApiError::OutcomeUnknown => "Outcome unknown",
            ApiError::VerificationFinal(_) => "Verification already final",
            _ => self.status().canonical_reason().unwrap_or("Error"),
        }
    }

    fn slug_and_detail(&self) -> (&'static str, String) {
        match self {
            ApiError::InvalidRequest(detail) => ("invalid-request", detail.clone()),
            ApiError::Unauthorized => (
                "unauthorized",
                "send a valid key as 'Authorization: Bearer <key>'".to_owned(),
            ),
            ApiError::Forbidden(detail) => ("forbidden", (*detail).to_owned()),
            ApiError::NotFound(detail) => ("not-found", (*detail).to_owned()),
            ApiError::MethodNotAllowed(allow) => {
                ("method-not-allowed", format!("this path accepts {allow}"))
            }
            ApiError::Conflict(detail) => ("conflict", detail.clone()),
            ApiError::PayloadTooLarge(limit) => (
                "payload-too-large",
                format!("the body must be at most {limit} bytes"),
            ),
            ApiError::BodyTimeout => (
                "request-timeout",
                "the body did not arrive in time; send it right after the headers".to_owned(),
            ),
            ApiError::UnsupportedMediaType => (
                "unsupported-media-type",
                "send the body as JSON with 'Content-Type: application/json'".to_owned(),
            ),
            ApiError::Limited { kind, detail, .. } => (kind, detail.clone()),
            ApiError::Refused { rule, detail, .. } => {
                ("refused", format!("refused by rule '{rule}': {detail}"))
            }
            ApiError::PinMismatch { attempts_left, .. } => (
                "pin-mismatch",
                format!("the two-step PIN does not match; {attempts_left} attempts left before the number is locked"),
            ),
            ApiError::Locked(detail) => ("locked", (*detail).to_owned()),
            ApiError::Gone(detail) => ("gone", (*detail).to_owned()),
            ApiError::AccountLimit(reached) => (
                "account-limit-reached",
                format!(
                    "this account reached its limit '{}' ({}); nothing was changed{}",
                    reached.limit.as_str(),
                    reached.max,
                    if reached.limit.frees_with_time() {
                        ", try again once some expire"
                    } else {
                        ": remove some, or ask the operator to raise it"
                    }
                ),
            ),
            ApiError::Unavailable(detail) => ("unavailable", (*detail).to_owned()),
            ApiError::OutcomeUnknown => (
                "outcome-unknown",
                "the store did not answer in time, so whether this request took effect is unknown; retry it with the same Idempotency-Key, or read the verification".to_owned(),
            ),
            ApiError::VerificationFinal(status) => {
                let slug = match status {
                    Status::Approved => "verification-already-approved",
                    Status::Expired => "verification-expired",
                    Status::Canceled => "verification-canceled",
                    Status::MaxAttemptsReached => "verification-max-attempts-reached",
                    // A pending verification is never final; answered like a plain conflict.
                    Status::Pending => "conflict",
                };
                (
                    slug,
                    format!(
                        "the verification is already {}; checking it again counts nothing and approves nothing (GET /v1/verifications/{{id}} shows it)",
                        status.as_str()
                    ),
                )
            }
            ApiError::Abuse(refusal) => abuse_slug_and_detail(refusal),
            ApiError::Internal => (
                "internal",
                "the server failed; the cause is in its log".to_owned(),
            ),
        }
    }

    pub fn into_response(self) -> Response<Full<Bytes>> {
        let status = self.status();
        let (slug, detail) = self.slug_and_detail();
        let body = serde_json::to_vec(&Problem {
            kind: format!("{PROBLEM_BASE}{slug}"),
            title: self.title(),
            status: status.as_u16(),
            detail,
            rule: match &self {
                ApiError::Refused { rule, .. } => Some(*rule),
                ApiError::Abuse(refusal) => Some(refusal.rule()),
                _ => None,
            },
            users: match &self {
                ApiError::Refused { users, .. } if !users.is_empty() => Some(users.as_slice()),
                _ => None,
            },
            attempts_left: match &self {
                ApiError::PinMismatch { attempts_left, .. } => Some(*attempts_left),
                _ => None,
            },
            limit: match &self {
                ApiError::AccountLimit(reached) => Some(reached.limit.as_str()),
                _ => None,
            },
            max: match &self {
                ApiError::AccountLimit(reached) => Some(reached.max),
                _ => None,
            },
            country: match &self {
                ApiError::Abuse(Refusal::Geo { country }) => Some(country.as_str()),
                ApiError::Abuse(Refusal::Blocked(block)) => Some(block.country.as_str()),
                _ => None,
            },
            number_type: match &self {
                ApiError::Abuse(Refusal::NumberType { number_type }) => Some(number_type.as_str()),
                _ => None,
            },
            scope: match &self {
                ApiError::Abuse(Refusal::Blocked(block)) => Some(block.scope.as_str()),
                _ => None,
            },
        })
        .unwrap_or_default();
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        match self {
            ApiError::Unauthorized => {
                headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::MethodNotAllowed(allow) => {
                headers.insert(ALLOW, HeaderValue::from_static(allow));
            }
            ApiError::Limited {
                retry_after_secs, ..
            } => {
                headers.insert(RETRY_AFTER, HeaderValue::from(retry_after_secs));
            }
            ApiError::Unavailable(_) | ApiError::OutcomeUnknown => {
                headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
            }
            ApiError::AccountLimit(reached) if reached.limit.frees_with_time() => {
                // Ceremonies and codes live minutes: a minute is a fair first wait.
                headers.insert(RETRY_AFTER, HeaderValue::from_static("60"));
            }
            ApiError::PinMismatch {
                retry_after_secs, ..
            } if retry_after_secs > 0 => {
                headers.insert(RETRY_AFTER, HeaderValue::from(retry_after_secs));
            }
            ApiError::Abuse(Refusal::Blocked(block)) => {
                let seconds = block.retry_after_ms.div_ceil(1000).max(1);
                headers.insert(RETRY_AFTER, HeaderValue::from(seconds));
            }
            _ => {}
        }
        response
    }
}

/// A refusal by abuse protection: 422s are `refused` like every rule's refusal, a block's type
/// is its rule (docs/abuse.md).
fn abuse_slug_and_detail(refusal: &Refusal) -> (&'static str, String) {
    match refusal {
        Refusal::Geo { country } => (
            "refused",
            format!("refused by rule 'geo-permission': this account does not send to {country} on this channel (the policy's abuse.geo); nothing was sent"),
        ),
        Refusal::NumberType { number_type } => (
            "refused",
            format!("refused by rule 'number-type': this account does not send to {} numbers on this channel (the policy's abuse.number_types; premium_rate and shared_cost never); nothing was sent", number_type.as_str()),
        ),
        Refusal::Blocked(block) => {
            let rule = block.rule.as_str();
            let detail = match block.rule {
                crate::abuse::BlockRule::SuspectedPumping => format!(
                    "sends to this {} look like SMS pumping (many codes, few approved) and are paused; nothing was sent, try again after Retry-After or safe-list the numbers in the policy",
                    block.scope.as_str()
                ),
                crate::abuse::BlockRule::DailyMessageCap => format!(
                    "this account reached its daily message cap ({}); nothing was sent until midnight UTC",
                    if block.scope == crate::abuse::Scope::Account { "all destinations" } else { "this country" }
                ),
            };
            (rule, detail)
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(cause) => {
                tracing::error!(%cause, "store unavailable");
                ApiError::Unavailable("the store is unreachable; nothing was changed, try again")
            }
            StoreError::OutcomeUnknown(cause) => {
                tracing::error!(%cause, "store outcome unknown");
                ApiError::OutcomeUnknown
            }
            StoreError::Full(limit) => {
                tracing::error!(limit, "embedded store full");
                ApiError::Unavailable("the store is full; try again later")
            }
            StoreError::Corrupt(cause) => {
                tracing::error!(%cause, "store answered something unexpected");
                ApiError::Internal
            }
            StoreError::AccountLimit(reached) => ApiError::AccountLimit(reached),
        }
    }
}

impl From<VerifyError> for ApiError {
    fn from(error: VerifyError) -> Self {
        match error {
            VerifyError::MaxSendsReached(sends) => ApiError::Limited {
                kind: "max-sends-reached",
                detail: format!("this verification has used all of its {sends} sends; let it expire or cancel it"),
                retry_after_secs: 60,
            },
            VerifyError::SendQuotaExceeded { retry_after_ms } => ApiError::Limited {
                kind: "send-quota-exceeded",
                detail: "too many codes were sent to this number; try again later".to_owned(),
                retry_after_secs: retry_after_ms.div_ceil(1000).max(1),
            },
            VerifyError::NotFound => ApiError::NotFound("no such verification in this account"),
            VerifyError::NotPending(verification) => {
                ApiError::Conflict(format!("the verification is already {}", verification.status.as_str()))
            }
            VerifyError::AlreadyFinal(verification) => ApiError::VerificationFinal(verification.status),
            VerifyError::IdempotencyKeyReused => ApiError::Refused {
                rule: "idempotency-key-per-check",
                detail: "this Idempotency-Key was used for a check of another verification; use a new key for each check".to_owned(),
                users: Vec::new(),
            },
            VerifyError::CodeTooShort { floor } => ApiError::invalid(format!(
                "code_length must be at least {floor}, this account's code length"
            )),
            VerifyError::Abuse(refusal) => ApiError::Abuse(refusal),
            VerifyError::ChannelNotAllowed(channel) => ApiError::Refused {
                rule: crate::account::rules::rule::WORKFLOW_CHANNELS_ARE_ALLOWED,
                detail: format!("the account's policy does not allow {channel}: a workflow uses the policy's channels (PUT /v1/policy)"),
                users: Vec::new(),
            },
            VerifyError::WrongDestination(channel) => ApiError::invalid(format!(
                "to must be {} for the {channel} channel",
                if channel == "email" { "an e-mail address" } else { "a phone number in E.164" }
            )),
            VerifyError::StepDestination(reason) => ApiError::invalid(reason),
            VerifyError::ChannelNotConfigured(channel) => ApiError::Refused {
                rule: "channel-not-configured",
                detail: format!(
                    "no provider of this gateway carries the '{}' channel to this number (the providers' 'channels' and dispatch.routes); nothing was sent",
                    channel.as_str()
                ),
                users: Vec::new(),
            },
            VerifyError::QueueFull => ApiError::Unavailable("the message queue is full; nothing was sent, try again"),
            VerifyError::Random => ApiError::random_failed(),
            VerifyError::Store(error) => error.into(),
        }
    }
}

impl From<crate::account::service::AccountError> for ApiError {
    fn from(error: crate::account::service::AccountError) -> Self {
        use crate::account::service::AccountError;
        match error {
            AccountError::Refused(refusal) => ApiError::Refused {
                rule: refusal.rule,
                detail: refusal.detail,
                users: refusal
                    .users
                    .iter()
                    .map(|user| user.as_str().to_owned())
                    .collect(),
            },
            AccountError::NotFound(detail) => ApiError::NotFound(detail),
            AccountError::Conflict(detail) => ApiError::Conflict(detail),
            AccountError::Invalid(detail) => ApiError::InvalidRequest(detail),
            AccountError::Random => ApiError::random_failed(),
            AccountError::Limit(reached) => ApiError::AccountLimit(reached),
            AccountError::Store(error) => error.into(),
        }
    }
}

impl From<crate::pin::service::PinError> for ApiError {
    fn from(error: crate::pin::service::PinError) -> Self {
        use crate::pin::service::PinError;
        use crate::pin::PinRefusal;
        let seconds = |ms: u64| ms.div_ceil(1000).max(1);
        match error {
            PinError::Forbidden(detail) => ApiError::Forbidden(detail),
            PinError::BadPin(PinRefusal::Format) => {
                ApiError::invalid("pin must be exactly 6 digits")
            }
            PinError::BadPin(PinRefusal::Common(reason)) => ApiError::Refused {
                rule: "pin-too-common",
                detail: format!("choose another PIN: {reason}, so it is among the first anyone would try"),
                users: Vec::new(),
            },
            PinError::NotFound => ApiError::NotFound("no such phone number in this account"),
            PinError::Exists(id) => ApiError::Conflict(format!(
                "this account already has this phone number, as {id}"
            )),
            PinError::HeldElsewhere => ApiError::Conflict(
                "this phone number is registered elsewhere with two-step verification: add it with the number's PIN, or after its owner turned two-step off".to_owned(),
            ),
            PinError::Mismatch {
                attempts_left,
                retry_after_ms,
            } => ApiError::PinMismatch {
                attempts_left,
                retry_after_secs: if retry_after_ms == 0 { 0 } else { seconds(retry_after_ms) },
            },
            PinError::Wait { retry_after_ms } => ApiError::Limited {
                kind: "pin-attempts-limited",
                detail: "too many wrong PINs in a row; wait before the next attempt".to_owned(),
                retry_after_secs: seconds(retry_after_ms),
            },
            PinError::Locked => ApiError::Locked(
                "the number is locked after 10 wrong PINs in a row; its owner or an admin unlocks it by setting a new PIN or through a reset link",
            ),
            PinError::NoEmail => ApiError::Refused {
                rule: "account-needs-an-email",
                detail: "the account has no e-mail address to send the link to; the operator sets one with POST /v1/accounts {email} or PUT /v1/accounts/{id}/email".to_owned(),
                users: Vec::new(),
            },
            PinError::AlreadyDisabled => {
                ApiError::Conflict("two-step verification is already off for this number".to_owned())
            }
            PinError::Changed => ApiError::Conflict(
                "the PIN changed while this request was checked; try again".to_owned(),
            ),
            PinError::LinkUnknown => ApiError::NotFound("no such link"),
            PinError::LinkUsed => ApiError::Gone("this link was already used; links work once"),
            PinError::LinkExpired => ApiError::Gone("this link has expired; ask for a new one"),
            PinError::LinkSuperseded => {
                ApiError::Gone("a newer link replaced this one; use the newest mail")
            }
            PinError::Mail(error) => {
                tracing::error!(%error, "mail not sent");
                ApiError::Unavailable("the e-mail could not be sent; try again")
            }
            PinError::Hash(error) => {
                tracing::error!(%error, "PIN hashing failed");
                ApiError::Internal
            }
            PinError::Random => ApiError::random_failed(),
            PinError::Store(error) => error.into(),
        }
    }
}

impl From<crate::factors::proof::ProofError> for ApiError {
    fn from(error: crate::factors::proof::ProofError) -> Self {
        use crate::factors::proof::ProofError;
        match error {
            ProofError::Factor(error) => error.into(),
            ProofError::Verify(error) => error.into(),
        }
    }
}

impl From<crate::console::service::ConsoleError> for ApiError {
    fn from(error: crate::console::service::ConsoleError) -> Self {
        use crate::console::service::ConsoleError;
        match error {
            ConsoleError::NotFound(detail) => ApiError::NotFound(detail),
            ConsoleError::Refused(reason) => {
                ApiError::InvalidRequest(format!("the passkey ceremony did not pass: {reason}"))
            }
            ConsoleError::Invalid(detail) => ApiError::InvalidRequest(detail),
            ConsoleError::Full(detail) => ApiError::Conflict(detail.to_owned()),
            ConsoleError::Account(error) => error.into(),
            ConsoleError::Random => ApiError::random_failed(),
            ConsoleError::Store(error) => error.into(),
        }
    }
}

impl From<crate::factors::FactorError> for ApiError {
    fn from(error: crate::factors::FactorError) -> Self {
        use crate::factors::FactorError;
        match error {
            FactorError::Account(error) => error.into(),
            FactorError::NotFound(detail) => ApiError::NotFound(detail),
            FactorError::Invalid(detail) => ApiError::InvalidRequest(detail),
            FactorError::Conflict(detail) => ApiError::Conflict(detail),
            FactorError::Limited { retry_after_ms } => ApiError::Limited {
                kind: "factor-attempts-limited",
                detail:
                    "too many wrong codes in a row for this factor; wait before the next attempt"
                        .to_owned(),
                retry_after_secs: retry_after_ms.div_ceil(1000).max(1),
            },
            FactorError::Seal(error) => {
                tracing::error!(%error, "a factor secret could not be opened (is its key still configured in factors.keys?)");
                ApiError::Internal
            }
            FactorError::Random => ApiError::random_failed(),
            FactorError::Store(error) => error.into(),
        }
    }
}

impl From<crate::events::WebhookError> for ApiError {
    fn from(error: crate::events::WebhookError) -> Self {
        use crate::events::WebhookError;
        let refused = |rule, detail| ApiError::Refused {
            rule,
            detail,
            users: Vec::new(),
        };
        match error {
            WebhookError::UnknownEvent(_) => ApiError::InvalidRequest(error.to_string()),
            WebhookError::Target(target) => refused(target.rule(), format!("url {target}")),
            WebhookError::Limit(reached) => ApiError::AccountLimit(reached),
            WebhookError::NotFound => ApiError::NotFound("no such webhook"),
            WebhookError::Disabled => refused("events-are-off", error.to_string()),
            WebhookError::Busy => ApiError::Unavailable("the events queue is full; try again"),
            WebhookError::Random => ApiError::random_failed(),
            WebhookError::Store(error) => error.into(),
        }
    }
}
