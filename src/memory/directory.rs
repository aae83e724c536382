//! The embedded directory: one mutex per account, every method one critical section.
//!
//! Single instance, so nothing is published: the service invalidates its own cache. Bounded per
//! user (devices), per account (users, audit entries, spent proofs) and in total (users); users
//! are kept as long as the process runs, like accounts in the memory store.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::ops::Bound;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use dashmap::DashMap;

use crate::account::audit::AuditEntry;
use crate::account::policy::Policy;
use crate::account::store::{
    DeviceRevocation, Directory, NewDevice, PolicyWrite, TrustOutcome, UserWrite, UserWriteOutcome,
    MISSING_LISTED,
};
use crate::account::trust::{DeviceDigest, DeviceId, DeviceRecord};
use crate::account::user::{User, UserId};
use crate::account::AccountId;
use crate::store::StoreError;

/// Spent proofs are swept once there are this many.
const PROOF_SWEEP_AT: usize = 1024;

pub struct MemoryDirectory {
    accounts: DashMap<AccountId, Arc<Mutex<AccountState>>>,
    audit_cap: usize,
    /// Users of every account together, against `max_users`.
    users: AtomicUsize,
    max_users: usize,
    /// One account's share of `max_users` (issue 13 §8).
    account_share: usize,
    /// Trusted devices of every account together, against `max_devices`; each method that
    /// changes an account's devices settles the difference under the account's lock.
    devices: AtomicUsize,
    max_devices: usize,
    device_share: usize,
}

#[derive(Default)]
struct AccountState {
    policy: Option<Policy>,
    /// By id: the list's order.
    users: BTreeMap<UserId, User>,
    without_phone: BTreeSet<UserId>,
    devices: HashMap<DeviceDigest, DeviceRecord>,
    /// Per user: device id -> (digest, expiry), to revoke by id and to bound the count.
    user_devices: HashMap<UserId, HashMap<DeviceId, (DeviceDigest, u64)>>,
    /// Spent proofs and when they may be forgotten.
    proofs: HashMap<String, u64>,
    audit: VecDeque<AuditEntry>,
    audit_seq: u64,
}

impl AccountState {
    fn policy(&self) -> Policy {
        self.policy
            .clone()
            .unwrap_or_else(Policy::default_for_new_accounts)
    }

    fn audit(&mut self, entry: &AuditEntry, cap: usize) {
        self.audit_seq += 1;
        let mut entry = entry.clone();
        entry.id = format!("{}-{}", entry.at_ms, self.audit_seq);
        self.audit.push_back(entry);
        while self.audit.len() > cap {
            self.audit.pop_front();
        }
    }

    /// Forgets every expired device of the account: they trust nothing any more, so they
    /// count as free against the account's bound.
    fn drop_expired_devices(&mut self, now: u64) {
        self.devices.retain(|_, record| record.expires_ms > now);
        for devices in self.user_devices.values_mut() {
            devices.retain(|_, (_, expires)| *expires > now);
        }
        self.user_devices.retain(|_, devices| !devices.is_empty());
    }

    fn drop_devices_of(&mut self, user: &UserId) -> u64 {
        let Some(devices) = self.user_devices.remove(user) else {
            return 0;
        };
        for (digest, _) in devices.values() {
            self.devices.remove(digest);
        }
        devices.len() as u64
    }
}

impl MemoryDirectory {
    pub fn new(audit_cap: usize) -> Self {
        Self {
            accounts: DashMap::new(),
            audit_cap: audit_cap.max(1),
            users: AtomicUsize::new(0),
            max_users: usize::MAX,
            account_share: usize::MAX,
            devices: AtomicUsize::new(0),
            max_devices: usize::MAX,
            device_share: usize::MAX,
        }
    }

    /// Bounds the users and the trusted devices of all accounts together, and of one account
    /// at its share of each (besides the account's own bounds, which the service passes).
    pub fn with_bounds(mut self, tenants: &crate::account::limits::TenantSettings) -> Self {
        self.max_users = tenants.memory_max_users.max(1);
        self.account_share = tenants.share_of(tenants.memory_max_users);
        self.max_devices = tenants.memory_max_devices.max(1);
        self.device_share = tenants.share_of(tenants.memory_max_devices);
        self
    }

    /// Brings the devices' total in step with one account's change from `before` to `after`.
    fn settle(&self, before: usize, after: usize) {
        if after > before {
            self.devices.fetch_add(after - before, Ordering::Relaxed);
        } else {
            self.devices.fetch_sub(before - after, Ordering::Relaxed);
        }
    }

    fn account(&self, id: &AccountId) -> Arc<Mutex<AccountState>> {
        if let Some(state) = self.accounts.get(id) {
            return state.clone();
        }
        self.accounts.entry(id.clone()).or_default().clone()
    }

    /// Runs `step` on the account's state under its lock. The map's guard is released before
    /// locking the account, and no lock is held across an await: every step is synchronous.
    fn with<T>(&self, account: &AccountId, step: impl FnOnce(&mut AccountState) -> T) -> T {
        let state = self.account(account);
        // A panic while holding the lock leaves a consistent state (every step writes last),
        // so a poisoned lock is still usable.
        let mut state = state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        step(&mut state)
    }
}

/// Sequence number of an audit id `<ms>-<seq>`.
fn audit_seq(id: &str) -> Option<u64> {
    id.split_once('-')?.1.parse().ok()
}

#[async_trait]
impl Directory for MemoryDirectory {
    async fn policy(&self, account: &AccountId) -> Result<Policy, StoreError> {
        self.with(account, |state| Ok(state.policy()))
    }

    async fn write_policy(
        &self,
        account: &AccountId,
        policy: &Policy,
        audit: &AuditEntry,
    ) -> Result<PolicyWrite, StoreError> {
        self.with(account, |state| {
            let current = state.policy();
            if current.version != policy.version {
                return Ok(PolicyWrite::Stale);
            }
            if policy.phone_channel_active() && !state.without_phone.is_empty() {
                return Ok(PolicyWrite::MissingPhones {
                    count: state.without_phone.len(),
                    users: state
                        .without_phone
                        .iter()
                        .take(MISSING_LISTED)
                        .cloned()
                        .collect(),
                });
            }
            if policy.email_channel_active() {
                // Bounded by the account's user cap; policy writes are rare.
                let mut missing: Vec<UserId> = state
                    .users
                    .values()
                    .filter(|user| user.email.is_none())
                    .map(|user| user.id.clone())
                    .collect();
                if !missing.is_empty() {
                    missing.sort_unstable();
                    let count = missing.len();
                    missing.truncate(MISSING_LISTED);
                    return Ok(PolicyWrite::MissingEmails {
                        count,
                        users: missing,
                    });
                }
            }
            let version = current.version + 1;
            state.policy = Some(Policy {
                version,
                ..policy.clone()
            });
            state.audit(audit, self.audit_cap);
            Ok(PolicyWrite::Written { version })
        })
    }

    async fn user(&self, account: &AccountId, user: &UserId) -> Result<Option<User>, StoreError> {
        self.with(account, |state| Ok(state.users.get(user).cloned()))
    }

    async fn write_user(
        &self,
        account: &AccountId,
        write: &UserWrite,
    ) -> Result<UserWriteOutcome, StoreError> {
        self.with(account, |state| {
            if state.policy().version != write.policy_version {
                return Ok(UserWriteOutcome::Stale);
            }
            let id = &write.user.id;
            let (version, mut epoch) = match (state.users.get(id), write.create) {
                (Some(_), true) => return Ok(UserWriteOutcome::Exists),
                (None, false) => return Ok(UserWriteOutcome::NotFound),
                (Some(current), false) if current.version != write.user.version => {
                    return Ok(UserWriteOutcome::Stale)
                }
                (Some(current), false) => (current.version + 1, current.device_epoch),
                (None, true) => {
                    let max = write.max_users.min(self.account_share as u64);
                    if state.users.len() as u64 >= max {
                        return Ok(UserWriteOutcome::TooManyUsers { max });
                    }
                    // Users are never removed, so the total only grows: reserve under this lock.
                    if self.users.fetch_add(1, Ordering::Relaxed) >= self.max_users {
                        self.users.fetch_sub(1, Ordering::Relaxed);
                        return Err(StoreError::Full(self.max_users));
                    }
                    (1, 0)
                }
            };
            if write.revoke_devices {
                epoch += 1;
                let before = state.devices.len();
                state.drop_devices_of(id);
                self.settle(before, state.devices.len());
            }
            let mut user = write.user.clone();
            user.version = version;
            user.device_epoch = epoch;
            if user.phone.is_none() {
                state.without_phone.insert(id.clone());
            } else {
                state.without_phone.remove(id);
            }
            state.users.insert(id.clone(), user);
            for entry in &write.audit {
                state.audit(entry, self.audit_cap);
            }
            Ok(UserWriteOutcome::Written {
                version,
                device_epoch: epoch,
            })
        })
    }

    async fn list_users(
        &self,
        account: &AccountId,
        after: Option<&UserId>,
        limit: usize,
    ) -> Result<Vec<User>, StoreError> {
        self.with(account, |state| {
            let range = match after {
                Some(after) => state
                    .users
                    .range((Bound::Excluded(after), Bound::Unbounded)),
                None => state.users.range::<UserId, _>(..),
            };
            Ok(range.take(limit).map(|(_, user)| user.clone()).collect())
        })
    }

    async fn user_devices(
        &self,
        account: &AccountId,
        user: &UserId,
    ) -> Result<Vec<DeviceRecord>, StoreError> {
        self.with(account, |state| {
            let Some(listed) = state.user_devices.get(user) else {
                return Ok(Vec::new());
            };
            Ok(listed
                .values()
                .filter_map(|(digest, _)| state.devices.get(digest).cloned())
                .collect())
        })
    }

    async fn trust_device(
        &self,
        account: &AccountId,
        new: &NewDevice,
    ) -> Result<TrustOutcome, StoreError> {
        self.with(account, |state| {
            let now = new.record.created_ms;
            let Some(epoch) = state.users.get(&new.record.user).map(|u| u.device_epoch) else {
                return Ok(TrustOutcome::NoSuchUser);
            };
            if state
                .proofs
                .get(&new.proof)
                .is_some_and(|until| now < *until)
            {
                return Ok(TrustOutcome::ProofUsed);
            }
            let before = state.devices.len();
            let max = new.max_account_devices.min(self.device_share as u64);
            let full = || self.devices.load(Ordering::Relaxed) >= self.max_devices;
            if before as u64 >= max || full() {
                state.drop_expired_devices(now);
                self.settle(before, state.devices.len());
                if full() {
                    return Err(StoreError::Full(self.max_devices));
                }
                if state.devices.len() as u64 >= max {
                    return Ok(TrustOutcome::TooManyDevices { max });
                }
            }
            let before = state.devices.len();
            if state.proofs.len() >= PROOF_SWEEP_AT {
                state.proofs.retain(|_, until| now < *until);
            }
            state
                .proofs
                .insert(new.proof.clone(), now + new.proof_ttl_ms);
            let mut record = new.record.clone();
            record.epoch = epoch;
            let mut evicted = Vec::new();
            let devices = state.user_devices.entry(record.user.clone()).or_default();
            devices.retain(|_, (digest, expires)| {
                let keep = now < *expires;
                if !keep {
                    evicted.push(*digest);
                }
                keep
            });
            while devices.len() >= new.max_devices.max(1) {
                let Some(first) = devices
                    .iter()
                    .min_by_key(|(_, (_, expires))| *expires)
                    .map(|(id, _)| id.clone())
                else {
                    break;
                };
                if let Some((digest, _)) = devices.remove(&first) {
                    evicted.push(digest);
                }
            }
            devices.insert(record.id.clone(), (new.digest, record.expires_ms));
            for digest in evicted {
                state.devices.remove(&digest);
            }
            state.devices.insert(new.digest, record);
            self.settle(before, state.devices.len());
            state.audit(&new.audit, self.audit_cap);
            Ok(TrustOutcome::Trusted { epoch })
        })
    }

    async fn device(
        &self,
        account: &AccountId,
        digest: &DeviceDigest,
    ) -> Result<Option<DeviceRecord>, StoreError> {
        self.with(account, |state| Ok(state.devices.get(digest).cloned()))
    }

    async fn revoke_device(
        &self,
        account: &AccountId,
        revocation: &DeviceRevocation<'_>,
    ) -> Result<Option<DeviceDigest>, StoreError> {
        let DeviceRevocation {
            user,
            device,
            audit,
        } = *revocation;
        self.with(account, |state| {
            let Some((digest, _)) = state
                .user_devices
                .get_mut(user)
                .and_then(|devices| devices.remove(device))
            else {
                return Ok(None);
            };
            if state.devices.remove(&digest).is_some() {
                self.settle(1, 0);
            }
            state.audit(audit, self.audit_cap);
            Ok(Some(digest))
        })
    }

    async fn revoke_devices(
        &self,
        account: &AccountId,
        user: &UserId,
        audit: &AuditEntry,
    ) -> Result<Option<u64>, StoreError> {
        self.with(account, |state| {
            let Some(found) = state.users.get_mut(user) else {
                return Ok(None);
            };
            found.device_epoch += 1;
            let before = state.devices.len();
            let count = state.drop_devices_of(user);
            self.settle(before, state.devices.len());
            state.audit(audit, self.audit_cap);
            Ok(Some(count))
        })
    }

    async fn append_audit(
        &self,
        account: &AccountId,
        entry: &AuditEntry,
    ) -> Result<(), StoreError> {
        self.with(account, |state| {
            state.audit(entry, self.audit_cap);
            Ok(())
        })
    }

    async fn audit(
        &self,
        account: &AccountId,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        self.with(account, |state| {
            let before = before.and_then(audit_seq).unwrap_or(u64::MAX);
            Ok(state
                .audit
                .iter()
                .rev()
                .filter(|entry| audit_seq(&entry.id).is_some_and(|seq| seq < before))
                .take(limit)
                .cloned()
                .collect())
        })
    }

    fn shared(&self) -> bool {
        false
    }

    fn kind(&self) -> &'static str {
        "memory"
    }
}
