//! `WebhookService`: what the HTTP layer calls to manage an account's webhooks. Registration
//! checks the event names and the URL (the SSRF rules, resolving a name), draws the secret (shown
//! once, in the answer), stores the webhook within the bounds and audits it; removal audits too.
//! `test` sends the test event to one webhook; `deliveries` reads its log.

use std::sync::Arc;

use ring::rand::SystemRandom;
use serde_json::json;

use super::emit::{Emitted, Events};
use super::model::{Event, EventFilter, EventId, EventType, SubjectId, SubjectKind};
use super::sign::WebhookSecret;
use super::store::{Deliveries, Registered, Webhook, WebhookBounds, WebhookId, WebhookStore};
use super::target::{check_url, resolve_checked, TargetError, TargetRules};
use crate::account::audit::{AuditEntry, Who};
use crate::account::store::Directory;
use crate::account::AccountId;
use crate::clock::Clock;
use crate::store::{Limit, LimitReached, StoreError};

/// The audit actions of this module.
pub mod action {
    pub const WEBHOOK_CREATED: &str = "webhook.created";
    pub const WEBHOOK_DELETED: &str = "webhook.deleted";
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// An event type this gateway does not know (the name).
    #[error("events: '{0}' is not an event type (see docs/events.md) nor *")]
    UnknownEvent(String),
    /// The URL breaks a rule of where webhooks may point.
    #[error("url {0}")]
    Target(#[from] TargetError),
    #[error(transparent)]
    Limit(LimitReached),
    #[error("no such webhook")]
    NotFound,
    /// Events are off in this gateway (`events.enabled = false`).
    #[error("events are off in this gateway")]
    Disabled,
    /// The events buffer is full: the store is not keeping up.
    #[error("the events queue is full")]
    Busy,
    #[error("the random generator failed")]
    Random,
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct WebhookService {
    store: Arc<dyn WebhookStore>,
    directory: Arc<dyn Directory>,
    events: Events,
    clock: Arc<dyn Clock>,
    rng: SystemRandom,
    rules: TargetRules,
    bounds: WebhookBounds,
    enabled: bool,
}

/// What the service is built from (startup.rs).
pub struct WebhookParts {
    pub store: Arc<dyn WebhookStore>,
    pub directory: Arc<dyn Directory>,
    pub events: Events,
    pub clock: Arc<dyn Clock>,
    pub rules: TargetRules,
    pub bounds: WebhookBounds,
    pub enabled: bool,
}

impl WebhookService {
    pub fn new(parts: WebhookParts) -> Self {
        Self {
            store: parts.store,
            directory: parts.directory,
            events: parts.events,
            clock: parts.clock,
            rng: SystemRandom::new(),
            rules: parts.rules,
            bounds: parts.bounds,
            enabled: parts.enabled,
        }
    }

    /// The handle the domain emits through.
    pub fn events(&self) -> &Events {
        &self.events
    }

    /// The store the delivery worker reads.
    pub fn store(&self) -> &Arc<dyn WebhookStore> {
        &self.store
    }

    /// Registers a webhook of `account`: the answer holds its secret, which is never shown again.
    pub async fn register(
        &self,
        account: &AccountId,
        who: Who,
        url: &str,
        events: &[String],
    ) -> Result<Webhook, WebhookError> {
        if !self.enabled {
            return Err(WebhookError::Disabled);
        }
        let filter = EventFilter::parse(events.iter().map(String::as_str))
            .map_err(WebhookError::UnknownEvent)?;
        if filter.accepts(EventType::WebhookTest) && filter != EventFilter::All {
            // Sent to one webhook on request only, whatever its filter: not a subscription.
            return Err(WebhookError::UnknownEvent(
                EventType::WebhookTest.as_str().into(),
            ));
        }
        let checked = check_url(url, &self.rules)?;
        resolve_checked(&checked, &self.rules).await?;
        let webhook = Webhook {
            id: WebhookId::random(&self.rng).map_err(|_| WebhookError::Random)?,
            account: account.clone(),
            url: url.to_owned(),
            events: filter,
            secret: WebhookSecret::generate(&self.rng).map_err(|_| WebhookError::Random)?,
            created_ms: self.clock.now_ms(),
        };
        let (limit, max) = match self.store.register(&webhook, self.bounds).await? {
            Registered::Created => (None, 0),
            Registered::AccountFull => (Some(Limit::Webhooks), self.bounds.per_account),
            Registered::GatewayFull => (Some(Limit::GatewayWebhooks), self.bounds.total),
        };
        if let Some(limit) = limit {
            let max = max as u64;
            return Err(WebhookError::Limit(LimitReached { limit, max }));
        }
        self.events.watch(account);
        // The origin only: a receiver may carry a token in its path or query.
        let origin = checked.origin().ascii_serialization();
        self.audit(
            account,
            who,
            action::WEBHOOK_CREATED,
            &webhook.id,
            json!({
                "url": origin,
                "events": webhook.events.to_words(),
            }),
        )
        .await?;
        Ok(webhook)
    }

    pub async fn list(&self, account: &AccountId) -> Result<Vec<Webhook>, WebhookError> {
        Ok(self.store.list(account).await?)
    }

    pub async fn get(&self, account: &AccountId, id: &WebhookId) -> Result<Webhook, WebhookError> {
        self.store
            .get(account, id)
            .await?
            .ok_or(WebhookError::NotFound)
    }

    /// Removes the webhook with its queue and log.
    pub async fn remove(
        &self,
        account: &AccountId,
        who: Who,
        id: &WebhookId,
    ) -> Result<(), WebhookError> {
        if !self.store.remove(account, id).await? {
            return Err(WebhookError::NotFound);
        }
        self.audit(account, who, action::WEBHOOK_DELETED, id, json!({}))
            .await
    }

    /// Queues the test event for this one webhook; its id (the `webhook-id` it will carry).
    pub async fn test(&self, account: &AccountId, id: &WebhookId) -> Result<EventId, WebhookError> {
        self.get(account, id).await?;
        let subject = SubjectId::parse(account.as_str()).ok_or(WebhookError::NotFound)?;
        let event = Event::new(EventType::WebhookTest, SubjectKind::Account, subject);
        match self.events.emit_to(account, id, event) {
            Emitted::Accepted(id) => Ok(id),
            Emitted::Disabled | Emitted::Unwatched => Err(WebhookError::Disabled),
            Emitted::Full => Err(WebhookError::Busy),
        }
    }

    pub async fn deliveries(
        &self,
        account: &AccountId,
        id: &WebhookId,
    ) -> Result<Deliveries, WebhookError> {
        self.get(account, id).await?;
        Ok(self.store.deliveries(account, id).await?)
    }

    async fn audit(
        &self,
        account: &AccountId,
        who: Who,
        action: &str,
        id: &WebhookId,
        details: serde_json::Value,
    ) -> Result<(), WebhookError> {
        let entry = AuditEntry::new(
            self.clock.now_ms(),
            who,
            action,
            format!("webhook:{id}"),
            details,
        );
        Ok(self.directory.append_audit(account, &entry).await?)
    }
}
