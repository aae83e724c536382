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
use super::webauthn::{BackupState, CredentialKey};
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
    /// BE and BS as last presented (at registration, then each accepted assertion).
    pub backup: BackupState,
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

/// Wrong attempts per factor (and per user's recovery codes): rounds of
/// `AttemptLimits::in_rounds`, a doubling wait after each.
pub use crate::backoff::AttemptLimits;

/// One user of one account: whose factors, ceremonies and recovery codes a step touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserRef<'a> {
    pub account: &'a AccountId,
    pub user: &'a UserId,
}

impl<'a> UserRef<'a> {
    pub fn new(account: &'a AccountId, user: &'a UserId) -> Self {
        Self { account, user }
    }

    /// One of this user's factors.
    pub fn factor(self, id: &'a str) -> FactorRef<'a> {
        FactorRef { owner: self, id }
    }
}

/// One factor of one user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FactorRef<'a> {
    pub owner: UserRef<'a>,
    pub id: &'a str,
}

/// A factor record to write whole, for its owner; `pending_ttl_ms` for a pending one (it
/// expires unconfirmed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewFactor<'a> {
    pub owner: UserRef<'a>,
    pub record: &'a FactorRecord,
    pub pending_ttl_ms: Option<u64>,
}

/// One authenticator-app code, as `FactorStore::totp_attempt` counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TotpTry<'a> {
    pub factor: FactorRef<'a>,
    /// The step the code matched (found by the caller, which holds the secret); `None` when it
    /// matched none.
    pub matched: Option<u64>,
    /// Confirms a pending factor when the code is accepted (the enrolment's first code).
    pub activate: bool,
    pub now_ms: u64,
    pub limits: AttemptLimits,
}

/// One recovery code, as `FactorStore::use_recovery` counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryTry<'a> {
    pub owner: UserRef<'a>,
    pub digest: &'a CodeDigest,
    pub now_ms: u64,
    pub limits: AttemptLimits,
}

/// A WebAuthn ceremony's state, kept under its owner and challenge for `ttl_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewCeremony<'a> {
    pub owner: UserRef<'a>,
    pub challenge: &'a [u8],
    pub state: &'a str,
    pub ttl_ms: u64,
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
    /// `totp`, `webauthn`, `passkey` or `recovery_code`.
    pub kind: String,
    /// The factor's id, or `recovery` for a recovery code.
    pub factor: String,
    pub expires_ms: u64,
}

#[async_trait]
pub trait FactorStore: Send + Sync + 'static {
    /// Writes a factor record whole (a pending one expires unconfirmed).
    async fn put(&self, factor: NewFactor<'_>) -> Result<(), StoreError>;

    async fn get(&self, factor: FactorRef<'_>) -> Result<Option<FactorRecord>, StoreError>;

    async fn delete(&self, factor: FactorRef<'_>) -> Result<(), StoreError>;

    /// One TOTP attempt: refuse while locked; with `matched` (the step the code matched, found
    /// by the caller, which holds the secret), accept only when it is newer than the last used
    /// step and store it; without, count a failure. `activate` confirms a pending factor.
    async fn totp_attempt(&self, attempt: TotpTry<'_>) -> Result<AttemptOutcome, StoreError>;

    /// Stores `counter` if it advances on the stored one (see `webauthn::counter_advances`),
    /// and with it the assertion's backup state.
    async fn advance_counter(
        &self,
        factor: FactorRef<'_>,
        counter: u32,
        backup: BackupState,
    ) -> Result<CounterOutcome, StoreError>;

    /// Records which user a passkey's user handle names, so that a usernameless assertion
    /// finds its user. One entry per user (the handle is derived from the user), bounded per
    /// account by `tenants.max_users`; writing an existing entry again is a no-op.
    async fn put_user_handle(
        &self,
        account: &AccountId,
        handle: &[u8],
        user: &UserId,
    ) -> Result<(), StoreError>;

    async fn user_of_handle(
        &self,
        account: &AccountId,
        handle: &[u8],
    ) -> Result<Option<UserId>, StoreError>;

    /// Forgets a handle (the user's last passkey was removed).
    async fn delete_user_handle(
        &self,
        account: &AccountId,
        handle: &[u8],
    ) -> Result<(), StoreError>;

    /// Keeps a ceremony's state under its challenge for its `ttl_ms`.
    async fn put_ceremony(&self, ceremony: NewCeremony<'_>) -> Result<(), StoreError>;

    /// Reads and deletes a ceremony's state in one step: a challenge is answered at most once.
    async fn take_ceremony(
        &self,
        owner: UserRef<'_>,
        challenge: &[u8],
    ) -> Result<Option<String>, StoreError>;

    /// Replaces the user's recovery codes (the old set stops working in the same step).
    async fn replace_recovery(
        &self,
        owner: UserRef<'_>,
        digests: &[CodeDigest],
    ) -> Result<(), StoreError>;

    /// Uses one recovery code (removes its digest), counting wrong ones like TOTP codes.
    async fn use_recovery(&self, attempt: RecoveryTry<'_>) -> Result<RecoveryOutcome, StoreError>;

    async fn recovery_left(&self, owner: UserRef<'_>) -> Result<u32, StoreError>;

    async fn delete_recovery(&self, owner: UserRef<'_>) -> Result<(), StoreError>;

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
