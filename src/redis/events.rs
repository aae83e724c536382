//! `RedisWebhookStore`, the `WebhookStore` port (src/events/store.rs) on Redis: durable queues
//! of webhook deliveries, one Redis list per webhook, leased to one instance at a time.
//!
//! An account's webhooks, queues, leases and logs share its hash tag, so every step on them is
//! one script on one slot (scripts `events_*.lua`). Which accounts have something due is
//! gateway-wide, in keys of their own tag `{wh}`: a cluster cannot run one script across both,
//! so the due set is a hint kept right in a fixed order. Enqueueing writes the account's queue
//! first, then signals the account (`events_signal.lua`: due now, and its generation moves);
//! workers read due accounts with their generation, claim until nothing is due, and park the
//! account at its next due time only if its generation did not move meanwhile
//! (`events_park.lua`), so a signal given while a worker looked is never overwritten. A signal
//! lost with a crashed instance (between the queue write and the signal) is repaired by the
//! worker's sweep, which signals every account with webhooks every `sweep_interval`.
//! Likewise the gateway-wide bound is reserved before the account's registration and given
//! back when it is refused; an instance dying between the two leaves the count one too high.
//!
//! | key (`P:{a:<account>}:` + …) | type | holds |
//! | --- | --- | --- |
//! | `whr` | hash | webhook id → `<created ms> <secret whsec_…> <url> <filter: * or type names>` |
//! | `whz` | sorted set | webhook ids by when they need the worker: the head's due time, or the end of its lease |
//! | `whq:<id>` | list | queued events, head first: `<event id> <type> <created ms> <body>` |
//! | `whs:<id>` | hash | `o` lease holder, `n` failed attempts of the head, `f` the head's first attempt ms |
//! | `whl:<id>` | list | attempts, latest first: `<at ms> <event id> <type> <attempt> <outcome> <status or -> <error or -> <duration ms>` |
//! | `whx:<id>` | list | dead letters, latest first: the last attempt's log entry, then the queue entry |
//!
//! | key (`P:{wh}:` + …) | type | holds |
//! | --- | --- | --- |
//! | `due` | sorted set | accounts by when something of theirs is due |
//! | `gen` | hash | account → how many times it was signalled |
//! | `accounts` | set | accounts that registered a webhook (the sweep's list) |
//! | `count` | string | webhooks in the gateway, against `max_webhooks_total` |
//!
//! Webhook secrets sign requests, so they cannot be hashed: they are sealed (AES-256-GCM, the
//! outbox's `Sealer` under a key of their own, `sealed:<base64url>`) when the gateway gives a
//! sealer (`with_sealer`, as startup does), and kept as written (`whsec_…`) otherwise; either
//! form is read back.

use async_trait::async_trait;
use redis::Script;

use std::sync::Arc;

use crate::account::AccountId;
use crate::dispatch::seal::Sealer;
use crate::events::model::{EventFilter, EventId, EventType};
use crate::events::sign::WebhookSecret;
use crate::events::store::{
    Attempt, AttemptOutcome, Claim, Claimed, DeadLetter, Deliveries, DueAccount, Enqueue, Enqueued,
    Lease, Outcome, QueuedEvent, Recipients, Registered, Settle, Settled, Webhook, WebhookBounds,
    WebhookId, WebhookStore,
};
use crate::redis::connection::Connection;
use crate::redis::script::{corrupt, lua, query, run, words, Failure};
use crate::redis::KeySpace;
use crate::store::StoreError;

pub struct RedisWebhookStore {
    connection: Connection,
    keys: KeySpace,
    register: Script,
    reserve: Script,
    remove: Script,
    enqueue: Script,
    claim: Script,
    settle: Script,
    signal: Script,
    due: Script,
    park: Script,
    sealer: Option<Arc<Sealer>>,
}

/// The prefix of a sealed secret in a registration.
const SEALED: &str = "sealed:";

impl RedisWebhookStore {
    pub(crate) fn new(connection: Connection, prefix: &str) -> Self {
        Self {
            connection,
            keys: KeySpace::new(prefix),
            register: lua!("events_register"),
            reserve: lua!("events_reserve"),
            remove: lua!("events_remove"),
            enqueue: lua!("events_enqueue"),
            claim: lua!("events_claim"),
            settle: lua!("events_settle"),
            signal: lua!("events_signal"),
            due: lua!("events_due"),
            park: lua!("events_park"),
            sealer: None,
        }
    }

    /// Seals webhook secrets at rest with `sealer` (which opens them again on any instance built
    /// with the same key).
    pub fn with_sealer(mut self, sealer: Arc<Sealer>) -> Self {
        self.sealer = Some(sealer);
        self
    }

    /// A secret as a registration keeps it.
    fn seal(&self, secret: &WebhookSecret) -> Result<String, StoreError> {
        let text = secret.expose_text();
        match &self.sealer {
            None => Ok(text),
            Some(sealer) => sealer
                .seal(text.as_bytes())
                .map(|sealed| format!("{SEALED}{}", data_encoding::BASE64URL_NOPAD.encode(&sealed)))
                .map_err(|_| StoreError::Unavailable("the random generator failed".into())),
        }
    }

    /// The inverse of `seal` (a secret kept as written reads too).
    fn open(&self, kept: &str) -> Option<WebhookSecret> {
        match (kept.strip_prefix(SEALED), &self.sealer) {
            (None, _) => WebhookSecret::parse(kept),
            (Some(sealed), Some(sealer)) => {
                let sealed = data_encoding::BASE64URL_NOPAD
                    .decode(sealed.as_bytes())
                    .ok()?;
                WebhookSecret::parse(std::str::from_utf8(&sealer.open(&sealed)?).ok()?)
            }
            (Some(_), None) => None,
        }
    }

    fn registration(&self, webhook: &Webhook) -> Result<String, StoreError> {
        Ok(format!(
            "{} {} {} {}",
            webhook.created_ms,
            self.seal(&webhook.secret)?,
            webhook.url,
            webhook.events.to_words()
        ))
    }

    fn parse_registration(&self, account: &AccountId, id: &str, value: &str) -> Option<Webhook> {
        let mut fields = value.splitn(4, ' ');
        Some(Webhook {
            created_ms: fields.next()?.parse().ok()?,
            secret: self.open(fields.next()?)?,
            url: fields.next()?.to_owned(),
            events: EventFilter::from_words(fields.next()?)?,
            id: WebhookId::parse(id)?,
            account: account.clone(),
        })
    }

    /// A webhook store on the verification store's connection and prefix.
    pub fn on(store: &crate::redis::RedisStore) -> Self {
        Self::new(store.connection(), store.prefix())
    }

    fn writes(&self) -> Failure {
        Failure::Sorted {
            cluster: self.connection.is_cluster(),
        }
    }

    async fn run(&self, invocation: &redis::ScriptInvocation<'_>) -> Result<String, StoreError> {
        run(&self.connection, invocation, self.writes()).await
    }

    /// Gives back a reservation of the gateway-wide bound.
    async fn release_one(&self) -> Result<(), StoreError> {
        query::<i64>(
            &self.connection,
            redis::cmd("DECR").arg(self.keys.webhook_count()),
            self.writes(),
        )
        .await
        .map(drop)
    }

    /// The signal after a write that made something due; its failure is logged, not returned:
    /// the write stands (a retry would queue the event twice) and the sweep signals again.
    async fn signal_after_write(&self, account: &AccountId, due_ms: u64) {
        if let Err(error) = self.signal(account, due_ms).await {
            tracing::warn!(%error, account = %account, "webhook due signal failed; the sweep repairs it");
        }
    }
}

fn queue_entry(event: &QueuedEvent) -> [String; 4] {
    [
        event.id.as_str().to_owned(),
        event.kind.as_str().to_owned(),
        event.created_ms.to_string(),
        event.body.clone(),
    ]
}

fn parse_queue_entry(text: &str) -> Option<QueuedEvent> {
    let mut fields = text.splitn(4, ' ');
    Some(QueuedEvent {
        id: EventId::parse(fields.next()?)?,
        kind: EventType::parse(fields.next()?)?,
        created_ms: fields.next()?.parse().ok()?,
        body: fields.next()?.to_owned(),
    })
}

fn attempt_entry(attempt: &Attempt) -> String {
    format!(
        "{} {} {} {} {} {} {} {}",
        attempt.at_ms,
        attempt.event_id.as_str(),
        attempt.event_type.as_str(),
        attempt.attempt,
        attempt.outcome.as_str(),
        attempt
            .status
            .map_or("-".to_owned(), |status| status.to_string()),
        attempt.error.as_deref().unwrap_or("-"),
        attempt.duration_ms
    )
}

/// An attempt's eight fields from the front of `text`, and what follows them.
fn parse_attempt(text: &str) -> Option<(Attempt, Option<&str>)> {
    let mut fields = text.splitn(9, ' ');
    let attempt = Attempt {
        at_ms: fields.next()?.parse().ok()?,
        event_id: EventId::parse(fields.next()?)?,
        event_type: EventType::parse(fields.next()?)?,
        attempt: fields.next()?.parse().ok()?,
        outcome: AttemptOutcome::parse(fields.next()?)?,
        status: match fields.next()? {
            "-" => None,
            status => Some(status.parse().ok()?),
        },
        error: match fields.next()? {
            "-" => None,
            error => Some(error.to_owned()),
        },
        duration_ms: fields.next()?.parse().ok()?,
    };
    Some((attempt, fields.next()))
}

/// A schedule score as the scripts answer it (`-`: none).
fn next_due(word: &str) -> Result<Option<u64>, StoreError> {
    match word {
        "-" => Ok(None),
        score => score
            .parse::<f64>()
            .map(|ms| Some(ms as u64))
            .map_err(|_| corrupt("webhook schedule score")),
    }
}

#[async_trait]
impl WebhookStore for RedisWebhookStore {
    async fn register(
        &self,
        webhook: &Webhook,
        bounds: WebhookBounds,
    ) -> Result<Registered, StoreError> {
        let mut reserve = self.reserve.prepare_invoke();
        reserve
            .key(self.keys.webhook_count())
            .key(self.keys.webhook_accounts())
            .arg(bounds.total)
            .arg(webhook.account.as_str());
        if self.run(&reserve).await? == "full" {
            return Ok(Registered::GatewayFull);
        }
        let mut invocation = self.register.prepare_invoke();
        invocation
            .key(self.keys.webhooks(&webhook.account))
            .arg(webhook.id.as_str())
            .arg(self.registration(webhook)?)
            .arg(bounds.per_account);
        let outcome = match self.run(&invocation).await {
            Ok(outcome) => outcome,
            Err(error) => {
                // It may have been stored (an unknown outcome): the count stays reserved.
                if matches!(error, StoreError::Unavailable(_)) {
                    self.release_one().await?;
                }
                return Err(error);
            }
        };
        match outcome.as_str() {
            "created" => Ok(Registered::Created),
            "full" => {
                self.release_one().await?;
                Ok(Registered::AccountFull)
            }
            "exists" => {
                self.release_one().await?;
                Err(corrupt("webhook id already registered"))
            }
            _ => Err(corrupt("unexpected register reply")),
        }
    }

    async fn list(&self, account: &AccountId) -> Result<Vec<Webhook>, StoreError> {
        let all: Vec<(String, String)> = query(
            &self.connection,
            redis::cmd("HGETALL").arg(self.keys.webhooks(account)),
            Failure::Unavailable,
        )
        .await?;
        let mut webhooks = all
            .iter()
            .map(|(id, value)| {
                self.parse_registration(account, id, value)
                    .ok_or_else(|| corrupt("webhook record"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        webhooks.sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
        Ok(webhooks)
    }

    async fn get(
        &self,
        account: &AccountId,
        id: &WebhookId,
    ) -> Result<Option<Webhook>, StoreError> {
        let value: Option<String> = query(
            &self.connection,
            redis::cmd("HGET")
                .arg(self.keys.webhooks(account))
                .arg(id.as_str()),
            Failure::Unavailable,
        )
        .await?;
        value
            .map(|value| {
                self.parse_registration(account, id.as_str(), &value)
                    .ok_or_else(|| corrupt("webhook record"))
            })
            .transpose()
    }

    async fn remove(&self, account: &AccountId, id: &WebhookId) -> Result<bool, StoreError> {
        let mut invocation = self.remove.prepare_invoke();
        invocation
            .key(self.keys.webhooks(account))
            .key(self.keys.webhook_schedule(account))
            .arg(id.as_str());
        match self.run(&invocation).await?.as_str() {
            "removed" => {
                self.release_one().await?;
                Ok(true)
            }
            "missing" => Ok(false),
            _ => Err(corrupt("unexpected remove reply")),
        }
    }

    async fn enqueue(&self, request: Enqueue<'_>) -> Result<Enqueued, StoreError> {
        let only = match request.recipients {
            Recipients::Subscribed => "",
            Recipients::Only(id) => id.as_str(),
        };
        let mut invocation = self.enqueue.prepare_invoke();
        invocation
            .key(self.keys.webhooks(request.account))
            .key(self.keys.webhook_schedule(request.account));
        for field in queue_entry(request.event) {
            invocation.arg(field);
        }
        invocation
            .arg(request.now_ms)
            .arg(request.max_queued)
            .arg(only);
        let reply = self.run(&invocation).await?;
        let enqueued = match words(&reply).as_slice() {
            ["queued", queued, dropped] => Enqueued {
                queued: queued.parse().map_err(|_| corrupt("enqueue count"))?,
                dropped: dropped.parse().map_err(|_| corrupt("enqueue count"))?,
            },
            _ => return Err(corrupt("unexpected enqueue reply")),
        };
        if enqueued.queued > 0 {
            self.signal_after_write(request.account, request.now_ms)
                .await;
        }
        Ok(enqueued)
    }

    async fn due_accounts(&self, now_ms: u64, limit: usize) -> Result<Vec<DueAccount>, StoreError> {
        let mut invocation = self.due.prepare_invoke();
        invocation
            .key(self.keys.webhook_due())
            .key(self.keys.webhook_generations())
            .arg(now_ms)
            .arg(limit);
        let reply: String = run(&self.connection, &invocation, Failure::Unavailable).await?;
        let fields = words(&reply);
        let Some((&"due", pairs)) = fields.split_first() else {
            return Err(corrupt("unexpected due reply"));
        };
        pairs
            .chunks(2)
            .map(|pair| match pair {
                [account, generation] => Ok(DueAccount {
                    account: AccountId::parse(account).ok_or_else(|| corrupt("due account"))?,
                    generation: generation.parse().map_err(|_| corrupt("due generation"))?,
                }),
                _ => Err(corrupt("due reply")),
            })
            .collect()
    }

    async fn signal(&self, account: &AccountId, due_ms: u64) -> Result<(), StoreError> {
        let mut invocation = self.signal.prepare_invoke();
        invocation
            .key(self.keys.webhook_due())
            .key(self.keys.webhook_generations())
            .arg(account.as_str())
            .arg(due_ms);
        self.run(&invocation).await.map(drop)
    }

    async fn park(&self, due: &DueAccount, next_ms: Option<u64>) -> Result<(), StoreError> {
        let mut invocation = self.park.prepare_invoke();
        invocation
            .key(self.keys.webhook_due())
            .key(self.keys.webhook_generations())
            .arg(due.account.as_str())
            .arg(due.generation)
            .arg(next_ms.map_or("-".to_owned(), |ms| ms.to_string()));
        self.run(&invocation).await.map(drop)
    }

    async fn accounts_with_webhooks(&self) -> Result<Vec<AccountId>, StoreError> {
        let members: Vec<String> = query(
            &self.connection,
            redis::cmd("SMEMBERS").arg(self.keys.webhook_accounts()),
            Failure::Unavailable,
        )
        .await?;
        Ok(members
            .iter()
            .filter_map(|member| AccountId::parse(member))
            .collect())
    }

    async fn claim(&self, lease: Lease<'_>) -> Result<Claimed, StoreError> {
        let mut invocation = self.claim.prepare_invoke();
        invocation
            .key(self.keys.webhooks(lease.account))
            .key(self.keys.webhook_schedule(lease.account))
            .arg(lease.owner)
            .arg(lease.now_ms)
            .arg(lease.until_ms);
        let reply = self.run(&invocation).await?;
        if let Some(next) = reply.strip_prefix("none ") {
            return Ok(Claimed::Nothing {
                next_ms: next_due(next)?,
            });
        }
        let mut fields = reply.splitn(7, ' ');
        let mut field = || fields.next().ok_or_else(|| corrupt("claim reply"));
        if field()? != "claimed" {
            return Err(corrupt("unexpected claim reply"));
        }
        let webhook = WebhookId::parse(field()?).ok_or_else(|| corrupt("claimed webhook id"))?;
        let failures = field()?.parse().map_err(|_| corrupt("claim failures"))?;
        let first_attempt_ms = match field()? {
            "-" => None,
            ms => Some(ms.parse().map_err(|_| corrupt("claim first attempt"))?),
        };
        let url = field()?.to_owned();
        let secret = self
            .open(field()?)
            .ok_or_else(|| corrupt("webhook secret"))?;
        let event = parse_queue_entry(field()?).ok_or_else(|| corrupt("queued event"))?;
        Ok(Claimed::One(Box::new(Claim {
            account: lease.account.clone(),
            webhook,
            url,
            secret,
            event,
            failures,
            first_attempt_ms,
            owner: lease.owner.to_owned(),
        })))
    }

    async fn settle(&self, request: Settle<'_>) -> Result<Settled, StoreError> {
        let (word, due_ms) = match request.outcome {
            Outcome::Delivered => ("delivered", 0),
            Outcome::RetryAt(due_ms) => ("retry", due_ms),
            Outcome::DeadLettered => ("dead", 0),
        };
        let mut invocation = self.settle.prepare_invoke();
        invocation
            .key(self.keys.webhooks(&request.claim.account))
            .key(self.keys.webhook_schedule(&request.claim.account))
            .arg(request.claim.webhook.as_str())
            .arg(&request.claim.owner)
            .arg(request.claim.event.id.as_str())
            .arg(word)
            .arg(request.now_ms)
            .arg(due_ms)
            .arg(request.attempt.at_ms)
            .arg(attempt_entry(request.attempt))
            .arg(request.log.attempts)
            .arg(request.log.dead_letters);
        let reply = self.run(&invocation).await?;
        match words(&reply).as_slice() {
            ["lost"] => Ok(Settled::LeaseLost),
            ["settled", next] => {
                let next_ms = next_due(next)?;
                if let Some(due_ms) = next_ms {
                    self.signal_after_write(&request.claim.account, due_ms)
                        .await;
                }
                Ok(Settled::Done { next_ms })
            }
            _ => Err(corrupt("unexpected settle reply")),
        }
    }

    async fn deliveries(
        &self,
        account: &AccountId,
        id: &WebhookId,
    ) -> Result<Deliveries, StoreError> {
        let mut connection = self.connection.clone();
        let (attempts, dead, queued): (Vec<String>, Vec<String>, usize) = redis::pipe()
            .cmd("LRANGE")
            .arg(self.keys.webhook_attempts(account, id))
            .arg(0)
            .arg(-1)
            .cmd("LRANGE")
            .arg(self.keys.webhook_dead_letters(account, id))
            .arg(0)
            .arg(-1)
            .cmd("LLEN")
            .arg(self.keys.webhook_queue(account, id))
            .query_async(&mut connection)
            .await
            .map_err(|error| Failure::Unavailable.of(error))?;
        let attempts = attempts
            .iter()
            .map(|entry| {
                parse_attempt(entry)
                    .map(|(attempt, _)| attempt)
                    .ok_or_else(|| corrupt("webhook attempt"))
            })
            .collect::<Result<_, _>>()?;
        let dead_letters = dead
            .iter()
            .map(|entry| {
                let (last_attempt, rest) =
                    parse_attempt(entry).ok_or_else(|| corrupt("dead letter"))?;
                let event = rest
                    .and_then(parse_queue_entry)
                    .ok_or_else(|| corrupt("dead letter"))?;
                Ok(DeadLetter {
                    event,
                    last_attempt,
                })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(Deliveries {
            attempts,
            dead_letters,
            queued,
        })
    }
}
