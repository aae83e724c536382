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
    AttemptLimits, AttemptOutcome, CounterOutcome, FactorRecord, FactorStatus, FactorStore,
    PassedChallenge, RecoveryOutcome, TotpTry,
};
use crate::factors::webauthn::counter_advances;
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
        let (attempts_left, wait_ms) = limits.after(self.failures);
        if wait_ms > 0 {
            self.locked_until_ms = now_ms + wait_ms;
        }
        (attempts_left, wait_ms)
    }
}

/// One account's entries.
#[derive(Default)]
struct Maps {
    factors: HashMap<(AccountId, UserId, String), Factor>,
    ceremonies: HashMap<(AccountId, UserId, Vec<u8>), (String, u64)>,
    recovery: HashMap<(AccountId, UserId), Recovery>,
    passed: HashMap<(AccountId, String), (PassedChallenge, u64)>,
}

impl Maps {
    fn entries(&self) -> usize {
        self.factors.len() + self.ceremonies.len() + self.recovery.len() + self.passed.len()
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

    fn live<'a>(
        inner: &'a mut Maps,
        key: &(AccountId, UserId, String),
        now: u64,
    ) -> Option<&'a mut Factor> {
        let expired = inner
            .factors
            .get(key)
            .is_some_and(|factor| factor.expires_ms.is_some_and(|at| at <= now));
        if expired {
            inner.factors.remove(key);
        }
        inner.factors.get_mut(key)
    }
}

fn key(account: &AccountId, user: &UserId, id: &str) -> (AccountId, UserId, String) {
    (account.clone(), user.clone(), id.to_owned())
}

#[async_trait]
impl FactorStore for MemoryFactorStore {
    async fn put(
        &self,
        account: &AccountId,
        user: &UserId,
        record: &FactorRecord,
        ttl_ms: Option<u64>,
    ) -> Result<(), StoreError> {
        let now = self.clock.now_ms();
        let mut inner = self.lock();
        let entry = if ttl_ms.is_some() {
            Entry::Pending
        } else {
            Entry::Other
        };
        self.room(&mut inner, account, entry)?;
        inner.of(account).factors.insert(
            key(account, user, &record.id),
            Factor {
                record: record.clone(),
                expires_ms: ttl_ms.map(|ttl| now + ttl),
                last_step: None,
                lockout: Lockout::default(),
            },
        );
        Ok(())
    }

    async fn get(
        &self,
        account: &AccountId,
        user: &UserId,
        id: &str,
    ) -> Result<Option<FactorRecord>, StoreError> {
        let now = self.clock.now_ms();
        let mut inner = self.lock();
        Ok(Self::live(inner.of(account), &key(account, user, id), now).map(|f| f.record.clone()))
    }

    async fn delete(&self, account: &AccountId, user: &UserId, id: &str) -> Result<(), StoreError> {
        self.lock()
            .of(account)
            .factors
            .remove(&key(account, user, id));
        Ok(())
    }

    async fn totp_attempt(
        &self,
        account: &AccountId,
        user: &UserId,
        id: &str,
        attempt: TotpTry,
        limits: &AttemptLimits,
    ) -> Result<AttemptOutcome, StoreError> {
        let TotpTry {
            matched,
            activate,
            now_ms,
        } = attempt;
        let now = self.clock.now_ms();
        let mut inner = self.lock();
        let Some(factor) = Self::live(inner.of(account), &key(account, user, id), now) else {
            return Ok(AttemptOutcome::NotFound);
        };
        if factor.record.status == FactorStatus::Pending && !activate {
            return Ok(AttemptOutcome::NotActive);
        }
        if let Some(retry_after_ms) = factor.lockout.holds(now_ms) {
            return Ok(AttemptOutcome::Locked { retry_after_ms });
        }
        match matched {
            Some(step) if factor.last_step.is_none_or(|last| step > last) => {
                factor.last_step = Some(step);
                factor.lockout = Lockout::default();
                if activate {
                    factor.record.status = FactorStatus::Active;
                    factor.expires_ms = None;
                }
                Ok(AttemptOutcome::Accepted)
            }
            Some(_) => Ok(AttemptOutcome::Replayed),
            None => {
                let (attempts_left, wait_ms) = factor.lockout.fail(limits, now_ms);
                Ok(AttemptOutcome::Wrong {
                    attempts_left,
                    wait_ms,
                })
            }
        }
    }

    async fn advance_counter(
        &self,
        account: &AccountId,
        user: &UserId,
        id: &str,
        counter: u32,
    ) -> Result<CounterOutcome, StoreError> {
        let now = self.clock.now_ms();
        let mut inner = self.lock();
        let Some(credential) = Self::live(inner.of(account), &key(account, user, id), now)
            .and_then(|factor| factor.record.webauthn.as_mut())
        else {
            return Ok(CounterOutcome::NotFound);
        };
        if !counter_advances(credential.counter, counter) {
            return Ok(CounterOutcome::Regressed {
                stored: credential.counter,
            });
        }
        credential.counter = counter;
        Ok(CounterOutcome::Advanced)
    }

    async fn put_ceremony(
        &self,
        account: &AccountId,
        user: &UserId,
        challenge: &[u8],
        state: &str,
        ttl_ms: u64,
    ) -> Result<(), StoreError> {
        let now = self.clock.now_ms();
        let mut inner = self.lock();
        self.room(&mut inner, account, Entry::Pending)?;
        inner.of(account).ceremonies.insert(
            (account.clone(), user.clone(), challenge.to_vec()),
            (state.to_owned(), now + ttl_ms),
        );
        Ok(())
    }

    async fn take_ceremony(
        &self,
        account: &AccountId,
        user: &UserId,
        challenge: &[u8],
    ) -> Result<Option<String>, StoreError> {
        let now = self.clock.now_ms();
        let taken = self.lock().of(account).ceremonies.remove(&(
            account.clone(),
            user.clone(),
            challenge.to_vec(),
        ));
        Ok(taken.filter(|(_, at)| *at > now).map(|(state, _)| state))
    }

    async fn replace_recovery(
        &self,
        account: &AccountId,
        user: &UserId,
        digests: &[CodeDigest],
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        self.room(&mut inner, account, Entry::Other)?;
        let entry = inner
            .of(account)
            .recovery
            .entry((account.clone(), user.clone()))
            .or_default();
        entry.codes = digests.iter().copied().collect();
        Ok(())
    }

    async fn use_recovery(
        &self,
        account: &AccountId,
        user: &UserId,
        digest: &CodeDigest,
        now_ms: u64,
        limits: &AttemptLimits,
    ) -> Result<RecoveryOutcome, StoreError> {
        let mut inner = self.lock();
        let entry = inner
            .of(account)
            .recovery
            .entry((account.clone(), user.clone()))
            .or_default();
        if let Some(retry_after_ms) = entry.lockout.holds(now_ms) {
            return Ok(RecoveryOutcome::Locked { retry_after_ms });
        }
        if entry.codes.remove(digest) {
            entry.lockout.failures = 0;
            return Ok(RecoveryOutcome::Used {
                remaining: entry.codes.len() as u32,
            });
        }
        let (attempts_left, wait_ms) = entry.lockout.fail(limits, now_ms);
        Ok(RecoveryOutcome::Wrong {
            attempts_left,
            wait_ms,
        })
    }

    async fn recovery_left(&self, account: &AccountId, user: &UserId) -> Result<u32, StoreError> {
        Ok(self
            .lock()
            .of(account)
            .recovery
            .get(&(account.clone(), user.clone()))
            .map_or(0, |entry| entry.codes.len() as u32))
    }

    async fn delete_recovery(&self, account: &AccountId, user: &UserId) -> Result<(), StoreError> {
        self.lock()
            .of(account)
            .recovery
            .remove(&(account.clone(), user.clone()));
        Ok(())
    }

    async fn put_passed(
        &self,
        account: &AccountId,
        passed: &PassedChallenge,
        ttl_ms: u64,
    ) -> Result<(), StoreError> {
        let now = self.clock.now_ms();
        let mut inner = self.lock();
        self.room(&mut inner, account, Entry::Other)?;
        inner.of(account).passed.insert(
            (account.clone(), passed.id.clone()),
            (passed.clone(), now + ttl_ms),
        );
        Ok(())
    }

    async fn passed(
        &self,
        account: &AccountId,
        id: &str,
    ) -> Result<Option<PassedChallenge>, StoreError> {
        let now = self.clock.now_ms();
        Ok(self
            .lock()
            .of(account)
            .passed
            .get(&(account.clone(), id.to_owned()))
            .filter(|(_, at)| *at > now)
            .map(|(passed, _)| passed.clone()))
    }
}
