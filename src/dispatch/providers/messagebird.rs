//! MessageBird (Bird) SMS API: `POST /messages`, JSON, `Authorization: AccessKey <key>`.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::settings::Messagebird;
use super::{
    by_status, client, digits_only, endpoint, leak_name, read_body, transport_error, vendor_text,
    Accepted, Provider, ProviderError, ProviderSettings,
};
use crate::dispatch::template::{encoding, Encoding};
use crate::dispatch::OutgoingMessage;

pub struct MessagebirdProvider {
    /// The most of an answer that is read.
    body_limit: usize,
    name: &'static str,
    client: reqwest::Client,
    url: reqwest::Url,
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
    pub(crate) fn new(
        settings: &ProviderSettings,
        vendor: Messagebird<'_>,
    ) -> Result<Self, String> {
        Ok(Self {
            name: leak_name(&settings.name),
            client: client(settings)?,
            body_limit: settings.body_limit,
            url: endpoint(vendor.base, "/messages")?,
            authorization: format!("AccessKey {}", vendor.access_key.expose_str()),
            originator: vendor.originator.to_owned(),
            report_url: settings.report_url.clone(),
        })
    }
}

#[async_trait]
impl Provider for MessagebirdProvider {
    fn name(&self) -> &'static str {
        self.name
    }

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
        let response = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::AUTHORIZATION, &self.authorization)
            .header(reqwest::header::ACCEPT, "application/json")
            .json(&request)
            .send()
            .await
            .map_err(transport_error)?;
        let status = response.status();
        let bytes = read_body(response, self.body_limit).await?;
        if status.is_success() {
            return match serde_json::from_slice::<Created>(&bytes) {
                Ok(Created { id: Some(id) }) if !id.is_empty() => Ok(Accepted {
                    provider_message_id: Some(id),
                }),
                _ => Err(ProviderError::Retryable(format!(
                    "answered {status} without a message id"
                ))),
            };
        }
        let body: ErrorBody = serde_json::from_slice(&bytes).unwrap_or_default();
        let first = body.errors.into_iter().next();
        let code = first.as_ref().and_then(|error| error.code);
        let reason = format!(
            "answered {status}, code {}: {}",
            code.map_or_else(|| "none".to_owned(), |c| c.to_string()),
            vendor_text(
                message,
                first
                    .as_ref()
                    .and_then(|error| error.description.as_deref())
                    .unwrap_or("")
            )
        );
        Err(match code {
            // MessageBird's "internal error".
            Some(99) => ProviderError::Retryable(reason),
            // 2 request not allowed (bad access key), 9 no correct recipients, 25 not enough
            // balance: another try changes nothing.
            Some(2 | 9 | 25) if status.as_u16() != 429 => ProviderError::Permanent(reason),
            _ => by_status(status, reason),
        })
    }
}
