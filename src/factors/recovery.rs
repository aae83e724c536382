//! The recovery-code flow: a set of ten made with the user's first factor or on request, and
//! one code used per challenge. The codes and their keyed digests are in `codes`.

mod codes;

pub use codes::*;

use serde_json::json;

use super::store::{RecoveryOutcome, RecoveryTry, UserRef};
use super::{action, ChallengeResult, FactorError, FactorService};
use crate::account::audit::{AuditEntry, Who};
use crate::account::user::UserId;
use crate::account::AccountId;

impl FactorService {
    /// Uses one recovery code.
    pub async fn challenge_recovery(
        &self,
        account: &AccountId,
        who: Who,
        user_id: &UserId,
        code: &str,
    ) -> Result<ChallengeResult, FactorError> {
        self.accounts.user(account, user_id).await?;
        let mut result = ChallengeResult {
            kind: "recovery_code",
            ..ChallengeResult::default()
        };
        let normalised = normalise(code).ok_or_else(|| {
            FactorError::Invalid("code must be a recovery code such as abcd-efgh-jkmn".into())
        })?;
        let digest = self.recovery.digest(account, user_id, &normalised);
        let now = self.clock.now_ms();
        match self
            .store
            .use_recovery(RecoveryTry {
                owner: UserRef::new(account, user_id),
                digest: &digest,
                now_ms: now,
                limits: self.settings.limits,
            })
            .await?
        {
            RecoveryOutcome::Used { remaining } => {
                let entry = AuditEntry::new(
                    now,
                    who,
                    action::RECOVERY_CODE_USED,
                    format!("user:{user_id}"),
                    json!({"remaining": remaining}),
                );
                self.audit(account, &entry).await?;
                self.metrics.factor_challenge("recovery_code", "accepted");
                result.valid = true;
                result.recovery_codes_left = Some(remaining);
                result.passed = Some(
                    self.pass(account, user_id, "recovery_code", "recovery")
                        .await?,
                );
            }
            RecoveryOutcome::Wrong {
                attempts_left,
                wait_ms,
            } => {
                self.metrics.factor_challenge("recovery_code", "wrong");
                result.reason = Some("wrong_code");
                result.attempts_left = Some(if wait_ms > 0 { 0 } else { attempts_left });
                result.retry_after_ms = (wait_ms > 0).then_some(wait_ms);
            }
            RecoveryOutcome::Locked { retry_after_ms } => {
                self.metrics.factor_challenge("recovery_code", "locked");
                return Err(FactorError::Limited { retry_after_ms });
            }
        }
        Ok(result)
    }

    pub(super) async fn new_recovery_codes(
        &self,
        account: &AccountId,
        user: &UserId,
    ) -> Result<Vec<String>, FactorError> {
        let mut codes = Vec::with_capacity(CODES_PER_SET);
        let mut digests = Vec::with_capacity(CODES_PER_SET);
        while codes.len() < CODES_PER_SET {
            let code = generate(&self.rng)?;
            let digest = self.recovery.digest(account, user, &code.replace('-', ""));
            if !digests.contains(&digest) {
                digests.push(digest);
                codes.push(code);
            }
        }
        self.store
            .replace_recovery(UserRef::new(account, user), &digests)
            .await?;
        Ok(codes)
    }

    /// A new set of ten codes; the old set stops working in the same store step.
    pub async fn regenerate_recovery_codes(
        &self,
        account: &AccountId,
        who: Who,
        user_id: &UserId,
    ) -> Result<Vec<String>, FactorError> {
        let user = self.accounts.user(account, user_id).await?;
        if user.factors.is_empty() {
            return Err(FactorError::Conflict(
                "recovery codes back up an app or a key: enrol one first".into(),
            ));
        }
        let codes = self.new_recovery_codes(account, user_id).await?;
        let entry = AuditEntry::new(
            self.clock.now_ms(),
            who,
            action::RECOVERY_CODES_REGENERATED,
            format!("user:{user_id}"),
            json!({"count": codes.len()}),
        );
        self.audit(account, &entry).await?;
        Ok(codes)
    }
}
