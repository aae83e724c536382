//! `PinService`: what the handlers and the support command call. It decides who may do what,
//! hashes PINs off the async worker threads, runs the store's atomic steps, sends the e-mailed
//! links (in `links.rs`), counts metrics and writes the audit trail.
//!
//! Who may do what (key roles): owner, admin and partner keys add numbers, set or change PINs
//! and register numbers; only owner and admin keys ask for disable and reset links, and only
//! they unlock a locked number by setting a new PIN; a partner's request for a link is refused
//! (403) and audited. Service keys (login services) have no business with phone numbers: 403.
//! Nobody disables two-step through the API: only an e-mailed link or the support command does.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ring::rand::SystemRandom;
use serde_json::json;

use super::hash::{HashCost, HashError, PinHasher};
pub use super::links::{mask_email, LinkDone, LinkSent};
use super::store::{
    CreateOutcome, DisableOutcome, Matched, NewNumber, NumberRecord, NumberRef, PinAttempt,
    PinStore, PinWrite, PinWriteMode, PinWriteOutcome, Reservation, TransferOutcome,
};
use super::{action, AttemptLimits, PhoneNumberId, Pin, PinRefusal};
use crate::account::audit::{AuditEntry, Who};
use crate::account::permission::Permission;
use crate::account::store::Directory;
use crate::account::{AccountId, Role};
use crate::clock::Clock;
use crate::events::{EventType, Events};
use crate::mail::{MailError, Mailer};
use crate::metrics::Metrics;
use crate::phone::{mask, PhoneNumber};
use crate::store::StoreError;

/// `[pin]` in config, less the pepper (which the hasher holds).
#[derive(Debug, Clone, Copy)]
pub struct PinSettings {
    pub cost: HashCost,
    pub limits: AttemptLimits,
    /// How long an e-mailed link works (24 h).
    pub link_ttl: Duration,
    /// The embedded store refuses new numbers beyond this many.
    pub memory_max_numbers: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error("role not allowed: {0}")]
    Forbidden(&'static str),
    #[error("bad PIN")]
    BadPin(PinRefusal),
    #[error("no such phone number")]
    NotFound,
    #[error("the number exists as {0}")]
    Exists(PhoneNumberId),
    /// Another account holds the number and the claim could not be checked now (its record is
    /// being written, or a concurrent claim won). Deliberately says nothing about that account.
    #[error("another account holds this number")]
    HeldElsewhere,
    #[error("wrong PIN")]
    Mismatch {
        attempts_left: u32,
        retry_after_ms: u64,
    },
    #[error("wait before the next PIN")]
    Wait { retry_after_ms: u64 },
    #[error("locked")]
    Locked,
    #[error("the account has no e-mail address")]
    NoEmail,
    #[error("two-step verification is already off")]
    AlreadyDisabled,
    #[error("the PIN changed during the check")]
    Changed,
    #[error("unknown link")]
    LinkUnknown,
    #[error("link used")]
    LinkUsed,
    #[error("link expired")]
    LinkExpired,
    #[error("link replaced")]
    LinkSuperseded,
    #[error("mail: {0}")]
    Mail(MailError),
    #[error("hash: {0}")]
    Hash(HashError),
    #[error("the system random generator failed")]
    Random,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The outcome of a successful registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registered {
    /// The PIN matched.
    PinMatched,
    /// Two-step was off: the PIN given is the number's new PIN.
    TwoStepEnabled,
}

pub struct PinService {
    pub(super) store: Arc<dyn PinStore>,
    hasher: Arc<PinHasher>,
    pub(super) mailer: Arc<dyn Mailer>,
    directory: Arc<dyn Directory>,
    clock: Arc<dyn Clock>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) rng: SystemRandom,
    pub(super) settings: PinSettings,
    pub(super) link_base_url: String,
    /// Hashes in flight at once: each takes `memory_kib` of memory and a core for tens of
    /// milliseconds, so a flood of PIN requests waits here instead of filling the blocking pool
    /// (up to 512 threads) with 19 MiB each.
    hashing: tokio::sync::Semaphore,
    /// Webhooks out: PIN changed, locked, disabled.
    pub(super) events: Events,
}

fn target(id: &PhoneNumberId) -> String {
    format!("phone_number:{}", id.as_str())
}

/// What the PIN service works with, built by `startup`.
pub struct PinParts {
    pub store: Arc<dyn PinStore>,
    pub hasher: Arc<PinHasher>,
    pub mailer: Arc<dyn Mailer>,
    /// Where audit entries go.
    pub directory: Arc<dyn Directory>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
}

impl PinService {
    pub fn new(parts: PinParts, settings: PinSettings, link_base_url: &str) -> Self {
        Self {
            store: parts.store,
            hasher: parts.hasher,
            mailer: parts.mailer,
            directory: parts.directory,
            clock: parts.clock,
            metrics: parts.metrics,
            rng: SystemRandom::new(),
            settings,
            link_base_url: link_base_url.trim_end_matches('/').to_owned(),
            hashing: tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, |cores| cores.get() * 2),
            ),
            events: Events::disabled(),
        }
    }

    /// Emits the PINs' events through `events` (none until this is called).
    pub fn with_events(mut self, events: Events) -> Self {
        self.events = events;
        self
    }

    pub fn settings(&self) -> &PinSettings {
        &self.settings
    }

    pub fn store(&self) -> &Arc<dyn PinStore> {
        &self.store
    }

    pub fn mailer_kind(&self) -> &'static str {
        self.mailer.kind()
    }

    pub(super) fn now(&self) -> u64 {
        self.clock.now_ms()
    }

    /// One PIN attempt on `number` now, under the configured limits.
    fn attempt<'a>(&self, number: NumberRef<'a>) -> PinAttempt<'a> {
        PinAttempt {
            number,
            limits: self.settings.limits,
            now_ms: self.now(),
        }
    }

    pub(super) async fn audit(
        &self,
        account: &AccountId,
        who: Who,
        what: &str,
        id: &PhoneNumberId,
        details: serde_json::Value,
    ) -> Result<(), PinError> {
        let entry = AuditEntry::new(self.now(), who, what, target(id), details);
        Ok(self.directory.append_audit(account, &entry).await?)
    }

    /// Hashes on the blocking pool: argon2id takes milliseconds of CPU and would stall the
    /// async workers.
    pub(super) async fn hash(&self, pin: &Pin) -> Result<String, PinError> {
        self.on_hashing_pool(pin, |hasher, pin| hasher.hash(pin))
            .await
    }

    async fn verify(&self, pin: &Pin, stored: String) -> Result<bool, PinError> {
        self.on_hashing_pool(pin, move |hasher, pin| hasher.verify(pin, &stored))
            .await
    }

    /// Runs `work` on the blocking pool once the hashing gate lets it in, timing it.
    async fn on_hashing_pool<T: Send + 'static>(
        &self,
        pin: &Pin,
        work: impl FnOnce(&PinHasher, &Pin) -> Result<T, HashError> + Send + 'static,
    ) -> Result<T, PinError> {
        let hasher = self.hasher.clone();
        let pin = pin.clone();
        let _permit =
            self.hashing.acquire().await.map_err(|_| {
                PinError::Hash(HashError::Argon2("the hashing gate is closed".into()))
            })?;
        let started = Instant::now();
        let done = tokio::task::spawn_blocking(move || work(&hasher, &pin))
            .await
            .map_err(|_| PinError::Hash(HashError::Argon2("the hashing task died".into())))?
            .map_err(PinError::Hash);
        self.metrics.pin_hash_time(started.elapsed());
        done
    }

    /// Whether `role` may take `permission` (the one roles × actions table).
    fn allowed(role: Role, permission: Permission) -> Result<(), PinError> {
        if permission.allows(role) {
            Ok(())
        } else {
            Err(PinError::Forbidden(permission.refusal()))
        }
    }

    /// Adds a number with two-step on and its first PIN.
    pub async fn add_number(
        &self,
        account: &AccountId,
        who: Who,
        role: Role,
        number: &PhoneNumber,
        pin: &Pin,
    ) -> Result<NumberRecord, PinError> {
        Self::allowed(role, Permission::ManagePhoneNumbers)?;
        pin.check_against_number(number.e164())
            .map_err(PinError::BadPin)?;
        let pin_hash = self.hash(pin).await?;
        let record = loop {
            let new = NewNumber {
                account: account.clone(),
                id: PhoneNumberId::random(&self.rng).map_err(|_| PinError::Random)?,
                e164: number.e164().to_owned(),
                pin_hash: pin_hash.clone(),
                now_ms: self.now(),
                max_numbers: self.settings.memory_max_numbers,
            };
            match self.store.create(&new).await? {
                CreateOutcome::Created(record) => break record,
                CreateOutcome::Exists(id) => return Err(PinError::Exists(id)),
                CreateOutcome::IdTaken => continue,
                CreateOutcome::HeldElsewhere {
                    account: holder,
                    id: held,
                } => {
                    return self.claim(who, number, pin, new, &holder, &held).await;
                }
            }
        };
        self.audit(
            account,
            who.clone(),
            action::NUMBER_ADDED,
            &record.id,
            json!({"phone_number": number.masked(), "two_step": "enabled"}),
        )
        .await?;
        self.audit(
            account,
            who,
            action::PIN_SET,
            &record.id,
            json!({"via": "setup"}),
        )
        .await?;
        tracing::info!(account = %account, number = %record.id, "phone number added with two-step on");
        Ok(record)
    }

    /// Adding a number another account holds (issue 14): it moves only with that number's PIN
    /// (checked and counted on the holder's record, so the holder's wrong-PIN limits and lock
    /// apply), or when its two-step is off (its owner or an admin disabled it by the e-mailed
    /// link), then with the claimant's PIN. Both accounts audit every attempt; the claimant's
    /// answers never name the holder or its id. The claimant is `new.account`.
    async fn claim(
        &self,
        who: Who,
        number: &PhoneNumber,
        pin: &Pin,
        new: NewNumber,
        holder: &AccountId,
        held: &PhoneNumberId,
    ) -> Result<NumberRecord, PinError> {
        let account = &new.account;
        let refused = |reason: &'static str| {
            let who = who.clone();
            async move {
                self.metrics.pin_checked(reason);
                self.audit(
                    holder,
                    Who::another_account(),
                    action::CLAIM_REFUSED,
                    held,
                    json!({"reason": reason}),
                )
                .await?;
                let entry = AuditEntry::new(
                    self.now(),
                    who,
                    action::CLAIM_REFUSED,
                    format!("phone_number:{}", number.masked()),
                    json!({"reason": reason}),
                );
                self.directory.append_audit(account, &entry).await?;
                Ok::<(), PinError>(())
            }
        };
        let via = match self
            .store
            .reserve_attempt(self.attempt(NumberRef {
                account: holder,
                id: held,
            }))
            .await?
        {
            Reservation::NotFound => return Err(PinError::HeldElsewhere),
            Reservation::Locked => {
                refused("locked").await?;
                return Err(PinError::Locked);
            }
            Reservation::Wait { retry_after_ms } => {
                refused("wait").await?;
                return Err(PinError::Wait { retry_after_ms });
            }
            Reservation::Disabled => "two_step_off",
            Reservation::Go {
                pin_hash, attempt, ..
            } => {
                if !self.verify(pin, pin_hash).await? {
                    refused("mismatch").await?;
                    return Err(self
                        .wrong_pin(holder, Who::another_account(), held, attempt)
                        .await?);
                }
                "holder_pin"
            }
        };
        let from = NumberRef {
            account: holder,
            id: held,
        };
        let record = match self.store.transfer(from, &new).await? {
            TransferOutcome::Transferred(record) => record,
            TransferOutcome::Lost => return Err(PinError::HeldElsewhere),
        };
        self.metrics.pin_checked("transferred");
        self.audit(
            holder,
            Who::another_account(),
            action::TRANSFERRED_OUT,
            held,
            json!({"phone_number": number.masked(), "via": via}),
        )
        .await?;
        self.audit(
            account,
            who,
            action::TRANSFERRED_IN,
            &record.id,
            json!({"phone_number": number.masked(), "two_step": "enabled", "via": via}),
        )
        .await?;
        tracing::info!(account = %account, number = %record.id, via, "phone number transferred from another account");
        Ok(record)
    }

    pub async fn number(
        &self,
        account: &AccountId,
        role: Role,
        id: &PhoneNumberId,
    ) -> Result<NumberRecord, PinError> {
        Self::allowed(role, Permission::ManagePhoneNumbers)?;
        self.record(account, id).await
    }

    /// One page of the account's numbers by id (strictly after `after`, at most `limit`).
    pub async fn numbers(
        &self,
        account: &AccountId,
        role: Role,
        after: Option<&PhoneNumberId>,
        limit: usize,
    ) -> Result<Vec<NumberRecord>, PinError> {
        Self::allowed(role, Permission::ManagePhoneNumbers)?;
        Ok(self.store.list(account, after, limit).await?)
    }

    /// Sets or changes the PIN (turning two-step on if it was off). On a locked number only the
    /// owner or an admin may, and doing so unlocks it.
    pub async fn set_pin(
        &self,
        account: &AccountId,
        who: Who,
        role: Role,
        id: &PhoneNumberId,
        pin: &Pin,
        via: &'static str,
    ) -> Result<NumberRecord, PinError> {
        Self::allowed(role, Permission::SetPins)?;
        let current = self.checked_against(account, id, pin).await?;
        if current.locked(&self.settings.limits) && !Permission::UnlockNumbers.allows(role) {
            return Err(PinError::Locked);
        }
        let pin_hash = self.hash(pin).await?;
        let outcome = self
            .store
            .write_pin(&PinWrite {
                number: NumberRef { account, id },
                pin_hash: &pin_hash,
                mode: PinWriteMode::Set {
                    unlock: Permission::UnlockNumbers.allows(role),
                },
                limits: self.settings.limits,
                now_ms: self.now(),
            })
            .await?;
        match outcome {
            PinWriteOutcome::Written {
                was_enabled,
                was_locked,
                record,
            } => {
                let what = if was_enabled {
                    action::PIN_CHANGED
                } else {
                    action::ENABLED
                };
                self.audit(
                    account,
                    who,
                    what,
                    id,
                    json!({"via": via, "unlocked": was_locked}),
                )
                .await?;
                tracing::info!(account = %account, number = %id, unlocked = was_locked, "two-step PIN set");
                let to = Some(record.e164.as_str());
                self.events
                    .pin(account, EventType::PinChanged, id.as_str(), to);
                Ok(record)
            }
            PinWriteOutcome::Locked => Err(PinError::Locked),
            PinWriteOutcome::NotFound => Err(PinError::NotFound),
            PinWriteOutcome::Enabled => Err(PinError::Changed),
        }
    }

    /// Registration: needs the PIN while two-step is on (wrong PINs limited); with two-step
    /// off, the PIN given becomes the number's PIN (the Graph API's register semantics).
    pub async fn register(
        &self,
        account: &AccountId,
        who: Who,
        role: Role,
        id: &PhoneNumberId,
        pin: &Pin,
    ) -> Result<Registered, PinError> {
        Self::allowed(role, Permission::RegisterNumbers)?;
        let number = NumberRef { account, id };
        // Two rounds at most: two-step may come on between "it is off" and the write.
        for _ in 0..2 {
            match self.store.reserve_attempt(self.attempt(number)).await? {
                Reservation::NotFound => return Err(PinError::NotFound),
                Reservation::Locked => {
                    self.metrics.pin_checked("locked");
                    return Err(PinError::Locked);
                }
                Reservation::Wait { retry_after_ms } => {
                    self.metrics.pin_checked("wait");
                    return Err(PinError::Wait { retry_after_ms });
                }
                Reservation::Go {
                    pin_hash,
                    attempt,
                    pin_version,
                } => {
                    if self.verify(pin, pin_hash).await? {
                        if !self
                            .store
                            .attempt_succeeded(Matched {
                                number,
                                pin_version,
                                now_ms: self.now(),
                            })
                            .await?
                        {
                            self.metrics.pin_checked("changed");
                            return Err(PinError::Changed);
                        }
                        self.metrics.pin_checked("match");
                        self.audit(account, who, action::NUMBER_REGISTERED, id, json!({}))
                            .await?;
                        return Ok(Registered::PinMatched);
                    }
                    self.metrics.pin_checked("mismatch");
                    return Err(self.wrong_pin(account, who, id, attempt).await?);
                }
                Reservation::Disabled => {
                    self.checked_against(account, id, pin).await?;
                    let pin_hash = self.hash(pin).await?;
                    match self
                        .store
                        .write_pin(&PinWrite {
                            number,
                            pin_hash: &pin_hash,
                            mode: PinWriteMode::EnableOnRegister,
                            limits: self.settings.limits,
                            now_ms: self.now(),
                        })
                        .await?
                    {
                        PinWriteOutcome::Written { .. } => {
                            self.metrics.pin_checked("disabled");
                            self.audit(
                                account,
                                who.clone(),
                                action::ENABLED,
                                id,
                                json!({"via": "register"}),
                            )
                            .await?;
                            self.audit(account, who, action::NUMBER_REGISTERED, id, json!({}))
                                .await?;
                            return Ok(Registered::TwoStepEnabled);
                        }
                        PinWriteOutcome::Enabled => continue,
                        PinWriteOutcome::NotFound => return Err(PinError::NotFound),
                        PinWriteOutcome::Locked => return Err(PinError::Locked),
                    }
                }
            }
        }
        Err(PinError::Changed)
    }

    /// A wrong PIN, counted by the store as `attempt`: at the last allowed failure the number
    /// locks (metric, log and audit on the number's account). The answer says how many tries
    /// are left and how long to wait; an error only when the audit cannot be written.
    async fn wrong_pin(
        &self,
        account: &AccountId,
        who: Who,
        id: &PhoneNumberId,
        attempt: u32,
    ) -> Result<PinError, PinError> {
        let limits = self.settings.limits;
        if limits.locks(attempt) {
            self.metrics.pin_locked();
            tracing::warn!(account = %account, number = %id, "phone number locked after {attempt} wrong PINs");
            self.audit(
                account,
                who,
                action::LOCKED,
                id,
                json!({"consecutive_failures": attempt}),
            )
            .await?;
            self.events
                .pin(account, EventType::PinLocked, id.as_str(), None);
        }
        Ok(PinError::Mismatch {
            attempts_left: (limits.lock_after).map_or(u32::MAX, |max| max.saturating_sub(attempt)),
            retry_after_ms: limits.wait_after(attempt),
        })
    }

    async fn record(
        &self,
        account: &AccountId,
        id: &PhoneNumberId,
    ) -> Result<NumberRecord, PinError> {
        (self.store.get(NumberRef { account, id }).await?).ok_or(PinError::NotFound)
    }

    /// The number's record, once `pin` is checked against it (a PIN may not spell the number).
    async fn checked_against(
        &self,
        account: &AccountId,
        id: &PhoneNumberId,
        pin: &Pin,
    ) -> Result<NumberRecord, PinError> {
        let current = self.record(account, id).await?;
        pin.check_against_number(&current.e164)
            .map_err(PinError::BadPin)?;
        Ok(current)
    }

    /// The support command's disable, on the owner's behalf: audited before it happens (a
    /// failed audit write changes nothing), then the same effect as a disable link.
    pub async fn support_disable(
        &self,
        account: &AccountId,
        id: &PhoneNumberId,
        operator: &str,
        reason: &str,
    ) -> Result<String, PinError> {
        let current = self.record(account, id).await?;
        if !current.two_step {
            return Err(PinError::AlreadyDisabled);
        }
        let who = Who {
            key_id: "support-command".into(),
            role: "support".into(),
            acting_user: Some(operator.to_owned()),
        };
        self.audit(
            account,
            who,
            action::SUPPORT_DISABLED,
            id,
            json!({"reason": reason, "operator": operator}),
        )
        .await?;
        match self
            .store
            .disable(NumberRef { account, id }, self.now())
            .await?
        {
            DisableOutcome::Disabled { e164, .. } => {
                self.metrics.two_step_link_used("support", "used");
                self.events
                    .pin(account, EventType::PinDisabled, id.as_str(), Some(&e164));
                Ok(mask(&e164))
            }
            DisableOutcome::AlreadyDisabled => Err(PinError::AlreadyDisabled),
            DisableOutcome::NotFound => Err(PinError::NotFound),
        }
    }

    pub async fn set_email(&self, account: &AccountId, email: &str) -> Result<(), PinError> {
        Ok(self.store.set_email(account, email).await?)
    }

    pub async fn email(&self, account: &AccountId) -> Result<Option<String>, PinError> {
        Ok(self.store.email(account).await?)
    }
}
