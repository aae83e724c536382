//! The users of an account: creation, changes (role, phone, two-factor override) and the
//! factor list, each decided with `rules` and written with the versions it was decided on.
//! These are methods of `AccountService`.

use serde_json::json;

use crate::account::audit::{action, AuditEntry, Who};
use crate::account::limits::{Limit, LimitReached};
use crate::account::rules::{self, Actor, TwoFactorRequest};
use crate::account::service::{too_busy, AccountError, AccountService, MAX_TRIES};
use crate::account::store::{UserWrite, UserWriteOutcome};
use crate::account::trust::cache::Invalidation;
use crate::account::trust::DeviceRecord;
use crate::account::user::{Factor, Override, User, UserId, UserRole};
use crate::account::AccountId;
use crate::destination::EmailAddress;
use crate::phone::PhoneNumber;

#[derive(Debug, Clone)]
pub struct NewUser {
    pub id: Option<UserId>,
    pub role: UserRole,
    pub phone: Option<PhoneNumber>,
    pub email: Option<EmailAddress>,
    pub two_factor: Option<TwoFactorRequest>,
}

/// A user change as requested: absent fields stay as they are; `phone: Some(None)` removes it
/// (and `email: Some(None)` the address).
#[derive(Debug, Clone, Default)]
pub struct UserPatch {
    pub role: Option<UserRole>,
    pub phone: Option<Option<PhoneNumber>>,
    pub email: Option<Option<EmailAddress>>,
    pub two_factor: Option<TwoFactorRequest>,
}

impl AccountService {
    pub async fn user(&self, account: &AccountId, id: &UserId) -> Result<User, AccountError> {
        self.directory
            .user(account, id)
            .await?
            .ok_or(AccountError::NotFound("no such user in this account"))
    }

    /// One page of the account's users by id (strictly after `after`, at most `limit`).
    pub async fn list_users(
        &self,
        account: &AccountId,
        after: Option<&UserId>,
        limit: usize,
    ) -> Result<Vec<User>, AccountError> {
        Ok(self.directory.list_users(account, after, limit).await?)
    }

    /// The user's devices trusted now (under the current policy, the user's device epoch and
    /// the clock) with until when, in the order of their ids; `NotFound` for no such user.
    pub async fn trusted_devices(
        &self,
        account: &AccountId,
        id: &UserId,
    ) -> Result<Vec<(DeviceRecord, u64)>, AccountError> {
        let user = self.user(account, id).await?;
        let policy = self.directory.policy(account).await?;
        let now = self.clock.now_ms();
        let mut devices: Vec<(DeviceRecord, u64)> = self
            .directory
            .user_devices(account, id)
            .await?
            .into_iter()
            .filter(|device| device.is_trusted(&user, &policy, now))
            .filter_map(|device| {
                let until = device.trusted_until(&policy)?;
                Some((device, until))
            })
            .collect();
        devices.sort_by(|(a, _), (b, _)| a.id.as_str().cmp(b.id.as_str()));
        Ok(devices)
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
            rules::email_required(new.email.as_ref(), &policy)?;
            let now = self.clock.now_ms();
            let user = User {
                id: id.clone(),
                role: new.role,
                phone: new.phone.clone(),
                email: new.email.clone(),
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
                    "email": user.email.as_ref().map(|e| e.masked()),
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
            match self.store_user(account, write).await? {
                Ok(user) => return Ok(user),
                Err(UserWriteOutcome::Exists) => {
                    return Err(AccountError::Conflict(format!(
                        "user '{id}' already exists"
                    )))
                }
                Err(UserWriteOutcome::TooManyUsers { max }) => {
                    return Err(LimitReached {
                        limit: Limit::Users,
                        max,
                    }
                    .into())
                }
                Err(UserWriteOutcome::Stale) => continue,
                Err(UserWriteOutcome::NotFound | UserWriteOutcome::Written { .. }) => {
                    return Err(too_busy())
                }
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
            if let Some(email) = patch.email.as_ref().filter(|email| **email != before.email) {
                rules::email_change(actor, &before, email.as_ref(), &policy)?;
                after.email = email.clone();
                // A new address is a new authenticator, as a new number is.
                revoke_devices = true;
                audit.push(AuditEntry::new(
                    now,
                    actor.into(),
                    action::EMAIL_CHANGED,
                    target.clone(),
                    json!({
                        "before": before.email.as_ref().map(|e| e.masked()),
                        "after": email.as_ref().map(|e| e.masked()),
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
                let kind = factor.kind.as_str();
                self.notices
                    .factor_changed(account, id, &factor.id, kind, true);
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
            let (factor_id, kind) = (factor.id.clone(), factor.kind.as_str());
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
                self.notices
                    .factor_changed(account, id, &factor_id, kind, false);
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
        match self.store_user(account, write).await? {
            Ok(user) => Ok(Some(user)),
            Err(UserWriteOutcome::Stale) => Ok(None),
            Err(UserWriteOutcome::NotFound) => {
                Err(AccountError::NotFound("no such user in this account"))
            }
            Err(_) => Err(too_busy()),
        }
    }

    /// Writes `write`: the user as stored (with its new version and device epoch), or the
    /// outcome that kept it from being written. A change (not a creation) drops the cached
    /// user, whatever the outcome.
    async fn store_user(
        &self,
        account: &AccountId,
        write: UserWrite,
    ) -> Result<Result<User, UserWriteOutcome>, AccountError> {
        let outcome = self.directory.write_user(account, &write).await?;
        if !write.create {
            self.cache
                .invalidate(&Invalidation::User(account.clone(), write.user.id.clone()));
        }
        Ok(match outcome {
            UserWriteOutcome::Written {
                version,
                device_epoch,
            } => {
                let mut user = write.user;
                user.version = version;
                user.device_epoch = device_epoch;
                Ok(user)
            }
            other => Err(other),
        })
    }
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
