//! The wire format of webhooks out: what `events.rs` reads and writes, and what `openapi.rs`
//! documents. The events themselves (CloudEvents envelopes) are docs/events.md's.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::clock::rfc3339;
use crate::events::store::{Attempt, DeadLetter, Deliveries, Webhook};
use crate::events::EventFilter;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CreateWebhook)]
pub struct CreateWebhookBody {
    /// `https://` to a public address (the operator may allow `http://` to loopback, and
    /// private ranges); at most 2048 characters, no user name or password.
    pub url: String,
    /// Event types (`io.otpgate.verification.approved`, …) or `*`; absent or empty: every type.
    #[serde(default)]
    pub events: Vec<String>,
}

/// A webhook; `secret` only in the answer that creates it.
#[derive(Serialize, ToSchema)]
#[schema(as = Webhook)]
pub struct WebhookBody<'a> {
    pub id: &'a str,
    pub url: &'a str,
    /// The types it receives, or `["*"]`.
    pub events: Vec<&'static str>,
    pub created_at: String,
    /// `whsec_…`: the Standard Webhooks signing secret, shown once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl<'a> WebhookBody<'a> {
    pub fn new(webhook: &'a Webhook) -> Self {
        Self {
            id: webhook.id.as_str(),
            url: &webhook.url,
            events: match &webhook.events {
                EventFilter::All => vec!["*"],
                EventFilter::Only(kinds) => kinds.iter().map(|kind| kind.as_str()).collect(),
            },
            created_at: rfc3339(webhook.created_ms),
            secret: None,
        }
    }

    /// With its secret: the answer to the registration.
    pub fn created(webhook: &'a Webhook) -> Self {
        Self {
            secret: Some(webhook.secret.expose_text()),
            ..Self::new(webhook)
        }
    }
}

#[derive(Serialize, ToSchema)]
#[schema(as = WebhookList)]
pub struct WebhookListBody<'a> {
    pub webhooks: Vec<WebhookBody<'a>>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = WebhookDeleted)]
pub struct WebhookDeletedBody<'a> {
    pub id: &'a str,
    pub deleted: bool,
}

#[derive(Serialize, ToSchema)]
#[schema(as = WebhookTestQueued)]
pub struct WebhookTestBody<'a> {
    /// The test event's id: its `webhook-id` header.
    pub event_id: &'a str,
}

/// One delivery attempt.
#[derive(Serialize, ToSchema)]
#[schema(as = WebhookAttempt)]
pub struct AttemptBody<'a> {
    pub at: String,
    pub event_id: &'a str,
    pub event_type: &'static str,
    /// 1 for the event's first attempt.
    pub attempt: u32,
    /// delivered, failed (tried again later), dead_lettered.
    pub outcome: &'static str,
    /// The receiver's status code, when it answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    /// status, timeout, connect, refused-target, request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
    pub duration_ms: u64,
}

impl<'a> AttemptBody<'a> {
    fn new(attempt: &'a Attempt) -> Self {
        Self {
            at: rfc3339(attempt.at_ms),
            event_id: attempt.event_id.as_str(),
            event_type: attempt.event_type.as_str(),
            attempt: attempt.attempt,
            outcome: attempt.outcome.as_str(),
            status_code: attempt.status,
            error: attempt.error.as_deref(),
            duration_ms: attempt.duration_ms,
        }
    }
}

/// An event no attempt delivered, kept with its last attempt.
#[derive(Serialize, ToSchema)]
#[schema(as = WebhookDeadLetter)]
pub struct DeadLetterBody<'a> {
    pub event_id: &'a str,
    pub event_type: &'static str,
    /// When the event happened.
    pub created_at: String,
    pub last_attempt: AttemptBody<'a>,
}

/// A webhook's log: the latest attempts and dead letters first.
#[derive(Serialize, ToSchema)]
#[schema(as = WebhookDeliveries)]
pub struct DeliveriesBody<'a> {
    /// Events waiting, the one in flight included.
    #[schema(value_type = u64)]
    pub queued: usize,
    pub attempts: Vec<AttemptBody<'a>>,
    pub dead_letters: Vec<DeadLetterBody<'a>>,
}

impl<'a> DeliveriesBody<'a> {
    pub fn new(deliveries: &'a Deliveries) -> Self {
        Self {
            queued: deliveries.queued,
            attempts: deliveries.attempts.iter().map(AttemptBody::new).collect(),
            dead_letters: deliveries
                .dead_letters
                .iter()
                .map(
                    |DeadLetter {
                         event,
                         last_attempt,
                     }| DeadLetterBody {
                        event_id: event.id.as_str(),
                        event_type: event.kind.as_str(),
                        created_at: rfc3339(event.created_ms),
                        last_attempt: AttemptBody::new(last_attempt),
                    },
                )
                .collect(),
        }
    }
}
