//! The wire format of the phone-number two-step PINs, the e-mailed links, the Graph facade and
//! the receipts, as `openapi.rs` documents it. The handlers still read and write these with
//! their own types or `json!`; moving them onto these types is the next step.

use serde::Serialize;
use utoipa::ToSchema;

#[derive(Serialize, ToSchema)]
pub struct ReceiptsApplied {
    pub received: u64,
    pub applied: u64,
}

#[derive(Serialize, ToSchema)]
pub struct AccountEmail {
    /// Where two-step disable and reset links are e-mailed.
    pub email: String,
}

#[derive(Serialize, ToSchema)]
pub struct AccountEmailSet {
    pub id: String,
    pub email: String,
}

#[derive(Serialize, ToSchema)]
pub struct AddPhoneNumber {
    /// E.164.
    pub phone_number: String,
    /// Exactly 6 digits.
    pub pin: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct PinRequest {
    /// Exactly 6 digits.
    pub pin: String,
}

#[derive(Serialize, ToSchema)]
pub struct RegisterRequest {
    /// Exactly 6 digits.
    pub pin: String,
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
pub struct GraphNumber {
    pub id: String,
    pub display_phone_number: String,
}

#[derive(Serialize, ToSchema)]
pub struct Success {
    pub success: bool,
}

/// A phone number under two-step protection.
#[derive(Serialize, ToSchema)]
pub struct PhoneNumberRecord {
    pub id: String,
    pub phone_number: String,
    /// enabled, disabled.
    pub two_step: String,
    pub locked: bool,
    pub locked_at: Option<String>,
    pub consecutive_failures: u32,
    pub next_attempt_at: Option<String>,
    pub registered_at: Option<String>,
    pub disable_link_expires_at: Option<String>,
    pub reset_link_expires_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct LinkSent {
    pub phone_number_id: String,
    /// disable, reset.
    pub action: String,
    /// The masked address the link went to.
    pub sent_to: String,
    pub expires_at: String,
}

/// What a one-time link did or will do.
#[derive(Serialize, ToSchema)]
pub struct LinkOutcome {
    pub phone_number_id: String,
    /// Masked.
    pub phone_number: String,
    pub two_step: Option<String>,
    pub action: Option<String>,
    pub locked: Option<bool>,
    pub expires_at: Option<String>,
    pub detail: Option<String>,
}
