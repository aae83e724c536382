//! Twilio Programmable Messaging: `POST /2010-04-01/Accounts/{AccountSid}/Messages.json`,
//! form-encoded, HTTP Basic auth with the Account SID and Auth Token.

use async_trait::async_trait;
use serde::Deserialize;

use super::settings::{Twilio, TwilioSender};
use super::{
    by_status, client, endpoint, form_encode, leak_name, read_body, transport_error, vendor_text,
    Accepted, Provider, ProviderError, ProviderSettings,
};
use crate::dispatch::OutgoingMessage;

pub struct TwilioProvider {
    /// The most of an answer that is read.
    body_limit: usize,
    name: &'static str,
    client: reqwest::Client,
    url: reqwest::Url,
    account_sid: String,
    auth_token: String,
    sender: TwilioSender,
    status_callback: Option<String>,
}

/// The Message resource as created; only its SID matters here.
#[derive(Deserialize)]
struct Created {
    sid: Option<String>,
}

/// Twilio's REST error body: `{"code": 21211, "message": "...", "more_info": "...", "status": 400}`.
#[derive(Deserialize, Default)]
struct TwilioError {
    code: Option<u32>,
    message: Option<String>,
}

impl TwilioProvider {
    pub(crate) fn new(settings: &ProviderSettings, vendor: Twilio<'_>) -> Result<Self, String> {
        let account_sid = vendor.account_sid.to_owned();
        let url = endpoint(
            vendor.base,
            &format!("/2010-04-01/Accounts/{account_sid}/Messages.json"),
        )?;
        Ok(Self {
            name: leak_name(&settings.name),
            client: client(settings)?,
            body_limit: settings.body_limit,
            url,
            account_sid,
            auth_token: vendor.auth_token.expose_str().into_owned(),
            sender: vendor.sender,
            status_callback: settings.status_callback.clone(),
        })
    }
}

#[async_trait]
impl Provider for TwilioProvider {
    fn name(&self) -> &'static str {
        self.name
    }

    async fn send(&self, message: &OutgoingMessage) -> Result<Accepted, ProviderError> {
        let mut form = vec![("To", message.to.e164())];
        match &self.sender {
            TwilioSender::From(from) => form.push(("From", from.as_str())),
            TwilioSender::MessagingService(sid) => form.push(("MessagingServiceSid", sid.as_str())),
        }
        form.push(("Body", message.body.as_str()));
        if let Some(callback) = &self.status_callback {
            form.push(("StatusCallback", callback.as_str()));
        }
        let response = self
            .client
            .post(self.url.clone())
            .basic_auth(&self.account_sid, Some(&self.auth_token))
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(reqwest::header::ACCEPT, "application/json")
            .body(form_encode(&form))
            .send()
            .await
            .map_err(transport_error)?;
        let status = response.status();
        let bytes = read_body(response, self.body_limit).await?;
        if status.is_success() {
            return match serde_json::from_slice::<Created>(&bytes) {
                Ok(Created { sid: Some(sid) }) if !sid.is_empty() => Ok(Accepted {
                    provider_message_id: Some(sid),
                }),
                // Without a SID nothing says the message exists; retrying (or failing over)
                // beats reporting a send that may not have happened.
                _ => Err(ProviderError::Retryable(format!(
                    "answered {status} without a message sid"
                ))),
            };
        }
        let error: TwilioError = serde_json::from_slice(&bytes).unwrap_or_default();
        let reason = format!(
            "answered {status}, code {}: {}",
            error
                .code
                .map_or_else(|| "none".to_owned(), |c| c.to_string()),
            vendor_text(message, error.message.as_deref().unwrap_or(""))
        );
        Err(match error.code.and_then(classify) {
            Some(verdict) => verdict(reason),
            None => by_status(status, reason),
        })
    }
}

type Verdict = fn(String) -> ProviderError;

/// Twilio error codes whose meaning overrides the HTTP status.
fn classify(code: u32) -> Option<Verdict> {
    match code {
        // Too Many Requests; message rate exceeded; the sender's queue is full; Twilio's own
        // internal error and service unavailable.
        20429 | 14107 | 21611 | 20500 | 20503 | 30001 => Some(ProviderError::Retryable),
        // Authentication, a refused or invalid number, an unsubscribed recipient, a region
        // not enabled: no retry changes these.
        20003 | 20404 | 21211 | 21408 | 21610 | 21612 | 21614 | 21606 | 21659 | 21660 => {
            Some(ProviderError::Permanent)
        }
        _ => None,
    }
}
