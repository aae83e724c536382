//! The embedded factor store: one mutex over a few maps, with expiry and a bound.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;

use super::recovery::CodeDigest;
use super::store::{
    AttemptLimits, AttemptOutcome, CounterOutcome, FactorRecord, FactorStatus, FactorStore,
    PassedChallenge, RecoveryOutcome,
};
use super::webauthn::counter_advances;
use crate::account::user::UserId;
use crate::account::AccountId;
use crate::clock::Clock;
use crate::store::StoreError;

#[derive(Debug, Clone)]
struct Factor {
    record: FactorRecord,
    expires_ms: Option<u64>,
    last_step: Option<u64>,
    failures: u32,
    locked_until_ms: u64,
}

#[derive(Debug, Default)]
struct Recovery {
    codes: HashSet<CodeDigest>,
    failures: u32,
    locked_until_ms: u64,
}

#[derive(Default)]
struct Inner {
    factors: HashMap<(AccountId, UserId, String), Factor>,
    ceremonies: HashMap<(AccountId, UserId, Vec<u8>), (String, u64)>,
    recovery: HashMap<(AccountId, UserId), Recovery>,
    passed: HashMap<(AccountId, String), (PassedChallenge, u64)>,
}

impl Inner {
    fn entries(&self) -> usize {
        self.factors.len() + self.ceremonies.len() + self.recovery.len() + self.passed.len()
    }

    fn sweep(&mut self, now: u64) {
        self.factors
            .retain(|_, factor| factor.expires_ms.is_none_or(|at| at > now));
        self.ceremonies.retain(|_, (_, at)| *at > now);
        self.passed.retain(|_, (_, at)| *at > now);
    }
}

pub struct MemoryFactorStore {
    inner: Mutex<Inner>,
    clock: Arc<dyn Clock>,
    max_entries: usize,
}

impl MemoryFactorStore {
    pub fn new(clock: Arc<dyn Clock>, max_entries: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            clock,
            max_entries,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain maps behind, still consistent per entry.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Room for one more entry, sweeping expired ones first when full.
    fn room(&self, inner: &mut Inner) -> Result<(), StoreError> {
        if inner.entries() >= self.max_entries {
            inner.sweep(self.clock.now_ms());
            if inner.entries() >= self.max_entries {
                return Err(StoreError::Full(self.max_entries));
            }
        }
        Ok(())
    }

    fn live<'a>(
        inner: &'a mut Inner,
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
        self.room(&mut inner)?;
        inner.factors.insert(
            key(account, user, &record.id),
            Factor {
                record: record.clone(),
                expires_ms: ttl_ms.map(|ttl| now + ttl),
                last_step: None,
                failures: 0,
                locked_until_ms: 0,
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
        Ok(Self::live(&mut inner, &key(account, user, id), now).map(|f| f.record.clone()))
    }

    async fn delete(&self, account: &AccountId, user: &UserId, id: &str) -> Result<(), StoreError> {
        self.lock().factors.remove(&key(account, user, id));
        Ok(())
    }

    async fn totp_attempt(
        &self,
        account: &AccountId,
        user: &UserId,
        id: &str,
        matched: Option<u64>,
        activate: bool,
        now_ms: u64,
        limits: &AttemptLimits,
    ) -> Result<AttemptOutcome, StoreError> {
        let now = self.clock.now_ms();
        let mut inner = self.lock();
        let Some(factor) = Self::live(&mut inner, &key(account, user, id), now) else {
            return Ok(AttemptOutcome::NotFound);
        };
        if factor.record.status == FactorStatus::Pending && !activate {
            return Ok(AttemptOutcome::NotActive);
        }
        if factor.locked_until_ms > now_ms {
            return Ok(AttemptOutcome::Locked {
                retry_after_ms: factor.locked_until_ms - now_ms,
            });
        }
        match matched {
            Some(step) if factor.last_step.is_none_or(|last| step > last) => {
                factor.last_step = Some(step);
                factor.failures = 0;
                factor.locked_until_ms = 0;
                if activate {
                    factor.record.status = FactorStatus::Active;
                    factor.expires_ms = None;
                }
                Ok(AttemptOutcome::Accepted)
            }
            Some(_) => Ok(AttemptOutcome::Replayed),
            None => {
                factor.failures += 1;
                let (attempts_left, wait_ms) = limits.after(factor.failures);
                if wait_ms > 0 {
                    factor.locked_until_ms = now_ms + wait_ms;
                }
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
        let Some(credential) = Self::live(&mut inner, &key(account, user, id), now)
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
        self.room(&mut inner)?;
        inner.ceremonies.insert(
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
        let taken =
            self.lock()
                .ceremonies
                .remove(&(account.clone(), user.clone(), challenge.to_vec()));
        Ok(taken.filter(|(_, at)| *at > now).map(|(state, _)| state))
    }

    async fn replace_recovery(
        &self,
        account: &AccountId,
        user: &UserId,
        digests: &[CodeDigest],
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        self.room(&mut inner)?;
        let entry = inner
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
            .recovery
            .entry((account.clone(), user.clone()))
            .or_default();
        if entry.locked_until_ms > now_ms {
            return Ok(RecoveryOutcome::Locked {
                retry_after_ms: entry.locked_until_ms - now_ms,
            });
        }
        if entry.codes.remove(digest) {
            entry.failures = 0;
            return Ok(RecoveryOutcome::Used {
                remaining: entry.codes.len() as u32,
            });
        }
        entry.failures += 1;
        let (attempts_left, wait_ms) = limits.after(entry.failures);
        if wait_ms > 0 {
            entry.locked_until_ms = now_ms + wait_ms;
        }
        Ok(RecoveryOutcome::Wrong {
            attempts_left,
            wait_ms,
        })
    }

    async fn recovery_left(&self, account: &AccountId, user: &UserId) -> Result<u32, StoreError> {
        Ok(self
            .lock()
            .recovery
            .get(&(account.clone(), user.clone()))
            .map_or(0, |entry| entry.codes.len() as u32))
    }

    async fn delete_recovery(&self, account: &AccountId, user: &UserId) -> Result<(), StoreError> {
        self.lock()
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
        self.room(&mut inner)?;
        inner.passed.insert(
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
            .passed
            .get(&(account.clone(), id.to_owned()))
            .filter(|(_, at)| *at > now)
            .map(|(passed, _)| passed.clone()))
    }
}
