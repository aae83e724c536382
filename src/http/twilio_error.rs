//! The Twilio facade's errors: `{code, message, more_info, status}` with Twilio's codes, and
//! how the v1 API's and the verifier's errors become them.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use hyper::{Response, StatusCode};
use serde_json::json;

use super::body::json_response;
use super::error::ApiError;
use crate::abuse::{BlockRule, Refusal};
use crate::verify::model::Status;
use crate::verify::VerifyError;

/// A Twilio error: `{code, message, more_info, status}`.
#[derive(Debug)]
pub(super) struct TwilioError {
    status: StatusCode,
    code: u32,
    message: String,
    retry_after_secs: Option<u64>,
}

impl TwilioError {
    pub(super) fn new(status: StatusCode, code: u32, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after_secs: None,
        }
    }

    /// 60200: Twilio names the parameter in back-quotes.
    pub(super) fn invalid(parameter: &str, detail: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            60200,
            format!("Invalid parameter `{parameter}`: {detail}"),
        )
    }

    pub(super) fn not_found(path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            20404,
            format!("The requested resource {path} was not found"),
        )
    }

    pub(super) fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, 20003, "Authenticate")
    }

    pub(super) fn forbidden(message: &str) -> Self {
        Self::new(StatusCode::FORBIDDEN, 20403, message)
    }

    pub(super) fn limited(code: u32, message: &str, retry_after_secs: u64) -> Self {
        Self {
            retry_after_secs: Some(retry_after_secs),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, code, message)
        }
    }

    pub(super) fn into_response(self) -> Response<Full<Bytes>> {
        let body = json!({
            "code": self.code,
            "message": self.message,
            "more_info": format!("https://www.twilio.com/docs/errors/{}", self.code),
            "status": self.status.as_u16(),
        });
        let mut response = json_response(self.status, &body);
        let headers = response.headers_mut();
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"otpgate\""),
            );
        }
        if let Some(seconds) = self.retry_after_secs {
            headers.insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// Failures shared with the v1 API (store down, body too large, a bug) keep their HTTP status and
/// take Twilio's generic code for it (20000 + status).
impl From<ApiError> for TwilioError {
    fn from(error: ApiError) -> Self {
        let status = error.status();
        let message = match &error {
            ApiError::InvalidRequest(detail) => detail.clone(),
            ApiError::PayloadTooLarge(limit) => {
                format!("the body must be at most {limit} bytes")
            }
            ApiError::Unavailable(detail) => (*detail).to_owned(),
            ApiError::OutcomeUnknown => "Service unavailable: the outcome of this request is unknown (the store did not answer in time); it may or may not have taken effect".to_owned(),
            _ => status.canonical_reason().unwrap_or("Error").to_owned(),
        };
        let retry_after_secs = match &error {
            ApiError::Limited {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            ApiError::Unavailable(_) | ApiError::OutcomeUnknown => Some(1),
            _ => None,
        };
        Self {
            status,
            code: 20_000 + u32::from(status.as_u16()),
            message,
            retry_after_secs,
        }
    }
}

impl TwilioError {
    /// Abuse protection's refusals as Twilio Verify answers them: 60605 (geo permissions, 403),
    /// 60205 (a number SMS cannot reach: Twilio's landline code, 400), 60410 (Fraud Guard's
    /// prefix block, 403, with our `Retry-After`), and for a daily cap 20429 (Twilio's code for a
    /// usage limit, 429).
    fn abuse(refusal: &Refusal) -> Self {
        match refusal {
            Refusal::Geo { country } => Self::new(
                StatusCode::FORBIDDEN,
                60605,
                format!("Verification delivery attempt blocked: permission to send to {country} is not enabled for this service (geo permissions)"),
            ),
            Refusal::NumberType { number_type } => Self::new(
                StatusCode::BAD_REQUEST,
                60205,
                format!("SMS is not supported by this {} phone number", number_type.as_str()),
            ),
            Refusal::Blocked(block) => {
                let seconds = block.retry_after_ms.div_ceil(1000).max(1);
                match block.rule {
                    BlockRule::SuspectedPumping => Self {
                        retry_after_secs: Some(seconds),
                        ..Self::new(
                            StatusCode::FORBIDDEN,
                            60410,
                            "Verification delivery attempt blocked: suspected SMS pumping to this destination; the block is temporary",
                        )
                    },
                    BlockRule::DailyMessageCap => Self::limited(
                        20429,
                        "Too many requests: the service reached its daily message cap",
                        seconds,
                    ),
                }
            }
        }
    }
}

impl From<VerifyError> for TwilioError {
    fn from(error: VerifyError) -> Self {
        match error {
            VerifyError::MaxSendsReached(_) => {
                Self::limited(60203, "Max send attempts reached", 60)
            }
            VerifyError::SendQuotaExceeded { retry_after_ms } => Self::limited(
                20429,
                "Too many requests: too many codes were sent to this number",
                retry_after_ms.div_ceil(1000).max(1),
            ),
            // Twilio answers 60202 once the attempts are used up, and forgets a verification
            // once it is otherwise final: every later call is a 404.
            VerifyError::AlreadyFinal(verification)
                if verification.status == Status::MaxAttemptsReached =>
            {
                Self::limited(60202, "Max check attempts reached", 60)
            }
            VerifyError::NotFound | VerifyError::NotPending(_) | VerifyError::AlreadyFinal(_) => {
                Self::not_found("verification")
            }
            VerifyError::Abuse(refusal) => Self::abuse(&refusal),
            // Twilio's answer for a channel the service has not enabled.
            VerifyError::ChannelNotConfigured(channel) => Self::new(
                StatusCode::BAD_REQUEST,
                60223,
                format!(
                    "Delivery channel disabled: {}",
                    channel.as_str().to_ascii_uppercase()
                ),
            ),
            VerifyError::CodeTooShort { floor } => Self::invalid(
                "CodeLength",
                &format!("must be at least {floor}, the service's code length"),
            ),
            other => ApiError::from(other).into(),
        }
    }
}
