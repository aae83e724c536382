//! Ordered channel workflows (issue 17 item 3): one verification, one code, tried on its
//! channels in order. A step falls back to the next when its message failed (no provider took
//! it, or its provider reported it undelivered) or when no delivery receipt arrived within the
//! workflow's `fallback_after`.
//!
//! The store holds the workflow beside its verification, written in the same step that starts
//! it: every step's channel and message id, the next steps' messages sealed (as the outbox
//! seals them), and the verification's place in its shard's due set. A fallback is one store
//! step per verification (`Store::fire_due_fallbacks`): it checks that the verification is still
//! pending and that the current step was not delivered, records why the step was left, and
//! queues the next step's message (on Redis, onto the shard's outbox stream in the same
//! script). Two instances sweeping the same shard cannot both fire a step: the second finds it
//! no longer due. The timer is data in the store, never a sleep in a process, so it survives a
//! restart on Redis.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::account::policy::{Policy, PolicyChannel};
use crate::account::{Account, AccountId};
use crate::clock::Clock;
use crate::destination::{Destination, EmailAddress};
use crate::dispatch::model::{Channel, SendAttempt};
use crate::dispatch::OutgoingMessage;
use crate::events::Events;
use crate::metrics::Metrics;
use crate::phone::SHARD_COUNT;
use crate::verify::model::{Status, Verification, VerificationId};
use crate::verify::store::Store;
use crate::verify::{Channels, Code, Verifier, VerifyError};

/// The most steps a workflow may have: every channel at most once.
pub const MAX_STEPS: usize = 5;
/// How long a step waits for its delivery receipt when the request names no
/// `fallback_after_seconds`.
pub const DEFAULT_FALLBACK_AFTER_SECONDS: u32 = 60;
/// The range a request's `fallback_after_seconds` must be in.
pub const FALLBACK_AFTER_SECONDS: std::ops::RangeInclusive<u32> = 5..=600;
/// Due fallbacks one sweep fires per shard (the rest wait for the next sweep).
const FIRE_PER_SHARD: usize = 32;
/// How often each instance looks for due fallbacks.
pub const SWEEP_EVERY: Duration = Duration::from_millis(250);

/// Why a step was left for the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Its message failed: no provider took it, or its provider reported it undelivered.
    Failed,
    /// No delivery receipt arrived within `fallback_after`.
    Timeout,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Failed => "failed",
            Reason::Timeout => "timeout",
        }
    }

    pub fn parse(input: &str) -> Option<Self> {
        match input {
            "failed" => Some(Reason::Failed),
            "timeout" => Some(Reason::Timeout),
            _ => None,
        }
    }
}

/// A message status (`SendAttempt::status`) that settles a step as delivered.
pub fn is_delivered(status: &str) -> bool {
    matches!(status, "delivered" | "read")
}

/// A message status that settles a step as failed: fall back now rather than at the timeout.
pub fn is_failed(status: &str) -> bool {
    matches!(status, "failed" | "undelivered")
}

/// A workflow to store with a new (or resent) verification.
#[derive(Debug, Clone)]
pub struct NewWorkflow {
    pub fallback_after_ms: u64,
    /// In order; the first step's message is the start's own (queued with it), so its `sealed`
    /// is empty.
    pub steps: Vec<NewStep>,
    /// The masked address (`a***@example.com`) of the e-mail step of a workflow whose `to` is a
    /// phone number; `None` without an e-mail step.
    pub email: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewStep {
    pub channel: Channel,
    pub message_id: String,
    /// The step's message, sealed by the dispatcher (`Dispatcher::seal_step`).
    pub sealed: Vec<u8>,
}

/// A stored workflow, as `GET /v1/verifications/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workflow {
    pub fallback_after_ms: u64,
    /// The step whose message went out last.
    pub current: usize,
    pub steps: Vec<Step>,
    /// Where its e-mail step goes, masked (`NewWorkflow::email`); its phone steps go to the
    /// verification's `to`.
    pub email: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub channel: Channel,
    pub message_id: String,
    /// When its message was queued; `None` for a step not reached.
    pub queued_ms: Option<u64>,
    /// Why the workflow moved on from it, for a step that was left.
    pub left: Option<Reason>,
}

/// A step's outcome as the API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepStatus {
    /// Reached, no provider has taken its message yet; or not reached while the verification
    /// is pending.
    Pending,
    /// A provider took its message.
    Sent,
    Delivered,
    Failed,
    /// Never reached: the verification ended or an earlier step was delivered.
    Skipped,
}

impl StepStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Pending => "pending",
            StepStatus::Sent => "sent",
            StepStatus::Delivered => "delivered",
            StepStatus::Failed => "failed",
            StepStatus::Skipped => "skipped",
        }
    }

    /// The outcome of a step reached, from its message's status (`None`: no record yet).
    pub fn of_message(status: Option<&str>) -> Self {
        match status {
            None => StepStatus::Pending,
            Some(status) if is_delivered(status) => StepStatus::Delivered,
            Some(status) if is_failed(status) => StepStatus::Failed,
            // accepted, queued, sent: a provider has it.
            Some(_) => StepStatus::Sent,
        }
    }
}

impl Workflow {
    /// Each step's outcome: `message_status` answers a message id's recorded status, and
    /// `ended` says the verification is final (approved, expired, canceled, …).
    pub fn statuses<'a>(
        &self,
        message_status: impl Fn(&str) -> Option<&'a str>,
        ended: bool,
    ) -> Vec<StepStatus> {
        let mut delivered_before = false;
        self.steps
            .iter()
            .map(|step| {
                let status = match step.queued_ms {
                    Some(_) => StepStatus::of_message(message_status(&step.message_id)),
                    None if ended || delivered_before => StepStatus::Skipped,
                    None => StepStatus::Pending,
                };
                delivered_before |= status == StepStatus::Delivered;
                status
            })
            .collect()
    }
}

/// One fallback a store fired.
#[derive(Debug, Clone)]
pub struct Fired {
    pub verification: VerificationId,
    pub account: AccountId,
    /// E.164, as stored.
    pub to_number: String,
    pub from: Channel,
    pub to: Channel,
    pub reason: Reason,
    /// The next step's sealed message, for a store that does not queue it itself (memory): the
    /// sweeper hands it to the dispatcher. `None` when the store queued it (Redis).
    pub message: Option<Vec<u8>>,
}

/// The sweeper: every instance runs one; each pass fires every shard's due fallbacks.
pub struct Sweeper {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    pub dispatcher: crate::dispatch::Dispatcher,
    pub events: Events,
}

impl Sweeper {
    pub async fn run(self, stop: CancellationToken) {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(SWEEP_EVERY) => {}
            }
            self.sweep().await;
        }
    }

    /// One pass over every shard, at the clock's current time.
    pub async fn sweep(&self) {
        let now_ms = self.clock.now_ms();
        let passes = (0..SHARD_COUNT)
            .map(|shard| self.store.fire_due_fallbacks(shard, now_ms, FIRE_PER_SHARD));
        for (shard, fired) in futures::future::join_all(passes)
            .await
            .into_iter()
            .enumerate()
        {
            match fired {
                Ok(fired) => fired.into_iter().for_each(|fired| self.fired(fired)),
                Err(error) => {
                    self.metrics.store_error("fallback");
                    tracing::debug!(%error, shard, "could not fire due fallbacks");
                }
            }
        }
    }

    fn fired(&self, fired: Fired) {
        self.metrics.fallback(
            fired.from.as_str(),
            fired.to.as_str(),
            fired.reason.as_str(),
        );
        tracing::info!(
            verification = %fired.verification.as_str(),
            from = fired.from.as_str(),
            to = fired.to.as_str(),
            reason = fired.reason.as_str(),
            "workflow fell back to its next channel"
        );
        let id = fired.verification.as_str();
        let (channel, reason) = (fired.to.as_str(), fired.reason.as_str());
        self.events
            .fallback(&fired.account, id, &fired.to_number, channel, reason);
        let sealed = fired.message.unwrap_or_default();
        if let Err(error) = self.dispatcher.queue_step(id, &sealed) {
            // The embedded queue is full: the step is recorded as reached, its message is not
            // sent; the next step (if any) still follows at its timeout.
            tracing::warn!(%error, verification = %id, "could not queue a fallback step");
        }
    }
}

/// The channels a send goes out on, resolved from the request and the account's policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Plan {
    /// One or more, in order.
    pub(super) channels: Vec<Channel>,
    pub(super) fallback_after_ms: u64,
}

impl Plan {
    fn one(channel: Channel) -> Self {
        Self {
            channels: vec![channel],
            fallback_after_ms: 0,
        }
    }
}

impl Verifier {
    /// The channels of `request`: one as given; a workflow bounded by the account's allowed
    /// channels; or, when the request names none, the account's default workflow, else SMS.
    pub(super) async fn plan(
        &self,
        account: &Account,
        channels: &Channels,
    ) -> Result<Plan, VerifyError> {
        // The policy, once read (the account's default workflow reads it first).
        let mut read = None;
        let (channels, seconds) = match channels {
            Channels::One(channel) => return Ok(Plan::one(*channel)),
            // The edge refuses an empty list (400); an embedder's goes by SMS.
            Channels::Workflow { channels, .. } if channels.is_empty() => {
                return Ok(Plan::one(Channel::Sms))
            }
            Channels::Workflow {
                channels,
                fallback_after_seconds,
            } => (channels.clone(), *fallback_after_seconds),
            Channels::AccountDefault => {
                read = self.policy_of(account).await?;
                let default = read.as_ref().and_then(|policy| policy.workflow.clone());
                let Some(default) = default else {
                    return Ok(Plan::one(Channel::Sms));
                };
                // The policy keeps channel names; the one channel enum reads them.
                let channels: Vec<Channel> = default
                    .channels
                    .iter()
                    .filter_map(|channel| Channel::parse(channel.as_str()))
                    .collect();
                if channels.is_empty() {
                    return Ok(Plan::one(Channel::Sms));
                }
                (channels, Some(default.fallback_after_seconds))
            }
        };
        let policy = match read {
            Some(policy) => Some(policy),
            None => self.policy_of(account).await?,
        };
        if let Some(policy) = policy {
            for channel in &channels {
                let allowed = PolicyChannel::parse(channel.as_str())
                    .is_some_and(|allowed| policy.channels.contains(allowed));
                if !allowed {
                    return Err(VerifyError::ChannelNotAllowed(channel.as_str()));
                }
            }
        }
        let seconds = seconds.unwrap_or(DEFAULT_FALLBACK_AFTER_SECONDS);
        Ok(Plan {
            channels,
            fallback_after_ms: u64::from(seconds) * 1000,
        })
    }

    /// The account's policy from the hot-path cache, when the verifier has the accounts
    /// service (startup always gives it; an embedder may not).
    async fn policy_of(&self, account: &Account) -> Result<Option<Arc<Policy>>, VerifyError> {
        let Some(abuse) = &self.abuse else {
            return Ok(None);
        };
        let policy = abuse
            .accounts
            .cached_policy(&account.id)
            .await
            .inspect_err(|_| self.metrics.store_error("policy"))?;
        Ok(Some(policy))
    }

    /// The workflow to store with the verification: for each channel after the first, its own
    /// message (its id, the same code, the channel's own text: a call's words, a mail's text
    /// part) to that step's destination (`destinations`, one per channel), sealed; `None` for a
    /// single channel.
    pub(super) fn later_steps(
        &self,
        plan: &Plan,
        destinations: &[Destination],
        first: &OutgoingMessage,
        code: &Code,
    ) -> Result<Option<NewWorkflow>, VerifyError> {
        if plan.channels.len() < 2 {
            return Ok(None);
        }
        let mut steps = vec![NewStep {
            channel: first.channel,
            message_id: first.id.clone(),
            sealed: Vec::new(),
        }];
        // A workflow of two or more steps has a phone step (every channel but e-mail is one, and
        // none comes twice), so its `to` is a phone number and its e-mail step, if any, goes to
        // the request's `email`: kept masked beside the steps, to show where it went.
        let email = destinations
            .iter()
            .find_map(Destination::email)
            .map(EmailAddress::masked);
        for (channel, to) in plan.channels.iter().zip(destinations).skip(1) {
            let mut message = first.clone();
            message.id = OutgoingMessage::new_id(&self.rng).map_err(|_| VerifyError::Random)?;
            message.channel = *channel;
            message.to = to.clone();
            message.body = self.message_body(*channel, &message.locale, code);
            let sealed = self
                .dispatcher
                .seal_step(&message)
                .map_err(|_| VerifyError::Random)?;
            steps.push(NewStep {
                channel: *channel,
                message_id: message.id,
                sealed,
            });
        }
        Ok(Some(NewWorkflow {
            fallback_after_ms: plan.fallback_after_ms,
            steps,
            email,
        }))
    }

    /// The verification's workflow with each step's outcome, for `GET`; `None` without one.
    pub async fn workflow(
        &self,
        verification: &Verification,
        attempts: &[SendAttempt],
    ) -> Result<Option<(Workflow, Vec<StepStatus>)>, VerifyError> {
        let Some(workflow) = self
            .store
            .workflow(&verification.id)
            .await
            .inspect_err(|_| self.metrics.store_error("workflow"))?
        else {
            return Ok(None);
        };
        let status_of = |message_id: &str| {
            attempts
                .iter()
                .find(|attempt| attempt.message_id == message_id && !attempt.is_provider_try())
                .map(|attempt| attempt.status.as_str())
        };
        let ended = verification.status != Status::Pending;
        let statuses = workflow.statuses(status_of, ended);
        Ok(Some((workflow, statuses)))
    }
}
