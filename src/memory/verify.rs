//! The embedded store: everything in this process, bounded, with expiry.
//!
//! The same contract as Redis: every verification operation takes the lock of the number's shard
//! for its whole step, which is what makes compare, count and consume one atomic step here.
//! A restart loses everything; that is the documented price of running without Redis.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;
use dashmap::DashMap;
use subtle::ConstantTimeEq;

use crate::account::AccountId;
use crate::dispatch::receipts::Receipt;
use crate::phone::SHARD_COUNT;
use crate::store::StoreError;
use crate::verify::code::Tag;
use crate::verify::model::{
    CancelOutcome, CheckOutcome, CheckTarget, CodeCheck, NewVerification, SendAttempt,
    StartOutcome, Status, Verification, VerificationId,
};
use crate::verify::store::{ReceiptApplied, Store};
use crate::verify::workflow::{Fired, Workflow};

use super::workflow::StoredWorkflow;

pub struct MemoryStore {
    pub(super) shards: Vec<Mutex<Shard>>,
    verifications: AtomicUsize,
    max_verifications: usize,
    /// Records per account, against `account_share` (issue 13 §8): one account filling its
    /// share leaves the rest of `max_verifications` to the others.
    per_account: DashMap<AccountId, usize>,
    account_share: usize,
    /// Verification id → its messages. Bounded with the verifications: swept with them.
    pub(super) attempts: DashMap<String, Vec<SendAttempt>>,
    /// (provider, provider message id) → (verification id, message id).
    receipts: DashMap<(String, String), (String, String)>,
}

pub(super) struct StoredVerification {
    pub(super) state: Verification,
    /// Present while the code can still be approved; removed the moment it cannot.
    tag: Option<Tag>,
    /// When the record itself disappears (expiry plus retention).
    evict_at_ms: u64,
    /// Its ordered channels, when it was sent with a workflow (`memory/workflow.rs`).
    pub(super) workflow: Option<StoredWorkflow>,
}

struct Counter {
    count: u32,
    resets_at_ms: u64,
}

/// (account, E.164): the scope of pending verifications and send quotas.
type NumberKey = (AccountId, String);

/// (account, E.164, idempotency key): the scope of an idempotency key, on a send and on a check.
type IdempotencyKey = (AccountId, String, String);

/// The outcome a check with an idempotency key recorded, answered again to its retries.
struct RecordedCheck {
    verification: Verification,
    valid: bool,
    forget_at_ms: u64,
}

#[derive(Default)]
pub(super) struct Shard {
    pub(super) records: HashMap<String, StoredVerification>,
    /// (due ms, verification id) of every workflow waiting for its next step.
    pub(super) due: BTreeSet<(u64, String)>,
    pending_by_number: HashMap<NumberKey, String>,
    quotas: HashMap<NumberKey, Counter>,
    /// (account, number, idempotency key) of a send → (verification id, forget at).
    idempotency: HashMap<IdempotencyKey, (String, u64)>,
    /// (account, number, idempotency key) of a check → the outcome it recorded.
    checks: HashMap<IdempotencyKey, RecordedCheck>,
}

impl MemoryStore {
    pub fn new(max_verifications: usize) -> Self {
        Self {
            shards: (0..SHARD_COUNT)
                .map(|_| Mutex::new(Shard::default()))
                .collect(),
            verifications: AtomicUsize::new(0),
            max_verifications,
            per_account: DashMap::new(),
            account_share: max_verifications,
            attempts: DashMap::new(),
            receipts: DashMap::new(),
        }
    }

    /// Bounds one account's records at `percent` of `max_verifications`.
    pub fn with_account_share(mut self, percent: u8) -> Self {
        self.account_share = crate::account::limits::share_of(self.max_verifications, percent);
        self
    }

    /// Room for one more record of `account`, whose shard (`held`) the caller holds. Past the
    /// total or the account's share, records whose code has expired are dropped first: they
    /// can no longer be approved and are kept only to be read, so they count as free
    /// (otherwise an expired burst would hold the store for its 70 minutes of retention).
    fn admit(
        &self,
        held: &mut Shard,
        held_index: u8,
        account: &AccountId,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let full = || self.verifications.load(Ordering::Relaxed) >= self.max_verifications;
        let over = || {
            self.per_account
                .get(account)
                .is_some_and(|count| *count >= self.account_share)
        };
        if !full() && !over() {
            return Ok(());
        }
        self.drop_expired(held, now_ms);
        let held_index = usize::from(held_index) % self.shards.len();
        for (index, shard) in self.shards.iter().enumerate() {
            // Only shards free right now: waiting for one while holding another could deadlock
            // with a caller doing the same the other way round.
            if index != held_index {
                if let Ok(mut shard) = shard.try_lock() {
                    self.drop_expired(&mut shard, now_ms);
                }
            }
        }
        if full() {
            return Err(StoreError::Full(self.max_verifications));
        }
        if over() {
            return Err(crate::account::limits::LimitReached {
                limit: crate::account::limits::Limit::Verifications,
                max: self.account_share as u64,
            }
            .into());
        }
        Ok(())
    }

    /// Drops the shard's records whose code has expired, keeping the counts in step.
    fn drop_expired(&self, shard: &mut Shard, now_ms: u64) {
        let mut dropped = Vec::new();
        shard.records.retain(|_, record| {
            let keep = record.state.expires_ms > now_ms;
            if !keep {
                dropped.push(record.state.account.clone());
            }
            keep
        });
        self.forget(dropped);
    }

    fn counted(&self, account: &AccountId) {
        self.verifications.fetch_add(1, Ordering::Relaxed);
        *self.per_account.entry(account.clone()).or_default() += 1;
    }

    fn forget(&self, accounts: Vec<AccountId>) {
        self.verifications
            .fetch_sub(accounts.len(), Ordering::Relaxed);
        for account in accounts {
            if let Some(mut count) = self.per_account.get_mut(&account) {
                *count = count.saturating_sub(1);
            }
        }
        self.per_account.retain(|_, count| *count > 0);
    }

    pub(super) fn shard(&self, index: u8) -> std::sync::MutexGuard<'_, Shard> {
        // A poisoned lock means a panic mid-update in this process; the data it guards is plain
        // maps whose every update is a single insert or remove, so it is still consistent.
        self.shards[usize::from(index) % self.shards.len()]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Drops everything past its lifetime. The server runs this every second; correctness never
    /// depends on it, because every read checks expiry itself.
    pub fn sweep(&self, now_ms: u64) {
        for index in 0..SHARD_COUNT {
            let mut shard = self.shard(index);
            let mut removed = Vec::new();
            shard.records.retain(|_, record| {
                let keep = record.evict_at_ms > now_ms;
                if !keep {
                    removed.push(record.state.account.clone());
                }
                keep
            });
            self.forget(removed);
            let Shard {
                records,
                due,
                pending_by_number,
                quotas,
                idempotency,
                checks,
            } = &mut *shard;
            pending_by_number.retain(|_, id| {
                records
                    .get(id)
                    .is_some_and(|record| record.state.status_at(now_ms) == Status::Pending)
            });
            due.retain(|(_, id)| records.contains_key(id));
            quotas.retain(|_, counter| counter.resets_at_ms > now_ms);
            idempotency.retain(|_, (_, forget_at)| *forget_at > now_ms);
            checks.retain(|_, recorded| recorded.forget_at_ms > now_ms);
        }
        self.attempts.retain(|id, _| {
            VerificationId::parse(id)
                .is_some_and(|id| self.shard(id.shard()).records.contains_key(id.as_str()))
        });
        self.receipts
            .retain(|_, (id, _)| self.attempts.contains_key(id));
    }

    pub fn verification_count(&self) -> usize {
        self.verifications.load(Ordering::Relaxed)
    }
}

impl Shard {
    fn pending(&self, number: &NumberKey, now_ms: u64) -> Option<&String> {
        let id = self.pending_by_number.get(number)?;
        let record = self.records.get(id)?;
        (record.state.status_at(now_ms) == Status::Pending).then_some(id)
    }

    /// Counts one send against the quota, or says how long until the window resets.
    fn take_quota(&mut self, number: &NumberKey, new: &NewVerification) -> Result<(), u64> {
        let counter = self.quotas.entry(number.clone()).or_insert(Counter {
            count: 0,
            resets_at_ms: new.now_ms + new.send_quota.window_ms,
        });
        if counter.resets_at_ms <= new.now_ms {
            counter.count = 0;
            counter.resets_at_ms = new.now_ms + new.send_quota.window_ms;
        }
        if counter.count >= new.send_quota.limit {
            return Err(counter.resets_at_ms - new.now_ms);
        }
        counter.count += 1;
        Ok(())
    }

    fn remember_idempotency(&mut self, new: &NewVerification, id: &str) {
        if let Some(key) = &new.idempotency_key {
            let forget_at = new.now_ms + new.ttl_ms + new.retention_ms;
            self.idempotency
                .insert(idempotency_scope(new, key), (id.to_owned(), forget_at));
        }
    }
}

/// The scope of a send's idempotency key: its account and destination number.
fn idempotency_scope(new: &NewVerification, key: &str) -> IdempotencyKey {
    (
        new.account.clone(),
        new.to.e164().to_owned(),
        key.to_owned(),
    )
}

#[async_trait]
impl Store for MemoryStore {
    async fn start_verification(&self, new: &NewVerification) -> Result<StartOutcome, StoreError> {
        let now = new.now_ms;
        let mut shard = self.shard(new.to.shard());

        if let Some(key) = &new.idempotency_key {
            let seen = shard.idempotency.get(&idempotency_scope(new, key));
            if let Some((id, _)) = seen.filter(|(_, forget_at)| *forget_at > now) {
                if let Some(record) = shard.records.get(id) {
                    return Ok(StartOutcome::Replayed(record.state.clone()));
                }
            }
        }

        let number: NumberKey = (new.account.clone(), new.to.e164().to_owned());
        if let Some(id) = shard.pending(&number, now).cloned() {
            let sends = shard.records[&id].state.sends;
            if sends >= new.max_sends {
                return Ok(StartOutcome::MaxSendsReached(
                    shard.records[&id].state.clone(),
                ));
            }
            if let Err(retry_after_ms) = shard.take_quota(&number, new) {
                return Ok(StartOutcome::SendQuotaExceeded { retry_after_ms });
            }
            let record = shard
                .records
                .get_mut(&id)
                .expect("pending() found this record under the same lock");
            record.tag = Some(new.code_tag);
            record.state.sends += 1;
            record.state.channel = new.channel;
            record.state.expires_ms = now + new.ttl_ms;
            record.evict_at_ms = now + new.ttl_ms + new.retention_ms;
            let state = record.state.clone();
            shard.set_workflow(&id, new.workflow.as_ref(), now);
            shard.remember_idempotency(new, &id);
            return Ok(StartOutcome::Resent(state));
        }

        self.admit(&mut shard, new.to.shard(), &new.account, now)?;
        if let Err(retry_after_ms) = shard.take_quota(&number, new) {
            return Ok(StartOutcome::SendQuotaExceeded { retry_after_ms });
        }
        let state = Verification {
            id: new.id.clone(),
            account: new.account.clone(),
            to: new.to.e164().to_owned(),
            channel: new.channel,
            status: Status::Pending,
            attempts: 0,
            max_attempts: new.max_attempts,
            sends: 1,
            created_ms: now,
            expires_ms: now + new.ttl_ms,
            code_length: new.code_length,
        };
        let id = new.id.as_str().to_owned();
        let previous = shard.records.insert(
            id.clone(),
            StoredVerification {
                state: state.clone(),
                tag: Some(new.code_tag),
                evict_at_ms: now + new.ttl_ms + new.retention_ms,
                workflow: None,
            },
        );
        shard.set_workflow(&id, new.workflow.as_ref(), now);
        if previous.is_none() {
            self.counted(&new.account);
        }
        shard.pending_by_number.insert(number, id.clone());
        shard.remember_idempotency(new, &id);
        Ok(StartOutcome::Created(state))
    }

    async fn check_verification(&self, check: &CodeCheck<'_>) -> Result<CheckOutcome, StoreError> {
        let CodeCheck {
            account,
            target,
            tag,
            now_ms,
            idempotency_key,
        } = *check;
        let shard_index = match target {
            CheckTarget::Id(id) => id.shard(),
            CheckTarget::To(number) => number.shard(),
        };
        let mut shard = self.shard(shard_index);
        // A key is scoped by the number, which a check by id learns from the record.
        let scope = match idempotency_key {
            None => None,
            Some(key) => {
                let number = match target {
                    CheckTarget::To(number) => number.e164().to_owned(),
                    CheckTarget::Id(id) => match shard
                        .records
                        .get(id.as_str())
                        .filter(|record| &record.state.account == account)
                    {
                        Some(record) => record.state.to.clone(),
                        None => return Ok(CheckOutcome::NotFound),
                    },
                };
                let scope: IdempotencyKey = (account.clone(), number, key.to_owned());
                if let Some(recorded) = shard
                    .checks
                    .get(&scope)
                    .filter(|recorded| recorded.forget_at_ms > now_ms)
                {
                    if let CheckTarget::Id(id) = target {
                        if &recorded.verification.id != id {
                            return Ok(CheckOutcome::KeyReused);
                        }
                    }
                    return Ok(CheckOutcome::Replayed {
                        verification: recorded.verification.clone(),
                        valid: recorded.valid,
                    });
                }
                Some(scope)
            }
        };
        let id = match target {
            CheckTarget::Id(id) => id.as_str().to_owned(),
            CheckTarget::To(number) => {
                match shard.pending(&(account.clone(), number.e164().to_owned()), now_ms) {
                    Some(id) => id.clone(),
                    None => return Ok(CheckOutcome::NotFound),
                }
            }
        };
        let Some(record) = shard
            .records
            .get_mut(&id)
            .filter(|r| &r.state.account == account)
        else {
            return Ok(CheckOutcome::NotFound);
        };
        if record.state.status != Status::Pending {
            return Ok(CheckOutcome::Final(record.state.clone()));
        }
        let valid = if now_ms >= record.state.expires_ms {
            // This check finds the lifetime over: it records the expiry and answers it.
            record.state.status = Status::Expired;
            false
        } else {
            record.state.attempts += 1;
            let matches = record
                .tag
                .as_ref()
                .is_some_and(|stored| bool::from(stored.ct_eq(tag)));
            if matches {
                record.state.status = Status::Approved;
            } else if record.state.attempts >= record.state.max_attempts {
                record.state.status = Status::MaxAttemptsReached;
            }
            matches
        };
        if record.state.status != Status::Pending {
            record.tag = None;
        }
        let verification = record.state.clone();
        let forget_at_ms = record.evict_at_ms;
        if let Some(scope) = scope {
            shard.checks.insert(
                scope,
                RecordedCheck {
                    verification: verification.clone(),
                    valid,
                    forget_at_ms,
                },
            );
        }
        Ok(CheckOutcome::Checked {
            verification,
            valid,
        })
    }

    async fn get_verification(
        &self,
        account: &AccountId,
        id: &VerificationId,
        now_ms: u64,
    ) -> Result<Option<Verification>, StoreError> {
        let shard = self.shard(id.shard());
        Ok(shard
            .records
            .get(id.as_str())
            .filter(|record| &record.state.account == account && record.evict_at_ms > now_ms)
            .map(|record| record.state.clone()))
    }

    async fn cancel_verification(
        &self,
        account: &AccountId,
        id: &VerificationId,
        now_ms: u64,
    ) -> Result<CancelOutcome, StoreError> {
        let mut shard = self.shard(id.shard());
        let Some(record) = shard
            .records
            .get_mut(id.as_str())
            .filter(|record| &record.state.account == account && record.evict_at_ms > now_ms)
        else {
            return Ok(CancelOutcome::NotFound);
        };
        if record.state.status_at(now_ms) != Status::Pending {
            record.state.status = record.state.status_at(now_ms);
            return Ok(CancelOutcome::NotPending(record.state.clone()));
        }
        record.state.status = Status::Canceled;
        record.tag = None;
        Ok(CancelOutcome::Canceled(record.state.clone()))
    }

    async fn record_send_attempt(
        &self,
        verification: &VerificationId,
        attempt: &SendAttempt,
    ) -> Result<(), StoreError> {
        if let Some(provider_id) = &attempt.provider_message_id {
            self.receipts.insert(
                (attempt.provider.clone(), provider_id.clone()),
                (verification.as_str().to_owned(), attempt.message_id.clone()),
            );
        }
        let mut attempts = self
            .attempts
            .entry(verification.as_str().to_owned())
            .or_default();
        // One entry per message, plus one per provider that failed it (see `is_provider_try`).
        let slot = |known: &SendAttempt| (known.is_provider_try()).then(|| known.provider.clone());
        match attempts
            .iter_mut()
            .find(|known| known.message_id == attempt.message_id && slot(known) == slot(attempt))
        {
            Some(known) => *known = attempt.clone(),
            None => attempts.push(attempt.clone()),
        }
        Ok(())
    }

    async fn send_attempts(
        &self,
        verification: &VerificationId,
    ) -> Result<Vec<SendAttempt>, StoreError> {
        Ok(self
            .attempts
            .get(verification.as_str())
            .map(|attempts| attempts.clone())
            .unwrap_or_default())
    }

    async fn apply_receipt(
        &self,
        provider: &str,
        receipt: &Receipt,
        now_ms: u64,
    ) -> Result<Option<ReceiptApplied>, StoreError> {
        let provider_message_id = receipt.provider_message_id.as_str();
        let Some((verification, message_id)) = self
            .receipts
            .get(&(provider.to_owned(), provider_message_id.to_owned()))
            .map(|entry| entry.clone())
        else {
            return Ok(None);
        };
        let Some(id) = VerificationId::parse(&verification) else {
            return Ok(None);
        };
        let Some(record) = self
            .shard(id.shard())
            .records
            .get(id.as_str())
            .map(|record| record.state.clone())
        else {
            return Ok(None);
        };
        let Some(mut attempts) = self.attempts.get_mut(&verification) else {
            return Ok(None);
        };
        let Some(attempt) = attempts
            .iter_mut()
            .find(|known| known.message_id == message_id && !known.is_provider_try())
        else {
            return Ok(None);
        };
        let previous = std::mem::replace(&mut attempt.status, receipt.status.as_str().to_owned());
        attempt.error = receipt.error.clone();
        attempt.updated_ms = now_ms;
        Ok(Some(ReceiptApplied {
            account: record.account,
            verification: id,
            to: record.to,
            channel: record.channel,
            previous,
            message_id,
        }))
    }

    async fn workflow(&self, id: &VerificationId) -> Result<Option<Workflow>, StoreError> {
        Ok(self.workflow_of(id))
    }

    async fn fire_due_fallbacks(
        &self,
        shard: u8,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<Fired>, StoreError> {
        Ok(self.fire_due(shard, now_ms, limit))
    }

    async fn fall_back_now(
        &self,
        id: &VerificationId,
        message_id: &str,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        self.bring_forward(id, message_id, now_ms);
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn kind(&self) -> &'static str {
        "memory"
    }
}
