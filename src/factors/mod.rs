//! Authenticator apps (TOTP) and security keys (WebAuthn), and recovery codes: enrolment,
//! confirmation, challenges, and the proof a passed challenge gives for trusting a device.
//!
//! The user's factor list (what the login decision offers) lives in the directory and is
//! changed through `AccountService` (audited, revoking devices on removal); the factor's own
//! material (sealed TOTP secret and last used step, credential key and counter) lives in the
//! `FactorStore`. A challenge needs both: the factor listed on the user, and its record active.
//!
//! - `mod.rs` (this file): `FactorService`, its errors and results, and the steps every flow
//!   shares (the policy check, activation, passed challenges, removal, the audit trail).
//! - `totp.rs`, `webauthn.rs`, `passkey.rs`, `recovery.rs`: one flow each, as `impl FactorService` blocks;
//!   beneath each, its primitives (`totp/rfc6238.rs`, `webauthn/checks.rs`, `recovery/codes.rs`).
//! - `proof.rs`: a device-trust request's ids resolved into a `trust::devices::Proof`.
//! - `crypto.rs`: sealing TOTP secrets; `store.rs`: the `FactorStore` port (`memory.rs`, `redis.rs`).

pub mod crypto;
pub mod passkey;
pub mod proof;
pub mod recovery;
pub mod store;
pub mod totp;
pub mod webauthn;

use std::sync::Arc;
use std::time::Duration;

use ring::rand::SystemRandom;

use crate::account::audit::{AuditEntry, Who};
use crate::account::policy::PolicyChannel;
use crate::account::rules::Refusal;
use crate::account::service::{AccountError, AccountService};
use crate::account::user::{Factor, FactorType, User, UserId};
use crate::account::{hex, AccountId};
use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::random::random_bytes;
use crate::secret::Secret;
use crate::store::StoreError;
use crypto::{FactorKeys, SealError};
use recovery::RecoveryHasher;
use store::{AttemptLimits, FactorStore, PassedChallenge, UserRef};
use totp::Algorithm;

pub use totp::TotpEnrolment;
use webauthn::RelyingParty;
pub use webauthn::{CredentialJson, CredentialResponseJson, KeyEnrolment};

/// Audit actions of this module (beside `audit::action`).
pub mod action {
    pub const CODE_REUSED: &str = "factor.code_reused";
    pub const COUNTER_REGRESSED: &str = "factor.counter_regressed";
    pub const RECOVERY_CODE_USED: &str = "recovery_code.used";
    pub const RECOVERY_CODES_REGENERATED: &str = "recovery_codes.regenerated";
}

/// Rules named in refusals of this module.
pub mod rule {
    pub const THE_POLICY_DOES_NOT_ALLOW_THIS_FACTOR: &str = "the-policy-does-not-allow-this-factor";
}

/// `[factors]` settings.
#[derive(Debug, Clone)]
pub struct FactorSettings {
    /// Encryption keys for TOTP secrets, (id, 32 bytes), current first; empty: derived or
    /// random at build (see `assemble`).
    pub keys: Vec<(String, Secret)>,
    /// The issuer in authenticator apps; empty: the account's name.
    pub totp_issuer: String,
    pub totp_algorithm: Algorithm,
    pub totp_digits: u8,
    pub pending_ttl: Duration,
    pub limits: AttemptLimits,
    pub proof_ttl: Duration,
    pub relying_party: RelyingParty,
    pub ceremony_ttl: Duration,
    pub memory_max_entries: usize,
}

impl FactorSettings {
    /// The rules on values that parsed; each broken one adds a line to `errors`.
    pub fn validate(&self, errors: &mut Vec<String>) {
        if !matches!(self.totp_digits, 6 | 8) {
            errors.push("factors.totp_digits: must be 6 or 8".to_owned());
        }
        if self.limits.free_attempts > 10 {
            errors.push(
                "factors.max_failures: must be at most 10 (RFC 4226 §7.3: as low as possible)"
                    .to_owned(),
            );
        }
        let rp_id = &self.relying_party.id;
        let rp_ok = !rp_id.is_empty()
            && rp_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
        if !rp_ok {
            errors.push(
                "factors.rp_id: must be a domain name such as example.com (or localhost)"
                    .to_owned(),
            );
        }
        let origins = &self.relying_party.origins;
        let origins_ok = !origins.is_empty()
            && origins.iter().all(|origin| {
                reqwest::Url::parse(origin)
                    .is_ok_and(|url| matches!(url.scheme(), "http" | "https") && url.path() == "/")
            });
        if !origins_ok {
            errors.push("factors.origins: must list origins such as https://login.example.com (scheme, host, optional port)".to_owned());
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FactorError {
    #[error(transparent)]
    Account(#[from] AccountError),
    #[error("{0}")]
    NotFound(&'static str),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    /// Wrong codes used up a round: wait this long.
    #[error("too many wrong codes; retry after {retry_after_ms} ms")]
    Limited { retry_after_ms: u64 },
    #[error("a factor secret cannot be opened: {0}")]
    Seal(#[from] SealError),
    #[error("the random generator failed")]
    Random,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<ring::error::Unspecified> for FactorError {
    fn from(_: ring::error::Unspecified) -> Self {
        FactorError::Random
    }
}

/// A confirmed factor; `recovery_codes` when it was the user's first (shown once).
#[derive(Debug)]
pub struct Confirmed {
    pub factor: Factor,
    pub user: User,
    pub recovery_codes: Option<Vec<String>>,
}

/// The answer to a challenge. Expected refusals are values (`valid: false` with a reason);
/// only a wait after a round of wrong codes is an error (429).
#[derive(Debug, Default)]
pub struct ChallengeResult {
    pub valid: bool,
    pub kind: &'static str,
    pub factor_id: Option<String>,
    pub reason: Option<&'static str>,
    pub attempts_left: Option<u32>,
    pub retry_after_ms: Option<u64>,
    pub passed: Option<PassedChallenge>,
    pub recovery_codes_left: Option<u32>,
}

pub struct FactorService {
    store: Arc<dyn FactorStore>,
    /// Users, their factor lists and the policy; the audit trail through its directory.
    accounts: Arc<AccountService>,
    keys: FactorKeys,
    recovery: RecoveryHasher,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    rng: SystemRandom,
    settings: FactorSettings,
}

fn factor_id(rng: &SystemRandom) -> Result<String, FactorError> {
    Ok(format!("FA{}", hex(&random_bytes::<16>(rng)?)))
}

fn channel_of(kind: FactorType) -> PolicyChannel {
    match kind {
        FactorType::Totp => PolicyChannel::Totp,
        // A passkey is a WebAuthn credential: allowed with the `webauthn` channel.
        FactorType::Webauthn | FactorType::Passkey => PolicyChannel::Webauthn,
    }
}

impl FactorService {
    pub fn new(
        store: Arc<dyn FactorStore>,
        accounts: Arc<AccountService>,
        keys: FactorKeys,
        recovery_key: &[u8],
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
        settings: FactorSettings,
    ) -> Self {
        Self {
            store,
            accounts,
            keys,
            recovery: RecoveryHasher::new(recovery_key),
            clock,
            metrics,
            rng: SystemRandom::new(),
            settings,
        }
    }

    pub fn settings(&self) -> &FactorSettings {
        &self.settings
    }

    pub fn store(&self) -> &Arc<dyn FactorStore> {
        &self.store
    }

    async fn allowed(&self, account: &AccountId, kind: FactorType) -> Result<(), FactorError> {
        let policy = self.accounts.policy(account).await?;
        if policy.channels.contains(channel_of(kind)) {
            return Ok(());
        }
        Err(AccountError::Refused(Refusal::new(
            rule::THE_POLICY_DOES_NOT_ALLOW_THIS_FACTOR,
            format!(
                "the account's policy does not allow {} (channels)",
                kind.as_str()
            ),
        ))
        .into())
    }

    /// A confirmed factor, counted and added to the user; the first one also mints the user's
    /// recovery codes. Answered as the confirming flow's success (`E`: its refusal).
    async fn activated<E>(
        &self,
        account: &AccountId,
        who: Who,
        user: User,
        id: &str,
        kind: FactorType,
    ) -> Result<Result<Confirmed, E>, FactorError> {
        self.metrics.factor_enrolment(kind.as_str(), "confirmed");
        let first = user.factors.is_empty();
        let factor = Factor {
            kind,
            id: id.to_owned(),
        };
        let user = self
            .accounts
            .add_factor(account, who.clone(), &user.id, factor.clone())
            .await?;
        let recovery_codes = if first {
            Some(self.new_recovery_codes(account, &user.id).await?)
        } else {
            None
        };
        Ok(Ok(Confirmed {
            factor,
            user,
            recovery_codes,
        }))
    }

    async fn pass(
        &self,
        account: &AccountId,
        user: &UserId,
        kind: &str,
        factor: &str,
    ) -> Result<PassedChallenge, FactorError> {
        let ttl = self.settings.proof_ttl.as_millis() as u64;
        let passed = PassedChallenge {
            id: format!("CH{}", hex(&random_bytes::<16>(&self.rng)?)),
            user: user.clone(),
            kind: kind.to_owned(),
            factor: factor.to_owned(),
            expires_ms: self.clock.now_ms() + ttl,
        };
        self.store.put_passed(account, &passed, ttl).await?;
        Ok(passed)
    }

    /// A passed challenge of this account, while it may still be presented.
    pub async fn passed(
        &self,
        account: &AccountId,
        id: &str,
    ) -> Result<Option<PassedChallenge>, FactorError> {
        if !crate::account::is_sid(id, "CH") {
            return Ok(None);
        }
        Ok(self
            .store
            .passed(account, id)
            .await?
            .filter(|passed| self.clock.now_ms() < passed.expires_ms))
    }

    /// Removes a factor: first from the user (audited, revoking the user's trusted devices in
    /// the same directory step), then its material. Should the second step fail, the record
    /// left behind is unusable: challenges need the factor listed on the user.
    pub async fn remove(
        &self,
        account: &AccountId,
        actor: &crate::account::rules::Actor,
        user_id: &UserId,
        id: &str,
    ) -> Result<User, FactorError> {
        let user = self
            .accounts
            .remove_factor(account, actor, user_id, id)
            .await?;
        let owner = UserRef::new(account, user_id);
        self.store.delete(owner.factor(id)).await?;
        if !user.factors.iter().any(|f| f.kind == FactorType::Passkey) {
            let handle = webauthn::user_handle(account, user_id);
            self.store.delete_user_handle(account, &handle).await?;
        }
        if user.factors.is_empty() {
            self.store.delete_recovery(owner).await?;
        }
        Ok(user)
    }

    async fn audit(&self, account: &AccountId, entry: &AuditEntry) -> Result<(), StoreError> {
        // The account's trail lives in the directory.
        self.accounts.directory().append_audit(account, entry).await
    }
}
