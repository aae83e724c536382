//! The `WebhookStore` port: webhooks (registrations), one FIFO queue of deliveries per
//! webhook, a lease per webhook, and each webhook's log of attempts and dead letters.
//! Adapters: `MemoryWebhookStore` (src/memory/events.rs) and `RedisWebhookStore`
//! (src/redis/events.rs); the contract suite (tests/store/events.rs) runs both.
//!
//! The contract:
//! - An event is queued on every webhook of its account whose filter takes it, in one step
//!   (a webhook registered or removed meanwhile gets it entirely or not at all), at the tail:
//!   each webhook delivers in the order its events were queued, which is the order its account
//!   emitted them.
//! - A webhook with a due head is *claimed* with a lease: until the lease ends no other claim
//!   returns it, so one instance delivers a webhook at a time; the claim returns the head only,
//!   so a head that fails blocks the events behind it (order over throughput).
//! - Settling needs the lease: the head leaves the queue when delivered or dead-lettered, and
//!   stays, due later, when retried. A settle whose lease was lost (it ran out and another
//!   instance claimed the webhook) changes nothing and says so.
//! - A webhook's endpoints are found through the accounts that have something due
//!   (`due_accounts`), a hint that may name an account with nothing due (claiming then finds
//!   nothing) but, once `signal`led, names it until `park` is told what was found.

use async_trait::async_trait;

use super::model::{EventFilter, EventId, EventType};
use super::sign::WebhookSecret;
use crate::account::{text_id, AccountId};
use crate::store::StoreError;

/// `WH` and 32 lowercase hex digits.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WebhookId(String);

text_id!(WebhookId, "WH");

/// A registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub id: WebhookId,
    pub account: AccountId,
    /// Checked by `target::check_url` (and resolved) when registered.
    pub url: String,
    pub events: EventFilter,
    pub secret: WebhookSecret,
    pub created_ms: u64,
}

/// The bounds a registration is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebhookBounds {
    pub per_account: usize,
    pub total: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registered {
    Created,
    /// The account has `per_account` webhooks already; nothing was stored.
    AccountFull,
    /// The gateway has `total` webhooks already; nothing was stored.
    GatewayFull,
}

/// One event as queued: its body is the signed request body, byte for byte, on every attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedEvent {
    pub id: EventId,
    pub kind: EventType,
    pub created_ms: u64,
    /// The CloudEvents envelope (UTF-8 JSON without line breaks).
    pub body: String,
}

/// Where an event goes: every webhook of the account whose filter takes it, or one webhook
/// whatever its filter (the test event).
#[derive(Debug, Clone, Copy)]
pub enum Recipients<'a> {
    Subscribed,
    Only(&'a WebhookId),
}

/// An event to queue (`enqueue`): on which of the account's webhooks, when, and each webhook's
/// bound (`max_queued` events waiting).
#[derive(Debug, Clone, Copy)]
pub struct Enqueue<'a> {
    pub account: &'a AccountId,
    pub event: &'a QueuedEvent,
    pub recipients: Recipients<'a>,
    pub now_ms: u64,
    pub max_queued: usize,
}

/// What `claim` asks: the next due webhook of `account`, leased to `owner` until `until_ms`.
#[derive(Debug, Clone, Copy)]
pub struct Lease<'a> {
    pub account: &'a AccountId,
    pub owner: &'a str,
    pub now_ms: u64,
    pub until_ms: u64,
}

/// What `settle` records: the claim's attempt and what became of it, and how much log to keep.
#[derive(Debug, Clone, Copy)]
pub struct Settle<'a> {
    pub claim: &'a Claim,
    pub outcome: Outcome,
    pub attempt: &'a Attempt,
    pub now_ms: u64,
    pub log: LogBounds,
}

/// How many webhooks an event was queued on, and how many refused it for a full queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Enqueued {
    pub queued: usize,
    pub dropped: usize,
}

/// An account that has something due, with the generation of its due signal (so that `park`
/// never forgets a signal given after the read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueAccount {
    pub account: AccountId,
    pub generation: u64,
}

/// A claim: the head of one webhook's queue, leased to `owner` until `lease_until_ms`.
#[derive(Debug, Clone)]
pub struct Claim {
    pub account: AccountId,
    pub webhook: WebhookId,
    pub url: String,
    pub secret: WebhookSecret,
    pub event: QueuedEvent,
    /// Failed attempts of this event so far.
    pub failures: u32,
    /// When this event was first tried; `None` on its first attempt.
    pub first_attempt_ms: Option<u64>,
    pub owner: String,
}

/// The result of claiming in one account.
#[derive(Debug, Clone)]
pub enum Claimed {
    One(Box<Claim>),
    /// Nothing more is due; `next_ms` is when something will be (a retry, a lease that ends),
    /// `None` when nothing is queued.
    Nothing {
        next_ms: Option<u64>,
    },
}

/// What became of one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// Failed; due again at this time.
    RetryAt(u64),
    /// Failed for the last time: moved to the dead letters.
    DeadLettered,
}

/// One attempt, as the webhook's log keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub at_ms: u64,
    pub event_id: EventId,
    pub event_type: EventType,
    /// 1 for the first attempt of this event.
    pub attempt: u32,
    pub outcome: AttemptOutcome,
    /// The receiver's status code, when it answered.
    pub status: Option<u16>,
    /// What went wrong, as a word: `status`, `timeout`, `connect`, `refused-target`, `request`.
    pub error: Option<String>,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    Delivered,
    Failed,
    DeadLettered,
}

impl AttemptOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Delivered => "delivered",
            AttemptOutcome::Failed => "failed",
            AttemptOutcome::DeadLettered => "dead_lettered",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            AttemptOutcome::Delivered,
            AttemptOutcome::Failed,
            AttemptOutcome::DeadLettered,
        ]
        .into_iter()
        .find(|outcome| outcome.as_str() == text)
    }
}

/// A settle's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// Done; `next_ms` is when the account has something due next (`None`: nothing queued).
    Done { next_ms: Option<u64> },
    /// The lease was lost (ran out, another instance claimed the webhook, or it was removed):
    /// nothing was changed.
    LeaseLost,
}

/// A dead letter: an event no attempt delivered, kept with its last attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub event: QueuedEvent,
    pub last_attempt: Attempt,
}

/// A webhook's log: the latest attempts first, and the dead letters, latest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Deliveries {
    pub attempts: Vec<Attempt>,
    pub dead_letters: Vec<DeadLetter>,
    /// Events waiting (the head included).
    pub queued: usize,
}

/// How many attempts and dead letters each webhook keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogBounds {
    pub attempts: usize,
    pub dead_letters: usize,
}

#[async_trait]
pub trait WebhookStore: Send + Sync {
    async fn register(
        &self,
        webhook: &Webhook,
        bounds: WebhookBounds,
    ) -> Result<Registered, StoreError>;

    async fn list(&self, account: &AccountId) -> Result<Vec<Webhook>, StoreError>;

    async fn get(&self, account: &AccountId, id: &WebhookId)
        -> Result<Option<Webhook>, StoreError>;

    /// Removes the webhook with its queue and log; `false` when there was none.
    async fn remove(&self, account: &AccountId, id: &WebhookId) -> Result<bool, StoreError>;

    /// Queues `event` (see the module's contract) and makes the account due at `now_ms`.
    /// `max_queued` bounds each webhook's queue.
    async fn enqueue(&self, request: Enqueue<'_>) -> Result<Enqueued, StoreError>;

    /// Up to `limit` accounts with something due at `now_ms`.
    async fn due_accounts(&self, now_ms: u64, limit: usize) -> Result<Vec<DueAccount>, StoreError>;

    /// Makes `account` due at `due_ms` (or earlier if it already is).
    async fn signal(&self, account: &AccountId, due_ms: u64) -> Result<(), StoreError>;

    /// After claiming found nothing more: the account is next due at `next_ms` (`None`:
    /// nothing queued), unless it was signalled since `due` was read.
    async fn park(&self, due: &DueAccount, next_ms: Option<u64>) -> Result<(), StoreError>;

    /// Every account that has webhooks, for the sweep that repairs lost signals.
    async fn accounts_with_webhooks(&self) -> Result<Vec<AccountId>, StoreError>;

    /// Leases the next due webhook of the account to `owner` until `lease_until_ms`.
    async fn claim(&self, lease: Lease<'_>) -> Result<Claimed, StoreError>;

    /// Settles the claim's attempt (needs its lease) and logs it.
    async fn settle(&self, request: Settle<'_>) -> Result<Settled, StoreError>;

    async fn deliveries(
        &self,
        account: &AccountId,
        id: &WebhookId,
    ) -> Result<Deliveries, StoreError>;
}
