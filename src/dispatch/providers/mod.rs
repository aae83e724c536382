//! The provider seam: one adapter per way of delivering a message, behind one trait, and the
//! settings that choose and configure the adapters.

pub mod http;
pub mod inbound;
pub mod infobip;
pub mod log;
pub mod messagebird;
pub mod settings;
pub mod smpp;
pub mod twilio;
pub mod vonage;
pub mod whatsapp;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::dispatch::OutgoingMessage;
use settings::Vendor;
pub use settings::{
    AdapterKind, ProviderSettings, DEFAULT_BODY_LIMIT, DEFAULT_TIMEOUT_MS,
    DEFAULT_WHATSAPP_API_VERSION, DEFAULT_WHATSAPP_TEMPLATE,
};

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

/// What each adapter in this folder implements: the delivery alone. `build` names every adapter
/// after its configured provider (`Named`), so no adapter carries or repeats its name.
#[async_trait]
pub trait Adapter: Send + Sync + 'static {
    async fn send(&self, message: &OutgoingMessage) -> Result<Accepted, ProviderError>;
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

/// Validates `settings` and builds its adapter. All problems are reported together, joined by
/// "; ". An SMPP provider built here acknowledges its receipts without keeping them: the
/// gateway builds with [`build_receiving`].
pub fn build(settings: &ProviderSettings) -> Result<Arc<dyn Provider>, String> {
    build_receiving(settings, None)
}

/// Like [`build`], handing the receipts that arrive over a provider's own connection (SMPP)
/// to `receipts`.
pub fn build_receiving(
    settings: &ProviderSettings,
    receipts: Option<&inbound::ReceiptSink>,
) -> Result<Arc<dyn Provider>, String> {
    let problems = settings.validate();
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    install_ring();
    let vendor = settings
        .vendor()
        .ok_or_else(|| format!("provider '{}': a required field is missing", settings.name))?;
    let adapter: Box<dyn Adapter> = match vendor {
        Vendor::Twilio(vendor) => Box::new(twilio::TwilioProvider::new(settings, vendor)?),
        Vendor::Vonage(vendor) => Box::new(vonage::VonageProvider::new(settings, vendor)?),
        Vendor::Infobip(vendor) => Box::new(infobip::InfobipProvider::new(settings, vendor)?),
        Vendor::Messagebird(vendor) => {
            Box::new(messagebird::MessagebirdProvider::new(settings, vendor)?)
        }
        Vendor::Whatsapp(vendor) => Box::new(whatsapp::WhatsappProvider::new(settings, vendor)?),
        Vendor::Http { url } => Box::new(http::HttpProvider::new(
            url,
            settings.timeout(),
            settings.body_limit,
        )?),
        Vendor::Smpp(vendor) => Box::new(smpp::SmppProvider::new(
            settings,
            vendor,
            receipts.cloned(),
        )?),
        Vendor::Log => Box::new(log::LogProvider),
    };
    Ok(Arc::new(Named {
        name: leak_name(&settings.name),
        adapter,
    }))
}

/// An adapter under its configured name, so that two providers of one kind (two `http`
/// receivers, two Twilio accounts) are told apart in metrics.
struct Named {
    name: &'static str,
    adapter: Box<dyn Adapter>,
}

#[async_trait]
impl Provider for Named {
    fn name(&self) -> &'static str {
        self.name
    }

    async fn send(&self, message: &OutgoingMessage) -> Result<Accepted, ProviderError> {
        self.adapter.send(message).await
    }
}

/// `Provider::name` returns `&'static str` because metric labels are taken on every send.
/// Providers are built once at start from a bounded config, so leaking each name is a fixed,
/// tiny cost.
pub(crate) fn leak_name(name: &str) -> &'static str {
    Box::leak(name.to_owned().into_boxed_str())
}

pub(crate) fn check_url(value: &str) -> Result<reqwest::Url, String> {
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

/// What every vendor adapter holds: one client, the endpoint it POSTs to, and how much of an
/// answer it reads.
pub(crate) struct VendorApi {
    client: reqwest::Client,
    url: reqwest::Url,
    body_limit: usize,
}

impl VendorApi {
    pub(crate) fn new(settings: &ProviderSettings, url: reqwest::Url) -> Result<Self, String> {
        Ok(Self {
            client: client(settings)?,
            url,
            body_limit: settings.body_limit,
        })
    }

    /// POSTs one request (`build` adds its headers and body) and reads the answer: its status
    /// and at most the body limit of its body. A request that got no answer is retryable.
    pub(crate) async fn post(
        &self,
        build: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<(reqwest::StatusCode, bytes::Bytes), ProviderError> {
        let request = build(self.client.post(self.url.clone()));
        let response = request.send().await.map_err(transport_error)?;
        let status = response.status();
        Ok((status, read_body(response, self.body_limit).await?))
    }
}

/// A form-encoded body (`application/x-www-form-urlencoded`).
pub(crate) fn with_form(
    request: reqwest::RequestBuilder,
    pairs: &[(&str, &str)],
) -> reqwest::RequestBuilder {
    request
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(form_encode(pairs))
}

/// A JSON body, with the vendor's `Authorization` header and asking for JSON back (Infobip,
/// MessageBird).
pub(crate) fn json_with_key(
    request: reqwest::RequestBuilder,
    authorization: &str,
    body: &impl serde::Serialize,
) -> reqwest::RequestBuilder {
    request
        .header(reqwest::header::AUTHORIZATION, authorization)
        .header(reqwest::header::ACCEPT, "application/json")
        .json(body)
}

/// A successful answer's JSON body; one that cannot be read is retryable.
pub(crate) fn success_body<T: serde::de::DeserializeOwned>(
    status: reqwest::StatusCode,
    bytes: &[u8],
) -> Result<T, ProviderError> {
    serde_json::from_slice(bytes)
        .map_err(|_| ProviderError::Retryable(format!("answered {status} with an unreadable body")))
}

/// An accepted answer's message id (its `what`), which `id` picks from the JSON body `T`.
/// Without one nothing says the message exists: retrying (or failing over) beats reporting a
/// send that may not have happened.
pub(crate) fn accepted<T: serde::de::DeserializeOwned>(
    status: reqwest::StatusCode,
    bytes: &[u8],
    what: &str,
    id: impl FnOnce(T) -> Option<String>,
) -> Result<Accepted, ProviderError> {
    let id = serde_json::from_slice(bytes).ok().and_then(id);
    match id.filter(|id| !id.is_empty()) {
        Some(id) => Ok(Accepted {
            provider_message_id: Some(id),
        }),
        None => Err(ProviderError::Retryable(format!(
            "answered {status} without a message {what}"
        ))),
    }
}

/// A verdict a vendor's error code decides, overriding the HTTP status.
pub(crate) type Verdict = fn(String) -> ProviderError;

/// A refusal with the vendor's error code and text: the code's verdict where `classify` (the
/// vendor's table) has one, else the status's.
pub(crate) fn refusal<C: std::fmt::Display + Copy>(
    status: reqwest::StatusCode,
    message: &OutgoingMessage,
    code: Option<C>,
    text: &str,
    classify: impl Fn(C) -> Option<Verdict>,
) -> ProviderError {
    let reason = format!(
        "answered {status}, code {}: {}",
        code.map_or_else(|| "none".to_owned(), |code| code.to_string()),
        vendor_text(message, text)
    );
    match code.and_then(classify) {
        Some(verdict) => verdict(reason),
        None => by_status(status, reason),
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
}
