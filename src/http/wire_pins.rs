//! The wire format of the phone-number two-step PINs, the e-mailed links, the Graph facade and
//! the receipts: what the handlers read and write, and what `openapi.rs` documents. The Graph
//! error is documented only (`graph.rs` builds Graph's error object).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::clock::rfc3339;
use crate::pin::store::NumberRecord;
use crate::pin::AttemptLimits;

#[derive(Serialize, ToSchema)]
#[schema(as = ReceiptsApplied)]
pub struct ReceiptsAppliedBody {
    #[schema(value_type = u64)]
    pub received: usize,
    #[schema(value_type = u64)]
    pub applied: usize,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = AccountEmail)]
pub struct EmailBody {
    /// Where two-step disable and reset links are e-mailed.
    pub email: String,
}

#[derive(Serialize, ToSchema)]
#[schema(as = AccountEmailSet)]
pub struct EmailSetBody<'a> {
    pub id: &'a str,
    pub email: &'a str,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = AddPhoneNumber)]
pub struct AddBody {
    /// E.164.
    pub phone_number: String,
    /// Exactly 6 digits.
    pub pin: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = GraphNumber)]
pub struct GraphNumberBody<'a> {
    pub id: &'a str,
    pub display_phone_number: &'a str,
}

/// A phone number under two-step protection.
#[derive(Serialize, ToSchema)]
#[schema(as = PhoneNumberRecord)]
pub struct NumberBody {
    pub id: String,
    pub phone_number: String,
    /// enabled, disabled.
    #[schema(value_type = String)]
    pub two_step: &'static str,
    /// Locked by consecutive wrong PINs until the owner or an admin sets a new PIN.
    pub locked: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locked_at: Option<String>,
    pub consecutive_failures: u32,
    /// No PIN attempt is taken before this time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registered_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disable_link_expires_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reset_link_expires_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl NumberBody {
    pub fn new(record: &NumberRecord, limits: &AttemptLimits) -> Self {
        let time = |ms: u64| (ms > 0).then(|| rfc3339(ms));
        let locked = record.locked(limits);
        Self {
            id: record.id.as_str().to_owned(),
            phone_number: record.e164.clone(),
            two_step: if record.two_step {
                "enabled"
            } else {
                "disabled"
            },
            locked,
            locked_at: time(record.locked_ms).filter(|_| locked),
            consecutive_failures: record.failures,
            next_attempt_at: time(record.next_attempt_ms).filter(|_| !locked),
            registered_at: time(record.registered_ms),
            disable_link_expires_at: time(record.disable_link_expires_ms),
            reset_link_expires_at: time(record.reset_link_expires_ms),
            created_at: rfc3339(record.created_ms),
            updated_at: rfc3339(record.updated_ms),
        }
    }
}

#[derive(Serialize, ToSchema)]
#[schema(as = LinkSent)]
pub struct LinkSentBody<'a> {
    pub phone_number_id: &'a str,
    /// disable, reset.
    pub action: &'a str,
    /// The masked address the link went to.
    pub sent_to: &'a str,
    pub expires_at: String,
}

/// What a one-time link did or will do.
#[derive(Serialize, ToSchema)]
#[schema(as = LinkOutcome)]
pub struct LinkOutcomeBody<'a> {
    pub phone_number_id: &'a str,
    /// Masked.
    pub phone_number: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub two_step: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locked: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<&'static str>,
}

impl<'a> LinkOutcomeBody<'a> {
    /// The number and nothing else yet.
    pub fn of(phone_number_id: &'a str, phone_number: &'a str) -> Self {
        Self {
            phone_number_id,
            phone_number,
            two_step: None,
            action: None,
            locked: None,
            expires_at: None,
            detail: None,
        }
    }
}

// `pin` is optional in the type so that a missing PIN gets the same clear 400 as a bad one.
/// A new PIN; one missing is refused (400) as a malformed one is.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PinRequest)]
pub struct PinBody {
    /// Exactly 6 digits.
    pub pin: Option<String>,
}

/// Registration, also as Graph clients send it (`messaging_product: "whatsapp"`).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = RegisterRequest)]
pub struct RegisterBody {
    /// Exactly 6 digits.
    pub pin: Option<String>,
    /// Optional; when given, `whatsapp` (as Graph clients send it).
    pub messaging_product: Option<String>,
}

/// Graph's error body: `{"error": {message, type, code, error_subcode, fbtrace_id}}`.
#[derive(Serialize, ToSchema)]
pub struct GraphErrorBody {
    pub error: GraphErrorObject,
}

#[derive(Serialize, ToSchema)]
pub struct GraphErrorObject {
    pub message: String,
    pub r#type: String,
    pub code: u32,
    pub error_subcode: Option<u32>,
    pub fbtrace_id: String,
}

#[derive(Serialize, ToSchema)]
pub struct Success {
    pub success: bool,
}
