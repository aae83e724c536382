//! Outgoing e-mail: the `Mailer` seam, an SMTP adapter (lettre on tokio, rustls with ring) and
//! the `log` mailer that prints each mail on standard output.
//!
//! The `log` mailer is a delivery channel for development (the embedded default, so a newcomer
//! sees the two-step links arrive), not logging: the server warns at start whenever it is active,
//! because the mails it prints carry single-use links.

use std::time::Duration;

use async_trait::async_trait;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::secret::Secret;

/// One mail to one recipient: a plain-text part, and an HTML alternative when `html` is set.
#[derive(Clone)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub body: String,
    pub html: Option<String>,
}

impl std::fmt::Debug for Mail {
    // The body carries a single-use link: never in Debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mail")
            .field("to", &self.to)
            .field("subject", &self.subject)
            .field("body", &"<hidden>")
            .field("html", &self.html.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("the mail could not be built: {0}")]
    Build(String),
    #[error("the mail server refused or failed: {0}")]
    Transport(String),
}

#[async_trait]
pub trait Mailer: Send + Sync + 'static {
    async fn send(&self, mail: &Mail) -> Result<(), MailError>;

    /// `log` or `smtp`, for logs.
    fn kind(&self) -> &'static str;
}

/// Which mailer (`[mail] transport`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MailTransport {
    #[default]
    Log,
    Smtp,
}

/// How the SMTP connection is protected (`[mail] smtp_tls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SmtpTls {
    /// Plain text: only for a relay on the same host or a test sink.
    None,
    /// STARTTLS, required (port 587).
    #[default]
    StartTls,
    /// TLS from the first byte (port 465).
    Tls,
}

impl SmtpTls {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "none" => Some(SmtpTls::None),
            "starttls" => Some(SmtpTls::StartTls),
            "tls" => Some(SmtpTls::Tls),
            _ => None,
        }
    }
}

/// `[mail]` in config.
#[derive(Debug, Clone, Default)]
pub struct MailSettings {
    pub transport: MailTransport,
    /// The sender, such as `otpgate <no-reply@example.com>`.
    pub from: String,
    /// Links in mails start with this (`https://gateway.example.com`), then `/v1/two-step/…`.
    pub link_base_url: String,
    pub smtp_host: String,
    pub smtp_port: u16,
    pub smtp_tls: SmtpTls,
    /// Empty: no authentication. The password comes from `OTPGATE_SMTP_PASSWORD`.
    pub smtp_username: String,
    pub smtp_password: Secret,
    pub smtp_timeout: Duration,
}

impl MailSettings {
    /// The rules on values that parsed; each broken one adds a line to `errors`.
    pub fn validate(&self, errors: &mut Vec<String>) {
        let address = self
            .from
            .rsplit_once('<')
            .map(|(_, rest)| rest.trim_end_matches('>'))
            .unwrap_or(&self.from);
        if !valid_address(address.trim()) {
            errors.push("mail.from: must be an address such as no-reply@example.com or 'otpgate <no-reply@example.com>'".to_owned());
        }
        let ok = reqwest::Url::parse(&self.link_base_url)
            .is_ok_and(|url| matches!(url.scheme(), "http" | "https") && url.query().is_none());
        if !ok {
            errors.push("mail.link_base_url: must be an http:// or https:// URL such as https://gateway.example.com".to_owned());
        }
        if self.transport == MailTransport::Smtp && self.smtp_host.is_empty() {
            errors.push("mail.smtp_host: the smtp transport needs a host".to_owned());
        }
        if self.smtp_port == 0 {
            errors.push("mail.smtp_port: must be a port number".to_owned());
        }
    }
}

/// Builds the configured mailer; warns when it is the `log` mailer.
pub fn build(settings: &MailSettings) -> Result<std::sync::Arc<dyn Mailer>, MailError> {
    Ok(match settings.transport {
        MailTransport::Log => {
            tracing::warn!("the log mailer is active: two-step links are printed on standard output; use it for development only");
            std::sync::Arc::new(LogMailer::new(&settings.from))
        }
        MailTransport::Smtp => std::sync::Arc::new(SmtpMailer::new(settings)?),
    })
}

/// Prints each mail on standard output.
#[derive(Debug)]
pub struct LogMailer {
    from: String,
}

impl LogMailer {
    pub fn new(from: &str) -> Self {
        Self { from: from.into() }
    }
}

#[async_trait]
impl Mailer for LogMailer {
    async fn send(&self, mail: &Mail) -> Result<(), MailError> {
        println!(
            "[otpgate log mailer] from {} to {}\nSubject: {}\n\n{}\n[end of mail]",
            self.from, mail.to, mail.subject, mail.body
        );
        Ok(())
    }

    fn kind(&self) -> &'static str {
        "log"
    }
}

/// Sends through an SMTP server. One transport (with lettre's connection pool) per mailer.
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl SmtpMailer {
    pub fn new(settings: &MailSettings) -> Result<Self, MailError> {
        let from: Mailbox = settings
            .from
            .parse()
            .map_err(|error| MailError::Build(format!("mail.from: {error}")))?;
        let tls = |host: &str| {
            TlsParameters::new_rustls(host.to_owned())
                .map_err(|error| MailError::Build(format!("TLS: {error}")))
        };
        let mut builder =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(settings.smtp_host.as_str())
                .port(settings.smtp_port)
                .timeout(Some(settings.smtp_timeout));
        builder = match settings.smtp_tls {
            SmtpTls::None => builder.tls(Tls::None),
            SmtpTls::StartTls => builder.tls(Tls::Required(tls(&settings.smtp_host)?)),
            SmtpTls::Tls => builder.tls(Tls::Wrapper(tls(&settings.smtp_host)?)),
        };
        if !settings.smtp_username.is_empty() {
            let password = String::from_utf8_lossy(settings.smtp_password.expose()).into_owned();
            builder =
                builder.credentials(Credentials::new(settings.smtp_username.clone(), password));
        }
        Ok(Self {
            transport: builder.build(),
            from,
        })
    }
}

#[async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, mail: &Mail) -> Result<(), MailError> {
        let to: Mailbox = mail
            .to
            .parse()
            .map_err(|error| MailError::Build(format!("recipient: {error}")))?;
        let builder = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject.as_str());
        let message = match &mail.html {
            None => builder
                .header(ContentType::TEXT_PLAIN)
                .body(mail.body.clone()),
            Some(html) => builder.multipart(MultiPart::alternative_plain_html(
                mail.body.clone(),
                html.clone(),
            )),
        }
        .map_err(|error| MailError::Build(error.to_string()))?;
        self.transport
            .send(message)
            .await
            .map(drop)
            .map_err(|error| MailError::Transport(error.to_string()))
    }

    fn kind(&self) -> &'static str {
        "smtp"
    }
}

/// A plausible e-mail address: one `@`, a non-empty local part, a dotted domain, no spaces or
/// control characters, at most 254 characters. Deliverability is the mail server's business.
pub fn valid_address(input: &str) -> bool {
    let Some((local, domain)) = input.split_once('@') else {
        return false;
    };
    input.len() <= 254
        && !local.is_empty()
        && local.len() <= 64
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && input
            .chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '<' | '>' | ',' | ';' | '"' | '(' | ')'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_checked_for_shape() {
        for good in ["owner@example.com", "a.b+c@mail.example.co.uk"] {
            assert!(valid_address(good), "{good}");
        }
        for bad in [
            "",
            "owner",
            "@example.com",
            "owner@",
            "owner@example",
            "a b@example.com",
            "a@b@example.com",
            "<a@example.com>",
        ] {
            assert!(!valid_address(bad), "{bad}");
        }
    }

    #[test]
    fn a_mails_body_never_appears_in_debug_output() {
        let mail = Mail {
            to: "owner@example.com".into(),
            subject: "s".into(),
            body: "token-abc".into(),
            html: Some("<p>token-abc</p>".into()),
        };
        assert!(!format!("{mail:?}").contains("token-abc"));
    }
}
