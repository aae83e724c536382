//! One-time codes from send to approval: the service the HTTP layer calls.
//!
//! It draws the code, MACs it, asks the store for the one atomic step, and hands the message to
//! dispatch. It knows nothing of HTTP; outcomes it does not consider failures (a wrong code, an
//! expired verification) come back as values.

pub mod code;
pub mod model;
mod receipts;
pub mod settings;
pub mod store;
pub mod workflow;

use std::sync::Arc;

use ring::rand::SystemRandom;

use crate::abuse::{self, AbuseGuard, Refusal};
use crate::account::audit::{action, AuditEntry, Who};
use crate::account::policy::Policy;
use crate::account::service::AccountService;
use crate::account::{Account, AccountId};
use crate::clock::Clock;
use crate::destination::{Destination, EmailAddress};
use crate::dispatch::mail_template;
use crate::dispatch::template::{self, WebOtp};
use crate::dispatch::{Dispatcher, OutgoingMessage};
use crate::events::{EventType, Events};
use crate::limits::LimitSettings;
use crate::metrics::Metrics;
use crate::phone::PhoneNumber;
use crate::store::StoreError;
use crate::verify::store::Store;
use code::CodeMac;
use model::{
    CancelOutcome, Channel, CheckOutcome, CheckTarget, CodeCheck, NewVerification, SendQuota,
    StartOutcome, Status, Verification, VerificationId,
};
pub use settings::VerificationSettings;

pub use code::Code;

pub struct Verifier {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    dispatcher: Dispatcher,
    metrics: Arc<Metrics>,
    mac: CodeMac,
    rng: SystemRandom,
    settings: VerificationSettings,
    quota: SendQuota,
    /// The `@domain #code` line for Web OTP / SMS Retriever, when configured.
    web_otp: Option<WebOtp>,
    /// Webhooks out: created, approved, canceled, expired, max_attempts_reached.
    events: Events,
    /// Abuse protection (`with_abuse`; startup always sets it, an embedder may leave it out).
    abuse: Option<SendGuard>,
}

/// Abuse protection on the send path: the guard, and the accounts service whose hot-path cache
/// serves each send its account's policy (a cache hit on the hot path, no store call).
#[derive(Clone)]
pub struct SendGuard {
    pub guard: AbuseGuard,
    pub accounts: Arc<AccountService>,
}

/// A send as the HTTP layer parsed it.
#[derive(Debug)]
pub struct StartRequest {
    /// A phone number for SMS, WhatsApp and calls, an e-mail address for e-mail (the edge
    /// matches them to `channels`; [`Verifier::start`] refuses a mismatch as well).
    pub to: Destination,
    pub channels: Channels,
    /// Digits for this verification; the account's length when absent. Never fewer than the
    /// account's length (see [`Verifier::code_length_floor`]).
    pub code_length: Option<u8>,
    /// Scoped to the account and the destination (number or address): a retry with the same
    /// key and destination gets the first answer and sends nothing.
    pub idempotency_key: Option<String>,
    /// Language of the message; English when absent or without a text of its own.
    pub locale: Option<String>,
}

/// Which channels a send goes out on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Channels {
    /// One channel (`channel`), as before workflows: the account's policy does not bound it.
    One(Channel),
    /// An ordered workflow (`channels`), parsed at the edge (1 to `workflow::MAX_STEPS`
    /// channels, none twice); the account's allowed channels bound it.
    Workflow {
        channels: Vec<Channel>,
        fallback_after_seconds: Option<u32>,
    },
    /// Neither: the account's default workflow (its policy), else SMS.
    AccountDefault,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started {
    Created(Verification),
    Resent(Verification),
    Replayed(Verification),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub verification: Verification,
    pub valid: bool,
    /// The outcome an earlier check with the same idempotency key recorded, answered again.
    pub replayed: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("the verification has used all of its {0} sends")]
    MaxSendsReached(u32),
    #[error("too many codes sent to this number; try again later")]
    SendQuotaExceeded { retry_after_ms: u64 },
    #[error("no such verification")]
    NotFound,
    #[error("the verification is already {}", .0.status.as_str())]
    NotPending(Box<Verification>),
    /// A check of a verification that was final before it: nothing was counted.
    #[error("the verification is already {}", .0.status.as_str())]
    AlreadyFinal(Box<Verification>),
    #[error("the idempotency key was used for a check of another verification")]
    IdempotencyKeyReused,
    #[error("codes of this account have at least {floor} digits")]
    CodeTooShort { floor: u8 },
    #[error("the message queue is full")]
    QueueFull,
    /// A workflow names a channel the account's policy does not allow.
    #[error("the account's policy does not allow the channel {0}")]
    ChannelNotAllowed(&'static str),
    /// The channel sends to the other kind of destination (an address by SMS, a number by
    /// e-mail).
    #[error("the {0} channel cannot send to this destination")]
    WrongDestination(&'static str),
    /// A workflow's steps and its destinations do not fit: `email` without an e-mail step, an
    /// e-mail step without an address, phone steps after an address in `to`. Says which.
    #[error("{0}")]
    StepDestination(String),
    /// No configured provider carries this channel (to this number): nothing was stored.
    #[error("no provider is configured for the {} channel", .0.as_str())]
    ChannelNotConfigured(Channel),
    /// Refused by abuse protection before anything was stored, sent or counted.
    #[error("refused by abuse protection ({})", .0.rule())]
    Abuse(Refusal),
    #[error("the random generator failed")]
    Random,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Verifier {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        dispatcher: Dispatcher,
        metrics: Arc<Metrics>,
        code_key: &[u8],
        settings: VerificationSettings,
        limits: &LimitSettings,
        web_otp: Option<WebOtp>,
    ) -> Self {
        Self {
            store,
            clock,
            dispatcher,
            metrics,
            mac: CodeMac::new(code_key),
            rng: SystemRandom::new(),
            quota: SendQuota {
                limit: limits.send_per_number,
                window_ms: limits.send_per_number_window.as_millis() as u64,
            },
            settings,
            web_otp,
            events: Events::disabled(),
            abuse: None,
        }
    }

    /// Emits the verifications' events through `events` (none until this is called).
    pub fn with_events(mut self, events: Events) -> Self {
        self.events = events;
        self
    }

    /// Turns abuse protection on for every send (and counts approvals towards its conversion).
    pub fn with_abuse(mut self, abuse: SendGuard) -> Self {
        self.abuse = Some(abuse);
        self
    }

    /// The abuse guard, for the usage API.
    pub fn abuse(&self) -> Option<&AbuseGuard> {
        self.abuse.as_ref().map(|abuse| &abuse.guard)
    }

    /// The message queue (for readiness).
    pub fn dispatcher(&self) -> &Dispatcher {
        &self.dispatcher
    }

    pub fn settings(&self) -> &VerificationSettings {
        &self.settings
    }

    /// The fewest digits a code of this account may have: the account's length, and never less
    /// than the operator's floor (which may have been raised since the account was created).
    pub fn code_length_floor(&self, account: &Account) -> u8 {
        account.code_length.max(self.settings.min_code_length)
    }

    pub async fn start(
        &self,
        account: &Account,
        request: StartRequest,
    ) -> Result<Started, VerifyError> {
        self.start_with_email(account, request, None).await
    }

    /// [`Verifier::start`] of a workflow that mixes phone and e-mail steps: `to` is the phone
    /// number of its phone steps (and keys the verification: its quota, its check by `to`, its
    /// idempotency), `email` the address of its e-mail steps. `email` without an e-mail step,
    /// or beside an address in `to`, is refused (see [`step_destinations`]).
    pub async fn start_with_email(
        &self,
        account: &Account,
        request: StartRequest,
        email: Option<EmailAddress>,
    ) -> Result<Started, VerifyError> {
        let floor = self.code_length_floor(account);
        let length = match request.code_length {
            Some(length) if length < floor => return Err(VerifyError::CodeTooShort { floor }),
            Some(length) => length,
            None => floor,
        };
        let plan = self.plan(account, &request.channels).await?;
        let channel = plan.channels[0];
        let destinations = step_destinations(&plan.channels, &request.to, email.as_ref())?;
        for (step, to) in plan.channels.iter().zip(&destinations) {
            if !self.dispatcher.routable(to, *step) {
                self.metrics
                    .verification_started(step.as_str(), "channel_not_configured");
                return Err(VerifyError::ChannelNotConfigured(*step));
            }
        }
        // Take the message's place first: a verification is only created if it can be sent.
        let ticket = self
            .dispatcher
            .ticket()
            .map_err(|_| VerifyError::QueueFull)?;
        let now_ms = self.clock.now_ms();
        let policy = self
            .screen(account, &request.to, &plan.channels, now_ms)
            .await?;
        // Admission counts the send once, on its first phone channel: a workflow that starts by
        // e-mail and falls back to a phone is admitted for that phone when it starts.
        let guarded = plan.channels.iter().copied().find_map(abuse_channel);
        let check = policy.as_ref().and_then(|(guard, policy)| {
            Some(guard.check(&abuse::Send {
                account: account.id.as_str(),
                policy: &policy.abuse,
                channel: guarded?,
                to: request.to.phone()?,
                now_ms,
            }))
        });
        // On a single Redis the admission is part of the start script: one call per send.
        let admitted_with_start = check.is_some() && self.store.admits_sends();
        if let (Some(check), false, Some(to)) = (&check, admitted_with_start, request.to.phone()) {
            self.admit(account, to, channel, check).await?;
        }
        let code = code::generate(&self.rng, length).map_err(|_| VerifyError::Random)?;
        let ttl_ms = self.settings.ttl.as_millis() as u64;
        let locale = request.locale.unwrap_or_else(|| "en".to_owned());
        let mut message = OutgoingMessage {
            id: OutgoingMessage::new_id(&self.rng).map_err(|_| VerifyError::Random)?,
            // Known once the store answers: a resend keeps the pending verification's id.
            verification_id: String::new(),
            account: account.id.as_str().to_owned(),
            to: destinations[0].clone(),
            channel,
            body: self.message_body(channel, &locale, &code),
            code: code.as_str().to_owned(),
            locale,
            not_after_ms: now_ms + ttl_ms,
        };
        let workflow = self.later_steps(&plan, &destinations, &message, &code)?;
        let new = NewVerification {
            id: VerificationId::random(&self.rng, request.to.shard())
                .map_err(|_| VerifyError::Random)?,
            account: account.id.clone(),
            to: request.to,
            channel,
            code_tag: self.mac.tag(account.id.as_str(), &code),
            code_length: length,
            now_ms,
            ttl_ms,
            retention_ms: self.settings.retention.as_millis() as u64,
            max_attempts: self.settings.max_check_attempts,
            max_sends: self.settings.max_sends,
            send_quota: self.quota,
            idempotency_key: request.idempotency_key,
            outbox: self
                .dispatcher
                .seal(&message)
                .map_err(|_| VerifyError::Random)?,
            workflow,
        };
        let channel = new.channel.as_str();
        let outcome = match &check {
            Some(check) if admitted_with_start => self.store.start_admitted(&new, check).await,
            _ => self.store.start_verification(&new).await,
        }
        .inspect_err(|error| {
            // An account at its share of the embedded store is that account's refusal,
            // not a failing store: it must not page the operator.
            if !matches!(error, crate::store::StoreError::AccountLimit(_)) {
                self.metrics.store_error("start");
            }
        })?;
        if let (true, Some(to)) = (admitted_with_start, new.to.phone()) {
            if !matches!(outcome, StartOutcome::Refused(_)) {
                self.metrics.send_admitted(to.region());
            }
        }
        let started = match outcome {
            StartOutcome::Created(verification) => Started::Created(verification),
            StartOutcome::Resent(verification) => Started::Resent(verification),
            StartOutcome::Replayed(verification) => {
                self.metrics.verification_started(channel, "replayed");
                return Ok(Started::Replayed(verification));
            }
            StartOutcome::MaxSendsReached(verification) => {
                self.metrics
                    .verification_started(channel, "max_sends_reached");
                return Err(VerifyError::MaxSendsReached(verification.sends));
            }
            StartOutcome::SendQuotaExceeded { retry_after_ms } => {
                self.metrics
                    .verification_started(channel, "send_quota_exceeded");
                return Err(VerifyError::SendQuotaExceeded { retry_after_ms });
            }
            StartOutcome::Refused(block) => {
                let refusal = Refusal::Blocked(block);
                return Err(match new.to.phone() {
                    Some(to) => self.refused(account, to, new.channel, refusal).await,
                    None => VerifyError::Abuse(refusal),
                });
            }
        };
        if let Started::Created(verification) | Started::Resent(verification) = &started {
            let label = if matches!(started, Started::Created(_)) {
                "created"
            } else {
                "resent"
            };
            self.metrics.verification_started(channel, label);
            message.verification_id = verification.id.as_str().to_owned();
            if matches!(started, Started::Created(_)) {
                self.emit(EventType::VerificationCreated, verification);
            }
        }
        if message.channel == Channel::Sms {
            let encoding = template::encoding(&message.body);
            self.metrics
                .segments(encoding.as_str(), template::segments(&message.body));
        }
        self.dispatcher.commit(ticket, message);
        Ok(started)
    }

    /// Abuse protection's checks that need no store (geo permission, number type) on the
    /// account's cached policy: the guard and the policy when the send may go on to admission,
    /// none without abuse protection or for an e-mail (abuse protection guards phone numbers:
    /// docs/decisions.md).
    async fn screen(
        &self,
        account: &Account,
        to: &Destination,
        channels: &[Channel],
        now_ms: u64,
    ) -> Result<Option<(&AbuseGuard, Arc<Policy>)>, VerifyError> {
        let Some(abuse) = &self.abuse else {
            return Ok(None);
        };
        // Abuse protection is about phone numbers: an e-mail send is not screened.
        let Some(to) = to.phone() else {
            return Ok(None);
        };
        let policy = abuse
            .accounts
            .cached_policy(&account.id)
            .await
            .inspect_err(|_| self.metrics.store_error("policy"))?;
        // A workflow is taken whole or not at all: every channel it may fall back to is
        // screened now, so a fallback never reaches a channel the number may not use.
        for step in channels {
            // Abuse protection is about phone channels: e-mail is not screened.
            let Some(channel) = abuse_channel(*step) else {
                continue;
            };
            let send = abuse::Send {
                account: account.id.as_str(),
                policy: &policy.abuse,
                channel,
                to,
                now_ms,
            };
            if let Some(refusal) = abuse.guard.screen(&send) {
                return Err(self.refused(account, to, *step, refusal).await);
            }
        }
        Ok(Some((&abuse.guard, policy)))
    }

    /// Abuse protection's store step on a send, before anything is stored (caps, cool-downs,
    /// the pumping guard), when the start script does not take it: it counts an admitted send.
    async fn admit(
        &self,
        account: &Account,
        to: &PhoneNumber,
        channel: Channel,
        check: &abuse::SendCheck<'_>,
    ) -> Result<(), VerifyError> {
        let Some(abuse) = &self.abuse else {
            return Ok(());
        };
        let admission = abuse
            .guard
            .admit_checked(check)
            .await
            .inspect_err(|_| self.metrics.store_error("abuse_admit"))?;
        match admission {
            abuse::Admission::Admitted => {
                self.metrics.send_admitted(to.region());
                Ok(())
            }
            abuse::Admission::Refused(block) => Err(self
                .refused(account, to, channel, Refusal::Blocked(block))
                .await),
        }
    }

    /// A send abuse protection refused: counted, its event emitted, and a block that started
    /// audited; a geo or number-type refusal is an event each time, a cool-down or a cap when it
    /// starts.
    async fn refused(
        &self,
        account: &Account,
        to: &PhoneNumber,
        channel: Channel,
        refusal: Refusal,
    ) -> VerifyError {
        let channel = channel.as_str();
        self.metrics.verification_started(channel, refusal.rule());
        let block = match &refusal {
            Refusal::Blocked(block) => Some(block),
            Refusal::Geo { .. } | Refusal::NumberType { .. } => None,
        };
        if block.is_none_or(|block| block.started) {
            self.events
                .blocked(&account.id, to, channel, refusal.rule());
        }
        if let (Some(abuse), Some(block)) = (&self.abuse, block.filter(|block| block.started)) {
            self.audit_block(abuse, &account.id, block, self.clock.now_ms())
                .await;
        }
        VerifyError::Abuse(refusal)
    }

    /// A block that started: counted in `otpgate_abuse_blocks_total` and written to the
    /// account's audit log. The refusal stands either way; a lost entry is logged, not the
    /// send's failure.
    async fn audit_block(
        &self,
        abuse: &SendGuard,
        account: &AccountId,
        block: &abuse::Block,
        now_ms: u64,
    ) {
        self.metrics.abuse_block(block.country, block.rule.as_str());
        let audit = AuditEntry::new(
            now_ms,
            Who::gateway(),
            action::ABUSE_BLOCKED,
            format!("abuse:{}", block.scope.as_str()),
            serde_json::json!({
                "rule": block.rule.as_str(),
                "scope": block.scope.as_str(),
                "country": block.country.as_str(),
                "prefix": block.prefix.as_ref().map(abuse::Prefix::as_str),
                "retry_after_seconds": block.retry_after_ms.div_ceil(1000),
            }),
        );
        if let Err(error) = abuse
            .accounts
            .directory()
            .append_audit(account, &audit)
            .await
        {
            self.metrics.store_error("abuse_audit");
            tracing::warn!(%error, "could not audit an abuse block");
        }
    }

    /// An approval counts towards its prefix's and country's conversion, off the check's path:
    /// the check has answered by the time it is counted, and a failure is logged and counted,
    /// never the check's.
    fn approved(&self, account: &Account, verification: &Verification) {
        let Ok(to) = PhoneNumber::parse(&verification.to) else {
            // An e-mail address has no region (and abuse protection does not guard it): its
            // approval counts per channel under the `other` country.
            self.metrics
                .approval(crate::phone::Region::UNKNOWN, verification.channel.as_str());
            return;
        };
        self.metrics
            .approval(to.region(), verification.channel.as_str());
        let Some(abuse) = self.abuse.clone() else {
            return;
        };
        let (account, metrics, now_ms) = (account.id.clone(), self.metrics.clone(), self.now_ms());
        tokio::spawn(async move {
            let counted = async {
                let policy = abuse.accounts.cached_policy(&account).await?;
                abuse
                    .guard
                    .approved(account.as_str(), &policy.abuse, &to, now_ms)
                    .await
            };
            if let Err(error) = counted.await {
                metrics.store_error("abuse_approval");
                tracing::warn!(%error, "could not count an approval towards abuse protection");
            }
        });
    }

    /// The message's text: a call's spoken words (the code digit by digit, twice), else the
    /// SMS / WhatsApp text.
    fn message_body(&self, channel: Channel, locale: &str, code: &Code) -> String {
        if channel == Channel::Call {
            return crate::dispatch::voice::render(locale, &self.settings.brand, code.as_str());
        }
        let minutes = self.settings.ttl.as_secs().div_ceil(60).max(1) as u32;
        if channel.is_email() {
            // A mail's plain-text part; its subject and HTML part are made from it, per locale,
            // where it is sent (dispatch::mail_template).
            return mail_template::text(locale, &self.settings.brand, code.as_str(), minutes);
        }
        template::render(
            locale,
            &self.settings.brand,
            code.as_str(),
            minutes,
            self.web_otp.as_ref(),
        )
    }

    /// Checks a code. With an idempotency key, a retry of a check whose answer was lost gets
    /// the first answer again (an approval included) and counts nothing.
    pub async fn check(
        &self,
        account: &Account,
        target: CheckTarget,
        code: &Code,
        idempotency_key: Option<&str>,
    ) -> Result<Checked, VerifyError> {
        let tag = self.mac.tag(account.id.as_str(), code);
        let outcome = self
            .store
            .check_verification(&CodeCheck {
                account: &account.id,
                target: &target,
                tag: &tag,
                now_ms: self.clock.now_ms(),
                idempotency_key,
            })
            .await
            .inspect_err(|_| self.metrics.store_error("check"))?;
        match outcome {
            CheckOutcome::NotFound => {
                self.metrics.verification_checked("not_found");
                Err(VerifyError::NotFound)
            }
            CheckOutcome::KeyReused => {
                self.metrics.verification_checked("key_reused");
                Err(VerifyError::IdempotencyKeyReused)
            }
            CheckOutcome::Final(verification) => {
                self.metrics.verification_checked("already_final");
                Err(VerifyError::AlreadyFinal(Box::new(verification)))
            }
            CheckOutcome::Replayed {
                verification,
                valid,
            } => {
                self.metrics.verification_checked("replayed");
                Ok(Checked {
                    verification,
                    valid,
                    replayed: true,
                })
            }
            CheckOutcome::Checked {
                verification,
                valid,
            } => {
                self.metrics
                    .verification_checked(verification.status.as_str());
                if let Some(kind) = event_of(verification.status) {
                    self.emit(kind, &verification);
                }
                if verification.status == Status::Approved {
                    self.approved(account, &verification);
                }
                Ok(Checked {
                    verification,
                    valid,
                    replayed: false,
                })
            }
        }
    }

    pub async fn get(
        &self,
        account: &Account,
        id: &VerificationId,
    ) -> Result<Verification, VerifyError> {
        let now_ms = self.clock.now_ms();
        let mut verification = self
            .store
            .get_verification(&account.id, id, now_ms)
            .await
            .inspect_err(|_| self.metrics.store_error("get"))?
            .ok_or(VerifyError::NotFound)?;
        verification.status = verification.status_at(now_ms);
        Ok(verification)
    }

    pub async fn cancel(
        &self,
        account: &Account,
        id: &VerificationId,
    ) -> Result<Verification, VerifyError> {
        let outcome = self
            .store
            .cancel_verification(&account.id, id, self.clock.now_ms())
            .await
            .inspect_err(|_| self.metrics.store_error("cancel"))?;
        match outcome {
            CancelOutcome::Canceled(verification) => {
                self.emit(EventType::VerificationCanceled, &verification);
                Ok(verification)
            }
            CancelOutcome::NotPending(verification) => {
                Err(VerifyError::NotPending(Box::new(verification)))
            }
            CancelOutcome::NotFound => Err(VerifyError::NotFound),
        }
    }

    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// The event of what just happened to `verification`. Expiry is noticed by the check that
    /// finds it: a code nobody checks again expires without an event.
    fn emit(&self, kind: EventType, verification: &Verification) {
        let (id, to) = (verification.id.as_str(), &verification.to);
        let channel = verification.channel.as_str();
        let attempts = verification.attempts;
        self.events
            .verification(&verification.account, kind, id, to, channel, attempts);
    }
}

/// The event of a status a check left (a pending verification has none).
fn event_of(status: Status) -> Option<EventType> {
    match status {
        Status::Pending => None,
        Status::Approved => Some(EventType::VerificationApproved),
        Status::Expired => Some(EventType::VerificationExpired),
        Status::MaxAttemptsReached => Some(EventType::VerificationMaxAttemptsReached),
        Status::Canceled => Some(EventType::VerificationCanceled),
    }
}

/// Where each step of `channels` sends: a phone step to `to`, an e-mail step to `to` when it is
/// an address, else to `email`. `to` is the phone number whenever a phone step comes (it keys
/// the verification); `email` only names the address of e-mail steps beside it.
fn step_destinations(
    channels: &[Channel],
    to: &Destination,
    email: Option<&EmailAddress>,
) -> Result<Vec<Destination>, VerifyError> {
    let has_email_step = channels.iter().any(|channel| channel.is_email());
    let phone_step = channels.iter().find(|channel| !channel.is_email());
    if email.is_some() && !has_email_step {
        return Err(VerifyError::StepDestination(
            "email is the address of a workflow's e-mail steps, and this workflow has none: \
             leave it out or add email to channels"
                .to_owned(),
        ));
    }
    if let Destination::Email(_) = to {
        // Without an e-mail step this is the one-kind mismatch it always was.
        if let (Some(phone_step), false) = (phone_step, has_email_step) {
            return Err(VerifyError::WrongDestination(phone_step.as_str()));
        }
        if let Some(phone_step) = phone_step {
            return Err(VerifyError::StepDestination(format!(
                "the {} step needs a phone number: put the phone number in to and the e-mail \
                 address in email",
                phone_step.as_str()
            )));
        }
        if email.is_some() {
            return Err(VerifyError::StepDestination(
                "to is already the e-mail address: give email only beside a phone number in to"
                    .to_owned(),
            ));
        }
    }
    channels
        .iter()
        .map(|channel| match (channel.is_email(), to, email) {
            (false, Destination::Phone(_), _) | (true, Destination::Email(_), _) => Ok(to.clone()),
            (true, Destination::Phone(_), Some(address)) => Ok(Destination::Email(address.clone())),
            // An e-mail-only send to a number: the one-kind mismatch it always was.
            (true, Destination::Phone(_), None) if phone_step.is_none() => {
                Err(VerifyError::WrongDestination(channel.as_str()))
            }
            (true, Destination::Phone(_), None) => Err(VerifyError::StepDestination(
                "the email step needs an e-mail address: give it in email (to is the phone \
                 number of the phone steps)"
                    .to_owned(),
            )),
            // Refused above: a phone step never follows an address in `to`.
            (false, Destination::Email(_), _) => {
                Err(VerifyError::WrongDestination(channel.as_str()))
            }
        })
        .collect()
}

/// The channel as abuse protection tells them apart; none for e-mail, which it does not guard.
fn abuse_channel(channel: Channel) -> Option<abuse::Channel> {
    match channel {
        Channel::Sms => Some(abuse::Channel::Sms),
        Channel::Whatsapp => Some(abuse::Channel::Whatsapp),
        Channel::Call => Some(abuse::Channel::Call),
        Channel::Email => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phone() -> Destination {
        Destination::parse("+4915112347001").unwrap()
    }

    fn address() -> EmailAddress {
        EmailAddress::parse("Ada@Example.com").unwrap()
    }

    #[test]
    fn phone_steps_go_to_the_number_and_the_email_step_to_the_address() {
        let steps = [Channel::Sms, Channel::Email, Channel::Call];
        let to = step_destinations(&steps, &phone(), Some(&address())).unwrap();
        assert_eq!(to[0], phone());
        assert_eq!(to[1].as_str(), "ada@example.com");
        assert_eq!(to[2], phone());
        let email_first = [Channel::Email, Channel::Sms];
        let to = step_destinations(&email_first, &phone(), Some(&address())).unwrap();
        assert_eq!(
            (to[0].email(), to[1].phone()),
            (Some(&address()), phone().phone())
        );
    }

    #[test]
    fn an_address_that_fits_no_step_or_a_step_without_a_destination_is_refused() {
        let refused = |channels: &[Channel], to: Destination, email: Option<EmailAddress>| {
            match step_destinations(channels, &to, email.as_ref()) {
                Err(VerifyError::StepDestination(reason)) => reason,
                other => panic!("{channels:?}: expected a refusal, got {other:?}"),
            }
        };
        let by_mail = Destination::Email(address());
        let no_email_step = refused(&[Channel::Sms], phone(), Some(address()));
        assert!(
            no_email_step.starts_with("email is the address"),
            "{no_email_step}"
        );
        let no_address = refused(&[Channel::Sms, Channel::Email], phone(), None);
        assert!(no_address.contains("give it in email"), "{no_address}");
        let phone_after_address = refused(&[Channel::Email, Channel::Sms], by_mail.clone(), None);
        assert!(
            phone_after_address.contains("put the phone number in to"),
            "{phone_after_address}"
        );
        let twice = refused(&[Channel::Email], by_mail.clone(), Some(address()));
        assert!(twice.starts_with("to is already"), "{twice}");
        // What worked before `email` still does, and a one-kind mismatch is what it was.
        assert!(step_destinations(&[Channel::Email], &by_mail, None).is_ok());
        assert!(matches!(
            step_destinations(&[Channel::Sms, Channel::Call], &by_mail, None),
            Err(VerifyError::WrongDestination("sms"))
        ));
        assert!(matches!(
            step_destinations(&[Channel::Email], &phone(), None),
            Err(VerifyError::WrongDestination("email"))
        ));
        assert!(step_destinations(&[Channel::Whatsapp, Channel::Sms], &phone(), None).is_ok());
    }
}
