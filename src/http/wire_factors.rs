//! The wire format of the second-factor API (enrolment, confirmation, challenges, recovery
//! codes): what the handlers read and write, and what `openapi.rs` documents. `Enrolment` and
//! `ChallengeOutcome` (each the union of several answers) are documented only: the handlers
//! still write those with `json!`.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::wire::FactorSchema;
use crate::account::user::{Factor, UserId};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = EnrolFactor)]
pub struct EnrolBody {
    /// totp, webauthn.
    #[serde(rename = "type")]
    pub kind: String,
    /// TOTP only: SHA1, SHA256, SHA512 (default from config).
    pub algorithm: Option<String>,
    /// TOTP only: 6 or 8 (default from config).
    pub digits: Option<u8>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ConfirmFactor)]
pub struct ConfirmBody {
    /// TOTP: the first code from the app.
    pub code: Option<String>,
    /// WebAuthn: the new credential (`PublicKeyCredential.toJSON()`).
    #[schema(value_type = Option<Object>)]
    pub credential: Option<Value>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = FactorConfirmed)]
pub struct ConfirmedBody<'a> {
    pub id: &'a str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[schema(value_type = String)]
    pub user: &'a UserId,
    /// active.
    pub status: &'static str,
    #[schema(value_type = Vec<FactorSchema>)]
    pub factors: &'a [Factor],
    /// Shown once, with the user's first factor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery_codes: Option<&'a [String]>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ChallengeRequest)]
pub struct ChallengeBody {
    /// totp, webauthn, recovery_code.
    #[serde(rename = "type")]
    pub kind: String,
    /// TOTP or recovery code.
    pub code: Option<String>,
    /// TOTP: which factor, when the user has several.
    pub factor_id: Option<String>,
    /// WebAuthn: the assertion; without it, the answer opens the ceremony.
    #[schema(value_type = Option<Object>)]
    pub assertion: Option<Value>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = RecoveryCodes)]
pub struct RecoveryCodesBody<'a> {
    #[schema(value_type = String)]
    pub user: &'a UserId,
    /// Shown once; each works once.
    pub recovery_codes: &'a [String],
}

/// A pending enrolment: for TOTP the secret, `otpauth_uri` and `qr_svg`; for WebAuthn the
/// creation options in `public_key`.
#[derive(Serialize, ToSchema)]
pub struct Enrolment {
    pub id: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub user: Option<String>,
    pub status: Option<String>,
    pub secret: Option<String>,
    pub otpauth_uri: Option<String>,
    pub qr_svg: Option<String>,
    pub algorithm: Option<String>,
    pub digits: Option<u8>,
    pub period: Option<u32>,
    #[schema(value_type = Option<Object>)]
    pub public_key: Option<serde_json::Value>,
    pub expires_at: Option<String>,
}

/// A challenge's outcome (`valid`, `reason`, `attempts_left`, `challenge_id` when passed), or
/// the WebAuthn request options (`public_key`) when no assertion was given.
#[derive(Serialize, ToSchema)]
pub struct ChallengeOutcome {
    pub valid: Option<bool>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub factor_id: Option<String>,
    pub reason: Option<String>,
    pub attempts_left: Option<u32>,
    pub retry_after_seconds: Option<u64>,
    pub recovery_codes_left: Option<u32>,
    pub challenge_id: Option<String>,
    pub user: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub public_key: Option<serde_json::Value>,
    pub expires_at: Option<String>,
}
