//! The generic `http` provider: POSTs `{to, body, channel, message_id}` as JSON to one URL.
//! Any gateway can receive messages this way, and so can any test.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{by_status, read_body, Accepted, Adapter, ProviderError};
use crate::dispatch::OutgoingMessage;

pub struct HttpProvider {
    client: reqwest::Client,
    url: reqwest::Url,
    /// The most of an answer that is read.
    body_limit: usize,
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
    pub fn new(url: &str, timeout: Duration, body_limit: usize) -> Result<Self, String> {
        let url =
            reqwest::Url::parse(url).map_err(|error| format!("http provider URL: {error}"))?;
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(2)))
            .build()
            .map_err(|error| format!("http provider client: {error}"))?;
        Ok(Self {
            client,
            url,
            body_limit,
        })
    }
}

#[async_trait]
impl Adapter for HttpProvider {
    async fn send(&self, message: &OutgoingMessage) -> Result<Accepted, ProviderError> {
        let payload = Payload {
            to: message.to.as_str(),
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
            // The receiver's id is optional: an answer that is not JSON still means accepted,
            // but one past the limit is not read, and fails.
            let body = read_body(response, self.body_limit).await?;
            let reply: Reply = serde_json::from_slice(&body).unwrap_or_default();
            return Ok(Accepted {
                provider_message_id: reply.id,
            });
        }
        Err(by_status(status, format!("answered {status}")))
    }
}
