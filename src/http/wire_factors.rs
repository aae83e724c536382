//! The wire format of the second-factor API (enrolment, confirmation, challenges, recovery
//! codes): what the handlers read and write, and what `openapi.rs` documents. `Enrolment` and
//! `ChallengeOutcome` are each the union of several answers: every field is optional in them.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::wire::FactorSchema;
use crate::account::user::{Factor, UserId};
use crate::clock::rfc3339;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = EnrolFactor)]
pub struct EnrolBody {
    /// totp, webauthn (a security key), passkey (a discoverable credential with user
    /// verification, for usernameless sign-in).
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
/// creation options in `public_key`. Absent fields are left out.
#[derive(Serialize, ToSchema)]
pub struct Enrolment<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub user: Option<&'a UserId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otpauth_uri: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qr_svg: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digits: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<u32>)]
    pub period: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub public_key: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

impl<'a> Enrolment<'a> {
    /// The fields both kinds of enrolment answer with; the kind's own are set on it.
    pub fn pending(id: &'a str, kind: &'static str, user: &'a UserId, expires_ms: u64) -> Self {
        Self {
            id: Some(id),
            kind: Some(kind),
            user: Some(user),
            status: Some("pending"),
            secret: None,
            otpauth_uri: None,
            qr_svg: None,
            algorithm: None,
            digits: None,
            period: None,
            public_key: None,
            expires_at: Some(rfc3339(expires_ms)),
        }
    }
}

/// A challenge's outcome (`valid`, `reason`, `attempts_left`, `challenge_id` when passed), or
/// the WebAuthn request options (`public_key`) when no assertion was given. Absent fields are
/// left out; an outcome always has `valid`, `type` and `factor_id` (null when no factor was
/// tried).
#[derive(Serialize, ToSchema)]
pub struct ChallengeOutcome<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valid: Option<bool>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub factor_id: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts_left: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery_codes_left: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub challenge_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub user: Option<&'a UserId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub public_key: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

impl<'a> ChallengeOutcome<'a> {
    /// The WebAuthn request options to sign, when no assertion was given.
    pub fn options(user: &'a UserId, public_key: &'a Value, expires_ms: u64) -> Self {
        Self {
            valid: None,
            kind: Some("webauthn"),
            factor_id: None,
            reason: None,
            attempts_left: None,
            retry_after_seconds: None,
            recovery_codes_left: None,
            challenge_id: None,
            user: Some(user),
            public_key: Some(public_key),
            expires_at: Some(rfc3339(expires_ms)),
        }
    }
}

// ---- passkeys ----

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PasskeyChallengeRequest)]
pub struct PasskeyChallengeBody {
    /// The assertion (`PublicKeyCredential.toJSON()`, with `response.userHandle`); without it,
    /// the answer opens a usernameless ceremony.
    #[schema(value_type = Option<Object>)]
    pub assertion: Option<Value>,
}

/// Request options for a usernameless sign-in (no `allowCredentials`: the browser offers the
/// user's passkeys, also as autofill).
#[derive(Serialize, ToSchema)]
#[schema(as = PasskeyOptions)]
pub struct PasskeyOptionsBody<'a> {
    #[schema(value_type = Object)]
    pub public_key: &'a Value,
    pub expires_at: String,
}

/// The outcome of a passkey assertion. `valid: false` comes with `reason` (and `user` and
/// `factor_id` once the credential was found).
#[derive(Serialize, ToSchema)]
#[schema(as = PasskeyOutcome)]
pub struct PasskeyOutcomeBody<'a> {
    pub valid: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    #[schema(value_type = Option<String>)]
    pub user: Option<&'a UserId>,
    pub factor_id: Option<&'a str>,
    /// The passed challenge: present it to `POST /v1/logins` (`challenge_id`) or to trust the
    /// device.
    pub challenge_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// The credential's signature counter after this assertion (0: the authenticator keeps
    /// none, as synced passkeys do).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counter: Option<u32>,
    /// BE: the passkey may be synced to the user's other devices.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup_eligible: Option<bool>,
    /// BS: the passkey is backed up now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backed_up: Option<bool>,
}
