//! The `sendgrid` provider: e-mail codes through SendGrid's v3 Mail Send API
//! (`POST /v3/mail/send`, `Authorization: Bearer <API key>`, JSON). SendGrid answers 202 with
//! an empty body and the message's id in `X-Message-Id`, which its Event Webhook reports
//! (`sg_message_id` starts with it; see `dispatch::sendgrid_events`). 4xx answers are
//! permanent (a bad key, a refused sender or address), 408, 429 and 5xx retryable.

use async_trait::async_trait;
use serde::Serialize;

use super::settings::{Keyed, ProviderSettings};
use super::{
    by_status, client, endpoint, read_body, transport_error, vendor_text, Accepted, Adapter,
    ProviderError,
};
use crate::dispatch::mail_template;
use crate::dispatch::OutgoingMessage;
use crate::secret::Secret;

/// The custom argument our message id travels in; SendGrid echoes it in every event.
pub const MESSAGE_ID_ARG: &str = "otpgate_message_id";

pub struct SendgridProvider {
    client: reqwest::Client,
    url: reqwest::Url,
    authorization: Secret,
    from: Sender,
    body_limit: usize,
}

/// The `from` of every mail: an address and an optional display name.
#[derive(Debug, Clone, Serialize)]
struct Sender {
    email: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
}

#[derive(Serialize)]
struct MailSend<'a> {
    personalizations: [Personalization<'a>; 1],
    from: &'a Sender,
    subject: String,
    content: [Content; 2],
    custom_args: CustomArgs<'a>,
    tracking_settings: TrackingSettings,
}

#[derive(Serialize)]
struct Personalization<'a> {
    to: [Address<'a>; 1],
}

#[derive(Serialize)]
struct Address<'a> {
    email: &'a str,
}

#[derive(Serialize)]
struct Content {
    #[serde(rename = "type")]
    kind: &'static str,
    value: String,
}

#[derive(Serialize)]
struct CustomArgs<'a> {
    otpgate_message_id: &'a str,
}

/// Click tracking would rewrite links and open tracking adds an image: neither belongs in a
/// mail that carries a code.
#[derive(Serialize)]
struct TrackingSettings {
    click_tracking: Switch,
    open_tracking: Switch,
}

#[derive(Serialize)]
struct Switch {
    enable: bool,
}

#[derive(serde::Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ErrorItem>,
}

#[derive(serde::Deserialize)]
struct ErrorItem {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    field: Option<String>,
}

impl SendgridProvider {
    pub(crate) fn new(settings: &ProviderSettings, vendor: Keyed<'_>) -> Result<Self, String> {
        let who = || format!("provider '{}'", settings.name);
        let mailbox: lettre::message::Mailbox = vendor
            .sender
            .parse()
            .map_err(|error| format!("{}: 'from' {error}", who()))?;
        let authorization = format!("Bearer {}", vendor.key.expose_str());
        Ok(Self {
            client: client(settings)?,
            url: endpoint(vendor.base, "/v3/mail/send")?,
            authorization: Secret::from(authorization.as_str()),
            from: Sender {
                email: mailbox.email.to_string(),
                name: mailbox.name,
            },
            body_limit: settings.body_limit,
        })
    }

    fn body<'a>(&'a self, message: &'a OutgoingMessage) -> MailSend<'a> {
        let html = mail_template::html(&message.locale, &message.body, &message.code);
        MailSend {
            personalizations: [Personalization {
                to: [Address {
                    email: message.to.as_str(),
                }],
            }],
            from: &self.from,
            subject: mail_template::subject(&message.locale, &message.code),
            // SendGrid requires text/plain first when both are given.
            content: [
                Content {
                    kind: "text/plain",
                    value: message.body.clone(),
                },
                Content {
                    kind: "text/html",
                    value: html,
                },
            ],
            custom_args: CustomArgs {
                otpgate_message_id: &message.id,
            },
            tracking_settings: TrackingSettings {
                click_tracking: Switch { enable: false },
                open_tracking: Switch { enable: false },
            },
        }
    }
}

#[async_trait]
impl Adapter for SendgridProvider {
    async fn send(&self, message: &OutgoingMessage) -> Result<Accepted, ProviderError> {
        if message.to.email().is_none() {
            return Err(ProviderError::Permanent(
                "the sendgrid provider sends e-mail only".into(),
            ));
        }
        let response = self
            .client
            .post(self.url.clone())
            .header(
                reqwest::header::AUTHORIZATION,
                self.authorization.expose_str().as_ref(),
            )
            .json(&self.body(message))
            .send()
            .await
            .map_err(transport_error)?;
        let status = response.status();
        let message_id = response
            .headers()
            .get("x-message-id")
            .and_then(|value| value.to_str().ok())
            .filter(|id| super::valid_vendor_id(id))
            .map(str::to_owned);
        let body = read_body(response, self.body_limit).await?;
        if status.is_success() {
            // Without an id the mail was still accepted (SendGrid documents 202 as queued):
            // only its events cannot be matched to it then.
            return Ok(Accepted {
                provider_message_id: message_id,
            });
        }
        let reason = serde_json::from_slice::<ErrorBody>(&body)
            .ok()
            .and_then(|body| body.errors.into_iter().next())
            .map(|error| match (error.field, error.message) {
                (Some(field), Some(text)) => format!("{field}: {text}"),
                (_, Some(text)) => text,
                (Some(field), None) => field,
                (None, None) => String::new(),
            })
            .unwrap_or_default();
        Err(by_status(
            status,
            format!("answered {status}: {}", vendor_text(message, &reason)),
        ))
    }
}
