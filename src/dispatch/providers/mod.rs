//! The provider seam: one adapter per way of delivering a message, behind one trait.

pub mod http;
pub mod log;

use async_trait::async_trait;

use crate::dispatch::OutgoingMessage;

/// What a provider said about one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderError {
    /// Worth trying again (timeouts, 5xx, 429): the provider may accept it later.
    Retryable(String),
    /// Trying again will not help (a refused number, bad credentials).
    Permanent(String),
}

/// Accepted by the provider, with its own id for the message when it gives one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub provider_message_id: Option<String>,
}

#[async_trait]
pub trait Provider: Send + Sync + 'static {
    /// A short, fixed name: it labels metrics.
    fn name(&self) -> &'static str;

    async fn send(&self, message: &OutgoingMessage) -> Result<Accepted, ProviderError>;
}
