//! The abuse store seam: the pumping guard's counters, its cool-downs and the daily caps of
//! every account. `admit_send` is one atomic step (one Lua script on the account's slot in
//! Redis, one lock in memory): it checks the caps, the cool-downs and the guard and, when it
//! admits, counts the send, so the send path pays one round trip for all of it.

use std::collections::BTreeMap;

use async_trait::async_trait;

use super::guard::Thresholds;
use super::prefix::Prefix;
use super::settings::DailyCaps;
use crate::phone::Region;
use crate::store::StoreError;

/// What `admit_send` decides on. Geo permissions and number types are checked before (they
/// need no store); the safe list too (`guarded`).
#[derive(Debug, Clone)]
pub struct SendCheck<'a> {
    /// The account's id (`AC…`): abuse protection keys its counters by it and needs nothing
    /// else of the account (so that the account's policy can carry [`super::AbusePolicy`]).
    pub account: &'a str,
    pub country: Region,
    pub prefix: Prefix,
    /// False for a safe-listed destination: the caps count it, the guard neither checks nor
    /// counts it (so a test team's phones never throttle their prefix for everyone else).
    pub guarded: bool,
    pub prefix_rules: Thresholds,
    pub country_rules: Thresholds,
    pub caps: DailyCaps,
    pub now_ms: u64,
}

/// An approved verification, as `record_approval` counts it.
#[derive(Debug, Clone, Copy)]
pub struct Approval<'a> {
    pub account: &'a str,
    pub country: Region,
    pub prefix: &'a Prefix,
    pub now_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Counted; go on and store the verification.
    Admitted,
    /// Nothing was counted.
    Refused(Block),
}

/// Why a send was refused, and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub rule: BlockRule,
    /// What is blocked: the prefix, the country, or (the overall cap) the account.
    pub scope: Scope,
    /// The destination's country (also for a prefix's or the account's block).
    pub country: Region,
    /// The destination's prefix when the prefix is blocked.
    pub prefix: Option<Prefix>,
    pub retry_after_ms: u64,
    /// This refusal started the block: a cool-down that began now, or the first refusal by a
    /// daily cap today. The send path writes the audit entry and counts
    /// `otpgate_abuse_blocks_total` on exactly these.
    pub started: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BlockRule {
    SuspectedPumping,
    DailyMessageCap,
}

impl BlockRule {
    /// The name in problem bodies and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            BlockRule::SuspectedPumping => "suspected-pumping",
            BlockRule::DailyMessageCap => "daily-message-cap",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    Prefix,
    Country,
    Account,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Prefix => "prefix",
            Scope::Country => "country",
            Scope::Account => "account",
        }
    }
}

/// One account's messages of one UTC day, and its cool-downs running now.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Usage {
    /// Days since the Unix epoch (UTC).
    pub day: u64,
    pub total: u64,
    pub countries: BTreeMap<Region, u64>,
    /// Sorted by scope, then country, then prefix.
    pub blocks: Vec<ActiveBlock>,
}

/// A cool-down running.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ActiveBlock {
    pub scope: Scope,
    pub country: Region,
    pub prefix: Option<Prefix>,
    pub until_ms: u64,
}

#[async_trait]
pub trait AbuseStore: Send + Sync {
    /// Checks the daily caps, the cool-downs and (when `check.guarded`) the guard's rules with
    /// this send counted; admits and counts it, or refuses and counts nothing. A guard's rule
    /// that trips starts a cool-down of its scope (the country's when both trip).
    async fn admit_send(&self, check: &SendCheck<'_>) -> Result<Admission, StoreError>;

    /// Counts an approved verification towards its prefix's and country's conversion (only
    /// where they are tracked: an approval alone starts no tracking).
    async fn record_approval(&self, approval: &Approval<'_>) -> Result<(), StoreError>;

    /// The account's messages on `day` (days since the epoch, UTC; today and yesterday are
    /// kept), and the cool-downs running at `now_ms`.
    async fn usage(&self, account: &str, day: u64, now_ms: u64) -> Result<Usage, StoreError>;
}
