//! `[[dispatch.providers]]` entries: the table an operator writes (one flat shape, so that every
//! mistake of an entry is reported at once), its checks, and the kind with its required fields
//! that the adapters are built from.

use std::time::Duration;

use serde::Deserialize;

use super::check_url;
use super::smpp::settings::Smpp;
pub use super::smpp::settings::SmppBind;
use crate::dispatch::model::Channel;
use crate::secret::Secret;

/// Which adapter a `[[dispatch.providers]]` entry builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdapterKind {
    Twilio,
    Vonage,
    Infobip,
    Messagebird,
    Whatsapp,
    /// E-mail through an SMTP server (`url`: `smtp://host:port` or `smtps://host:port`).
    Smtp,
    /// E-mail through SendGrid's v3 Mail Send API.
    Sendgrid,
    Http,
    Smpp,
    Log,
}

impl AdapterKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AdapterKind::Twilio => "twilio",
            AdapterKind::Vonage => "vonage",
            AdapterKind::Infobip => "infobip",
            AdapterKind::Messagebird => "messagebird",
            AdapterKind::Whatsapp => "whatsapp",
            AdapterKind::Smtp => "smtp",
            AdapterKind::Sendgrid => "sendgrid",
            AdapterKind::Http => "http",
            AdapterKind::Smpp => "smpp",
            AdapterKind::Log => "log",
        }
    }

    /// The channels this kind of adapter can carry at all.
    pub fn capable(self) -> &'static [Channel] {
        match self {
            AdapterKind::Twilio | AdapterKind::Vonage => &[Channel::Sms, Channel::Call],
            AdapterKind::Infobip | AdapterKind::Messagebird | AdapterKind::Smpp => &[Channel::Sms],
            AdapterKind::Whatsapp => &[Channel::Whatsapp],
            AdapterKind::Smtp | AdapterKind::Sendgrid => &[Channel::Email],
            AdapterKind::Http | AdapterKind::Log => &Channel::ALL,
        }
    }

    /// The vendor's public API host, or `None` where there is no single one: Infobip gives every
    /// customer their own base URL, and the `http` provider is given a whole URL.
    pub fn default_base_url(self) -> Option<&'static str> {
        match self {
            AdapterKind::Twilio => Some("https://api.twilio.com"),
            AdapterKind::Vonage => Some("https://rest.nexmo.com"),
            AdapterKind::Messagebird => Some("https://rest.messagebird.com"),
            AdapterKind::Whatsapp => Some("https://graph.facebook.com"),
            AdapterKind::Sendgrid => Some("https://api.sendgrid.com"),
            AdapterKind::Infobip
            | AdapterKind::Smtp
            | AdapterKind::Http
            | AdapterKind::Smpp
            | AdapterKind::Log => None,
        }
    }
}

pub const DEFAULT_TIMEOUT_MS: u64 = 5000;
/// The Vonage Voice API's host (the SMS API lives on `rest.nexmo.com`).
pub const DEFAULT_VONAGE_VOICE_BASE_URL: &str = "https://api.nexmo.com";
/// Meta gives no template a default name; this is the name its own authentication-template
/// examples use, so a template created from them works without more configuration.
pub const DEFAULT_WHATSAPP_TEMPLATE: &str = "verification_code";
pub const DEFAULT_WHATSAPP_API_VERSION: &str = "v21.0";

fn default_timeout_ms() -> u64 {
    DEFAULT_TIMEOUT_MS
}

/// `dispatch.provider_body_limit_bytes`'s default.
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;

fn default_body_limit() -> usize {
    DEFAULT_BODY_LIMIT
}

/// One `[[dispatch.providers]]` table. One flat shape for every kind, so that a field given to
/// the wrong kind is reported by `validate` with the others instead of failing the parse alone.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSettings {
    /// Unique; labels metrics and names the provider's receipt route.
    pub name: String,
    pub kind: AdapterKind,
    /// Overrides the vendor's API host (tests point it at a fake vendor on loopback).
    #[serde(default)]
    pub base_url: Option<String>,
    /// Whole-request timeout; a timed-out send is retryable (it may go out through another
    /// provider).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// The channels this provider carries (`["sms", "call"]`); by default every channel its
    /// kind can carry with the fields given (see [`ProviderSettings::carried`]). The router
    /// never hands it a message of another channel.
    #[serde(default)]
    pub channels: Option<Vec<Channel>>,

    // twilio
    #[serde(default)]
    pub account_sid: Option<String>,
    #[serde(default)]
    pub auth_token: Option<Secret>,
    #[serde(default)]
    pub messaging_service_sid: Option<String>,
    #[serde(default)]
    pub status_callback: Option<String>,

    // twilio, vonage, infobip
    #[serde(default)]
    pub from: Option<String>,

    // vonage, infobip
    #[serde(default)]
    pub api_key: Option<Secret>,
    // vonage
    #[serde(default)]
    pub api_secret: Option<Secret>,
    #[serde(default)]
    pub callback: Option<String>,
    /// Voice API (calls): the Vonage application the calls belong to, and its RSA private key
    /// (PEM, PKCS#8) that signs the RS256 JWT each request carries.
    #[serde(default)]
    pub application_id: Option<String>,
    #[serde(default)]
    pub private_key: Option<Secret>,
    /// The Voice API host (default `https://api.nexmo.com`).
    #[serde(default)]
    pub voice_base_url: Option<String>,
    /// Where Vonage posts a call's events (the receipt route); the application's own event URL
    /// when absent.
    #[serde(default)]
    pub event_url: Option<String>,
    /// The account's signature secret: a call event must carry a JWT (HS256) signed with it;
    /// without one, call events need `?token=` like the SMS receipts.
    #[serde(default)]
    pub signature_secret: Option<Secret>,

    // infobip
    #[serde(default)]
    pub notify_url: Option<String>,

    // messagebird
    #[serde(default)]
    pub access_key: Option<Secret>,
    #[serde(default)]
    pub originator: Option<String>,
    #[serde(default)]
    pub report_url: Option<String>,

    // whatsapp
    #[serde(default)]
    pub access_token: Option<Secret>,
    #[serde(default)]
    pub phone_number_id: Option<String>,
    #[serde(default)]
    pub template_name: Option<String>,
    /// The languages the template is approved in (Meta codes: `en`, `en_US`, `pt_BR`, …); a
    /// message goes out in the best match for its locale, else in the first. Default `["en"]`.
    #[serde(default)]
    pub template_languages: Option<Vec<String>>,
    #[serde(default)]
    pub api_version: Option<String>,
    /// The Meta app secret that signs webhook deliveries (`X-Hub-Signature-256`).
    #[serde(default)]
    pub app_secret: Option<Secret>,

    // http; smtp (`smtp://[user@]host[:port][?tls=none|starttls]`, `smtps://[user@]host[:port]`)
    #[serde(default)]
    pub url: Option<String>,

    // smpp (`from` is the source address)
    /// The SMSC as `host:port` (SMPP's usual port is 2775).
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub system_id: Option<String>,
    /// smpp: the bind's password; smtp: the password of the URL's user (`env:NAME` to read it
    /// from the environment).
    #[serde(default)]
    pub password: Option<Secret>,
    #[serde(default)]
    pub system_type: Option<String>,
    /// `transceiver` (one session both ways, the default) or `transmitter_receiver` (one
    /// session that submits and one that takes receipts, for SMSCs without transceivers).
    #[serde(default)]
    pub bind: Option<SmppBind>,
    /// submit_sm in flight at once on the session (default 10).
    #[serde(default)]
    pub window: Option<u32>,
    /// How often an idle session sends enquire_link (default 30000).
    #[serde(default)]
    pub enquire_link_ms: Option<u64>,
    /// The longest wait between two reconnection attempts (default 30000; the first is 250).
    #[serde(default)]
    pub reconnect_max_ms: Option<u64>,

    // sendgrid: the Event Webhook's verification key (base64 of the ECDSA P-256 public key,
    // as SendGrid's settings page shows it); without it, event webhooks are refused
    #[serde(default)]
    pub verification_key: Option<String>,

    /// The most of an answer that is read: `dispatch.provider_body_limit_bytes`, not a key of
    /// the provider table (set when the providers are built).
    #[serde(skip, default = "default_body_limit")]
    pub body_limit: usize,
}

impl ProviderSettings {
    /// A settings value with only `name` and `kind` set; tests and builders fill in the rest.
    pub fn new(name: impl Into<String>, kind: AdapterKind) -> Self {
        Self {
            name: name.into(),
            kind,
            base_url: None,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            channels: None,
            account_sid: None,
            auth_token: None,
            messaging_service_sid: None,
            status_callback: None,
            from: None,
            api_key: None,
            api_secret: None,
            callback: None,
            application_id: None,
            private_key: None,
            voice_base_url: None,
            event_url: None,
            signature_secret: None,
            notify_url: None,
            access_key: None,
            originator: None,
            report_url: None,
            access_token: None,
            phone_number_id: None,
            template_name: None,
            template_languages: None,
            api_version: None,
            app_secret: None,
            url: None,
            address: None,
            system_id: None,
            password: None,
            system_type: None,
            bind: None,
            window: None,
            enquire_link_ms: None,
            reconnect_max_ms: None,
            verification_key: None,
            body_limit: DEFAULT_BODY_LIMIT,
        }
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// The API host to call: the configured one, else the vendor's.
    pub fn effective_base_url(&self) -> Option<&str> {
        self.base_url
            .as_deref()
            .or_else(|| self.kind.default_base_url())
    }

    /// The channels this provider carries: the configured list, else what its kind can carry
    /// with the fields it was given (a Twilio account with a `from` number also calls; a
    /// Vonage entry sends SMS with `api_key`/`api_secret` and calls with `application_id`/
    /// `private_key`).
    pub fn carried(&self) -> Vec<Channel> {
        if let Some(channels) = &self.channels {
            return channels.clone();
        }
        match self.kind {
            AdapterKind::Twilio => {
                let mut channels = vec![Channel::Sms];
                if self.from.is_some() {
                    channels.push(Channel::Call);
                }
                channels
            }
            AdapterKind::Vonage => {
                let mut channels = Vec::new();
                if self.api_key.is_some() || self.api_secret.is_some() {
                    channels.push(Channel::Sms);
                }
                if self.application_id.is_some() || self.private_key.is_some() {
                    channels.push(Channel::Call);
                }
                if channels.is_empty() {
                    channels.push(Channel::Sms);
                }
                channels
            }
            kind => kind.capable().to_vec(),
        }
    }

    pub fn carries(&self, channel: Channel) -> bool {
        self.carried().contains(&channel)
    }

    pub fn vonage_voice_base_url(&self) -> &str {
        self.voice_base_url
            .as_deref()
            .unwrap_or(DEFAULT_VONAGE_VOICE_BASE_URL)
    }

    pub fn whatsapp_template_name(&self) -> &str {
        self.template_name
            .as_deref()
            .unwrap_or(DEFAULT_WHATSAPP_TEMPLATE)
    }

    pub fn whatsapp_api_version(&self) -> &str {
        self.api_version
            .as_deref()
            .unwrap_or(DEFAULT_WHATSAPP_API_VERSION)
    }
}

/// An entry `validate` passed, as its kind with the fields that kind requires: the adapters
/// are built from these and check nothing again.
pub(crate) enum Vendor<'a> {
    Twilio(Twilio<'a>),
    Vonage(Vonage<'a>),
    Infobip(Keyed<'a>),
    Messagebird(Keyed<'a>),
    Whatsapp(Keyed<'a>),
    Smtp(Smtp<'a>),
    Sendgrid(Keyed<'a>),
    Http { url: &'a str },
    Smpp(Smpp<'a>),
    Log,
}

pub(crate) use super::email_settings::Smtp;

pub(crate) struct Twilio<'a> {
    pub base: &'a str,
    pub account_sid: &'a str,
    pub auth_token: &'a Secret,
    pub sender: TwilioSender,
}

pub(crate) enum TwilioSender {
    From(String),
    MessagingService(String),
}

pub(crate) struct Vonage<'a> {
    pub base: &'a str,
    /// SMS API credentials (absent on a calls-only entry).
    pub api_key: Option<&'a Secret>,
    pub api_secret: Option<&'a Secret>,
    pub from: &'a str,
}

/// A vendor reached with one secret key and one sender: Infobip (`api_key`, `from`),
/// MessageBird (`access_key`, `originator`), WhatsApp (`access_token`, `phone_number_id`).
pub(crate) struct Keyed<'a> {
    pub base: &'a str,
    pub key: &'a Secret,
    pub sender: &'a str,
}

impl ProviderSettings {
    /// The entry as its kind; `None` when a field the kind requires is missing (which
    /// `validate` reports).
    pub(crate) fn vendor(&self) -> Option<Vendor<'_>> {
        let base = self.effective_base_url();
        Some(match self.kind {
            AdapterKind::Twilio => Vendor::Twilio(Twilio {
                base: base?,
                account_sid: self.account_sid.as_deref()?,
                auth_token: self.auth_token.as_ref()?,
                sender: match (&self.messaging_service_sid, &self.from) {
                    (Some(service), _) => TwilioSender::MessagingService(service.clone()),
                    (None, Some(from)) => TwilioSender::From(from.clone()),
                    (None, None) => return None,
                },
            }),
            AdapterKind::Vonage => Vendor::Vonage(Vonage {
                base: base?,
                api_key: self.api_key.as_ref(),
                api_secret: self.api_secret.as_ref(),
                from: self.from.as_deref()?,
            }),
            AdapterKind::Infobip => Vendor::Infobip(keyed(base, &self.api_key, &self.from)?),
            AdapterKind::Messagebird => {
                Vendor::Messagebird(keyed(base, &self.access_key, &self.originator)?)
            }
            AdapterKind::Whatsapp => {
                Vendor::Whatsapp(keyed(base, &self.access_token, &self.phone_number_id)?)
            }
            AdapterKind::Smtp => Vendor::Smtp(Smtp {
                url: self.url.as_deref()?,
                from: self.from.as_deref()?,
                password: self.password.as_ref(),
            }),
            AdapterKind::Sendgrid => Vendor::Sendgrid(keyed(base, &self.api_key, &self.from)?),
            AdapterKind::Http => Vendor::Http {
                url: self.url.as_deref()?,
            },
            AdapterKind::Smpp => Vendor::Smpp(self.smpp()?),
            AdapterKind::Log => Vendor::Log,
        })
    }
}

fn keyed<'a>(
    base: Option<&'a str>,
    key: &'a Option<Secret>,
    sender: &'a Option<String>,
) -> Option<Keyed<'a>> {
    Some(Keyed {
        base: base?,
        key: key.as_ref()?,
        sender: sender.as_deref()?,
    })
}

#[cfg(test)]
mod tests;

mod validate;
