//! Trusting devices: a device is trusted on one fresh proof of its user (`Proof`), checked on
//! the hot path through the cache, and revoked one by one or all at once. These are methods of
//! `AccountService`, which holds the directory, the cache and the device key they work on.

use serde_json::json;

use super::{mint_token, DeviceId, DeviceRecord};
use crate::account::audit::{action, AuditEntry};
use crate::account::limits::{Limit, LimitReached};
use crate::account::policy::{Policy, TrustDuration};
use crate::account::rules::{rule, Actor, Refusal};
use crate::account::service::{AccountError, AccountService};
use crate::account::store::{DeviceRevocation, NewDevice, TrustOutcome};
use crate::account::trust::cache::Invalidation;
use crate::account::user::{User, UserId};
use crate::account::AccountId;

/// What vouches for a device being trusted: a fresh proof that this user is present, spent on
/// one device only.
#[derive(Debug, Clone)]
pub enum Proof {
    /// An approved verification of the user's phone (SMS, WhatsApp).
    Verification(PhoneApproval),
    /// A second-factor challenge the user passed (TOTP, security key, recovery code).
    Challenge {
        id: String,
        user: UserId,
        expires_ms: u64,
    },
}

/// A phone verification as a proof needs it, built by whoever resolved the verification
/// (`From<&Verification>` in `verify::model`), so that trust does not depend on verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneApproval {
    /// The verification's id, marked spent by the directory.
    pub id: String,
    /// The number it was sent to (E.164).
    pub e164: String,
    /// Whether its code was approved.
    pub approved: bool,
    pub expires_ms: u64,
}

impl Proof {
    /// The id the directory marks spent (a verification or challenge id).
    pub fn id(&self) -> &str {
        match self {
            Proof::Verification(approval) => &approval.id,
            Proof::Challenge { id, .. } => id,
        }
    }

    /// Until when it may be presented.
    pub fn expires_ms(&self) -> u64 {
        match self {
            Proof::Verification(approval) => approval.expires_ms,
            Proof::Challenge { expires_ms, .. } => *expires_ms,
        }
    }

    /// Whether it proves `user` now: approved (a verification of the user's phone) or passed by
    /// the user, and within its lifetime.
    pub fn vouches_for(&self, user: &User, now_ms: u64) -> bool {
        match self {
            Proof::Verification(approval) => {
                let fresh = approval.approved && now_ms < approval.expires_ms;
                fresh
                    && user
                        .phone
                        .as_ref()
                        .is_some_and(|phone| phone.e164() == approval.e164)
            }
            Proof::Challenge {
                user: passed_by,
                expires_ms,
                ..
            } => *passed_by == user.id && now_ms < *expires_ms,
        }
    }

    fn refusal_detail(&self) -> &'static str {
        match self {
            Proof::Verification(_) => "verification_id must name a verification of this user's phone, approved, within its lifetime",
            Proof::Challenge { .. } => {
                "challenge_id must name a challenge this user passed, within its lifetime"
            }
        }
    }
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

impl AccountService {
    /// Trusts a device of `id` on `proof`, a fresh proof of this user (see `Proof`), used for
    /// one device only: the proof is marked spent in the same directory step.
    pub async fn trust_device(
        &self,
        account: &AccountId,
        actor: &Actor,
        id: &UserId,
        proof: &Proof,
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
        if !proof.vouches_for(&user, now) {
            return Err(Refusal::new(
                rule::PROOF_MUST_BE_A_FRESH_APPROVAL_OF_THIS_USER,
                proof.refusal_detail(),
            )
            .into());
        }
        self.trust_with_proof(account, actor, id, &policy, proof)
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
        proof: &Proof,
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
            proof: proof.id().to_owned(),
            // Spent for as long as it could be presented, with a margin for clock skew.
            proof_ttl_ms: proof.expires_ms().saturating_sub(now) + 60_000,
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
                    "proof": proof.id(),
                }),
            ),
        };
        match self.directory.trust_device(account, &new).await? {
            TrustOutcome::Trusted { .. } => {
                self.notices.device_trusted(account, id);
                Ok(TrustedDevice {
                    id: device,
                    token,
                    created_ms: now,
                    expires_ms,
                })
            }
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
        let Some(found) = self.cached_device(account, &digest).await? else {
            return Ok(untrusted);
        };
        let record = &found.1;
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
            device: Some(record.id.clone()),
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
            .revoke_device(
                account,
                &DeviceRevocation {
                    user: id,
                    device,
                    audit: &audit,
                },
            )
            .await?
            .ok_or(AccountError::NotFound(
                "no such trusted device for this user",
            ))?;
        self.cache.invalidate(&Invalidation::Device(digest));
        self.notices.devices_revoked(account, id);
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
        self.notices.devices_revoked(account, id);
        Ok(count)
    }
}
