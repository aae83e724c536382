//! Vonage (Nexmo) SMS API: `POST /sms/json`, form-encoded, credentials in the body. The answer
//! is HTTP 200 even for refusals; the verdict is in `messages[].status` ("0" is success).
//! Calls go through the Voice API (`vonage_voice.rs`) when the entry carries them.

use async_trait::async_trait;
use serde::Deserialize;

use super::settings::Vonage;
use super::vonage_voice::VonageVoice;
use super::{
    by_status, digits_only, endpoint, success_body, vendor_text, with_form, Accepted, Adapter,
    ProviderError, ProviderSettings, VendorApi,
};
use crate::dispatch::model::Channel;
use crate::dispatch::template::{encoding, Encoding};
use crate::dispatch::OutgoingMessage;

pub struct VonageProvider {
    /// The Voice API, when the entry carries calls.
    voice: Option<VonageVoice>,
    api: VendorApi,
    /// Empty on a calls-only entry, which the router never hands an SMS.
    api_key: String,
    api_secret: String,
    from: String,
    callback: Option<String>,
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    messages: Vec<Part>,
}

/// One SMS part: a long text is split and each part is reported on its own.
#[derive(Deserialize)]
struct Part {
    status: String,
    #[serde(rename = "message-id")]
    message_id: Option<String>,
    #[serde(rename = "error-text")]
    error_text: Option<String>,
}

impl VonageProvider {
    pub(crate) fn new(settings: &ProviderSettings, vendor: Vonage<'_>) -> Result<Self, String> {
        let voice = if settings.carries(Channel::Call) {
            Some(VonageVoice::new(settings, vendor.from)?)
        } else {
            None
        };
        Ok(Self {
            voice,
            api: VendorApi::new(settings, endpoint(vendor.base, "/sms/json")?)?,
            api_key: vendor
                .api_key
                .map(|key| key.expose_str().into_owned())
                .unwrap_or_default(),
            api_secret: vendor
                .api_secret
                .map(|secret| secret.expose_str().into_owned())
                .unwrap_or_default(),
            from: vendor.from.to_owned(),
            callback: settings.callback.clone(),
        })
    }
}

#[async_trait]
impl Adapter for VonageProvider {
    async fn send(&self, message: &OutgoingMessage) -> Result<Accepted, ProviderError> {
        if message.channel == Channel::Call {
            return match &self.voice {
                Some(voice) => voice.call(message).await,
                // The router hands calls only to providers that carry them.
                None => Err(ProviderError::Permanent(
                    "this Vonage provider places no calls (no application_id)".into(),
                )),
            };
        }
        let mut form = vec![
            ("api_key", self.api_key.as_str()),
            ("api_secret", self.api_secret.as_str()),
            ("from", self.from.as_str()),
            ("to", digits_only(message)),
            ("text", message.body.as_str()),
        ];
        // Vonage sends `text` as GSM-7 unless told otherwise; anything outside it would arrive
        // as question marks.
        if encoding(&message.body) == Encoding::Ucs2 {
            form.push(("type", "unicode"));
        }
        // Our id comes back in the delivery receipt as `client-ref` (up to 100 characters).
        form.push(("client-ref", message.id.as_str()));
        if let Some(callback) = &self.callback {
            form.push(("callback", callback.as_str()));
        }
        let (status, bytes) = self.api.post(|request| with_form(request, &form)).await?;
        if !status.is_success() {
            return Err(by_status(status, format!("answered {status}")));
        }
        let answer: Answer = success_body(status, &bytes)?;
        if answer.messages.is_empty() {
            return Err(ProviderError::Retryable(format!(
                "answered {status} without any message status"
            )));
        }
        // The first refused part decides: a half-sent code is no use.
        if let Some(part) = answer.messages.iter().find(|part| part.status != "0") {
            let reason = format!(
                "status {}: {}",
                part.status,
                vendor_text(message, part.error_text.as_deref().unwrap_or(""))
            );
            return Err(classify(&part.status)(reason));
        }
        Ok(Accepted {
            provider_message_id: answer.messages.into_iter().find_map(|part| part.message_id),
        })
    }
}

/// Vonage's SMS API status table
/// (<https://developer.vonage.com/messaging/sms/guides/troubleshooting-sms>).
fn classify(status: &str) -> fn(String) -> ProviderError {
    match status {
        // 1 throttled, 5 internal error, 10 too many existing binds ("back off and retry").
        "1" | "5" | "10" => ProviderError::Retryable,
        // 2 missing and 3 invalid parameters, 4 invalid credentials, 6 invalid message
        // (unroutable prefix), 7 number barred, 8 account barred, 9 no credit, 11 HTTP not
        // enabled, 12 too long, 14 bad signature, 15 invalid sender, 22 invalid network code,
        // 23 invalid callback URL, 29 non-whitelisted destination, 32 signature and secret
        // both given, 33 number de-activated: all need a person, not another try.
        _ => ProviderError::Permanent,
    }
}
