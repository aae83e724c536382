//! The authenticator-app flow: enrolment (a sealed secret, its URI and QR code), confirmation
//! by the first valid code, and challenges; each code is checked in process and its time step
//! used up by the store atomically. The RFC 6238 arithmetic is in `rfc6238`.

mod rfc6238;

pub use rfc6238::*;

use data_encoding::BASE32_NOPAD;
use serde::Serialize;
use serde_json::json;

use super::store::{
    AttemptOutcome, FactorRecord, FactorStatus, NewFactor, TotpSecret, TotpTry, UserRef,
};
use super::{action, factor_id, ChallengeResult, Confirmed, FactorError, FactorService};
use crate::account::audit::{AuditEntry, Who};
use crate::account::user::{Factor, FactorType, UserId};
use crate::account::{Account, AccountId};
use crate::random::random_bytes;
use crate::store::StoreError;

/// A TOTP enrolment: everything the enrolment page shows, once.
#[derive(Debug, Serialize)]
pub struct TotpEnrolment {
    pub factor_id: String,
    pub secret: String,
    pub uri: String,
    pub qr_svg: String,
    pub algorithm: &'static str,
    pub digits: u8,
    pub period: u64,
    pub expires_ms: u64,
}

/// What a sealed secret is bound to (the additional data of AES-GCM).
fn seal_context(account: &AccountId, user: &UserId, id: &str) -> Vec<u8> {
    format!("otpgate totp|{}|{}|{id}", account.as_str(), user.as_str()).into_bytes()
}

impl FactorService {
    /// Draws a 160-bit secret, seals it, and keeps the factor pending until `confirm_totp`.
    pub async fn enrol_totp(
        &self,
        account: &Account,
        user: &UserId,
        algorithm: Option<Algorithm>,
        digits: Option<u8>,
    ) -> Result<TotpEnrolment, FactorError> {
        self.allowed(&account.id, FactorType::Totp).await?;
        let found = self.accounts.user(&account.id, user).await?;
        // Refused before a secret is shown, not after the user scanned it (issue 13 §8).
        self.accounts.factor_room(&account.id, &found)?;
        let params = TotpParams {
            algorithm: algorithm.unwrap_or(self.settings.totp_algorithm),
            digits: digits.unwrap_or(self.settings.totp_digits),
            period: 30,
        };
        let id = factor_id(&self.rng)?;
        let secret = random_bytes::<{ SECRET_BYTES }>(&self.rng)?;
        let sealed = self
            .keys
            .seal(&self.rng, &seal_context(&account.id, user, &id), &secret)?;
        let now = self.clock.now_ms();
        let record = FactorRecord {
            id: id.clone(),
            kind: FactorType::Totp,
            status: FactorStatus::Pending,
            created_ms: now,
            totp: Some(TotpSecret { sealed, params }),
            webauthn: None,
        };
        let ttl = self.settings.pending_ttl.as_millis() as u64;
        self.store
            .put(NewFactor {
                owner: UserRef::new(&account.id, user),
                record: &record,
                pending_ttl_ms: Some(ttl),
            })
            .await?;
        let issuer = if self.settings.totp_issuer.is_empty() {
            account.name.as_str()
        } else {
            self.settings.totp_issuer.as_str()
        };
        let secret_base32 = BASE32_NOPAD.encode(&secret);
        let uri = otpauth_uri(issuer, user.as_str(), &secret_base32, &params);
        let qr_svg = qr_svg(&uri).map_err(|error| {
            tracing::error!(%error, "QR code");
            FactorError::Invalid("the otpauth URI is too long for a QR code".into())
        })?;
        self.metrics.factor_enrolment("totp", "started");
        Ok(TotpEnrolment {
            factor_id: id,
            secret: secret_base32,
            uri,
            qr_svg,
            algorithm: params.algorithm.as_str(),
            digits: params.digits,
            period: params.period,
            expires_ms: now + ttl,
        })
    }

    /// The first valid code activates the factor (its step is used up like any other), adds it
    /// to the user's factors, and, for the user's first factor, makes recovery codes.
    pub async fn confirm_totp(
        &self,
        account: &AccountId,
        who: Who,
        user_id: &UserId,
        id: &str,
        code: &str,
    ) -> Result<Result<Confirmed, ChallengeResult>, FactorError> {
        let user = self.accounts.user(account, user_id).await?;
        if user.factors.iter().any(|factor| factor.id == id) {
            return Err(FactorError::Conflict(format!(
                "factor '{id}' is already confirmed"
            )));
        }
        let record = self
            .store
            .get(UserRef::new(account, user_id).factor(id))
            .await?
            .filter(|record| record.kind == FactorType::Totp)
            .ok_or(FactorError::NotFound(
                "no such pending factor for this user (it may have expired: enrol again)",
            ))?;
        let result = self
            .totp_attempt(account, &who, user_id, &record, code, true)
            .await?;
        if !result.valid {
            return Ok(Err(result));
        }
        self.activated(account, who, user, id, FactorType::Totp)
            .await
    }

    /// Checks a TOTP code against one of the user's confirmed TOTP factors (`factor_id`, or
    /// the only one).
    pub async fn challenge_totp(
        &self,
        account: &AccountId,
        who: Who,
        user_id: &UserId,
        factor: Option<&str>,
        code: &str,
    ) -> Result<ChallengeResult, FactorError> {
        self.allowed(account, FactorType::Totp).await?;
        let user = self.accounts.user(account, user_id).await?;
        let listed: Vec<&Factor> = user
            .factors
            .iter()
            .filter(|f| f.kind == FactorType::Totp)
            .collect();
        let id = match (factor, listed.as_slice()) {
            (Some(id), _) => listed
                .iter()
                .find(|f| f.id == id)
                .map(|f| f.id.clone())
                .ok_or(FactorError::NotFound("no such TOTP factor for this user"))?,
            (None, [only]) => only.id.clone(),
            (None, []) => return Err(FactorError::NotFound("this user has no TOTP factor")),
            (None, _) => {
                return Err(FactorError::Invalid(
                    "this user has several TOTP factors: give factor_id".into(),
                ))
            }
        };
        let record = self
            .store
            .get(UserRef::new(account, user_id).factor(&id))
            .await?
            .ok_or(FactorError::NotFound("no such TOTP factor for this user"))?;
        let mut result = self
            .totp_attempt(account, &who, user_id, &record, code, false)
            .await?;
        if result.valid {
            result.passed = Some(self.pass(account, user_id, "totp", &id).await?);
        }
        Ok(result)
    }

    /// Derives the candidate steps in process (the secret never leaves it) and lets the store
    /// decide atomically: lock-out, failure count, last used step.
    async fn totp_attempt(
        &self,
        account: &AccountId,
        who: &Who,
        user: &UserId,
        record: &FactorRecord,
        code: &str,
        activate: bool,
    ) -> Result<ChallengeResult, FactorError> {
        let secret_record = record
            .totp
            .as_ref()
            .ok_or_else(|| StoreError::Corrupt("a TOTP factor without a secret".into()))?;
        let secret = self.keys.open(
            &seal_context(account, user, &record.id),
            &secret_record.sealed,
        )?;
        let now = self.clock.now_ms();
        let matched = Totp::new(&secret, secret_record.params).matching_step(code, now);
        let outcome = self
            .store
            .totp_attempt(TotpTry {
                factor: UserRef::new(account, user).factor(&record.id),
                matched,
                activate,
                now_ms: now,
                limits: self.settings.limits,
            })
            .await?;
        let mut result = ChallengeResult {
            kind: "totp",
            factor_id: Some(record.id.clone()),
            ..ChallengeResult::default()
        };
        let label = match outcome {
            AttemptOutcome::Accepted => {
                result.valid = true;
                "accepted"
            }
            AttemptOutcome::Replayed => {
                result.reason = Some("code_already_used");
                // ASVS 2.8.5: a reused code is logged, for the user to be told.
                let entry = AuditEntry::new(
                    now,
                    who.clone(),
                    action::CODE_REUSED,
                    format!("user:{user}"),
                    json!({"factor": record.id}),
                );
                if let Err(error) = self.audit(account, &entry).await {
                    tracing::warn!(%error, "audit entry for a reused code not written");
                }
                tracing::warn!(factor = %record.id, "a TOTP code was presented again");
                "replayed"
            }
            AttemptOutcome::Wrong {
                attempts_left,
                wait_ms,
            } => {
                result.reason = Some("wrong_code");
                if wait_ms > 0 {
                    result.attempts_left = Some(0);
                    result.retry_after_ms = Some(wait_ms);
                } else {
                    result.attempts_left = Some(attempts_left);
                }
                "wrong"
            }
            AttemptOutcome::Locked { retry_after_ms } => {
                self.metrics.factor_challenge("totp", "locked");
                return Err(FactorError::Limited { retry_after_ms });
            }
            AttemptOutcome::NotFound => {
                return Err(FactorError::NotFound("no such TOTP factor for this user"))
            }
            AttemptOutcome::NotActive => {
                result.reason = Some("factor_not_confirmed");
                "not_confirmed"
            }
        };
        if !activate {
            self.metrics.factor_challenge("totp", label);
        }
        Ok(result)
    }
}
