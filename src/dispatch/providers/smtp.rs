//! The `smtp` provider: e-mail codes through an SMTP server, on the gateway's own mailer
//! (`mail::SmtpMailer`: lettre on tokio, rustls with ring). The server is named by a URL:
//! `smtp://[user@]host[:port]` with STARTTLS required (port 587 by default),
//! `smtp://host:port?tls=none` in plain text (a relay on the same host, a test sink), or
//! `smtps://[user@]host[:port]` with TLS from the first byte (465). The user's password is the
//! entry's `password`, never part of the URL.

use async_trait::async_trait;

use super::settings::{ProviderSettings, Smtp};
use super::{Accepted, Adapter, ProviderError};
use crate::dispatch::mail_template;
use crate::dispatch::OutgoingMessage;
use crate::mail::{Mail, MailError, MailSettings, MailTransport, Mailer, SmtpMailer, SmtpTls};

/// Where an `smtp` provider's URL points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpTarget {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub username: String,
}

/// Reads an `smtp` provider's URL; the reason it is refused otherwise.
pub fn parse_url(value: &str) -> Result<SmtpTarget, String> {
    let url = reqwest::Url::parse(value).map_err(|error| format!("is not a URL: {error}"))?;
    let host = url
        .host_str()
        .filter(|host| !host.is_empty())
        .ok_or("must name a host: smtp://mail.example.com:587")?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    if url.password().is_some() {
        return Err("must not carry a password: give it as the provider's 'password' (env:NAME reads it from the environment)".into());
    }
    if !(url.path().is_empty() || url.path() == "/") || url.fragment().is_some() {
        return Err("must be smtp://[user@]host[:port] with no path".into());
    }
    let mut tls_asked = None;
    for (key, value) in url.query_pairs() {
        match key.as_ref() {
            "tls" if url.scheme() == "smtp" => tls_asked = Some(value.into_owned()),
            _ => {
                return Err(format!(
                "has an unknown parameter '{key}' (smtp:// takes only ?tls=none or ?tls=starttls)"
            ))
            }
        }
    }
    let (tls, default_port) = match (url.scheme(), tls_asked.as_deref()) {
        ("smtps", _) => (SmtpTls::Tls, 465),
        ("smtp", None | Some("starttls")) => (SmtpTls::StartTls, 587),
        ("smtp", Some("none")) => (SmtpTls::None, 25),
        ("smtp", Some(_)) => return Err("takes ?tls=none or ?tls=starttls".into()),
        _ => return Err("must start with smtp:// or smtps://".into()),
    };
    Ok(SmtpTarget {
        host,
        port: url.port().unwrap_or(default_port),
        tls,
        username: percent_encoding::percent_decode_str(url.username())
            .decode_utf8_lossy()
            .into_owned(),
    })
}

pub struct SmtpProvider {
    mailer: SmtpMailer,
}

impl SmtpProvider {
    pub(crate) fn new(settings: &ProviderSettings, vendor: Smtp<'_>) -> Result<Self, String> {
        let who = || format!("provider '{}'", settings.name);
        let target =
            parse_url(vendor.url).map_err(|reason| format!("{}: 'url' {reason}", who()))?;
        let mail = MailSettings {
            transport: MailTransport::Smtp,
            from: vendor.from.to_owned(),
            link_base_url: String::new(),
            smtp_host: target.host,
            smtp_port: target.port,
            smtp_tls: target.tls,
            smtp_username: target.username,
            smtp_password: vendor.password.cloned().unwrap_or_default(),
            smtp_timeout: settings.timeout(),
        };
        let mailer = SmtpMailer::new(&mail).map_err(|error| format!("{}: {error}", who()))?;
        Ok(Self { mailer })
    }
}

/// The mail of an e-mail message: the subject and the HTML part made from its text, per
/// locale.
pub(crate) fn mail_of(message: &OutgoingMessage) -> Mail {
    Mail {
        to: message.to.as_str().to_owned(),
        subject: mail_template::subject(&message.locale, &message.code),
        body: message.body.clone(),
        html: Some(mail_template::html(
            &message.locale,
            &message.body,
            &message.code,
        )),
    }
}

#[async_trait]
impl Adapter for SmtpProvider {
    async fn send(&self, message: &OutgoingMessage) -> Result<Accepted, ProviderError> {
        if message.to.email().is_none() {
            return Err(ProviderError::Permanent(
                "the smtp provider sends e-mail only".into(),
            ));
        }
        match self.mailer.send(&mail_of(message)).await {
            Ok(()) => Ok(Accepted {
                provider_message_id: None,
            }),
            // A mail that cannot be built never will be; a server that refused or failed may
            // take it on the next try (lettre does not tell 4xx from 5xx replies apart here).
            Err(MailError::Build(reason)) => Err(ProviderError::Permanent(reason)),
            Err(MailError::Transport(reason)) => Err(ProviderError::Retryable(reason)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_choose_the_tls_mode_and_default_port() {
        let target = parse_url("smtp://relay.example.com").unwrap();
        assert_eq!((target.tls, target.port), (SmtpTls::StartTls, 587));
        let target = parse_url("smtps://otp%40acme@mail.example.com").unwrap();
        assert_eq!((target.tls, target.port), (SmtpTls::Tls, 465));
        assert_eq!(target.username, "otp@acme");
        let target = parse_url("smtp://127.0.0.1:2525?tls=none").unwrap();
        assert_eq!(
            (target.tls, target.port, target.host.as_str()),
            (SmtpTls::None, 2525, "127.0.0.1")
        );
    }

    #[test]
    fn urls_with_a_password_a_path_or_another_scheme_are_refused() {
        for bad in [
            "smtp://user:secret@mail.example.com",
            "smtp://mail.example.com/path",
            "http://mail.example.com",
            "smtp://mail.example.com?tls=maybe",
            "smtps://mail.example.com?tls=none",
            "not a url",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }
}
