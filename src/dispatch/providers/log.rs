//! The `log` provider: prints each message on standard output. A delivery channel for
//! development (the embedded default, so a newcomer sees the code arrive), not logging: the
//! server warns at start whenever it is active, because it shows codes. An e-mail is printed
//! as the mail it would be: its subject and plain-text part.

use async_trait::async_trait;

use super::{Accepted, Adapter, ProviderError};
use crate::dispatch::{mail_template, OutgoingMessage};

#[derive(Debug, Default)]
pub struct LogProvider;

#[async_trait]
impl Adapter for LogProvider {
    async fn send(&self, message: &OutgoingMessage) -> Result<Accepted, ProviderError> {
        if message.to.email().is_some() {
            println!(
                "[otpgate log provider] email to {} (verification {})\nSubject: {}\n\n{}[end of mail]",
                message.to,
                message.verification_id,
                mail_template::subject(&message.locale, &message.code),
                message.body
            );
        } else {
            println!(
                "[otpgate log provider] {} to {} (verification {}): {}",
                message.channel.as_str(),
                message.to,
                message.verification_id,
                message.body
            );
        }
        Ok(Accepted {
            provider_message_id: None,
        })
    }
}
