//! Events out: signed webhooks. An event is rendered as a CloudEvents 1.0 JSON envelope
//! (`model.rs`), signed the Standard Webhooks way (`sign.rs`), sent only to targets the SSRF
//! rules allow (`target.rs`), retried on a schedule and dead-lettered after it (`settings.rs`).
//! docs/events.md is the user's view.
//!
//! A leaf-side module: it imports the account id, the clock, the secret type, the store error
//! and the phone number's masking, and nothing of http, verify or dispatch.

pub mod model;
pub mod settings;
pub mod sign;
pub mod target;

pub use model::{
    Event, EventData, EventFilter, EventId, EventType, Label, MaskedNumber, SubjectId, SubjectKind,
};
pub use settings::EventsSettings;
pub use sign::WebhookSecret;
