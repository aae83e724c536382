//! The `log` provider: prints each message on standard output. A delivery channel for
//! development (the embedded default, so a newcomer sees the code arrive), not logging: the
//! server warns at start whenever it is active, because it shows codes.

use async_trait::async_trait;

use super::{Accepted, Adapter, ProviderError};
use crate::dispatch::OutgoingMessage;
use crate::phone::mask;

#[derive(Debug, Default)]
pub struct LogProvider;

#[async_trait]
impl Adapter for LogProvider {
    async fn send(&self, message: &OutgoingMessage) -> Result<Accepted, ProviderError> {
        println!(
            "[otpgate log provider] {} to {} (verification {}): {}",
            message.channel.as_str(),
            mask(message.to.e164()),
            message.verification_id,
            message.body
        );
        Ok(Accepted {
            provider_message_id: None,
        })
    }
}
