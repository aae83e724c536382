//! `PinService`: what the handlers and the support command call. It decides who may do what,
//! hashes PINs off the async worker threads, runs the store's atomic steps, sends the e-mailed
//! links, counts metrics and writes the audit trail.
//!
//! Who may do what (key roles): owner, admin and partner keys add numbers, set or change PINs
//! and register numbers; only owner and admin keys ask for disable and reset links, and only
//! they unlock a locked number by setting a new PIN; a partner's request for a link is refused
//! (403) and audited. Service keys (login services) have no business with phone numbers: 403.
//! Nobody disables two-step through the API: only an e-mailed link or the support command does.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ring::digest;
use ring::rand::SystemRandom;
use serde_json::json;

use super::hash::{HashCost, HashError, PinHasher};
use super::store::{
    CreateOutcome, DisableOutcome, LinkInfo, LinkIssue, LinkUse, NewLink, NewNumber, NumberRecord,
    PinStore, PinWriteMode, PinWriteOutcome, Reservation, TransferOutcome,
};
use super::{action, AttemptLimits, LinkPurpose, PhoneNumberId, Pin, PinRefusal};
use crate::account::store::Directory;
use crate::account::{hex, AccountId, Role};
use crate::audit::{AuditEntry, Who};
use crate::clock::Clock;
use crate::mail::{Mail, MailError, Mailer};
use crate::metrics::Metrics;
use crate::phone::{mask, PhoneNumber};
use crate::store::StoreError;
use crate::verify::code::random_bytes;

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

/// Roles that manage phone numbers: add them, set PINs, register them.
pub const MANAGE: &[Role] = &[Role::Owner, Role::Admin, Role::Partner];
/// Roles that may ask for a disable or reset link, and unlock a locked number.
pub const OWNERS: &[Role] = &[Role::Owner, Role::Admin];

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

/// A link's consequence, for the answer to whoever opened it.
#[derive(Debug, Clone)]
pub struct LinkDone {
    pub account: AccountId,
    pub number: PhoneNumberId,
    pub masked: String,
}

/// A link was sent: where (masked) and until when it works.
#[derive(Debug, Clone)]
pub struct LinkSent {
    pub sent_to: String,
    pub expires_ms: u64,
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
    store: Arc<dyn PinStore>,
    hasher: Arc<PinHasher>,
    mailer: Arc<dyn Mailer>,
    directory: Arc<dyn Directory>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    rng: SystemRandom,
    settings: PinSettings,
    link_base_url: String,
    /// Hashes in flight at once: each takes `memory_kib` of memory and a core for tens of
    /// milliseconds, so a flood of PIN requests waits here instead of filling the blocking pool
    /// (up to 512 threads) with 19 MiB each.
    hashing: tokio::sync::Semaphore,
}

/// Who opened an e-mailed link, in audit entries: the holder of the account's mailbox.
fn link_holder() -> Who {
    Who {
        key_id: "email-link".into(),
        role: "mailbox".into(),
        acting_user: None,
    }
}

fn target(id: &PhoneNumberId) -> String {
    format!("phone_number:{}", id.as_str())
}

impl PinService {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<dyn PinStore>,
        hasher: Arc<PinHasher>,
        mailer: Arc<dyn Mailer>,
        directory: Arc<dyn Directory>,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
        settings: PinSettings,
        link_base_url: &str,
    ) -> Self {
        Self {
            store,
            hasher,
            mailer,
            directory,
            clock,
            metrics,
            rng: SystemRandom::new(),
            settings,
            link_base_url: link_base_url.trim_end_matches('/').to_owned(),
            hashing: tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, |cores| cores.get() * 2),
            ),
        }
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

    fn now(&self) -> u64 {
        self.clock.now_ms()
    }

    async fn audit(
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
    async fn hash(&self, pin: &Pin) -> Result<String, PinError> {
        let hasher = self.hasher.clone();
        let pin = pin.clone();
        let _permit =
            self.hashing.acquire().await.map_err(|_| {
                PinError::Hash(HashError::Argon2("the hashing gate is closed".into()))
            })?;
        let started = Instant::now();
        let hashed = tokio::task::spawn_blocking(move || hasher.hash(&pin))
            .await
            .map_err(|_| PinError::Hash(HashError::Argon2("the hashing task died".into())))?
            .map_err(PinError::Hash);
        self.metrics.pin_hash_time(started.elapsed());
        hashed
    }

    async fn verify(&self, pin: &Pin, stored: String) -> Result<bool, PinError> {
        let hasher = self.hasher.clone();
        let pin = pin.clone();
        let _permit =
            self.hashing.acquire().await.map_err(|_| {
                PinError::Hash(HashError::Argon2("the hashing gate is closed".into()))
            })?;
        let started = Instant::now();
        let verified = tokio::task::spawn_blocking(move || hasher.verify(&pin, &stored))
            .await
            .map_err(|_| PinError::Hash(HashError::Argon2("the hashing task died".into())))?
            .map_err(PinError::Hash);
        self.metrics.pin_hash_time(started.elapsed());
        verified
    }

    fn allowed(role: Role, roles: &[Role], what: &'static str) -> Result<(), PinError> {
        if roles.contains(&role) {
            Ok(())
        } else {
            Err(PinError::Forbidden(what))
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
        Self::allowed(
            role,
            MANAGE,
            "only owner, admin and partner keys manage phone numbers",
        )?;
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
                    return self
                        .claim(account, who, number, pin, new, &holder, &held)
                        .await;
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
    /// answers never name the holder or its id.
    #[allow(clippy::too_many_arguments)]
    async fn claim(
        &self,
        account: &AccountId,
        who: Who,
        number: &PhoneNumber,
        pin: &Pin,
        new: NewNumber,
        holder: &AccountId,
        held: &PhoneNumberId,
    ) -> Result<NumberRecord, PinError> {
        let limits = self.settings.limits;
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
            .reserve_attempt(holder, held, &limits, self.now())
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
                    if attempt >= limits.max_failures {
                        self.metrics.pin_locked();
                        tracing::warn!(account = %holder, number = %held, "phone number locked after {attempt} wrong PINs");
                        self.audit(
                            holder,
                            Who::another_account(),
                            action::LOCKED,
                            held,
                            json!({"consecutive_failures": attempt}),
                        )
                        .await?;
                    }
                    return Err(PinError::Mismatch {
                        attempts_left: limits.max_failures.saturating_sub(attempt),
                        retry_after_ms: limits.wait_after(attempt).as_millis() as u64,
                    });
                }
                "holder_pin"
            }
        };
        let record = match self.store.transfer(holder, held, &new).await? {
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
        Self::allowed(
            role,
            MANAGE,
            "only owner, admin and partner keys manage phone numbers",
        )?;
        self.store.get(account, id).await?.ok_or(PinError::NotFound)
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
        Self::allowed(
            role,
            MANAGE,
            "only owner, admin and partner keys set two-step PINs",
        )?;
        let current = self
            .store
            .get(account, id)
            .await?
            .ok_or(PinError::NotFound)?;
        pin.check_against_number(&current.e164)
            .map_err(PinError::BadPin)?;
        if current.locked(&self.settings.limits) && !OWNERS.contains(&role) {
            return Err(PinError::Locked);
        }
        let pin_hash = self.hash(pin).await?;
        let outcome = self
            .store
            .write_pin(
                account,
                id,
                &pin_hash,
                PinWriteMode::Set {
                    unlock: OWNERS.contains(&role),
                },
                &self.settings.limits,
                self.now(),
            )
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
        Self::allowed(
            role,
            MANAGE,
            "only owner, admin and partner keys register phone numbers",
        )?;
        let limits = self.settings.limits;
        // Two rounds at most: two-step may come on between "it is off" and the write.
        for _ in 0..2 {
            match self
                .store
                .reserve_attempt(account, id, &limits, self.now())
                .await?
            {
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
                            .attempt_succeeded(account, id, pin_version, self.now())
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
                    if attempt >= limits.max_failures {
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
                    }
                    return Err(PinError::Mismatch {
                        attempts_left: limits.max_failures.saturating_sub(attempt),
                        retry_after_ms: limits.wait_after(attempt).as_millis() as u64,
                    });
                }
                Reservation::Disabled => {
                    let current = self
                        .store
                        .get(account, id)
                        .await?
                        .ok_or(PinError::NotFound)?;
                    pin.check_against_number(&current.e164)
                        .map_err(PinError::BadPin)?;
                    let pin_hash = self.hash(pin).await?;
                    match self
                        .store
                        .write_pin(
                            account,
                            id,
                            &pin_hash,
                            PinWriteMode::EnableOnRegister,
                            &limits,
                            self.now(),
                        )
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

    /// Asks for a disable or reset link, e-mailed to the account's address. Only the owner and
    /// admins may; anyone else is refused and the refusal is audited.
    pub async fn request_link(
        &self,
        account: &AccountId,
        who: Who,
        role: Role,
        id: &PhoneNumberId,
        purpose: LinkPurpose,
    ) -> Result<LinkSent, PinError> {
        if !OWNERS.contains(&role) {
            let what = match purpose {
                LinkPurpose::Disable => action::DISABLE_REFUSED,
                LinkPurpose::Reset => action::RESET_REFUSED,
            };
            self.metrics
                .two_step_link_request(purpose.as_str(), "refused");
            tracing::warn!(account = %account, number = %id, role = role.as_str(), "two-step {} link refused", purpose.as_str());
            self.audit(
                account,
                who,
                what,
                id,
                json!({"role": role.as_str(), "reason": "only the owner or an admin may ask"}),
            )
            .await?;
            return Err(PinError::Forbidden(match purpose {
                LinkPurpose::Disable => "only the number's owner or an account admin may ask to turn two-step verification off; a partner never may",
                LinkPurpose::Reset => "only the number's owner or an account admin may ask for a PIN reset link",
            }));
        }
        let Some(email) = self.store.email(account).await? else {
            self.metrics
                .two_step_link_request(purpose.as_str(), "no_email");
            return Err(PinError::NoEmail);
        };
        let secret = random_bytes::<32>(&self.rng).map_err(|_| PinError::Random)?;
        let token = encode_token(account, &secret);
        let digest = token_digest(&token);
        let now = self.now();
        let ttl = self.settings.link_ttl.as_millis() as u64;
        let e164 = match self
            .store
            .issue_link(
                account,
                id,
                &NewLink {
                    purpose,
                    digest,
                    now_ms: now,
                    ttl_ms: ttl,
                },
            )
            .await?
        {
            LinkIssue::Issued { e164 } => e164,
            LinkIssue::AlreadyDisabled => return Err(PinError::AlreadyDisabled),
            LinkIssue::NotFound => return Err(PinError::NotFound),
        };
        let mail = self.link_mail(&email, role, id, &e164, purpose, &token);
        if let Err(error) = self.mailer.send(&mail).await {
            self.metrics
                .two_step_link_request(purpose.as_str(), "mail_failed");
            tracing::error!(%error, account = %account, "the two-step link could not be mailed");
            return Err(PinError::Mail(error));
        }
        self.metrics.two_step_link_request(purpose.as_str(), "sent");
        let what = match purpose {
            LinkPurpose::Disable => action::DISABLE_REQUESTED,
            LinkPurpose::Reset => action::RESET_REQUESTED,
        };
        let sent_to = mask_email(&email);
        self.audit(
            account,
            who,
            what,
            id,
            json!({"sent_to": sent_to, "expires_ms": now + ttl}),
        )
        .await?;
        Ok(LinkSent {
            sent_to,
            expires_ms: now + ttl,
        })
    }

    fn link_mail(
        &self,
        to: &str,
        role: Role,
        id: &PhoneNumberId,
        e164: &str,
        purpose: LinkPurpose,
        token: &str,
    ) -> Mail {
        let hours = self.settings.link_ttl.as_secs() / 3600;
        let (subject, path, what, unless) = match purpose {
            LinkPurpose::Disable => (
                format!("Turn off two-step verification for {}", mask(e164)),
                "confirm",
                "turn off two-step verification",
                "two-step verification stays on, and nobody can turn it off without this link",
            ),
            LinkPurpose::Reset => (
                format!("Reset the two-step PIN of {}", mask(e164)),
                "reset",
                "set a new two-step PIN without the old one (POST {\"pin\":\"<6 digits>\"} to the link)",
                "the PIN stays as it is",
            ),
        };
        Mail {
            to: to.to_owned(),
            subject,
            body: format!(
                "An {role} key of your otpgate account asked to {what} for the phone number {masked} (id {id}).\n\n\
                 Open this link within {hours} hours to do it; it works once:\n\n{base}/v1/two-step/{path}?token={token}\n\n\
                 If you did not ask for this, ignore this mail: {unless}.\n",
                role = role.as_str(),
                masked = mask(e164),
                base = self.link_base_url,
            ),
        }
    }

    /// What a link is, without using it (for a page that asks for the new PIN).
    pub async fn peek_link(&self, token: &str) -> Result<(LinkInfo, String), PinError> {
        let (account, digest) = decode_token(token).ok_or(PinError::LinkUnknown)?;
        let info = self
            .store
            .peek_link(&account, &digest)
            .await?
            .ok_or(PinError::LinkUnknown)?;
        if info.used {
            return Err(PinError::LinkUsed);
        }
        if self.now() >= info.expires_ms {
            return Err(PinError::LinkExpired);
        }
        let masked = self
            .store
            .get(&account, &info.number)
            .await?
            .map(|record| mask(&record.e164))
            .ok_or(PinError::LinkUnknown)?;
        Ok((info, masked))
    }

    /// Opens a disable link: two-step goes off, once.
    pub async fn use_disable_link(&self, token: &str) -> Result<LinkDone, PinError> {
        self.use_link(token, LinkPurpose::Disable, None).await
    }

    /// Opens a reset link with the new PIN: it is set (and the number unlocked), once.
    pub async fn use_reset_link(&self, token: &str, pin: &Pin) -> Result<LinkDone, PinError> {
        let (info, _) = self.peek_link(token).await?;
        if info.purpose != LinkPurpose::Reset {
            return Err(PinError::LinkUnknown);
        }
        // Checked before the slow hash, so unknown tokens cost a store read, not a hash.
        let (account, _) = decode_token(token).ok_or(PinError::LinkUnknown)?;
        let record = self
            .store
            .get(&account, &info.number)
            .await?
            .ok_or(PinError::LinkUnknown)?;
        pin.check_against_number(&record.e164)
            .map_err(PinError::BadPin)?;
        let pin_hash = self.hash(pin).await?;
        self.use_link(token, LinkPurpose::Reset, Some(&pin_hash))
            .await
    }

    async fn use_link(
        &self,
        token: &str,
        purpose: LinkPurpose,
        new_pin_hash: Option<&str>,
    ) -> Result<LinkDone, PinError> {
        let (account, digest) = decode_token(token).ok_or(PinError::LinkUnknown)?;
        let outcome = self
            .store
            .use_link(&account, &digest, purpose, new_pin_hash, self.now())
            .await?;
        let outcome_label = match &outcome {
            LinkUse::Done { .. } => "used",
            LinkUse::Unknown => "unknown",
            LinkUse::Used => "replayed",
            LinkUse::Expired => "expired",
            LinkUse::Superseded => "superseded",
            LinkUse::AlreadyDisabled { .. } => "already_disabled",
        };
        self.metrics
            .two_step_link_used(purpose.as_str(), outcome_label);
        match outcome {
            LinkUse::Done {
                number,
                e164,
                was_locked,
            } => {
                let what = match purpose {
                    LinkPurpose::Disable => action::DISABLED,
                    LinkPurpose::Reset => action::PIN_RESET,
                };
                self.audit(
                    &account,
                    link_holder(),
                    what,
                    &number,
                    json!({"via": "email-link", "unlocked": was_locked}),
                )
                .await?;
                tracing::info!(account = %account, number = %number, "two-step {} link used", purpose.as_str());
                Ok(LinkDone {
                    account,
                    number,
                    masked: mask(&e164),
                })
            }
            LinkUse::AlreadyDisabled { .. } => Err(PinError::AlreadyDisabled),
            LinkUse::Unknown => Err(PinError::LinkUnknown),
            LinkUse::Used => Err(PinError::LinkUsed),
            LinkUse::Expired => Err(PinError::LinkExpired),
            LinkUse::Superseded => Err(PinError::LinkSuperseded),
        }
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
        let current = self
            .store
            .get(account, id)
            .await?
            .ok_or(PinError::NotFound)?;
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
        match self.store.disable(account, id, self.now()).await? {
            DisableOutcome::Disabled { e164, .. } => {
                self.metrics.two_step_link_used("support", "used");
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

/// A link's token: base64url of the account id's 16 bytes and 32 random bytes (256 bits). The
/// account part only routes the token to its account's slot; the secret part is what counts.
fn encode_token(account: &AccountId, secret: &[u8; 32]) -> String {
    let mut bytes = Vec::with_capacity(48);
    bytes.extend_from_slice(
        &data_encoding::HEXLOWER
            .decode(account.as_str()[2..].as_bytes())
            .unwrap_or_default(),
    );
    bytes.extend_from_slice(secret);
    data_encoding::BASE64URL_NOPAD.encode(&bytes)
}

/// The account and the stored digest (SHA-256: the token has full entropy, so a slow hash would
/// buy nothing) of a token, when it has the right shape.
fn decode_token(token: &str) -> Option<(AccountId, [u8; 32])> {
    if token.len() != 64 {
        return None;
    }
    let bytes = data_encoding::BASE64URL_NOPAD
        .decode(token.as_bytes())
        .ok()?;
    if bytes.len() != 48 {
        return None;
    }
    let account = AccountId::parse(&format!("AC{}", hex(&bytes[..16])))?;
    Some((account, token_digest(token)))
}

fn token_digest(token: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, token.as_bytes()).as_ref());
    out
}

/// `o***r@example.com`: enough to recognise one's own address.
pub fn mask_email(email: &str) -> String {
    match email.split_once('@') {
        Some((local, domain)) if local.chars().count() > 2 => {
            let first = local.chars().next().unwrap_or('*');
            let last = local.chars().last().unwrap_or('*');
            format!("{first}***{last}@{domain}")
        }
        Some((_, domain)) => format!("***@{domain}"),
        None => "***".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_route_to_their_account_and_refuse_other_shapes() {
        let rng = SystemRandom::new();
        let account = AccountId::random(&rng).unwrap();
        let secret = random_bytes::<32>(&rng).unwrap();
        let token = encode_token(&account, &secret);
        assert_eq!(token.len(), 64);
        let (decoded, digest) = decode_token(&token).unwrap();
        assert_eq!(decoded, account);
        assert_eq!(digest, token_digest(&token));
        assert!(decode_token(&token[1..]).is_none());
        assert!(decode_token(&format!("{}!", &token[1..])).is_none());
    }

    #[test]
    fn emails_are_masked() {
        assert_eq!(mask_email("owner@example.com"), "o***r@example.com");
        assert_eq!(mask_email("ab@example.com"), "***@example.com");
    }
}
