//! The provider seam: one adapter per way of delivering a message, behind one trait, and the
//! settings that choose and configure the adapters.

pub mod http;
pub mod infobip;
pub mod log;
pub mod messagebird;
pub mod twilio;
pub mod vonage;
pub mod whatsapp;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use crate::dispatch::OutgoingMessage;
use crate::secret::Secret;

/// What a provider said about one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderError {
    /// Worth trying again (timeouts, 5xx, 429): the provider may accept it later.
    Retryable(String),
    /// Trying again will not help (a refused number, bad credentials).
    Permanent(String),
}

/// Accepted by the provider, with its own id for the message when it gives one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub provider_message_id: Option<String>,
}

#[async_trait]
pub trait Provider: Send + Sync + 'static {
    /// A short, fixed name: it labels metrics.
    fn name(&self) -> &'static str;

    async fn send(&self, message: &OutgoingMessage) -> Result<Accepted, ProviderError>;
}

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
            AdapterKind::Infobip | AdapterKind::Http | AdapterKind::Log => None,
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

/// The longest vendor message id kept; longer ones, or ids with anything but printable ASCII,
/// are not stored (an id is written into Redis and into receipt lookups).
pub const MAX_VENDOR_ID_LEN: usize = 128;

/// Whether a vendor's message id may be kept: 1 to 128 bytes of printable ASCII (no spaces,
/// no control characters).
pub fn valid_vendor_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_VENDOR_ID_LEN && id.bytes().all(|b| b.is_ascii_graphic())
}

/// Reads a provider's answer as a stream, at most `limit` bytes: a longer answer (announced or
/// not) fails as retryable, since nothing in it can be trusted and another provider or the next
/// round may do better.
pub(crate) async fn read_body(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<bytes::Bytes, ProviderError> {
    let status = response.status();
    let too_long =
        || ProviderError::Retryable(format!("answered {status} with a body over {limit} bytes"));
    if response
        .content_length()
        .is_some_and(|length| length > limit as u64)
    {
        return Err(too_long());
    }
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
        if body.len() + chunk.len() > limit {
            return Err(too_long());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
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
                require(
                    "auth_token",
                    self.auth_token.as_ref().map(Secret::expose_str).as_deref(),
                    &mut problem,
                );
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
                require(
                    "api_key",
                    self.api_key.as_ref().map(Secret::expose_str).as_deref(),
                    &mut problem,
                );
                require(
                    "api_secret",
                    self.api_secret.as_ref().map(Secret::expose_str).as_deref(),
                    &mut problem,
                );
                require("from", self.from.as_deref(), &mut problem);
                url("callback", self.callback.as_deref(), &mut problem);
            }
            AdapterKind::Infobip => {
                if self.base_url.is_none() {
                    problem("'base_url' is required: Infobip gives each account its own (https://xxxxx.api.infobip.com)".into());
                }
                require(
                    "api_key",
                    self.api_key.as_ref().map(Secret::expose_str).as_deref(),
                    &mut problem,
                );
                require("from", self.from.as_deref(), &mut problem);
                url("notify_url", self.notify_url.as_deref(), &mut problem);
            }
            AdapterKind::Messagebird => {
                require(
                    "access_key",
                    self.access_key.as_ref().map(Secret::expose_str).as_deref(),
                    &mut problem,
                );
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
            AdapterKind::Log => {}
        }
        problems
    }

    fn fields_set(&self) -> [(&'static str, bool); 20] {
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
        ]
    }
}

/// Validates `settings` and builds its adapter. All problems are reported together, joined by
/// "; ".
pub fn build(settings: &ProviderSettings) -> Result<Arc<dyn Provider>, String> {
    let problems = settings.validate();
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    install_ring();
    let provider: Arc<dyn Provider> = match settings.kind {
        AdapterKind::Twilio => Arc::new(twilio::TwilioProvider::new(settings)?),
        AdapterKind::Vonage => Arc::new(vonage::VonageProvider::new(settings)?),
        AdapterKind::Infobip => Arc::new(infobip::InfobipProvider::new(settings)?),
        AdapterKind::Messagebird => Arc::new(messagebird::MessagebirdProvider::new(settings)?),
        AdapterKind::Whatsapp => Arc::new(whatsapp::WhatsappProvider::new(settings)?),
        AdapterKind::Http => Arc::new(Named {
            name: leak_name(&settings.name),
            inner: http::HttpProvider::new(
                settings.url.as_deref().unwrap_or_default(),
                settings.timeout(),
                settings.body_limit,
            )?,
        }),
        AdapterKind::Log => Arc::new(Named {
            name: leak_name(&settings.name),
            inner: log::LogProvider,
        }),
    };
    Ok(provider)
}

/// Gives an existing adapter its configured name, so two `http` providers are told apart in
/// metrics.
struct Named<P> {
    name: &'static str,
    inner: P,
}

#[async_trait]
impl<P: Provider> Provider for Named<P> {
    fn name(&self) -> &'static str {
        self.name
    }

    async fn send(&self, message: &OutgoingMessage) -> Result<Accepted, ProviderError> {
        self.inner.send(message).await
    }
}

/// `Provider::name` returns `&'static str` because metric labels are taken on every send.
/// Providers are built once at start from a bounded config, so leaking each name is a fixed,
/// tiny cost.
pub(crate) fn leak_name(name: &str) -> &'static str {
    Box::leak(name.to_owned().into_boxed_str())
}

fn check_url(value: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(value).map_err(|error| format!("is not a URL: {error}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err("must be an http:// or https:// URL".into());
    }
    Ok(url)
}

/// Joins a base URL (which may carry a path prefix) and an API path.
pub(crate) fn endpoint(base: &str, path: &str) -> Result<reqwest::Url, String> {
    let joined = format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    );
    check_url(&joined)
}

/// reqwest is built without a default TLS crypto provider so that ring stays the only crypto
/// stack (no aws-lc-rs); a client built before one is installed panics. Installing twice is
/// harmless, hence the ignored result.
fn install_ring() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// One client per provider, built once: connection reuse matters at thousands of sends, and the
/// timeouts bound how long a dead vendor holds a worker.
pub(crate) fn client(settings: &ProviderSettings) -> Result<reqwest::Client, String> {
    install_ring();
    let timeout = settings.timeout();
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(2)))
        .pool_idle_timeout(Duration::from_secs(60))
        .user_agent(concat!("otpgate/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|error| format!("provider '{}' client: {error}", settings.name))
}

/// A failed request never reached a verdict from the vendor: always worth another try (the
/// message may go out twice if the vendor accepted it before the timeout; a duplicate code is
/// better than none).
pub(crate) fn transport_error(error: reqwest::Error) -> ProviderError {
    let error = error.without_url();
    if error.is_timeout() {
        ProviderError::Retryable(format!("timed out: {error}"))
    } else if error.is_connect() {
        ProviderError::Retryable(format!("could not connect: {error}"))
    } else {
        ProviderError::Retryable(format!("request failed: {error}"))
    }
}

/// The default verdict from an HTTP status alone, for answers whose body says nothing more.
pub(crate) fn by_status(status: reqwest::StatusCode, reason: String) -> ProviderError {
    if status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408 {
        ProviderError::Retryable(reason)
    } else {
        ProviderError::Permanent(reason)
    }
}

/// A vendor's own error text, made safe to log: some vendors echo request fields back, so the
/// code and the body are blanked out, and the text is capped.
pub(crate) fn vendor_text(message: &OutgoingMessage, text: &str) -> String {
    let mut text: String = text.chars().take(300).collect();
    if !message.body.is_empty() {
        text = text.replace(&message.body, "[body]");
    }
    if !message.code.is_empty() {
        text = text.replace(&message.code, "[code]");
    }
    text
}

/// `application/x-www-form-urlencoded` serialization (the WHATWG form encoding: spaces as '+',
/// everything but `*-._` and alphanumerics percent-encoded).
pub(crate) fn form_encode(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (index, (key, value)) in pairs.iter().enumerate() {
        if index > 0 {
            out.push('&');
        }
        encode_component(key, &mut out);
        out.push('=');
        encode_component(value, &mut out);
    }
    out
}

fn encode_component(input: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for byte in input.bytes() {
        match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(byte as char)
            }
            b' ' => out.push('+'),
            _ => {
                out.push('%');
                out.push(HEX[usize::from(byte >> 4)] as char);
                out.push(HEX[usize::from(byte & 0x0f)] as char);
            }
        }
    }
}

/// The E.164 number without its '+', for vendors that want digits only.
pub(crate) fn digits_only(message: &OutgoingMessage) -> &str {
    message.to.e164().trim_start_matches('+')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding_matches_the_whatwg_rules() {
        assert_eq!(
            form_encode(&[("To", "+4915112345678"), ("Body", "Dein Code: 123 ü&=")]),
            "To=%2B4915112345678&Body=Dein+Code%3A+123+%C3%BC%26%3D"
        );
    }

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
