//! The accounts service the HTTP layer calls: policy, users, trusted devices, login decisions
//! and the audit trail, over the `Directory` seam and the hot-path cache. This file holds the
//! service, its errors, policy and the audit trail; its other methods are in `users.rs` (users
//! and their factors), `hot_path.rs` (login decisions, cached reads) and `trust/devices.rs`.
//!
//! Management calls (policy, users) read the directory directly, decide with `rules`, and write
//! with the versions they decided on; a `Stale` answer means someone else changed the state in
//! between, so the call reads again and decides again. Hot-path calls (device checks, login
//! decisions) read through the cache.

use std::sync::Arc;

use ring::rand::SystemRandom;
use serde_json::json;

use crate::abuse::{AbusePolicy, AbuseSettings};
use crate::account::audit::{action, AuditEntry, AuditPage, Who};
use crate::account::limits::{LimitReached, TenantSettings};
use crate::account::notices::{Notices, Silent};
use crate::account::policy::{ChannelSet, DefaultWorkflow, Policy, TrustDuration};
use crate::account::rules::{self, rule, Actor, Refusal};
use crate::account::settings::DirectorySettings;
use crate::account::store::{Accounts, Directory, PolicyWrite};
use crate::account::trust::cache::{HotCache, Invalidation};
pub use crate::account::trust::devices::{DeviceCheck, TrustedDevice};
use crate::account::trust::metrics::HotPathMetrics;
use crate::account::trust::DeviceKey;
use crate::account::user::UserId;
pub use crate::account::users::{NewUser, UserPatch};
use crate::account::{mint_key, AccountId, ApiKeyRecord, MintedKey, Role};
use crate::clock::Clock;
use crate::store::StoreError;

/// A write that keeps meeting concurrent changes gives up after this many tries (409).
pub(crate) const MAX_TRIES: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("refused by rule {}: {}", .0.rule, .0.detail)]
    Refused(Refusal),
    #[error("{0}")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("the random generator failed")]
    Random,
    #[error(transparent)]
    Limit(#[from] LimitReached),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<Refusal> for AccountError {
    fn from(refusal: Refusal) -> Self {
        AccountError::Refused(refusal)
    }
}

/// A policy change as requested: absent fields stay as they are.
#[derive(Debug, Clone, Default)]
pub struct PolicyUpdate {
    pub require_2fa: Option<bool>,
    pub channels: Option<ChannelSet>,
    pub sms_fallback: Option<bool>,
    pub trusted_device: Option<TrustDuration>,
    /// Replaces the account's abuse protection whole.
    pub abuse: Option<AbusePolicy>,
    /// Sets (`Some(Some(…))`) or removes (`Some(None)`) the default workflow.
    pub workflow: Option<Option<DefaultWorkflow>>,
}

/// Its fields are visible to the crate because its methods are spread over `account/users.rs`,
/// `account/hot_path.rs` and `trust/devices.rs`.
pub struct AccountService {
    pub(crate) directory: Arc<dyn Directory>,
    pub(crate) cache: Arc<HotCache>,
    pub(crate) metrics: Arc<HotPathMetrics>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) device_key: DeviceKey,
    pub(crate) rng: SystemRandom,
    pub(crate) settings: DirectorySettings,
    pub(crate) tenants: TenantSettings,
    /// The operator's `[abuse]`: the bounds an account's abuse protection is checked against.
    pub(crate) abuse: Arc<AbuseSettings>,
    /// Told of each change once it is stored (webhooks out).
    pub(crate) notices: Arc<dyn Notices>,
}

impl AccountService {
    pub fn new(
        directory: Arc<dyn Directory>,
        cache: Arc<HotCache>,
        metrics: Arc<HotPathMetrics>,
        clock: Arc<dyn Clock>,
        device_key: &[u8],
        settings: DirectorySettings,
    ) -> Self {
        if !directory.shared() {
            // One instance, nothing to hear from: the cache is always in step.
            cache.set_link(true);
            metrics.link(true);
        }
        Self {
            directory,
            cache,
            metrics,
            clock,
            device_key: DeviceKey::new(device_key),
            rng: SystemRandom::new(),
            settings,
            tenants: TenantSettings::default(),
            abuse: Arc::default(),
            notices: Arc::new(Silent),
        }
    }

    /// The operator's `[abuse]`; the shipped defaults until this is called.
    pub fn with_abuse(mut self, abuse: Arc<AbuseSettings>) -> Self {
        self.abuse = abuse;
        self
    }

    /// Who is told of changes (webhooks out); no one until this is called.
    pub fn with_notices(mut self, notices: Arc<dyn Notices>) -> Self {
        self.notices = notices;
        self
    }

    /// The per-account bounds (`[tenants]`); the documented defaults until this is called.
    pub fn with_tenants(mut self, tenants: TenantSettings) -> Self {
        self.tenants = tenants;
        self
    }

    pub fn tenants(&self) -> &TenantSettings {
        &self.tenants
    }

    pub fn cache(&self) -> &HotCache {
        &self.cache
    }

    pub fn directory(&self) -> &Arc<dyn Directory> {
        &self.directory
    }

    /// The actor for a key, acting for `acting_user` when given (who must be a user here).
    pub async fn actor(
        &self,
        account: &AccountId,
        key: &ApiKeyRecord,
        acting_user: Option<UserId>,
    ) -> Result<Actor, AccountError> {
        let acting = match acting_user {
            None => None,
            Some(id) => {
                let user = self.directory.user(account, &id).await?.ok_or_else(|| {
                    AccountError::Invalid(format!(
                        "acting_user '{id}' is not a user of this account"
                    ))
                })?;
                Some((id, user.role))
            }
        };
        Ok(Actor::new(key.id.clone(), key.role, acting))
    }

    // ---- policy ----

    pub async fn policy(&self, account: &AccountId) -> Result<Policy, AccountError> {
        Ok(self.directory.policy(account).await?)
    }

    pub async fn set_policy(
        &self,
        account: &AccountId,
        actor: &Actor,
        update: &PolicyUpdate,
    ) -> Result<Policy, AccountError> {
        if let Some(abuse) = &update.abuse {
            let mut errors = Vec::new();
            abuse.validate(&self.abuse, &mut errors);
            if !errors.is_empty() {
                return Err(AccountError::Invalid(errors.join("; ")));
            }
        }
        for _ in 0..MAX_TRIES {
            let before = self.directory.policy(account).await?;
            let after = Policy {
                require_2fa: update.require_2fa.unwrap_or(before.require_2fa),
                channels: update.channels.unwrap_or(before.channels),
                sms_fallback: update.sms_fallback.unwrap_or(before.sms_fallback),
                trusted_device: update.trusted_device.unwrap_or(before.trusted_device),
                abuse: update
                    .abuse
                    .clone()
                    .map(Arc::new)
                    .unwrap_or_else(|| before.abuse.clone()),
                workflow: update
                    .workflow
                    .clone()
                    .unwrap_or_else(|| before.workflow.clone()),
                version: before.version,
            };
            rules::policy_change(actor, &before, &after)?;
            if after == before && before.version > 0 {
                return Ok(before);
            }
            let audit = AuditEntry::new(
                self.clock.now_ms(),
                actor.into(),
                action::POLICY_UPDATED,
                "policy".into(),
                json!({"before": before, "after": after}),
            );
            match self.directory.write_policy(account, &after, &audit).await? {
                PolicyWrite::Written { version } => {
                    self.cache
                        .invalidate(&Invalidation::Policy(account.clone()));
                    self.notices.policy_changed(account, &audit.details);
                    return Ok(Policy { version, ..after });
                }
                PolicyWrite::Stale => continue,
                PolicyWrite::MissingPhones { count, users } => {
                    return Err(AccountError::Refused(Refusal {
                        rule: rule::SMS_NEEDS_EVERY_USER_TO_HAVE_A_PHONE,
                        detail: format!(
                            "SMS needs a phone number for every user; {count} have none: {}",
                            users
                                .iter()
                                .map(UserId::as_str)
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                        users,
                    }))
                }
            }
        }
        Err(too_busy())
    }

    // ---- audit ----

    pub async fn audit_page(
        &self,
        account: &AccountId,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<AuditPage, AccountError> {
        let mut entries = self.directory.audit(account, cursor, limit + 1).await?;
        let next_cursor = if entries.len() > limit {
            entries.truncate(limit);
            entries.last().map(|entry| entry.id.clone())
        } else {
            None
        };
        Ok(AuditPage {
            entries,
            next_cursor,
        })
    }

    /// Mints a key of `role` for `account` and stores it in `keys`. The audit entry (its id and
    /// role, never the key) goes first: a key never exists without its entry (a failed insert
    /// leaves an entry for a key nobody received, which the entry's key id shows).
    pub async fn mint_key(
        &self,
        keys: &dyn Accounts,
        account: &AccountId,
        who: Who,
        role: Role,
    ) -> Result<MintedKey, AccountError> {
        let minted = mint_key(&self.rng, account, role, self.clock.now_ms())
            .map_err(|_| AccountError::Random)?;
        let entry = AuditEntry::new(
            self.clock.now_ms(),
            who,
            action::KEY_MINTED,
            format!("key:{}", minted.record.id),
            json!({"role": minted.record.role}),
        );
        self.directory.append_audit(account, &entry).await?;
        keys.insert_api_key(&minted.record).await?;
        Ok(minted)
    }
}

pub(crate) fn too_busy() -> AccountError {
    AccountError::Conflict("the record kept changing under this request; try again".into())
}
