//! The embedded PIN store: one mutex, every method one critical section.
//!
//! Bounded: at most `max_numbers` numbers (then 503), per account the smaller of
//! `tenants.max_phone_numbers` and its share of `max_numbers` (then 422, issue 13 §8), links
//! forgotten a day after they expire, e-mail addresses one per account.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;

use crate::account::limits::{Limit, LimitReached, TenantSettings};
use crate::account::AccountId;
use crate::pin::store::{
    CreateOutcome, DisableOutcome, LinkInfo, LinkIssue, LinkOpening, LinkUse, Matched, NewLink,
    NewNumber, NumberRecord, NumberRef, PinAttempt, PinStore, PinWrite, PinWriteMode,
    PinWriteOutcome, Reservation, TransferOutcome, LINK_RETENTION_MS,
};
use crate::pin::{LinkPurpose, PhoneNumberId};
use crate::store::StoreError;

#[derive(Default)]
pub struct MemoryPinStore {
    state: Mutex<State>,
    tenants: TenantSettings,
}

#[derive(Default)]
struct State {
    /// By account, then id: an account's numbers are one range, in the list's order.
    numbers: BTreeMap<(AccountId, PhoneNumberId), Number>,
    /// Numbers per account (a transfer moves one from one account to another).
    per_account: HashMap<AccountId, u64>,
    by_e164: HashMap<(AccountId, String), PhoneNumberId>,
    /// The gateway-wide registry: which account holds each number.
    registry: HashMap<String, (AccountId, PhoneNumberId)>,
    links: HashMap<(AccountId, [u8; 32]), Link>,
    emails: HashMap<AccountId, String>,
}

struct Number {
    record: NumberRecord,
    pin_hash: Option<String>,
    pin_version: u64,
    disable_link: Option<[u8; 32]>,
    reset_link: Option<[u8; 32]>,
}

struct Link {
    number: PhoneNumberId,
    purpose: LinkPurpose,
    expires_ms: u64,
    used: bool,
}

impl MemoryPinStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// The per-account bounds (`[tenants]`); the documented defaults until this is called.
    pub fn with_tenants(mut self, tenants: TenantSettings) -> Self {
        self.tenants = tenants;
        self
    }

    /// Refuses a new number for `new.account` once it holds its share of the registry.
    fn check_account_bound(&self, state: &State, new: &NewNumber) -> Result<(), StoreError> {
        let max = self
            .tenants
            .limits(&new.account)
            .phone_numbers
            .min(self.tenants.share_of(new.max_numbers) as u64);
        if state.per_account.get(&new.account).copied().unwrap_or(0) >= max {
            return Err(LimitReached {
                limit: Limit::PhoneNumbers,
                max,
            }
            .into());
        }
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data, still consistent per method.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Number {
    fn link_slot(&mut self, purpose: LinkPurpose) -> &mut Option<[u8; 32]> {
        match purpose {
            LinkPurpose::Disable => &mut self.disable_link,
            LinkPurpose::Reset => &mut self.reset_link,
        }
    }

    fn clear_attempts(&mut self) {
        self.record.failures = 0;
        self.record.next_attempt_ms = 0;
        self.record.locked_ms = 0;
    }

    /// Sets the PIN (or, without one, turns two-step off), clearing the attempts.
    fn set_pin(&mut self, pin_hash: Option<&str>, now_ms: u64) {
        self.pin_hash = pin_hash.map(str::to_owned);
        self.pin_version += 1;
        self.record.two_step = pin_hash.is_some();
        self.clear_attempts();
        self.record.updated_ms = now_ms;
    }

    fn disable(&mut self, now_ms: u64) {
        self.set_pin(None, now_ms);
        self.disable_link = None;
        self.record.disable_link_expires_ms = 0;
    }
}

impl State {
    fn number(&mut self, number: NumberRef<'_>) -> Option<&mut Number> {
        self.numbers
            .get_mut(&(number.account.clone(), number.id.clone()))
    }

    /// Stores `new` as a fresh number of its account (two-step on, no failures, no links) in
    /// every index, counts it, and returns its record. A transfer passes `registered_ms`: the
    /// number is registered as it moves.
    fn place(&mut self, new: &NewNumber, registered_ms: u64) -> NumberRecord {
        let record = NumberRecord {
            id: new.id.clone(),
            e164: new.e164.clone(),
            two_step: true,
            failures: 0,
            next_attempt_ms: 0,
            locked_ms: 0,
            registered_ms,
            created_ms: new.now_ms,
            updated_ms: new.now_ms,
            disable_link_expires_ms: 0,
            reset_link_expires_ms: 0,
        };
        *self.per_account.entry(new.account.clone()).or_default() += 1;
        self.by_e164
            .insert((new.account.clone(), new.e164.clone()), new.id.clone());
        self.registry
            .insert(new.e164.clone(), (new.account.clone(), new.id.clone()));
        self.numbers.insert(
            (new.account.clone(), new.id.clone()),
            Number {
                record: record.clone(),
                pin_hash: Some(new.pin_hash.clone()),
                pin_version: 1,
                disable_link: None,
                reset_link: None,
            },
        );
        record
    }
}

#[async_trait]
impl PinStore for MemoryPinStore {
    async fn create(&self, new: &NewNumber) -> Result<CreateOutcome, StoreError> {
        let mut state = self.lock();
        let index = (new.account.clone(), new.e164.clone());
        if let Some(id) = state.by_e164.get(&index) {
            return Ok(CreateOutcome::Exists(id.clone()));
        }
        if let Some((account, id)) = state.registry.get(&new.e164) {
            return Ok(CreateOutcome::HeldElsewhere {
                account: account.clone(),
                id: id.clone(),
            });
        }
        let key = (new.account.clone(), new.id.clone());
        if state.numbers.contains_key(&key) {
            return Ok(CreateOutcome::IdTaken);
        }
        if state.numbers.len() >= new.max_numbers {
            return Err(StoreError::Full(new.max_numbers));
        }
        self.check_account_bound(&state, new)?;
        let record = state.place(new, 0);
        Ok(CreateOutcome::Created(record))
    }

    async fn transfer(
        &self,
        from: NumberRef<'_>,
        new: &NewNumber,
    ) -> Result<TransferOutcome, StoreError> {
        let mut state = self.lock();
        let holder = (from.account.clone(), from.id.clone());
        if state.registry.get(&new.e164) != Some(&holder) {
            return Ok(TransferOutcome::Lost);
        }
        let key = (new.account.clone(), new.id.clone());
        if state.numbers.contains_key(&key) {
            return Err(StoreError::Corrupt(
                "the new phone-number id is taken".into(),
            ));
        }
        self.check_account_bound(&state, new)?;
        state.numbers.remove(&holder);
        state.by_e164.remove(&(holder.0, new.e164.clone()));
        if let Some(count) = state.per_account.get_mut(from.account) {
            *count = count.saturating_sub(1);
        }
        let record = state.place(new, new.now_ms);
        Ok(TransferOutcome::Transferred(record))
    }

    async fn get(&self, number: NumberRef<'_>) -> Result<Option<NumberRecord>, StoreError> {
        Ok(self.lock().number(number).map(|found| found.record.clone()))
    }

    async fn list(
        &self,
        account: &AccountId,
        after: Option<&PhoneNumberId>,
        limit: usize,
    ) -> Result<Vec<NumberRecord>, StoreError> {
        let state = self.lock();
        let start = match after {
            Some(after) => Bound::Excluded((account.clone(), after.clone())),
            None => Bound::Included((account.clone(), PhoneNumberId::lowest())),
        };
        Ok(state
            .numbers
            .range((start, Bound::Unbounded))
            .take_while(|((owner, _), _)| owner == account)
            .take(limit)
            .map(|(_, number)| number.record.clone())
            .collect())
    }

    async fn write_pin(&self, write: &PinWrite<'_>) -> Result<PinWriteOutcome, StoreError> {
        let mut state = self.lock();
        let Some(number) = state.number(write.number) else {
            return Ok(PinWriteOutcome::NotFound);
        };
        let was_enabled = number.record.two_step;
        let was_locked = number.record.locked(&write.limits);
        match write.mode {
            PinWriteMode::Set { unlock } => {
                if was_locked && !unlock {
                    return Ok(PinWriteOutcome::Locked);
                }
            }
            PinWriteMode::EnableOnRegister => {
                if was_enabled {
                    return Ok(PinWriteOutcome::Enabled);
                }
                number.record.registered_ms = write.now_ms;
            }
        }
        number.set_pin(Some(write.pin_hash), write.now_ms);
        Ok(PinWriteOutcome::Written {
            was_enabled,
            was_locked,
            record: number.record.clone(),
        })
    }

    async fn reserve_attempt(&self, attempt: PinAttempt<'_>) -> Result<Reservation, StoreError> {
        let (limits, now_ms) = (attempt.limits, attempt.now_ms);
        let mut state = self.lock();
        let Some(number) = state.number(attempt.number) else {
            return Ok(Reservation::NotFound);
        };
        let Some(pin_hash) = number.pin_hash.clone().filter(|_| number.record.two_step) else {
            return Ok(Reservation::Disabled);
        };
        let record = &mut number.record;
        if limits.locks(record.failures) {
            return Ok(Reservation::Locked);
        }
        if record.next_attempt_ms > now_ms {
            return Ok(Reservation::Wait {
                retry_after_ms: record.next_attempt_ms - now_ms,
            });
        }
        record.failures += 1;
        let wait = limits.wait_after(record.failures);
        record.next_attempt_ms = if wait > 0 { now_ms + wait } else { 0 };
        if limits.locks(record.failures) {
            record.locked_ms = now_ms;
        }
        Ok(Reservation::Go {
            pin_hash,
            attempt: record.failures,
            pin_version: number.pin_version,
        })
    }

    async fn attempt_succeeded(&self, matched: Matched<'_>) -> Result<bool, StoreError> {
        let mut state = self.lock();
        let Some(number) = state.number(matched.number) else {
            return Ok(false);
        };
        if number.pin_version != matched.pin_version {
            return Ok(false);
        }
        number.clear_attempts();
        number.record.registered_ms = matched.now_ms;
        number.record.updated_ms = matched.now_ms;
        Ok(true)
    }

    async fn issue_link(&self, link: &NewLink<'_>) -> Result<LinkIssue, StoreError> {
        let key = (link.number.account.clone(), link.digest);
        let id = link.number.id.clone();
        let mut state = self.lock();
        let Some(number) = state.number(link.number) else {
            return Ok(LinkIssue::NotFound);
        };
        if link.purpose == LinkPurpose::Disable && !number.record.two_step {
            return Ok(LinkIssue::AlreadyDisabled);
        }
        // The earlier link stays readable until it is forgotten, so that opening it answers
        // "replaced by a newer link" rather than "unknown".
        *number.link_slot(link.purpose) = Some(link.digest);
        let expires_ms = link.now_ms + link.ttl_ms;
        match link.purpose {
            LinkPurpose::Disable => number.record.disable_link_expires_ms = expires_ms,
            LinkPurpose::Reset => number.record.reset_link_expires_ms = expires_ms,
        }
        let e164 = number.record.e164.clone();
        let stored = Link {
            number: id,
            purpose: link.purpose,
            expires_ms,
            used: false,
        };
        state.links.insert(key, stored);
        Ok(LinkIssue::Issued { e164 })
    }

    async fn peek_link(
        &self,
        account: &AccountId,
        digest: &[u8; 32],
    ) -> Result<Option<LinkInfo>, StoreError> {
        Ok(self
            .lock()
            .links
            .get(&(account.clone(), *digest))
            .map(|link| LinkInfo {
                number: link.number.clone(),
                purpose: link.purpose,
                expires_ms: link.expires_ms,
                used: link.used,
            }))
    }

    async fn use_link(&self, opening: &LinkOpening<'_>) -> Result<LinkUse, StoreError> {
        let (account, digest, purpose) = (opening.account, opening.digest, opening.purpose);
        let now_ms = opening.now_ms;
        let mut guard = self.lock();
        let state = &mut *guard;
        let Some(link) = state.links.get_mut(&(account.clone(), *digest)) else {
            return Ok(LinkUse::Unknown);
        };
        if link.purpose != purpose {
            return Ok(LinkUse::Unknown);
        }
        if link.used {
            return Ok(LinkUse::Used);
        }
        if now_ms >= link.expires_ms {
            return Ok(LinkUse::Expired);
        }
        let Some(number) = state
            .numbers
            .get_mut(&(account.clone(), link.number.clone()))
        else {
            link.used = true;
            return Ok(LinkUse::Unknown);
        };
        if *number.link_slot(purpose) != Some(*digest) {
            return Ok(LinkUse::Superseded);
        }
        link.used = true;
        *number.link_slot(purpose) = None;
        let was_locked = number.record.locked_ms > 0;
        match purpose {
            LinkPurpose::Disable => {
                if !number.record.two_step {
                    return Ok(LinkUse::AlreadyDisabled {
                        number: number.record.id.clone(),
                    });
                }
                number.disable(now_ms);
            }
            LinkPurpose::Reset => {
                let Some(hash) = opening.new_pin_hash else {
                    return Err(StoreError::Corrupt("a reset needs the new PIN".into()));
                };
                number.set_pin(Some(hash), now_ms);
                number.record.reset_link_expires_ms = 0;
            }
        }
        Ok(LinkUse::Done {
            number: number.record.id.clone(),
            e164: number.record.e164.clone(),
            was_locked,
        })
    }

    async fn disable(
        &self,
        number: NumberRef<'_>,
        now_ms: u64,
    ) -> Result<DisableOutcome, StoreError> {
        let mut state = self.lock();
        let Some(number) = state.number(number) else {
            return Ok(DisableOutcome::NotFound);
        };
        if !number.record.two_step {
            return Ok(DisableOutcome::AlreadyDisabled);
        }
        let was_locked = number.record.locked_ms > 0;
        number.disable(now_ms);
        Ok(DisableOutcome::Disabled {
            e164: number.record.e164.clone(),
            was_locked,
        })
    }
    async fn set_email(&self, account: &AccountId, email: &str) -> Result<(), StoreError> {
        self.lock().emails.insert(account.clone(), email.to_owned());
        Ok(())
    }

    async fn email(&self, account: &AccountId) -> Result<Option<String>, StoreError> {
        Ok(self.lock().emails.get(account).cloned())
    }

    fn sweep(&self, now_ms: u64) {
        self.lock()
            .links
            .retain(|_, link| link.expires_ms + LINK_RETENTION_MS > now_ms);
    }
}
