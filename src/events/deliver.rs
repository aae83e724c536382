//! The delivery worker: finds accounts with due deliveries, leases their due webhooks, POSTs
//! each head with its Standard Webhooks headers, and settles it: a `2xx` is delivered (then
//! removed from the queue: a crash between the two sends it once more, with the same
//! `webhook-id`, which receivers dedupe on), anything else is retried on the schedule, with the
//! events behind it waiting (order per webhook over throughput), until the schedule is spent
//! and the event is dead-lettered.
//!
//! Every instance may run a worker: the store's lease gives each webhook to one at a time, and
//! a lease whose holder died ends by itself (`events.lease`). Time is the injected `Clock`; the
//! tests move it and call [`Deliverer::pass`] instead of waiting for the loop.

use std::error::Error as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use ring::rand::{SecureRandom, SystemRandom};
use tokio_util::sync::CancellationToken;

use super::model::CONTENT_TYPE;
use super::settings::{EventsSettings, RetrySchedule};
use super::sign::SignedHeaders;
use super::store::{
    Attempt, AttemptOutcome, Claim, Claimed, DueAccount, Lease, LogBounds, Outcome, Settle,
    Settled, WebhookStore,
};
use super::target::{check_url, CheckedResolver, TargetError, TargetRules};
use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::store::StoreError;

/// Rounds of claims one account gets per pass (each round delivers one event per due webhook).
const ROUNDS_PER_PASS: usize = 64;

pub struct Deliverer {
    store: Arc<dyn WebhookStore>,
    clock: Arc<dyn Clock>,
    client: reqwest::Client,
    rules: TargetRules,
    schedule: RetrySchedule,
    lease: Duration,
    log: LogBounds,
    accounts_per_pass: usize,
    poll_interval: Duration,
    sweep_interval: Duration,
    /// This worker's name in leases: random per process, so a restarted instance never settles
    /// what its previous life claimed.
    owner: String,
    /// When the last sweep ran (clock ms); 0: never, so the first pass sweeps.
    last_sweep_ms: AtomicU64,
    metrics: Option<Arc<Metrics>>,
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassReport {
    pub delivered: usize,
    pub retried: usize,
    pub dead_lettered: usize,
    /// Settles refused because the lease had been lost (the event goes out again).
    pub lease_lost: usize,
}

impl PassReport {
    fn add(&mut self, other: PassReport) {
        self.delivered += other.delivered;
        self.retried += other.retried;
        self.dead_lettered += other.dead_lettered;
        self.lease_lost += other.lease_lost;
    }
}

impl Deliverer {
    pub fn new(
        store: Arc<dyn WebhookStore>,
        clock: Arc<dyn Clock>,
        settings: &EventsSettings,
    ) -> Result<Self, String> {
        // reqwest is built without a default TLS provider (ring is the only crypto stack).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let rules = settings.target_rules();
        let client = reqwest::Client::builder()
            .timeout(settings.request_timeout)
            .connect_timeout(settings.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(CheckedResolver { rules })
            .user_agent(concat!("otpgate-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| format!("webhook client: {error}"))?;
        let mut name = [0u8; 8];
        SystemRandom::new()
            .fill(&mut name)
            .map_err(|_| "webhook worker: the system RNG failed".to_owned())?;
        Ok(Self {
            store,
            clock,
            client,
            rules,
            schedule: settings.retry_schedule(),
            lease: settings.lease,
            log: LogBounds {
                attempts: settings.deliveries_kept,
                dead_letters: settings.dead_letters_kept,
            },
            accounts_per_pass: settings.accounts_per_pass,
            poll_interval: settings.poll_interval,
            sweep_interval: settings.sweep_interval,
            owner: format!("w{}", data_encoding::HEXLOWER.encode(&name)),
            last_sweep_ms: AtomicU64::new(0),
            metrics: None,
        })
    }

    /// Counts each settled attempt and its duration.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Passes every `poll_interval` until `stop`.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        loop {
            if let Err(error) = self.pass().await {
                tracing::warn!(%error, "webhook delivery pass failed");
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(self.poll_interval) => {}
            }
        }
    }

    /// One pass: the sweep when it is time, then every due account (up to
    /// `accounts_per_pass`), each account's due webhooks delivered concurrently.
    pub async fn pass(&self) -> Result<PassReport, StoreError> {
        let now_ms = self.clock.now_ms();
        let last_sweep = self.last_sweep_ms.load(Ordering::Relaxed);
        if last_sweep == 0
            || now_ms.saturating_sub(last_sweep) >= self.sweep_interval.as_millis() as u64
        {
            self.last_sweep_ms.store(now_ms.max(1), Ordering::Relaxed);
            for account in self.store.accounts_with_webhooks().await? {
                self.store.signal(&account, now_ms).await?;
            }
        }
        let due = self
            .store
            .due_accounts(now_ms, self.accounts_per_pass)
            .await?;
        let mut report = PassReport::default();
        for result in join_all(due.iter().map(|due| self.serve(due))).await {
            report.add(result?);
        }
        Ok(report)
    }

    /// Claims every due webhook of one account and delivers the claims concurrently, in
    /// rounds (a delivered head makes the next one due) until nothing is due, then parks the
    /// account at its next due time. After `ROUNDS_PER_PASS` rounds the account stays due, so
    /// one busy account does not hold the pass.
    async fn serve(&self, due: &DueAccount) -> Result<PassReport, StoreError> {
        let mut report = PassReport::default();
        for _ in 0..ROUNDS_PER_PASS {
            let now_ms = self.clock.now_ms();
            let lease_until = now_ms.saturating_add(self.lease.as_millis() as u64);
            let mut claims = Vec::new();
            let next_ms = loop {
                match self
                    .store
                    .claim(Lease {
                        account: &due.account,
                        owner: &self.owner,
                        now_ms,
                        until_ms: lease_until,
                    })
                    .await?
                {
                    Claimed::One(claim) => claims.push(claim),
                    Claimed::Nothing { next_ms } => break next_ms,
                }
            };
            if claims.is_empty() {
                self.store.park(due, next_ms).await?;
                break;
            }
            for result in join_all(claims.iter().map(|claim| self.deliver(claim))).await {
                report.add(result?);
            }
        }
        Ok(report)
    }

    async fn deliver(&self, claim: &Claim) -> Result<PassReport, StoreError> {
        let started = Instant::now();
        let at_ms = self.clock.now_ms();
        let (status, error) = self.post(claim, at_ms).await;
        let delivered = error.is_none();
        let failures = claim.failures + 1;
        let outcome = if delivered {
            Outcome::Delivered
        } else {
            let first = claim.first_attempt_ms.unwrap_or(at_ms);
            match self.schedule.next_attempt(failures, first, at_ms) {
                Some(due_ms) => Outcome::RetryAt(due_ms),
                None => Outcome::DeadLettered,
            }
        };
        let attempt = Attempt {
            at_ms,
            event_id: claim.event.id.clone(),
            event_type: claim.event.kind,
            attempt: failures,
            outcome: match outcome {
                Outcome::Delivered => AttemptOutcome::Delivered,
                Outcome::RetryAt(_) => AttemptOutcome::Failed,
                Outcome::DeadLettered => AttemptOutcome::DeadLettered,
            },
            status,
            error: error.map(str::to_owned),
            duration_ms: started.elapsed().as_millis() as u64,
        };
        let settled = self
            .store
            .settle(Settle {
                claim,
                outcome,
                attempt: &attempt,
                now_ms: self.clock.now_ms(),
                log: self.log,
            })
            .await?;
        if let (Settled::Done { .. }, Some(metrics)) = (settled, &self.metrics) {
            metrics.webhook_delivery(attempt.outcome.as_str(), started.elapsed());
        }
        let mut report = PassReport::default();
        match (settled, outcome) {
            (Settled::LeaseLost, _) => report.lease_lost += 1,
            (Settled::Done { .. }, Outcome::Delivered) => report.delivered += 1,
            (Settled::Done { .. }, Outcome::RetryAt(_)) => report.retried += 1,
            (Settled::Done { .. }, Outcome::DeadLettered) => {
                tracing::warn!(
                    account = %claim.account,
                    webhook = %claim.webhook,
                    event = claim.event.id.as_str(),
                    attempts = failures,
                    "webhook event dead-lettered"
                );
                report.dead_lettered += 1;
            }
        }
        Ok(report)
    }

    /// One request: the receiver's status (when it answered), and what went wrong as a word
    /// (`None`: a `2xx`).
    async fn post(&self, claim: &Claim, at_ms: u64) -> (Option<u16>, Option<&'static str>) {
        // Checked again on every delivery: the operator's rules may have changed since the
        // registration; a name's answer is checked by the client's resolver.
        let url = match check_url(&claim.url, &self.rules) {
            Ok(url) => url,
            Err(_) => return (None, Some("refused-target")),
        };
        let headers = SignedHeaders::new(
            &claim.secret,
            claim.event.id.as_str(),
            at_ms / 1_000,
            claim.event.body.as_bytes(),
        );
        let response = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
            .header("webhook-id", &headers.id)
            .header("webhook-timestamp", &headers.timestamp)
            .header("webhook-signature", &headers.signature)
            .body(claim.event.body.clone())
            .send()
            .await;
        match response {
            Ok(response) if response.status().is_success() => {
                (Some(response.status().as_u16()), None)
            }
            Ok(response) => (Some(response.status().as_u16()), Some("status")),
            Err(error) if refused_by_resolver(&error) => (None, Some("refused-target")),
            Err(error) if error.is_timeout() => (None, Some("timeout")),
            Err(error) if error.is_connect() => (None, Some("connect")),
            Err(_) => (None, Some("request")),
        }
    }
}

/// Whether the client failed because the resolver refused the target's addresses.
fn refused_by_resolver(error: &reqwest::Error) -> bool {
    let mut source = error.source();
    while let Some(cause) = source {
        if cause.downcast_ref::<TargetError>().is_some() {
            return true;
        }
        source = cause.source();
    }
    false
}
