//! The generic `http` provider: POSTs `{to, body, channel, message_id}` as JSON to one URL.
//! Any gateway can receive messages this way, and so can any test.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{Accepted, Provider, ProviderError};
use crate::dispatch::OutgoingMessage;

pub struct HttpProvider {
    client: reqwest::Client,
    url: reqwest::Url,
}

#[derive(Serialize)]
struct Payload<'a> {
    to: &'a str,
    body: &'a str,
    channel: &'a str,
    message_id: &'a str,
}

/// A receiver may answer with its own id for the message; anything else in the body is ignored.
#[derive(Deserialize, Default)]
struct Reply {
    id: Option<String>,
}

impl HttpProvider {
    pub fn new(url: &str, timeout: Duration) -> Result<Self, String> {
        let url =
            reqwest::Url::parse(url).map_err(|error| format!("http provider URL: {error}"))?;
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(2)))
            .build()
            .map_err(|error| format!("http provider client: {error}"))?;
        Ok(Self { client, url })
    }
}

#[async_trait]
impl Provider for HttpProvider {
    fn name(&self) -> &'static str {
        "http"
    }

    async fn send(&self, message: &OutgoingMessage) -> Result<Accepted, ProviderError> {
        let payload = Payload {
            to: message.to.e164(),
            body: &message.body,
            channel: message.channel.as_str(),
            message_id: &message.id,
        };
        let response = self
            .client
            .post(self.url.clone())
            .header("Idempotency-Key", &message.id)
            .json(&payload)
            .send()
            .await
            .map_err(|error| ProviderError::Retryable(format!("request failed: {error}")))?;
        let status = response.status();
        if status.is_success() {
            let reply: Reply = response.json().await.unwrap_or_default();
            return Ok(Accepted {
                provider_message_id: reply.id,
            });
        }
        let reason = format!("answered {status}");
        if status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408 {
            Err(ProviderError::Retryable(reason))
        } else {
            Err(ProviderError::Permanent(reason))
        }
    }
}
