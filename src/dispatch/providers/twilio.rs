//! Twilio Programmable Messaging: `POST /2010-04-01/Accounts/{AccountSid}/Messages.json`,
//! form-encoded, HTTP Basic auth with the Account SID and Auth Token.

use async_trait::async_trait;
use serde::Deserialize;

use super::settings::{Twilio, TwilioSender};
use super::{
    accepted, endpoint, refusal, with_form, Accepted, Adapter, ProviderError, ProviderSettings,
    VendorApi, Verdict,
};
use crate::dispatch::OutgoingMessage;

pub struct TwilioProvider {
    api: VendorApi,
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
            api: VendorApi::new(settings, url)?,
            account_sid,
            auth_token: vendor.auth_token.expose_str().into_owned(),
            sender: vendor.sender,
            status_callback: settings.status_callback.clone(),
        })
    }
}

#[async_trait]
impl Adapter for TwilioProvider {
    async fn send(&self, message: &OutgoingMessage) -> Result<Accepted, ProviderError> {
        let mut form = vec![("To", message.to.as_str())];
        match &self.sender {
            TwilioSender::From(from) => form.push(("From", from.as_str())),
            TwilioSender::MessagingService(sid) => form.push(("MessagingServiceSid", sid.as_str())),
        }
        form.push(("Body", message.body.as_str()));
        if let Some(callback) = &self.status_callback {
            form.push(("StatusCallback", callback.as_str()));
        }
        let (status, bytes) = (self.api)
            .post(|request| {
                let request = request
                    .basic_auth(&self.account_sid, Some(&self.auth_token))
                    .header(reqwest::header::ACCEPT, "application/json");
                with_form(request, &form)
            })
            .await?;
        if status.is_success() {
            return accepted(status, &bytes, "sid", |created: Created| created.sid);
        }
        let error: TwilioError = serde_json::from_slice(&bytes).unwrap_or_default();
        let text = error.message.as_deref().unwrap_or("");
        Err(refusal(status, message, error.code, text, classify))
    }
}

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
