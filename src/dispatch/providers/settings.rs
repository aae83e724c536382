//! `[[dispatch.providers]]` entries: the table an operator writes (one flat shape, so that every
//! mistake of an entry is reported at once), its checks, and the kind with its required fields
//! that the adapters are built from.

use std::time::Duration;

use serde::Deserialize;

use super::check_url;
use super::smpp::settings::Smpp;
pub use super::smpp::settings::SmppBind;
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
            AdapterKind::Http => "http",
            AdapterKind::Smpp => "smpp",
            AdapterKind::Log => "log",
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
            AdapterKind::Infobip | AdapterKind::Http | AdapterKind::Smpp | AdapterKind::Log => None,
        }
    }
}

pub const DEFAULT_TIMEOUT_MS: u64 = 5000;
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

    // http
    #[serde(default)]
    pub url: Option<String>,

    // smpp (`from` is the source address)
    /// The SMSC as `host:port` (SMPP's usual port is 2775).
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub system_id: Option<String>,
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
            account_sid: None,
            auth_token: None,
            messaging_service_sid: None,
            status_callback: None,
            from: None,
            api_key: None,
            api_secret: None,
            callback: None,
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

    /// Every problem with this entry, each as one sentence that names the provider, so that a
    /// config with several mistakes is fixed in one round.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let who = format!("provider '{}' ({})", self.name, self.kind.as_str());
        let mut problem = |text: String| problems.push(format!("{who}: {text}"));

        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !name_ok {
            problem("name must be 1 to 64 characters of a-z, A-Z, 0-9, '_' or '-' (it appears in metrics and routes)".into());
        }
        if self.timeout_ms == 0 || self.timeout_ms > 120_000 {
            problem("timeout_ms must be between 1 and 120000".into());
        }

        // Fields each kind may carry; any other field that is set is a mistake worth naming.
        let allowed: &[&str] = match self.kind {
            AdapterKind::Twilio => &[
                "base_url",
                "account_sid",
                "auth_token",
                "from",
                "messaging_service_sid",
                "status_callback",
            ],
            AdapterKind::Vonage => &["base_url", "api_key", "api_secret", "from", "callback"],
            AdapterKind::Infobip => &["base_url", "api_key", "from", "notify_url"],
            AdapterKind::Messagebird => &["base_url", "access_key", "originator", "report_url"],
            AdapterKind::Whatsapp => &[
                "base_url",
                "access_token",
                "phone_number_id",
                "template_name",
                "template_languages",
                "api_version",
                "app_secret",
            ],
            AdapterKind::Http => &["url"],
            AdapterKind::Smpp => &[
                "address",
                "system_id",
                "password",
                "system_type",
                "from",
                "bind",
                "window",
                "enquire_link_ms",
                "reconnect_max_ms",
            ],
            AdapterKind::Log => &[],
        };
        for (field, set) in self.fields_set() {
            if set && !allowed.contains(&field) {
                problem(format!(
                    "'{field}' does not apply to the {} kind",
                    self.kind.as_str()
                ));
            }
        }

        let require = |field: &str, value: Option<&str>, problem: &mut dyn FnMut(String)| {
            if value.is_none_or(|v| v.trim().is_empty()) {
                problem(format!("'{field}' is required"));
            }
        };
        let require_secret =
            |field: &str, value: &Option<Secret>, problem: &mut dyn FnMut(String)| {
                require(
                    field,
                    value.as_ref().map(Secret::expose_str).as_deref(),
                    problem,
                )
            };
        let url = |field: &str, value: Option<&str>, problem: &mut dyn FnMut(String)| {
            if let Some(value) = value {
                if let Err(reason) = check_url(value) {
                    problem(format!("'{field}' {reason}"));
                }
            }
        };
        url("base_url", self.base_url.as_deref(), &mut problem);
        match self.kind {
            AdapterKind::Twilio => {
                require("account_sid", self.account_sid.as_deref(), &mut problem);
                require_secret("auth_token", &self.auth_token, &mut problem);
                if let Some(sid) = &self.account_sid {
                    if !(sid.starts_with("AC") && sid.len() == 34) {
                        problem(
                            "'account_sid' must be the 34-character SID starting with AC".into(),
                        );
                    }
                }
                match (&self.from, &self.messaging_service_sid) {
                    (None, None) => {
                        problem("one of 'from' or 'messaging_service_sid' is required".into())
                    }
                    (Some(_), Some(_)) => problem(
                        "give 'from' or 'messaging_service_sid', not both (Twilio then ignores 'from')"
                            .into(),
                    ),
                    _ => {}
                }
                if let Some(sid) = &self.messaging_service_sid {
                    if !(sid.starts_with("MG") && sid.len() == 34) {
                        problem(
                            "'messaging_service_sid' must be the 34-character SID starting with MG"
                                .into(),
                        );
                    }
                }
                url(
                    "status_callback",
                    self.status_callback.as_deref(),
                    &mut problem,
                );
            }
            AdapterKind::Vonage => {
                require_secret("api_key", &self.api_key, &mut problem);
                require_secret("api_secret", &self.api_secret, &mut problem);
                require("from", self.from.as_deref(), &mut problem);
                url("callback", self.callback.as_deref(), &mut problem);
            }
            AdapterKind::Infobip => {
                if self.base_url.is_none() {
                    problem("'base_url' is required: Infobip gives each account its own (https://xxxxx.api.infobip.com)".into());
                }
                require_secret("api_key", &self.api_key, &mut problem);
                require("from", self.from.as_deref(), &mut problem);
                url("notify_url", self.notify_url.as_deref(), &mut problem);
            }
            AdapterKind::Messagebird => {
                require_secret("access_key", &self.access_key, &mut problem);
                require("originator", self.originator.as_deref(), &mut problem);
                if let Some(originator) = &self.originator {
                    let digits = originator.trim_start_matches('+');
                    let numeric = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
                    if !numeric && originator.chars().count() > 11 {
                        problem("'originator' must be a phone number or at most 11 alphanumeric characters".into());
                    }
                }
                url("report_url", self.report_url.as_deref(), &mut problem);
            }
            AdapterKind::Whatsapp => {
                require(
                    "access_token",
                    self.access_token
                        .as_ref()
                        .map(Secret::expose_str)
                        .as_deref(),
                    &mut problem,
                );
                require(
                    "phone_number_id",
                    self.phone_number_id.as_deref(),
                    &mut problem,
                );
                if let Some(id) = &self.phone_number_id {
                    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
                        problem("'phone_number_id' must be the numeric id Meta shows for the number (not the number itself)".into());
                    }
                }
                if self
                    .template_name
                    .as_deref()
                    .is_some_and(|name| name.trim().is_empty())
                {
                    problem("'template_name' must not be empty".into());
                }
                if self
                    .template_languages
                    .as_ref()
                    .is_some_and(|languages| languages.is_empty())
                {
                    problem("'template_languages' must list at least one language".into());
                }
                let version = self.whatsapp_api_version();
                let version_ok = version.strip_prefix('v').is_some_and(|rest| {
                    !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit() || b == b'.')
                });
                if !version_ok {
                    problem("'api_version' must look like v21.0".into());
                }
            }
            AdapterKind::Http => {
                require("url", self.url.as_deref(), &mut problem);
                url("url", self.url.as_deref(), &mut problem);
            }
            AdapterKind::Smpp => self.validate_smpp(&mut problem),
            AdapterKind::Log => {}
        }
        problems
    }

    fn fields_set(&self) -> [(&'static str, bool); 28] {
        [
            ("base_url", self.base_url.is_some()),
            ("account_sid", self.account_sid.is_some()),
            ("auth_token", self.auth_token.is_some()),
            (
                "messaging_service_sid",
                self.messaging_service_sid.is_some(),
            ),
            ("status_callback", self.status_callback.is_some()),
            ("from", self.from.is_some()),
            ("api_key", self.api_key.is_some()),
            ("api_secret", self.api_secret.is_some()),
            ("callback", self.callback.is_some()),
            ("notify_url", self.notify_url.is_some()),
            ("access_key", self.access_key.is_some()),
            ("originator", self.originator.is_some()),
            ("report_url", self.report_url.is_some()),
            ("access_token", self.access_token.is_some()),
            ("phone_number_id", self.phone_number_id.is_some()),
            ("template_name", self.template_name.is_some()),
            ("template_languages", self.template_languages.is_some()),
            ("api_version", self.api_version.is_some()),
            ("app_secret", self.app_secret.is_some()),
            ("url", self.url.is_some()),
            ("address", self.address.is_some()),
            ("system_id", self.system_id.is_some()),
            ("password", self.password.is_some()),
            ("system_type", self.system_type.is_some()),
            ("bind", self.bind.is_some()),
            ("window", self.window.is_some()),
            ("enquire_link_ms", self.enquire_link_ms.is_some()),
            ("reconnect_max_ms", self.reconnect_max_ms.is_some()),
        ]
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
    Http { url: &'a str },
    Smpp(Smpp<'a>),
    Log,
}

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
    pub api_key: &'a Secret,
    pub api_secret: &'a Secret,
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
                api_key: self.api_key.as_ref()?,
                api_secret: self.api_secret.as_ref()?,
                from: self.from.as_deref()?,
            }),
            AdapterKind::Infobip => Vendor::Infobip(keyed(base, &self.api_key, &self.from)?),
            AdapterKind::Messagebird => {
                Vendor::Messagebird(keyed(base, &self.access_key, &self.originator)?)
            }
            AdapterKind::Whatsapp => {
                Vendor::Whatsapp(keyed(base, &self.access_token, &self.phone_number_id)?)
            }
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
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        let mut settings = ProviderSettings::new("tw", AdapterKind::Twilio);
        settings.auth_token = Some(Secret::from("very-secret-token"));
        let printed = format!("{settings:?}");
        assert!(!printed.contains("very-secret-token"), "{printed}");
        assert!(printed.contains("[redacted]"));
    }

    #[test]
    fn validate_reports_every_problem_at_once() {
        let mut settings = ProviderSettings::new("bad name", AdapterKind::Twilio);
        settings.url = Some("https://example.com".into());
        settings.status_callback = Some("not a url".into());
        let problems = settings.validate();
        let all = problems.join("\n");
        assert!(all.contains("name must be"), "{all}");
        assert!(all.contains("'url' does not apply"), "{all}");
        assert!(all.contains("'account_sid' is required"), "{all}");
        assert!(all.contains("'auth_token' is required"), "{all}");
        assert!(all.contains("'from' or 'messaging_service_sid'"), "{all}");
        assert!(all.contains("'status_callback' is not a URL"), "{all}");
    }

    #[test]
    fn infobip_needs_its_account_base_url() {
        let mut settings = ProviderSettings::new("ib", AdapterKind::Infobip);
        settings.api_key = Some(Secret::from("k"));
        settings.from = Some("Brand".into());
        assert!(settings
            .validate()
            .join(" ")
            .contains("'base_url' is required"));
        settings.base_url = Some("https://abcde.api.infobip.com".into());
        assert!(settings.validate().is_empty());
    }
}
