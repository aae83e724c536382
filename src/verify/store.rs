//! Verify's store port: where verifications and their messages live (accounts and keys are the
//! account's port, `account::store::Accounts`). The adapters are
//! `memory::MemoryStore` and `redis::RedisStore` (src/memory/, src/redis/).
//!
//! Each method is one atomic step of the domain, not a generic key-value call, so that Redis can
//! run it as one script (one round trip, one slot) and memory as one lock.

use std::sync::Arc;

use async_trait::async_trait;

use crate::abuse::SendCheck;
use crate::account::AccountId;
use crate::dispatch::model::{Channel, SendLog};
use crate::dispatch::receipts::Receipt;
use crate::dispatch::OutgoingMessage;
use crate::events::notices::MessageNotice;
use crate::events::Events;
use crate::store::StoreError;
use crate::verify::model::{
    CancelOutcome, CheckOutcome, CodeCheck, NewVerification, SendAttempt, StartOutcome,
    Verification, VerificationId,
};
use crate::verify::workflow::{Fired, Workflow};

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Creates a verification, or resends the pending one of the same account and number, counting
    /// the send against the number's quota and honouring the idempotency key — all atomically.
    async fn start_verification(&self, new: &NewVerification) -> Result<StartOutcome, StoreError>;

    /// Whether `start_admitted` is this store's: abuse protection's counters live beside the
    /// verifications where one atomic step can name both (a single Redis server), so a send
    /// costs one store call instead of two.
    fn admits_sends(&self) -> bool {
        false
    }

    /// Abuse protection's admission of `check` (`AbuseStore::admit_send`), then, admitted,
    /// `start_verification`, as one atomic step; a refusal is `StartOutcome::Refused` and
    /// starts nothing. Only called when `admits_sends`.
    async fn start_admitted(
        &self,
        _new: &NewVerification,
        _check: &SendCheck<'_>,
    ) -> Result<StartOutcome, StoreError> {
        Err(StoreError::Unavailable(
            "this store does not admit sends".into(),
        ))
    }

    /// Compares the tag, counts the attempt and consumes the code on success, atomically.
    ///
    /// With an idempotency key (scoped by account and the verification's number, like a send's),
    /// the first check that counted records its outcome under the key in the same atomic step,
    /// and a later check with the key answers that outcome again and counts nothing.
    async fn check_verification(&self, check: &CodeCheck<'_>) -> Result<CheckOutcome, StoreError>;

    async fn get_verification(
        &self,
        account: &AccountId,
        id: &VerificationId,
        now_ms: u64,
    ) -> Result<Option<Verification>, StoreError>;

    async fn cancel_verification(
        &self,
        account: &AccountId,
        id: &VerificationId,
        now_ms: u64,
    ) -> Result<CancelOutcome, StoreError>;

    /// Records (or replaces, by message id) one message's delivery state, and remembers the
    /// provider's message id so that its receipts find it.
    async fn record_send_attempt(
        &self,
        verification: &VerificationId,
        attempt: &SendAttempt,
    ) -> Result<(), StoreError>;

    /// The messages sent for a verification, oldest first.
    async fn send_attempts(
        &self,
        verification: &VerificationId,
    ) -> Result<Vec<SendAttempt>, StoreError>;

    /// Applies a provider's delivery receipt: the message it was applied to, or none when no
    /// message is known by that id (or its verification is gone).
    async fn apply_receipt(
        &self,
        provider: &str,
        receipt: &Receipt,
        now_ms: u64,
    ) -> Result<Option<ReceiptApplied>, StoreError>;

    /// The verification's workflow (`verify::workflow`), when it was started with one.
    async fn workflow(&self, id: &VerificationId) -> Result<Option<Workflow>, StoreError>;

    /// Fires the fallbacks of `shard` due by `now_ms`, at most `limit`, each one atomic step:
    /// a verification still pending whose current step was not delivered moves to its next
    /// step, whose message is queued (Redis) or handed back (`Fired::message`). A verification
    /// no longer pending, delivered or on its last step leaves the due set.
    async fn fire_due_fallbacks(
        &self,
        shard: u8,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<Fired>, StoreError>;

    /// The message `message_id` of `id` failed: when it is the current step's of a workflow
    /// with a next step, that step is due now instead of at its timeout.
    async fn fall_back_now(
        &self,
        id: &VerificationId,
        message_id: &str,
        now_ms: u64,
    ) -> Result<(), StoreError>;

    /// Answers when the store can serve requests; `/readyz` calls it.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Fails when the store's client cannot recover by itself (it has answered nothing for a
    /// long while although the store answers), so that an orchestrator replaces the process;
    /// `/healthz` calls it.
    fn liveness(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Which store this is, for logs and metrics labels.
    fn kind(&self) -> &'static str;
}

/// The message a receipt was applied to, for the event it may make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptApplied {
    pub account: AccountId,
    pub verification: VerificationId,
    /// E.164, as stored.
    pub to: String,
    pub channel: Channel,
    /// The message's status before the receipt (`accepted`, or an earlier receipt's).
    pub previous: String,
    /// The message the receipt was applied to.
    pub message_id: String,
}

/// Dispatch's send log kept by this store, beside each verification; a message's fate also
/// goes out as an event (accepted, failed).
pub struct StoreSendLog(pub Arc<dyn Store>, pub Events);

#[async_trait]
impl SendLog for StoreSendLog {
    async fn record_send_attempt(
        &self,
        verification_id: &str,
        attempt: &SendAttempt,
    ) -> Result<(), StoreError> {
        let Some(id) = VerificationId::parse(verification_id) else {
            return Ok(());
        };
        self.0.record_send_attempt(&id, attempt).await?;
        if crate::verify::workflow::is_failed(&attempt.status) {
            // No provider took it: a workflow moves on now. Its timeout stays the safety net
            // should this call fail.
            let (message, now) = (&attempt.message_id, attempt.updated_ms);
            if let Err(error) = self.0.fall_back_now(&id, message, now).await {
                tracing::warn!(%error, "could not bring a workflow's fallback forward");
            }
        }
        Ok(())
    }

    fn settled(&self, message: &OutgoingMessage, attempt: &SendAttempt) {
        let Some(account) = AccountId::parse(&message.account) else {
            return;
        };
        let reason = (attempt.status == "failed").then_some("no-provider-took-it");
        let channel = message.channel.as_str();
        let notice = MessageNotice {
            verification: &message.verification_id,
            to: &message.to,
            channel,
            provider: &attempt.provider,
            reason,
        };
        self.1.message(&account, &attempt.status, &notice);
    }
}
