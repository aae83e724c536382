//! Twilio Programmable Messaging: `POST /2010-04-01/Accounts/{AccountSid}/Messages.json`, and
//! Programmable Voice for calls: `POST /2010-04-01/Accounts/{AccountSid}/Calls.json` with the
//! call's TwiML inline (`Twiml`: one `<Say>` in the message's language). Both form-encoded,
//! HTTP Basic auth with the Account SID and Auth Token; both answer a resource whose `sid`
//! (`SM…` / `CA…`) the status callbacks name.

use async_trait::async_trait;
use serde::Deserialize;

use super::settings::{Twilio, TwilioSender};
use super::{
    accepted, endpoint, refusal, with_form, Accepted, Adapter, ProviderError, ProviderSettings,
    VendorApi, Verdict,
};
use crate::dispatch::model::Channel;
use crate::dispatch::voice::{speech_language, xml_escape};
use crate::dispatch::OutgoingMessage;

/// The call events a status callback is asked for: an answered call (`in-progress`) is a
/// delivered code; the last event says how an unanswered call ended.
const CALL_EVENTS: [&str; 4] = ["initiated", "ringing", "answered", "completed"];

pub struct TwilioProvider {
    api: VendorApi,
    /// The Calls endpoint, with the `from` number that places them (a messaging service
    /// cannot call).
    calls: Option<(VendorApi, String)>,
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
        let calls = match (&vendor.sender, settings.carries(Channel::Call)) {
            (TwilioSender::From(from), true) => {
                let url = endpoint(
                    vendor.base,
                    &format!("/2010-04-01/Accounts/{account_sid}/Calls.json"),
                )?;
                Some((VendorApi::new(settings, url)?, from.clone()))
            }
            _ => None,
        };
        Ok(Self {
            api: VendorApi::new(settings, url)?,
            calls,
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
        if message.channel == Channel::Call {
            return self.call(message).await;
        }
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
        answer(status, &bytes, message)
    }
}

impl TwilioProvider {
    /// A call that says the message (the code, digit by digit, twice) when it is answered.
    async fn call(&self, message: &OutgoingMessage) -> Result<Accepted, ProviderError> {
        let Some((api, from)) = &self.calls else {
            // The router hands calls only to providers that carry them.
            return Err(ProviderError::Permanent(
                "this Twilio provider places no calls (no 'from' number)".into(),
            ));
        };
        let twiml = twiml(message);
        let mut form = vec![
            ("To", message.to.as_str()),
            ("From", from.as_str()),
            ("Twiml", twiml.as_str()),
        ];
        if let Some(callback) = &self.status_callback {
            form.push(("StatusCallback", callback.as_str()));
            form.push(("StatusCallbackMethod", "POST"));
            for event in CALL_EVENTS {
                form.push(("StatusCallbackEvent", event));
            }
        }
        let (status, bytes) = api
            .post(|request| {
                let request = request
                    .basic_auth(&self.account_sid, Some(&self.auth_token))
                    .header(reqwest::header::ACCEPT, "application/json");
                with_form(request, &form)
            })
            .await?;
        answer(status, &bytes, message)
    }
}

/// The call's instructions: say the text in the message's language, then hang up.
fn twiml(message: &OutgoingMessage) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><Response><Say language="{}">{}</Say></Response>"#,
        speech_language(&message.locale),
        xml_escape(&message.body)
    )
}

/// A created Message or Call (its `sid`), or Twilio's error.
fn answer(
    status: reqwest::StatusCode,
    bytes: &[u8],
    message: &OutgoingMessage,
) -> Result<Accepted, ProviderError> {
    if status.is_success() {
        return accepted(status, bytes, "sid", |created: Created| created.sid);
    }
    let error: TwilioError = serde_json::from_slice(bytes).unwrap_or_default();
    let text = error.message.as_deref().unwrap_or("");
    Err(refusal(status, message, error.code, text, classify))
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
        // Calls: 'From' not a verified or voice-capable number, calling this number or region
        // not enabled (geo permissions), a blocked or invalid number, a trial account's
        // unverified 'To', an invalid phone number format.
        21210 | 21212 | 21215 | 21216 | 21217 | 21219 | 13223 | 13224 => {
            Some(ProviderError::Permanent)
        }
        _ => None,
    }
}
