//! The wire format of the second-factor API (enrolment, confirmation, challenges, recovery
//! codes), as `openapi.rs` documents it. The handlers still write these answers with `json!`;
//! moving them onto these types is the next step.

use serde::Serialize;
use utoipa::ToSchema;

use super::wire::FactorSchema as Factor;

#[derive(Serialize, ToSchema)]
pub struct EnrolFactor {
    /// totp, webauthn.
    #[serde(rename = "type")]
    pub kind: String,
    /// TOTP only: SHA1, SHA256, SHA512.
    pub algorithm: Option<String>,
    /// TOTP only: 6 or 8.
    pub digits: Option<u8>,
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

#[derive(Serialize, ToSchema)]
pub struct ConfirmFactor {
    /// TOTP: the first code from the app.
    pub code: Option<String>,
    /// WebAuthn: the new credential (`PublicKeyCredential.toJSON()`).
    #[schema(value_type = Option<Object>)]
    pub credential: Option<serde_json::Value>,
}

#[derive(Serialize, ToSchema)]
pub struct FactorConfirmed {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub user: String,
    /// active.
    pub status: String,
    pub factors: Vec<Factor>,
    /// Shown once, with the user's first factor.
    pub recovery_codes: Option<Vec<String>>,
}

#[derive(Serialize, ToSchema)]
pub struct ChallengeRequest {
    /// totp, webauthn, recovery_code.
    #[serde(rename = "type")]
    pub kind: String,
    pub code: Option<String>,
    pub factor_id: Option<String>,
    /// WebAuthn: the assertion; without it, the answer opens the ceremony.
    #[schema(value_type = Option<Object>)]
    pub assertion: Option<serde_json::Value>,
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

#[derive(Serialize, ToSchema)]
pub struct RecoveryCodes {
    pub user: String,
    /// Shown once; each works once.
    pub recovery_codes: Vec<String>,
}
