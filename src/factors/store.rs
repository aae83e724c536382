//! The factor store seam: TOTP secrets and their last used step, security-key credentials and
//! their counters, ceremony state, recovery-code digests, passed challenges.
//!
//! Like `Store` and `Directory`, each method is one atomic step (one Lua script or command in
//! Redis, one lock in memory). The step that matters most is `totp_attempt`: the lock-out check,
//! the failure count and the compare-and-set of the last used step happen together, so a code
//! is accepted at most once however many instances race on it.

use async_trait::async_trait;

use super::recovery::CodeDigest;
use super::totp::TotpParams;
use super::webauthn::CredentialKey;
use crate::account::user::{FactorType, UserId};
use crate::account::AccountId;
use crate::store::StoreError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FactorStatus {
    /// Enrolled but not yet confirmed by a first valid code; expires on its own.
    Pending,
    Active,
}

impl FactorStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            FactorStatus::Pending => "pending",
            FactorStatus::Active => "active",
        }
    }

    pub fn parse(input: &str) -> Option<Self> {
        match input {
            "pending" => Some(FactorStatus::Pending),
            "active" => Some(FactorStatus::Active),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TotpSecret {
    /// `kid:nonce:ciphertext`, never the secret in clear.
    pub sealed: String,
    pub params: TotpParams,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyCredential {
    pub credential_id: Vec<u8>,
    pub key: CredentialKey,
    pub counter: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FactorRecord {
    pub id: String,
    pub kind: FactorType,
    pub status: FactorStatus,
    pub created_ms: u64,
    pub totp: Option<TotpSecret>,
    pub webauthn: Option<KeyCredential>,
}

/// Wrong attempts per factor (and per user's recovery codes): `max_failures` in a row, then a
/// wait of `first_wait_ms`, doubled after each further round, at most `max_wait_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptLimits {
    pub max_failures: u32,
    pub first_wait_ms: u64,
    pub max_wait_ms: u64,
}

impl AttemptLimits {
    /// After `failures` consecutive wrong attempts: how many are left in this round, and how
    /// long to wait (0 until a round is used up).
    pub fn after(&self, failures: u32) -> (u32, u64) {
        let max = self.max_failures.max(1);
        let left = max - failures % max;
        if failures > 0 && failures.is_multiple_of(max) {
            let rounds = failures / max;
            (
                max,
                crate::backoff::backoff_ms(self.first_wait_ms, rounds - 1, self.max_wait_ms),
            )
        } else {
            (left, 0)
        }
    }
}

/// One authenticator-app code, as `FactorStore::totp_attempt` counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TotpTry {
    /// The step the code matched (found by the caller, which holds the secret); `None` when it
    /// matched none.
    pub matched: Option<u64>,
    /// Confirms a pending factor when the code is accepted (the enrolment's first code).
    pub activate: bool,
    pub now_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The code's step was newer than the last used one; it is now the last used one.
    Accepted,
    /// The code matched a step already used (or older than it): refused, not counted.
    Replayed,
    Wrong {
        attempts_left: u32,
        wait_ms: u64,
    },
    /// Waiting after a round of wrong codes: nothing was compared or counted.
    Locked {
        retry_after_ms: u64,
    },
    NotFound,
    /// A challenge against a factor that is not confirmed yet.
    NotActive,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CounterOutcome {
    Advanced,
    /// The presented counter did not grow: a possible clone.
    Regressed {
        stored: u32,
    },
    NotFound,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryOutcome {
    Used { remaining: u32 },
    Wrong { attempts_left: u32, wait_ms: u64 },
    Locked { retry_after_ms: u64 },
}

/// A passed challenge, kept briefly as proof for trusting a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassedChallenge {
    /// `CH` and 32 hex digits.
    pub id: String,
    pub user: UserId,
    /// `totp`, `webauthn` or `recovery_code`.
    pub kind: String,
    /// The factor's id, or `recovery` for a recovery code.
    pub factor: String,
    pub expires_ms: u64,
}

#[async_trait]
pub trait FactorStore: Send + Sync + 'static {
    /// Writes a factor record whole; `ttl_ms` for a pending one (it expires unconfirmed).
    async fn put(
        &self,
        account: &AccountId,
        user: &UserId,
        record: &FactorRecord,
        ttl_ms: Option<u64>,
    ) -> Result<(), StoreError>;

    async fn get(
        &self,
        account: &AccountId,
        user: &UserId,
        id: &str,
    ) -> Result<Option<FactorRecord>, StoreError>;

    async fn delete(&self, account: &AccountId, user: &UserId, id: &str) -> Result<(), StoreError>;

    /// One TOTP attempt: refuse while locked; with `matched` (the step the code matched, found
    /// by the caller, which holds the secret), accept only when it is newer than the last used
    /// step and store it; without, count a failure. `activate` confirms a pending factor.
    async fn totp_attempt(
        &self,
        account: &AccountId,
        user: &UserId,
        id: &str,
        attempt: TotpTry,
        limits: &AttemptLimits,
    ) -> Result<AttemptOutcome, StoreError>;

    /// Stores `counter` if it advances on the stored one (see `webauthn::counter_advances`).
    async fn advance_counter(
        &self,
        account: &AccountId,
        user: &UserId,
        id: &str,
        counter: u32,
    ) -> Result<CounterOutcome, StoreError>;

    /// Keeps a ceremony's state under its challenge for `ttl_ms`.
    async fn put_ceremony(
        &self,
        account: &AccountId,
        user: &UserId,
        challenge: &[u8],
        state: &str,
        ttl_ms: u64,
    ) -> Result<(), StoreError>;

    /// Reads and deletes a ceremony's state in one step: a challenge is answered at most once.
    async fn take_ceremony(
        &self,
        account: &AccountId,
        user: &UserId,
        challenge: &[u8],
    ) -> Result<Option<String>, StoreError>;

    /// Replaces the user's recovery codes (the old set stops working in the same step).
    async fn replace_recovery(
        &self,
        account: &AccountId,
        user: &UserId,
        digests: &[CodeDigest],
    ) -> Result<(), StoreError>;

    /// Uses one recovery code (removes its digest), counting wrong ones like TOTP codes.
    async fn use_recovery(
        &self,
        account: &AccountId,
        user: &UserId,
        digest: &CodeDigest,
        now_ms: u64,
        limits: &AttemptLimits,
    ) -> Result<RecoveryOutcome, StoreError>;

    async fn recovery_left(&self, account: &AccountId, user: &UserId) -> Result<u32, StoreError>;

    async fn delete_recovery(&self, account: &AccountId, user: &UserId) -> Result<(), StoreError>;

    async fn put_passed(
        &self,
        account: &AccountId,
        passed: &PassedChallenge,
        ttl_ms: u64,
    ) -> Result<(), StoreError>;

    async fn passed(
        &self,
        account: &AccountId,
        id: &str,
    ) -> Result<Option<PassedChallenge>, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_start_after_a_round_and_double_up_to_the_cap() {
        let limits = AttemptLimits {
            max_failures: 5,
            first_wait_ms: 30_000,
            max_wait_ms: 100_000,
        };
        assert_eq!(limits.after(1), (4, 0));
        assert_eq!(limits.after(4), (1, 0));
        assert_eq!(limits.after(5), (5, 30_000));
        assert_eq!(limits.after(6), (4, 0));
        assert_eq!(limits.after(10), (5, 60_000));
        assert_eq!(limits.after(15), (5, 100_000));
        assert_eq!(limits.after(500), (5, 100_000));
    }
}
