//! MessageBird (Bird) SMS API: `POST /messages`, JSON, `Authorization: AccessKey <key>`.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::settings::Keyed;
use super::{
    accepted, digits_only, endpoint, json_with_key, refusal, Accepted, Adapter, ProviderError,
    ProviderSettings, VendorApi,
};
use crate::dispatch::template::{encoding, Encoding};
use crate::dispatch::OutgoingMessage;

pub struct MessagebirdProvider {
    api: VendorApi,
    authorization: String,
    originator: String,
    report_url: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Request<'a> {
    /// MSISDNs as numbers, as MessageBird documents them.
    recipients: [u64; 1],
    originator: &'a str,
    body: &'a str,
    /// Client reference, echoed in status reports.
    reference: &'a str,
    datacoding: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    report_url: Option<&'a str>,
}

#[derive(Deserialize)]
struct Created {
    id: Option<String>,
}

/// `{"errors": [{"code": 2, "description": "...", "parameter": "access_key"}]}`.
#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ErrorItem>,
}

#[derive(Deserialize)]
struct ErrorItem {
    code: Option<u32>,
    description: Option<String>,
}

impl MessagebirdProvider {
    pub(crate) fn new(settings: &ProviderSettings, vendor: Keyed<'_>) -> Result<Self, String> {
        Ok(Self {
            api: VendorApi::new(settings, endpoint(vendor.base, "/messages")?)?,
            authorization: format!("AccessKey {}", vendor.key.expose_str()),
            originator: vendor.sender.to_owned(),
            report_url: settings.report_url.clone(),
        })
    }
}

#[async_trait]
impl Adapter for MessagebirdProvider {
    async fn send(&self, message: &OutgoingMessage) -> Result<Accepted, ProviderError> {
        // E.164 has at most 15 digits, so the number always fits.
        let recipient: u64 = digits_only(message)
            .parse()
            .map_err(|_| ProviderError::Permanent("recipient is not a number".into()))?;
        let request = Request {
            recipients: [recipient],
            originator: &self.originator,
            body: &message.body,
            reference: &message.id,
            datacoding: match encoding(&message.body) {
                Encoding::Gsm7 => "plain",
                Encoding::Ucs2 => "unicode",
            },
            report_url: self.report_url.as_deref(),
        };
        let (status, bytes) = (self.api)
            .post(|post| json_with_key(post, &self.authorization, &request))
            .await?;
        if status.is_success() {
            return accepted(status, &bytes, "id", |created: Created| created.id);
        }
        let body: ErrorBody = serde_json::from_slice(&bytes).unwrap_or_default();
        let first = body.errors.into_iter().next();
        let code = first.as_ref().and_then(|error| error.code);
        let text = first
            .as_ref()
            .and_then(|error| error.description.as_deref());
        Err(refusal(status, message, code, text.unwrap_or(""), |code| {
            match code {
                // MessageBird's "internal error".
                99 => Some(ProviderError::Retryable),
                // 2 request not allowed (bad access key), 9 no correct recipients, 25 not
                // enough balance: another try changes nothing.
                2 | 9 | 25 if status.as_u16() != 429 => Some(ProviderError::Permanent),
                _ => None,
            }
        }))
    }
}
