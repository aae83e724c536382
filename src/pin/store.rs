//! The PIN store seam: phone numbers, their PIN state, e-mailed links, and accounts' e-mail
//! addresses. Each method is one atomic step (one Lua script in Redis, one lock in memory), so
//! wrong PINs are counted exactly across instances.
//!
//! A PIN check is two steps around the slow hash: `reserve_attempt` counts the attempt as a
//! failure *before* the hash is compared (and sets the next wait, or the lock, as if it failed),
//! then `attempt_succeeded` clears the count when the PIN matched. So concurrent guesses can
//! never evaluate more PINs than the limit allows, and a crash between the steps counts a
//! failure (fail closed).

use async_trait::async_trait;

use super::{AttemptLimits, LinkPurpose, PhoneNumberId};
use crate::account::AccountId;
use crate::store::StoreError;

/// A used or expired link is still recognised (410 rather than 404) this long after expiry.
pub const LINK_RETENTION_MS: u64 = 24 * 3600 * 1000;

/// One phone number of one account: the number a step touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NumberRef<'a> {
    pub account: &'a AccountId,
    pub id: &'a PhoneNumberId,
}

/// A phone number as stored (never the PIN: its hash stays in the store except for checks).

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberRecord {
    pub id: PhoneNumberId,
    pub e164: String,
    pub two_step: bool,
    /// Consecutive wrong PINs (counting attempts in flight).
    pub failures: u32,
    /// No attempt is taken before this time (0: none).
    pub next_attempt_ms: u64,
    /// When the number was locked by wrong PINs (0: not locked).
    pub locked_ms: u64,
    pub registered_ms: u64,
    pub created_ms: u64,
    pub updated_ms: u64,
    /// When the pending disable and reset links expire (0: none pending).
    pub disable_link_expires_ms: u64,
    pub reset_link_expires_ms: u64,
}

impl NumberRecord {
    pub fn locked(&self, limits: &AttemptLimits) -> bool {
        limits.locks(self.failures)
    }
}

#[derive(Debug, Clone)]
pub struct NewNumber {
    pub account: AccountId,
    pub id: PhoneNumberId,
    pub e164: String,
    pub pin_hash: String,
    pub now_ms: u64,
    /// The embedded store refuses new numbers beyond this many.
    pub max_numbers: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateOutcome {
    Created(NumberRecord),
    /// The account already has this number, under this id.
    Exists(PhoneNumberId),
    /// The random id is taken (draw another).
    IdTaken,
    /// Another account holds this number (the gateway-wide registry, issue 14): only its PIN,
    /// or its owner's disabling two-step first, moves it (`PinStore::transfer`). Never shown to
    /// the caller: the answer must not say which account holds the number.
    HeldElsewhere {
        account: AccountId,
        id: PhoneNumberId,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferOutcome {
    /// The number left the holder's account and is now `new`'s, with `new.pin_hash`.
    Transferred(NumberRecord),
    /// The registry no longer names that holder: a concurrent claim won.
    Lost,
}

/// How a PIN is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinWriteMode {
    /// Sets or changes the PIN (and turns two-step on). A locked number is unlocked only when
    /// `unlock` is true (the owner or an admin acts); otherwise the write is refused.
    Set { unlock: bool },
    /// Registration of a number whose two-step is off: the PIN given becomes its PIN and the
    /// number is marked registered. Refused (`Enabled`) if two-step came on meanwhile.
    EnableOnRegister,
}

/// A PIN to write (its hash) to a number, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinWrite<'a> {
    pub number: NumberRef<'a>,
    pub pin_hash: &'a str,
    pub mode: PinWriteMode,
    /// The wrong-PIN limits, which say whether the number is locked (then only an unlocking
    /// `Set` writes).
    pub limits: AttemptLimits,
    pub now_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinWriteOutcome {
    Written {
        was_enabled: bool,
        was_locked: bool,
        record: NumberRecord,
    },
    Locked,
    Enabled,
    NotFound,
}

/// One PIN attempt on a number, to count at `now_ms` under `limits`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinAttempt<'a> {
    pub number: NumberRef<'a>,
    pub limits: AttemptLimits,
    pub now_ms: u64,
}

/// A reserved attempt whose PIN matched: the number, the PIN version it was compared against,
/// and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Matched<'a> {
    pub number: NumberRef<'a>,
    pub pin_version: u64,
    pub now_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reservation {
    /// Compare the PIN against `pin_hash`; this is attempt number `attempt` in a row.
    Go {
        pin_hash: String,
        attempt: u32,
        pin_version: u64,
    },
    /// Two-step is off: registration sets a new PIN instead.
    Disabled,
    Wait {
        retry_after_ms: u64,
    },
    Locked,
    NotFound,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkIssue {
    Issued {
        e164: String,
    },
    /// Asking to disable what is already off.
    AlreadyDisabled,
    NotFound,
}

/// An e-mailed link to issue for a number: what it does, the digest of its token, and how long
/// it lives from `now_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewLink<'a> {
    pub number: NumberRef<'a>,
    pub purpose: LinkPurpose,
    pub digest: [u8; 32],
    pub now_ms: u64,
    pub ttl_ms: u64,
}

/// What a pending link is, read without using it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    pub number: PhoneNumberId,
    pub purpose: LinkPurpose,
    pub expires_ms: u64,
    pub used: bool,
}

/// An e-mailed link of an account being opened: its digest, what the opener asks it to do, and
/// the new PIN's hash for a reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkOpening<'a> {
    pub account: &'a AccountId,
    pub digest: &'a [u8; 32],
    pub purpose: LinkPurpose,
    pub new_pin_hash: Option<&'a str>,
    pub now_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkUse {
    /// Done: two-step is off (disable) or the new PIN is set (reset).
    Done {
        number: PhoneNumberId,
        e164: String,
        was_locked: bool,
    },
    Unknown,
    Used,
    Expired,
    /// A newer link for the same number and purpose replaced this one.
    Superseded,
    AlreadyDisabled {
        number: PhoneNumberId,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisableOutcome {
    Disabled { e164: String, was_locked: bool },
    AlreadyDisabled,
    NotFound,
}

#[async_trait]
pub trait PinStore: Send + Sync + 'static {
    async fn create(&self, new: &NewNumber) -> Result<CreateOutcome, StoreError>;

    /// Moves a number another account holds (`from`) to `new.account` (its PIN matched, or
    /// its two-step is off): the registry names the new holder first (the one step that
    /// decides a race: exactly one concurrent claim wins), then the holder's record goes and
    /// the new record is written.
    async fn transfer(
        &self,
        from: NumberRef<'_>,
        new: &NewNumber,
    ) -> Result<TransferOutcome, StoreError>;

    async fn get(&self, number: NumberRef<'_>) -> Result<Option<NumberRecord>, StoreError>;

    /// The account's numbers in the order of their ids, strictly after `after` when given, at
    /// most `limit`: one page, read from the account's own index (no scan of every key).
    async fn list(
        &self,
        account: &AccountId,
        after: Option<&PhoneNumberId>,
        limit: usize,
    ) -> Result<Vec<NumberRecord>, StoreError>;

    async fn write_pin(&self, write: &PinWrite<'_>) -> Result<PinWriteOutcome, StoreError>;

    /// Counts one attempt before the PIN is compared (see the module doc).
    async fn reserve_attempt(&self, attempt: PinAttempt<'_>) -> Result<Reservation, StoreError>;

    /// The reserved attempt matched: clears the count and the wait and marks the number
    /// registered, unless the PIN changed since (`false`).
    async fn attempt_succeeded(&self, matched: Matched<'_>) -> Result<bool, StoreError>;

    /// Stores a link's digest for the number, replacing any earlier link of that purpose.
    async fn issue_link(&self, link: &NewLink<'_>) -> Result<LinkIssue, StoreError>;

    async fn peek_link(
        &self,
        account: &AccountId,
        digest: &[u8; 32],
    ) -> Result<Option<LinkInfo>, StoreError>;

    /// Uses a link once: disables two-step, or sets the new PIN (reset).
    async fn use_link(&self, opening: &LinkOpening<'_>) -> Result<LinkUse, StoreError>;

    /// The operator's disable (the support command): no link, same effect.
    async fn disable(
        &self,
        number: NumberRef<'_>,
        now_ms: u64,
    ) -> Result<DisableOutcome, StoreError>;

    async fn set_email(&self, account: &AccountId, email: &str) -> Result<(), StoreError>;

    async fn email(&self, account: &AccountId) -> Result<Option<String>, StoreError>;

    /// Forgets expired links (the embedded store; Redis expires them itself).
    fn sweep(&self, _now_ms: u64) {}
}
