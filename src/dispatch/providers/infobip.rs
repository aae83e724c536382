//! Infobip SMS: `POST /sms/2/text/advanced` on the account's own base URL, JSON,
//! `Authorization: App <api key>`.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::settings::Keyed;
use super::{
    by_status, digits_only, endpoint, json_with_key, success_body, vendor_text, Accepted, Adapter,
    ProviderError, ProviderSettings, VendorApi,
};
use crate::dispatch::OutgoingMessage;

pub struct InfobipProvider {
    api: VendorApi,
    authorization: String,
    from: String,
    notify_url: Option<String>,
}

#[derive(Serialize)]
struct Request<'a> {
    messages: [Message<'a>; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Message<'a> {
    destinations: [Destination<'a>; 1],
    from: &'a str,
    text: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    notify_url: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    notify_content_type: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Destination<'a> {
    to: &'a str,
    /// Infobip lets the client choose the message id; ours makes reports easy to match.
    message_id: &'a str,
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    messages: Vec<SentMessage>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SentMessage {
    message_id: Option<String>,
    status: Option<Status>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Status {
    group_name: Option<String>,
    name: Option<String>,
    description: Option<String>,
}

/// `{"requestError": {"serviceException": {"messageId": "UNAUTHORIZED", "text": "..."}}}`.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ErrorBody {
    request_error: Option<RequestError>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestError {
    service_exception: Option<ServiceException>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServiceException {
    message_id: Option<String>,
    text: Option<String>,
}

impl InfobipProvider {
    pub(crate) fn new(settings: &ProviderSettings, vendor: Keyed<'_>) -> Result<Self, String> {
        let url = endpoint(vendor.base, "/sms/2/text/advanced")?;
        Ok(Self {
            api: VendorApi::new(settings, url)?,
            authorization: format!("App {}", vendor.key.expose_str()),
            from: vendor.sender.to_owned(),
            notify_url: settings.notify_url.clone(),
        })
    }
}

#[async_trait]
impl Adapter for InfobipProvider {
    async fn send(&self, message: &OutgoingMessage) -> Result<Accepted, ProviderError> {
        let request = Request {
            messages: [Message {
                destinations: [Destination {
                    to: digits_only(message),
                    message_id: &message.id,
                }],
                from: &self.from,
                text: &message.body,
                notify_url: self.notify_url.as_deref(),
                notify_content_type: self.notify_url.as_ref().map(|_| "application/json"),
            }],
        };
        let (status, bytes) = (self.api)
            .post(|post| json_with_key(post, &self.authorization, &request))
            .await?;
        if !status.is_success() {
            let body: ErrorBody = serde_json::from_slice(&bytes).unwrap_or_default();
            let exception = body.request_error.and_then(|error| error.service_exception);
            let (id, text) = exception
                .map(|e| (e.message_id.unwrap_or_default(), e.text.unwrap_or_default()))
                .unwrap_or_default();
            return Err(by_status(
                status,
                format!("answered {status}, {id}: {}", vendor_text(message, &text)),
            ));
        }
        let answer: Answer = success_body(status, &bytes)?;
        let Some(sent) = answer.messages.into_iter().next() else {
            return Err(ProviderError::Retryable(format!(
                "answered {status} without any message"
            )));
        };
        let group = sent
            .status
            .as_ref()
            .and_then(|s| s.group_name.clone())
            .unwrap_or_default();
        match group.as_str() {
            // The send answer is an acceptance: PENDING is what success looks like here.
            "PENDING" | "DELIVERED" | "OK" => Ok(Accepted {
                provider_message_id: sent.message_id,
            }),
            // REJECTED (bad destination, no route, no credit), UNDELIVERABLE, EXPIRED.
            _ => {
                let (name, description) = sent
                    .status
                    .map(|s| {
                        (
                            s.name.unwrap_or_default(),
                            s.description.unwrap_or_default(),
                        )
                    })
                    .unwrap_or_default();
                Err(ProviderError::Permanent(format!(
                    "status {group} {name}: {}",
                    vendor_text(message, &description)
                )))
            }
        }
    }
}
