//! The accounts service the HTTP layer calls: policy, users, trusted devices, login decisions
//! and the audit trail, over the `Directory` seam and the hot-path cache.
//!
//! Management calls (policy, users) read the directory directly, decide with `rules`, and write
//! with the versions they decided on; a `Stale` answer means someone else changed the state in
//! between, so the call reads again and decides again. Hot-path calls (device checks, login
//! decisions) read through the cache.

use std::sync::Arc;

use ring::rand::SystemRandom;
use serde_json::json;

use crate::account::limits::{Limit, LimitReached, TenantSettings};
use crate::account::login::{decide, Decision};
use crate::account::policy::{ChannelSet, Policy, TrustDuration};
use crate::account::rules::{self, rule, Actor, Refusal, TwoFactorRequest};
use crate::account::settings::DirectorySettings;
use crate::account::user::{Factor, Override, User, UserId, UserRole};
use crate::account::{AccountId, ApiKeyRecord};
use crate::audit::{action, AuditEntry, AuditPage, Who};
use crate::clock::Clock;
use crate::directory::{
    Directory, NewDevice, PolicyWrite, TrustOutcome, UserWrite, UserWriteOutcome,
};
use crate::phone::PhoneNumber;
use crate::store::StoreError;
use crate::trust::cache::{HotCache, Invalidation, Lookup};
use crate::trust::metrics::{CacheKind, HotPathMetrics, LookupResult};
use crate::trust::{mint_token, DeviceDigest, DeviceId, DeviceKey, DeviceRecord};
use crate::verify::model::{Status, Verification};

/// A write that keeps meeting concurrent changes gives up after this many tries (409).
const MAX_TRIES: usize = 5;

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
}

#[derive(Debug, Clone)]
pub struct NewUser {
    pub id: Option<UserId>,
    pub role: UserRole,
    pub phone: Option<PhoneNumber>,
    pub two_factor: Option<TwoFactorRequest>,
}

/// A user change as requested: absent fields stay as they are; `phone: Some(None)` removes it.
#[derive(Debug, Clone, Default)]
pub struct UserPatch {
    pub role: Option<UserRole>,
    pub phone: Option<Option<PhoneNumber>>,
    pub two_factor: Option<TwoFactorRequest>,
}

/// A device just trusted: the token is shown once and never stored.
#[derive(Debug)]
pub struct TrustedDevice {
    pub id: DeviceId,
    pub token: String,
    pub created_ms: u64,
    pub expires_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceCheck {
    pub trusted: bool,
    pub device: Option<DeviceId>,
    /// Until when, under the current policy, when trusted.
    pub until_ms: Option<u64>,
}

pub struct AccountService {
    directory: Arc<dyn Directory>,
    cache: Arc<HotCache>,
    metrics: Arc<HotPathMetrics>,
    clock: Arc<dyn Clock>,
    device_key: DeviceKey,
    rng: SystemRandom,
    settings: DirectorySettings,
    tenants: TenantSettings,
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
        }
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
        for _ in 0..MAX_TRIES {
            let before = self.directory.policy(account).await?;
            let after = Policy {
                require_2fa: update.require_2fa.unwrap_or(before.require_2fa),
                channels: update.channels.unwrap_or(before.channels),
                sms_fallback: update.sms_fallback.unwrap_or(before.sms_fallback),
                trusted_device: update.trusted_device.unwrap_or(before.trusted_device),
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

    // ---- users ----

    pub async fn user(&self, account: &AccountId, id: &UserId) -> Result<User, AccountError> {
        self.directory
            .user(account, id)
            .await?
            .ok_or(AccountError::NotFound("no such user in this account"))
    }

    pub async fn create_user(
        &self,
        account: &AccountId,
        actor: &Actor,
        new: &NewUser,
    ) -> Result<User, AccountError> {
        let id = match &new.id {
            Some(id) => id.clone(),
            None => UserId::random(&self.rng).map_err(|_| AccountError::Random)?,
        };
        for _ in 0..MAX_TRIES {
            let policy = self.directory.policy(account).await?;
            let two_factor = rules::new_user(
                actor,
                &id,
                new.role,
                new.phone.as_ref(),
                new.two_factor,
                &policy,
            )?;
            let now = self.clock.now_ms();
            let user = User {
                id: id.clone(),
                role: new.role,
                phone: new.phone.clone(),
                two_factor,
                factors: Vec::new(),
                device_epoch: 0,
                version: 0,
                created_ms: now,
                updated_ms: now,
            };
            let target = format!("user:{id}");
            let mut audit = vec![AuditEntry::new(
                now,
                actor.into(),
                action::USER_CREATED,
                target.clone(),
                json!({
                    "role": user.role,
                    "phone": user.phone.as_ref().map(|p| p.masked()),
                    "two_factor": user.two_factor_enabled(policy.require_2fa),
                }),
            )];
            if let Some(over) = &user.two_factor {
                audit.push(override_entry(
                    now,
                    actor,
                    &target,
                    &None,
                    &Some(over.clone()),
                ));
            }
            let write = UserWrite {
                user,
                create: true,
                policy_version: policy.version,
                revoke_devices: false,
                audit,
                max_users: self.tenants.limits(account).users,
            };
            match self.directory.write_user(account, &write).await? {
                UserWriteOutcome::Written {
                    version,
                    device_epoch,
                } => {
                    let mut user = write.user;
                    user.version = version;
                    user.device_epoch = device_epoch;
                    return Ok(user);
                }
                UserWriteOutcome::Exists => {
                    return Err(AccountError::Conflict(format!(
                        "user '{id}' already exists"
                    )))
                }
                UserWriteOutcome::TooManyUsers { max } => {
                    return Err(LimitReached {
                        limit: Limit::Users,
                        max,
                    }
                    .into())
                }
                UserWriteOutcome::Stale => continue,
                UserWriteOutcome::NotFound => return Err(too_busy()),
            }
        }
        Err(too_busy())
    }

    pub async fn update_user(
        &self,
        account: &AccountId,
        actor: &Actor,
        id: &UserId,
        patch: &UserPatch,
    ) -> Result<User, AccountError> {
        for _ in 0..MAX_TRIES {
            let policy = self.directory.policy(account).await?;
            let before = self.user(account, id).await?;
            let now = self.clock.now_ms();
            let target = format!("user:{id}");
            let mut after = before.clone();
            let mut audit = Vec::new();
            let mut revoke_devices = false;
            if let Some(role) = patch.role.filter(|role| *role != before.role) {
                rules::role_change(actor, &before, role)?;
                after.role = role;
                audit.push(AuditEntry::new(
                    now,
                    actor.into(),
                    action::ROLE_CHANGED,
                    target.clone(),
                    json!({"before": before.role, "after": role}),
                ));
            }
            if let Some(phone) = patch.phone.as_ref().filter(|phone| **phone != before.phone) {
                rules::phone_change(actor, &before, phone.as_ref(), &policy)?;
                after.phone = phone.clone();
                // NIST SP 800-63B 5.1.3.3: a new number is a new authenticator; devices trusted
                // through the old one are no longer vouched for.
                revoke_devices = true;
                audit.push(AuditEntry::new(
                    now,
                    actor.into(),
                    action::PHONE_CHANGED,
                    target.clone(),
                    json!({
                        "before": before.phone.as_ref().map(|p| p.masked()),
                        "after": phone.as_ref().map(|p| p.masked()),
                        "devices_revoked": true,
                    }),
                ));
            }
            if let Some(request) = patch.two_factor {
                let over = rules::two_factor_change(
                    actor,
                    id,
                    &before.two_factor,
                    request,
                    policy.require_2fa,
                )?;
                if over != before.two_factor {
                    audit.push(override_entry(
                        now,
                        actor,
                        &target,
                        &before.two_factor,
                        &over,
                    ));
                    after.two_factor = over;
                }
            }
            if audit.is_empty() {
                return Ok(before);
            }
            after.updated_ms = now;
            match self
                .write_user(account, after, policy.version, revoke_devices, audit)
                .await?
            {
                Some(user) => return Ok(user),
                None => continue,
            }
        }
        Err(too_busy())
    }

    /// Adds an enrolled factor (the TOTP and WebAuthn enrolment calls this once confirmed).
    pub async fn add_factor(
        &self,
        account: &AccountId,
        who: Who,
        id: &UserId,
        factor: Factor,
    ) -> Result<User, AccountError> {
        for _ in 0..MAX_TRIES {
            let policy = self.directory.policy(account).await?;
            let mut user = self.user(account, id).await?;
            if user.factors.iter().any(|known| known.id == factor.id) {
                return Err(AccountError::Conflict(format!(
                    "factor '{}' already exists",
                    factor.id
                )));
            }
            self.factor_room(account, &user)?;
            let now = self.clock.now_ms();
            user.factors.push(factor.clone());
            user.updated_ms = now;
            let audit = vec![AuditEntry::new(
                now,
                who.clone(),
                action::FACTOR_ADDED,
                format!("user:{id}"),
                json!({"factor": factor}),
            )];
            if let Some(user) = self
                .write_user(account, user, policy.version, false, audit)
                .await?
            {
                return Ok(user);
            }
        }
        Err(too_busy())
    }

    /// Whether `user` may enrol one more factor (`tenants.max_factors_per_user`). The write
    /// that adds it carries the user's version, so two concurrent enrolments cannot both pass.
    pub fn factor_room(&self, account: &AccountId, user: &User) -> Result<(), AccountError> {
        let max = self.tenants.limits(account).factors_per_user;
        if user.factors.len() as u64 >= max {
            return Err(LimitReached {
                limit: Limit::FactorsPerUser,
                max,
            }
            .into());
        }
        Ok(())
    }

    /// Removes an enrolled factor; the user's trusted devices go with it.
    pub async fn remove_factor(
        &self,
        account: &AccountId,
        actor: &Actor,
        id: &UserId,
        factor_id: &str,
    ) -> Result<User, AccountError> {
        for _ in 0..MAX_TRIES {
            let policy = self.directory.policy(account).await?;
            let mut user = self.user(account, id).await?;
            rules::factor_removal(actor, &user)?;
            let Some(index) = user.factors.iter().position(|f| f.id == factor_id) else {
                return Err(AccountError::NotFound("no such factor for this user"));
            };
            let factor = user.factors.remove(index);
            let now = self.clock.now_ms();
            user.updated_ms = now;
            let audit = vec![AuditEntry::new(
                now,
                actor.into(),
                action::FACTOR_REMOVED,
                format!("user:{id}"),
                json!({"factor": factor, "devices_revoked": true}),
            )];
            if let Some(user) = self
                .write_user(account, user, policy.version, true, audit)
                .await?
            {
                return Ok(user);
            }
        }
        Err(too_busy())
    }

    /// `None` when the write was stale.
    async fn write_user(
        &self,
        account: &AccountId,
        user: User,
        policy_version: u64,
        revoke_devices: bool,
        audit: Vec<AuditEntry>,
    ) -> Result<Option<User>, AccountError> {
        let write = UserWrite {
            user,
            create: false,
            policy_version,
            revoke_devices,
            audit,
            max_users: self.tenants.limits(account).users,
        };
        let outcome = self.directory.write_user(account, &write).await?;
        self.cache
            .invalidate(&Invalidation::User(account.clone(), write.user.id.clone()));
        match outcome {
            UserWriteOutcome::Written {
                version,
                device_epoch,
            } => {
                let mut user = write.user;
                user.version = version;
                user.device_epoch = device_epoch;
                Ok(Some(user))
            }
            UserWriteOutcome::Stale => Ok(None),
            UserWriteOutcome::NotFound => {
                Err(AccountError::NotFound("no such user in this account"))
            }
            UserWriteOutcome::Exists | UserWriteOutcome::TooManyUsers { .. } => Err(too_busy()),
        }
    }

    // ---- trusted devices ----

    /// Trusts a device of `id` on the proof of `verification`, an approval of this user's
    /// phone within the code's lifetime, used for one device only.
    pub async fn trust_device(
        &self,
        account: &AccountId,
        actor: &Actor,
        id: &UserId,
        verification: &Verification,
    ) -> Result<TrustedDevice, AccountError> {
        let policy = self.directory.policy(account).await?;
        if policy.trusted_device == TrustDuration::EveryLogin {
            return Err(Refusal::new(
                rule::TRUSTED_DEVICES_ARE_OFF,
                "the account's policy asks for a second factor at every login (trusted_device: none)",
            )
            .into());
        }
        let user = self.user(account, id).await?;
        let now = self.clock.now_ms();
        let fresh = verification.status == Status::Approved && now < verification.expires_ms;
        let this_user = user
            .phone
            .as_ref()
            .is_some_and(|phone| phone.e164() == verification.to);
        if !(fresh && this_user) {
            return Err(Refusal::new(
                rule::PROOF_MUST_BE_A_FRESH_APPROVAL_OF_THIS_USER,
                "verification_id must name a verification of this user's phone, approved, within its lifetime",
            )
            .into());
        }
        self.trust_with_proof(
            account,
            actor,
            id,
            &policy,
            verification.id.as_str(),
            verification.expires_ms,
        )
        .await
    }

    /// Trusts a device of `id` on the proof of a passed second-factor challenge (TOTP,
    /// security key or recovery code) of this user, presented within its lifetime, used for one
    /// device only (the same spent-proof mark as a verification).
    pub async fn trust_device_after_challenge(
        &self,
        account: &AccountId,
        actor: &Actor,
        id: &UserId,
        challenge_id: &str,
        challenge_user: &UserId,
        challenge_expires_ms: u64,
    ) -> Result<TrustedDevice, AccountError> {
        let policy = self.directory.policy(account).await?;
        if policy.trusted_device == TrustDuration::EveryLogin {
            return Err(Refusal::new(
                rule::TRUSTED_DEVICES_ARE_OFF,
                "the account's policy asks for a second factor at every login (trusted_device: none)",
            )
            .into());
        }
        self.user(account, id).await?;
        if challenge_user != id || self.clock.now_ms() >= challenge_expires_ms {
            return Err(Refusal::new(
                rule::PROOF_MUST_BE_A_FRESH_APPROVAL_OF_THIS_USER,
                "challenge_id must name a challenge this user passed, within its lifetime",
            )
            .into());
        }
        self.trust_with_proof(
            account,
            actor,
            id,
            &policy,
            challenge_id,
            challenge_expires_ms,
        )
        .await
    }

    /// The common tail of trusting a device: mint the token, store the device and spend the
    /// proof in one directory step.
    async fn trust_with_proof(
        &self,
        account: &AccountId,
        actor: &Actor,
        id: &UserId,
        policy: &Policy,
        proof: &str,
        proof_expires_ms: u64,
    ) -> Result<TrustedDevice, AccountError> {
        let now = self.clock.now_ms();
        let token = mint_token(&self.rng).map_err(|_| AccountError::Random)?;
        let device = DeviceId::random(&self.rng).map_err(|_| AccountError::Random)?;
        let expires_ms = now + policy.trusted_device.millis();
        let new = NewDevice {
            digest: self.device_key.digest(account, id, &token),
            record: DeviceRecord {
                id: device.clone(),
                user: id.clone(),
                created_ms: now,
                expires_ms,
                epoch: 0,
            },
            proof: proof.to_owned(),
            // Spent for as long as it could be presented, with a margin for clock skew.
            proof_ttl_ms: proof_expires_ms.saturating_sub(now) + 60_000,
            max_devices: self.settings.max_devices_per_user,
            max_account_devices: self.tenants.limits(account).trusted_devices,
            audit: AuditEntry::new(
                now,
                actor.into(),
                action::DEVICE_TRUSTED,
                format!("device:{}", device.as_str()),
                json!({
                    "user": id,
                    "duration": policy.trusted_device,
                    "proof": proof,
                }),
            ),
        };
        match self.directory.trust_device(account, &new).await? {
            TrustOutcome::Trusted { .. } => Ok(TrustedDevice {
                id: device,
                token,
                created_ms: now,
                expires_ms,
            }),
            TrustOutcome::NoSuchUser => Err(AccountError::NotFound("no such user in this account")),
            TrustOutcome::TooManyDevices { max } => Err(LimitReached {
                limit: Limit::TrustedDevices,
                max,
            }
            .into()),
            TrustOutcome::ProofUsed => Err(Refusal::new(
                rule::A_PROOF_TRUSTS_ONE_DEVICE,
                "this proof already trusted a device; pass a new challenge",
            )
            .into()),
        }
    }

    /// Whether `token` is a trusted device of `id`, now, under the current policy.
    pub async fn check_device(
        &self,
        account: &AccountId,
        id: &UserId,
        token: &str,
    ) -> Result<DeviceCheck, AccountError> {
        let result = self.device_state(account, id, token).await?;
        self.metrics.device_check(result.trusted);
        Ok(result)
    }

    async fn device_state(
        &self,
        account: &AccountId,
        id: &UserId,
        token: &str,
    ) -> Result<DeviceCheck, AccountError> {
        let untrusted = DeviceCheck {
            trusted: false,
            device: None,
            until_ms: None,
        };
        let digest = self.device_key.digest(account, id, token);
        let Some(record) = self.cached_device(account, &digest).await? else {
            return Ok(untrusted);
        };
        let policy = self.cached_policy(account).await?;
        let Some(user) = self.cached_user(account, id).await? else {
            return Ok(untrusted);
        };
        if !record.is_trusted(&user, &policy, self.clock.now_ms()) {
            return Ok(untrusted);
        }
        Ok(DeviceCheck {
            trusted: true,
            until_ms: record.trusted_until(&policy),
            device: Some(record.id),
        })
    }

    pub async fn revoke_device(
        &self,
        account: &AccountId,
        actor: &Actor,
        id: &UserId,
        device: &DeviceId,
    ) -> Result<(), AccountError> {
        let audit = AuditEntry::new(
            self.clock.now_ms(),
            actor.into(),
            action::DEVICE_REVOKED,
            format!("device:{}", device.as_str()),
            json!({"user": id}),
        );
        let digest = self
            .directory
            .revoke_device(account, id, device, &audit)
            .await?
            .ok_or(AccountError::NotFound(
                "no such trusted device for this user",
            ))?;
        self.cache.invalidate(&Invalidation::Device(digest));
        Ok(())
    }

    /// Revokes every trusted device of the user; how many were listed.
    pub async fn revoke_devices(
        &self,
        account: &AccountId,
        actor: &Actor,
        id: &UserId,
    ) -> Result<u64, AccountError> {
        let audit = AuditEntry::new(
            self.clock.now_ms(),
            actor.into(),
            action::DEVICES_REVOKED,
            format!("user:{id}"),
            json!({}),
        );
        let count = self
            .directory
            .revoke_devices(account, id, &audit)
            .await?
            .ok_or(AccountError::NotFound("no such user in this account"))?;
        self.cache
            .invalidate(&Invalidation::User(account.clone(), id.clone()));
        Ok(count)
    }

    // ---- the login decision ----

    pub async fn login(
        &self,
        account: &AccountId,
        id: &UserId,
        device_token: Option<&str>,
    ) -> Result<Decision, AccountError> {
        let policy = self.cached_policy(account).await?;
        let user = self
            .cached_user(account, id)
            .await?
            .ok_or(AccountError::NotFound("no such user in this account"))?;
        let trusted = match device_token {
            Some(token) if user.two_factor_enabled(policy.require_2fa) => {
                let digest = self.device_key.digest(account, id, token);
                self.cached_device(account, &digest)
                    .await?
                    .is_some_and(|record| record.is_trusted(&user, &policy, self.clock.now_ms()))
            }
            _ => false,
        };
        let decision = decide(&policy, &user, trusted);
        self.metrics.decision(&decision);
        Ok(decision)
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

    /// Records a minted key (its id and role, never the key).
    pub async fn key_minted(
        &self,
        account: &AccountId,
        who: Who,
        key: &ApiKeyRecord,
    ) -> Result<(), AccountError> {
        let entry = AuditEntry::new(
            self.clock.now_ms(),
            who,
            action::KEY_MINTED,
            format!("key:{}", key.id),
            json!({"role": key.role}),
        );
        Ok(self.directory.append_audit(account, &entry).await?)
    }

    // ---- cached reads for the hot path ----

    async fn cached_policy(&self, account: &AccountId) -> Result<Policy, StoreError> {
        let now = self.clock.now_ms();
        let ticket = self.cache.ticket();
        match self.cache.policy(account, now) {
            Lookup::Hit(policy) => {
                self.metrics.lookup(CacheKind::Policy, LookupResult::Hit);
                return Ok(policy);
            }
            Lookup::Miss => self.metrics.lookup(CacheKind::Policy, LookupResult::Miss),
            Lookup::Bypass => self.metrics.lookup(CacheKind::Policy, LookupResult::Bypass),
        }
        let policy = self.directory.policy(account).await?;
        self.cache.put_policy(ticket, account, policy, now);
        Ok(policy)
    }

    async fn cached_user(
        &self,
        account: &AccountId,
        id: &UserId,
    ) -> Result<Option<User>, StoreError> {
        let now = self.clock.now_ms();
        let ticket = self.cache.ticket();
        match self.cache.user(account, id, now) {
            Lookup::Hit(user) => {
                self.metrics.lookup(CacheKind::User, LookupResult::Hit);
                return Ok(Some(user));
            }
            Lookup::Miss => self.metrics.lookup(CacheKind::User, LookupResult::Miss),
            Lookup::Bypass => self.metrics.lookup(CacheKind::User, LookupResult::Bypass),
        }
        let user = self.directory.user(account, id).await?;
        if let Some(user) = &user {
            self.cache.put_user(ticket, account, user.clone(), now);
        }
        Ok(user)
    }

    async fn cached_device(
        &self,
        account: &AccountId,
        digest: &DeviceDigest,
    ) -> Result<Option<DeviceRecord>, StoreError> {
        let now = self.clock.now_ms();
        let ticket = self.cache.ticket();
        match self.cache.device(digest, now) {
            Lookup::Hit((owner, record)) if owner == *account => {
                self.metrics.lookup(CacheKind::Device, LookupResult::Hit);
                return Ok(Some(record));
            }
            Lookup::Hit(_) | Lookup::Miss => {
                self.metrics.lookup(CacheKind::Device, LookupResult::Miss)
            }
            Lookup::Bypass => self.metrics.lookup(CacheKind::Device, LookupResult::Bypass),
        }
        let record = self.directory.device(account, digest).await?;
        if let Some(record) = &record {
            self.cache
                .put_device(ticket, *digest, account, record.clone(), now);
        }
        Ok(record)
    }
}

fn too_busy() -> AccountError {
    AccountError::Conflict("the record kept changing under this request; try again".into())
}

fn override_entry(
    now: u64,
    actor: &Actor,
    target: &str,
    before: &Option<Override>,
    after: &Option<Override>,
) -> AuditEntry {
    let shown = |over: &Option<Override>| match over {
        None => json!("account"),
        Some(over) => json!(if over.enabled { "on" } else { "off" }),
    };
    AuditEntry::new(
        now,
        actor.into(),
        action::TWO_FACTOR_CHANGED,
        target.to_owned(),
        json!({
            "before": shown(before),
            "after": shown(after),
            "set_by": after.as_ref().map(|over| over.set_by.encode()),
        }),
    )
}
