//! The embedded factor store: one mutex over a few maps per account, with expiry and bounds.
//!
//! Bounded in total (`factors.memory_max_entries`) and per account (its share of that total,
//! and `tenants.max_pending_ceremonies` for unconfirmed enrolments and open ceremonies), expired
//! entries swept before refusing: one account filling its share with WebAuthn ceremonies never
//! refuses another account's logins (issue 13 §8).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;

use crate::account::limits::{Limit, LimitReached, TenantSettings};
use crate::account::user::UserId;
use crate::account::AccountId;
use crate::clock::Clock;
use crate::factors::recovery::CodeDigest;
use crate::factors::store::{
    AttemptLimits, AttemptOutcome, CounterOutcome, FactorRecord, FactorRef, FactorStatus,
    FactorStore, NewCeremony, NewFactor, PassedChallenge, RecoveryOutcome, RecoveryTry, TotpTry,
    UserRef,
};
use crate::factors::webauthn::{counter_advances, BackupState};
use crate::store::StoreError;

#[derive(Debug, Clone)]
struct Factor {
    record: FactorRecord,
    expires_ms: Option<u64>,
    last_step: Option<u64>,
    lockout: Lockout,
}

#[derive(Debug, Default)]
struct Recovery {
    codes: HashSet<CodeDigest>,
    lockout: Lockout,
}

/// Wrong attempts in a row and the lock they earned (a TOTP factor's, a user's recovery codes').
#[derive(Debug, Clone, Copy, Default)]
struct Lockout {
    failures: u32,
    locked_until_ms: u64,
}

impl Lockout {
    /// How long the lock still holds at `now_ms`; `None` when it does not.
    fn holds(&self, now_ms: u64) -> Option<u64> {
        (self.locked_until_ms > now_ms).then(|| self.locked_until_ms - now_ms)
    }

    /// Counts a wrong attempt; one that uses up a round locks for the limits' wait. How many
    /// attempts are left, and the wait.
    fn fail(&mut self, limits: &AttemptLimits, now_ms: u64) -> (u32, u64) {
        self.failures += 1;
        let attempts_left = limits.attempts_left(self.failures);
        let wait_ms = limits.wait_after(self.failures);
        if wait_ms > 0 {
            self.locked_until_ms = now_ms + wait_ms;
        }
        (attempts_left, wait_ms)
    }
}

/// One account's entries.
#[derive(Default)]
struct Maps {
    factors: HashMap<(UserId, String), Factor>,
    ceremonies: HashMap<(UserId, Vec<u8>), (String, u64)>,
    recovery: HashMap<UserId, Recovery>,
    passed: HashMap<String, (PassedChallenge, u64)>,
    /// Passkey user handles: which user each names.
    handles: HashMap<Vec<u8>, UserId>,
}

impl Maps {
    fn entries(&self) -> usize {
        self.factors.len()
            + self.ceremonies.len()
            + self.recovery.len()
            + self.passed.len()
            + self.handles.len()
    }

    /// Unconfirmed TOTP enrolments and open WebAuthn ceremonies.
    fn pending(&self) -> usize {
        self.ceremonies.len()
            + self
                .factors
                .values()
                .filter(|factor| factor.expires_ms.is_some())
                .count()
    }

    fn sweep(&mut self, now: u64) {
        self.factors
            .retain(|_, factor| factor.expires_ms.is_none_or(|at| at > now));
        self.ceremonies.retain(|_, (_, at)| *at > now);
        self.passed.retain(|_, (_, at)| *at > now);
    }
}

#[derive(Default)]
struct Inner {
    accounts: HashMap<AccountId, Maps>,
}

impl Inner {
    fn of(&mut self, account: &AccountId) -> &mut Maps {
        self.accounts.entry(account.clone()).or_default()
    }

    fn entries(&self) -> usize {
        self.accounts.values().map(Maps::entries).sum()
    }

    fn sweep(&mut self, now: u64) {
        for maps in self.accounts.values_mut() {
            maps.sweep(now);
        }
        self.accounts.retain(|_, maps| maps.entries() > 0);
    }
}

/// What an insert adds, for the bound it must respect.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Entry {
    /// An unconfirmed enrolment or an open ceremony: also bounded by `pending_ceremonies`.
    Pending,
    Other,
}

pub struct MemoryFactorStore {
    inner: Mutex<Inner>,
    clock: Arc<dyn Clock>,
    max_entries: usize,
    tenants: TenantSettings,
}

impl MemoryFactorStore {
    pub fn new(clock: Arc<dyn Clock>, max_entries: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            clock,
            max_entries,
            tenants: TenantSettings::default(),
        }
    }

    /// The per-account bounds (`[tenants]`); the documented defaults until this is called.
    pub fn with_tenants(mut self, tenants: TenantSettings) -> Self {
        self.tenants = tenants;
        self
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain maps behind, still consistent per entry.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Room for one more entry of `account`, sweeping expired ones first when a bound is
    /// reached. The total full is the store's failure (503); an account at its share or its
    /// pending bound is that account's refusal (429), and leaves room for the others.
    fn room(&self, inner: &mut Inner, account: &AccountId, entry: Entry) -> Result<(), StoreError> {
        let share = self.tenants.share_of(self.max_entries);
        let pending_max = self.tenants.limits(account).pending_ceremonies;
        let reached = |inner: &mut Inner| -> Option<StoreError> {
            if inner.entries() >= self.max_entries {
                return Some(StoreError::Full(self.max_entries));
            }
            let maps = inner.of(account);
            if maps.entries() >= share {
                return Some(
                    LimitReached {
                        limit: Limit::FactorEntries,
                        max: share as u64,
                    }
                    .into(),
                );
            }
            // Pending entries are among the entries: count them (a scan) only when they could
            // be as many as the bound.
            if entry == Entry::Pending
                && maps.entries() as u64 >= pending_max
                && maps.pending() as u64 >= pending_max
            {
                return Some(
                    LimitReached {
                        limit: Limit::PendingCeremonies,
                        max: pending_max,
                    }
                    .into(),
                );
            }
            None
        };
        if reached(inner).is_none() {
            return Ok(());
        }
        inner.sweep(self.clock.now_ms());
        match reached(inner) {
            None => Ok(()),
            Some(error) => Err(error),
        }
    }

    /// Runs `step` on the account's maps, under the lock, at the store's clock's now.
    fn with<T>(&self, account: &AccountId, step: impl FnOnce(&mut Maps, u64) -> T) -> T {
        let now = self.clock.now_ms();
        step(self.lock().of(account), now)
    }

    /// Like `with`, for a step that adds an `entry`: refused when there is no room for it.
    fn insert<T>(
        &self,
        account: &AccountId,
        entry: Entry,
        step: impl FnOnce(&mut Maps, u64) -> T,
    ) -> Result<T, StoreError> {
        let now = self.clock.now_ms();
        let mut inner = self.lock();
        self.room(&mut inner, account, entry)?;
        Ok(step(inner.of(account), now))
    }
}

impl Maps {
    /// A factor that has not expired (an expired one is forgotten on the way).
    fn live(&mut self, factor: FactorRef<'_>, now: u64) -> Option<&mut Factor> {
        let key = factor_key(factor);
        let expired = self
            .factors
            .get(&key)
            .is_some_and(|factor| factor.expires_ms.is_some_and(|at| at <= now));
        if expired {
            self.factors.remove(&key);
        }
        self.factors.get_mut(&key)
    }

    fn recovery(&mut self, owner: UserRef<'_>) -> &mut Recovery {
        self.recovery.entry(owner.user.clone()).or_default()
    }
}

fn factor_key(factor: FactorRef<'_>) -> (UserId, String) {
    (factor.owner.user.clone(), factor.id.to_owned())
}

#[async_trait]
impl FactorStore for MemoryFactorStore {
    async fn put(&self, factor: NewFactor<'_>) -> Result<(), StoreError> {
        let (owner, record, ttl_ms) = (factor.owner, factor.record, factor.pending_ttl_ms);
        let entry = match ttl_ms {
            Some(_) => Entry::Pending,
            None => Entry::Other,
        };
        self.insert(owner.account, entry, |maps, now| {
            let factor = Factor {
                record: record.clone(),
                expires_ms: ttl_ms.map(|ttl| now + ttl),
                last_step: None,
                lockout: Lockout::default(),
            };
            let key = factor_key(owner.factor(&record.id));
            maps.factors.insert(key, factor);
        })
    }

    async fn get(&self, factor: FactorRef<'_>) -> Result<Option<FactorRecord>, StoreError> {
        Ok(self.with(factor.owner.account, |maps, now| {
            maps.live(factor, now).map(|found| found.record.clone())
        }))
    }

    async fn delete(&self, factor: FactorRef<'_>) -> Result<(), StoreError> {
        self.with(factor.owner.account, |maps, _| {
            maps.factors.remove(&factor_key(factor))
        });
        Ok(())
    }

    async fn totp_attempt(&self, attempt: TotpTry<'_>) -> Result<AttemptOutcome, StoreError> {
        let (matched, activate, now_ms) = (attempt.matched, attempt.activate, attempt.now_ms);
        Ok(self.with(attempt.factor.owner.account, |maps, now| {
            let Some(factor) = maps.live(attempt.factor, now) else {
                return AttemptOutcome::NotFound;
            };
            if factor.record.status == FactorStatus::Pending && !activate {
                return AttemptOutcome::NotActive;
            }
            if let Some(retry_after_ms) = factor.lockout.holds(now_ms) {
                return AttemptOutcome::Locked { retry_after_ms };
            }
            match matched {
                Some(step) if factor.last_step.is_none_or(|last| step > last) => {
                    factor.last_step = Some(step);
                    factor.lockout = Lockout::default();
                    if activate {
                        factor.record.status = FactorStatus::Active;
                        factor.expires_ms = None;
                    }
                    AttemptOutcome::Accepted
                }
                Some(_) => AttemptOutcome::Replayed,
                None => {
                    let (attempts_left, wait_ms) = factor.lockout.fail(&attempt.limits, now_ms);
                    AttemptOutcome::Wrong {
                        attempts_left,
                        wait_ms,
                    }
                }
            }
        }))
    }

    async fn advance_counter(
        &self,
        factor: FactorRef<'_>,
        counter: u32,
        backup: BackupState,
    ) -> Result<CounterOutcome, StoreError> {
        Ok(self.with(factor.owner.account, |maps, now| {
            let Some(credential) = maps
                .live(factor, now)
                .and_then(|factor| factor.record.webauthn.as_mut())
            else {
                return CounterOutcome::NotFound;
            };
            if !counter_advances(credential.counter, counter) {
                return CounterOutcome::Regressed {
                    stored: credential.counter,
                };
            }
            credential.counter = counter;
            credential.backup = backup;
            CounterOutcome::Advanced
        }))
    }

    async fn put_ceremony(&self, ceremony: NewCeremony<'_>) -> Result<(), StoreError> {
        let owner = ceremony.owner;
        self.insert(owner.account, Entry::Pending, |maps, now| {
            let key = (owner.user.clone(), ceremony.challenge.to_vec());
            let state = (ceremony.state.to_owned(), now + ceremony.ttl_ms);
            maps.ceremonies.insert(key, state);
        })
    }

    async fn take_ceremony(
        &self,
        owner: UserRef<'_>,
        challenge: &[u8],
    ) -> Result<Option<String>, StoreError> {
        Ok(self.with(owner.account, |maps, now| {
            let key = (owner.user.clone(), challenge.to_vec());
            let taken = maps.ceremonies.remove(&key);
            taken.filter(|(_, at)| *at > now).map(|(state, _)| state)
        }))
    }

    async fn replace_recovery(
        &self,
        owner: UserRef<'_>,
        digests: &[CodeDigest],
    ) -> Result<(), StoreError> {
        self.insert(owner.account, Entry::Other, |maps, _| {
            maps.recovery(owner).codes = digests.iter().copied().collect();
        })
    }

    async fn use_recovery(&self, attempt: RecoveryTry<'_>) -> Result<RecoveryOutcome, StoreError> {
        let now_ms = attempt.now_ms;
        Ok(self.with(attempt.owner.account, |maps, _| {
            let recovery = maps.recovery(attempt.owner);
            if let Some(retry_after_ms) = recovery.lockout.holds(now_ms) {
                return RecoveryOutcome::Locked { retry_after_ms };
            }
            if recovery.codes.remove(attempt.digest) {
                recovery.lockout.failures = 0;
                let remaining = recovery.codes.len() as u32;
                return RecoveryOutcome::Used { remaining };
            }
            let (attempts_left, wait_ms) = recovery.lockout.fail(&attempt.limits, now_ms);
            RecoveryOutcome::Wrong {
                attempts_left,
                wait_ms,
            }
        }))
    }

    async fn recovery_left(&self, owner: UserRef<'_>) -> Result<u32, StoreError> {
        Ok(self.with(owner.account, |maps, _| {
            let codes = maps.recovery.get(owner.user);
            codes.map_or(0, |recovery| recovery.codes.len() as u32)
        }))
    }

    async fn delete_recovery(&self, owner: UserRef<'_>) -> Result<(), StoreError> {
        self.with(owner.account, |maps, _| maps.recovery.remove(owner.user));
        Ok(())
    }

    async fn put_passed(
        &self,
        account: &AccountId,
        passed: &PassedChallenge,
        ttl_ms: u64,
    ) -> Result<(), StoreError> {
        self.insert(account, Entry::Other, |maps, now| {
            let entry = (passed.clone(), now + ttl_ms);
            maps.passed.insert(passed.id.clone(), entry);
        })
    }

    async fn passed(
        &self,
        account: &AccountId,
        id: &str,
    ) -> Result<Option<PassedChallenge>, StoreError> {
        Ok(self.with(account, |maps, now| {
            let entry = maps.passed.get(id).filter(|(_, at)| *at > now);
            entry.map(|(passed, _)| passed.clone())
        }))
    }

    async fn put_user_handle(
        &self,
        account: &AccountId,
        handle: &[u8],
        user: &UserId,
    ) -> Result<(), StoreError> {
        let max = self.tenants.limits(account).users;
        let known = self.with(account, |maps, _| maps.handles.contains_key(handle));
        if known {
            return Ok(());
        }
        self.insert(account, Entry::Other, |maps, _| {
            if maps.handles.len() as u64 >= max {
                return Err(LimitReached {
                    limit: Limit::Users,
                    max,
                }
                .into());
            }
            maps.handles.insert(handle.to_vec(), user.clone());
            Ok(())
        })?
    }

    async fn user_of_handle(
        &self,
        account: &AccountId,
        handle: &[u8],
    ) -> Result<Option<UserId>, StoreError> {
        Ok(self.with(account, |maps, _| maps.handles.get(handle).cloned()))
    }

    async fn delete_user_handle(
        &self,
        account: &AccountId,
        handle: &[u8],
    ) -> Result<(), StoreError> {
        self.with(account, |maps, _| maps.handles.remove(handle));
        Ok(())
    }
}
