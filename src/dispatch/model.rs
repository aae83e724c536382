//! What a message is sent over and what became of each send: dispatch's own model, which verify
//! shows (`GET /v1/verifications/{id}`), and the `SendLog` port the workers record sends in.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::dispatch::OutgoingMessage;
use crate::store::StoreError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Sms,
    Whatsapp,
    /// A voice call that reads the code out.
    Call,
    /// A mail to an e-mail address (the destination is an address, not a number).
    Email,
}

impl Channel {
    /// Every channel, in the order the API lists them.
    pub const ALL: [Channel; 4] = [
        Channel::Sms,
        Channel::Whatsapp,
        Channel::Call,
        Channel::Email,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Sms => "sms",
            Channel::Whatsapp => "whatsapp",
            Channel::Call => "call",
            Channel::Email => "email",
        }
    }

    pub fn parse(input: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|channel| channel.as_str() == input)
    }

    /// Every channel's name, for error messages: `sms, whatsapp, call, email`.
    pub fn names() -> String {
        Self::ALL.map(Channel::as_str).join(", ")
    }

    /// Whether this channel's destination is an e-mail address (else a phone number).
    pub fn is_email(self) -> bool {
        self == Channel::Email
    }
}

/// One message sent (or being sent) for a verification, as `GET /v1/verifications/{id}` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendAttempt {
    pub message_id: String,
    /// The provider that took it, or the last one tried when none did (for a provider's own
    /// failed try: that provider).
    pub provider: String,
    /// accepted, failed (given up), then from receipts: queued, sent, delivered, undelivered,
    /// read; for one provider's failed try: provider_error or refused.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub provider_message_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
    pub created_ms: u64,
    pub updated_ms: u64,
}

impl SendAttempt {
    /// A failed try at one provider (`provider_error`: it may take the message later;
    /// `refused`: it never will), listed beside the message's own entry: one per provider and
    /// message, holding that provider's latest failure.
    pub fn is_provider_try(&self) -> bool {
        matches!(self.status.as_str(), "provider_error" | "refused")
    }
}

/// Where the workers record what became of each send, beside its verification (verify's store,
/// through `verify::store::StoreSendLog`).
#[async_trait]
pub trait SendLog: Send + Sync + 'static {
    /// Records (or replaces, by message id) one message's delivery state for the verification
    /// `verification_id`; nothing for an id that names no verification.
    async fn record_send_attempt(
        &self,
        verification_id: &str,
        attempt: &SendAttempt,
    ) -> Result<(), StoreError>;

    /// Told once a message's fate is known and recorded: `attempt` is the message's own entry
    /// (`accepted` by its provider, or `failed`: given up). Nothing by default.
    fn settled(&self, _message: &OutgoingMessage, _attempt: &SendAttempt) {}
}
