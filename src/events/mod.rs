//! Events out: signed webhooks. The domain emits an [`Event`] through the [`Events`] handle
//! (never blocking its request); the event is stamped and rendered as a CloudEvents 1.0 JSON
//! envelope (`model.rs`), queued durably per webhook (`store.rs`, the `WebhookStore` port; its
//! adapters in `memory/events.rs` and `redis/events.rs`), and delivered in order per webhook by
//! the worker (`deliver.rs`), signed the Standard Webhooks way (`sign.rs`), only to targets the
//! SSRF rules allow (`target.rs`), retried on a schedule and dead-lettered after it
//! (`settings.rs`). docs/events.md is the user's view.
//!
//! `service.rs` is what the API calls (register, list, remove, test, deliveries); `notices.rs`
//! what the domain calls, in its own words, and the account's `Notices` port; `watch.rs` the
//! in-process list of accounts with webhooks, so that the others' events cost nothing.
//!
//! It imports the account (ids, the directory for audit entries), the clock, the secret type,
//! the store error, the outbox's sealer and the phone number's masking; nothing of http, verify,
//! factors or pin, which import it.

pub mod deliver;
pub mod emit;
pub mod model;
pub mod notices;
pub mod service;
pub mod settings;
pub mod sign;
pub mod store;
pub mod target;
pub mod watch;

pub use deliver::{Deliverer, PassReport};
pub use emit::{Emitted, EmitterSettings, Events};
pub use model::{
    Event, EventData, EventFilter, EventId, EventType, Label, MaskedNumber, SubjectId, SubjectKind,
};
pub use service::{WebhookError, WebhookParts, WebhookService};
pub use settings::EventsSettings;
pub use sign::WebhookSecret;
pub use store::{Webhook, WebhookId, WebhookStore};
