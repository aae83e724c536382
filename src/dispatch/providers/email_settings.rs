//! The checks of the e-mail kinds' `[[dispatch.providers]]` entries (`smtp`, `sendgrid`), and
//! what an `smtp` entry is built from; `settings.rs` calls them with its other kinds' checks.

use super::settings::{AdapterKind, ProviderSettings};
use crate::secret::Secret;

/// An SMTP server: its URL, the sender, and the URL user's password when it has one.
pub(crate) struct Smtp<'a> {
    pub url: &'a str,
    pub from: &'a str,
    pub password: Option<&'a Secret>,
}

/// Every problem of an `smtp` or `sendgrid` entry, each reported through `problem`.
pub(super) fn validate(settings: &ProviderSettings, problem: &mut dyn FnMut(String)) {
    let mut require = |field: &str, set: bool| {
        if !set {
            problem(format!("'{field}' is required"));
        }
    };
    let given = |value: Option<&str>| value.is_some_and(|v| !v.trim().is_empty());
    match settings.kind {
        AdapterKind::Smtp => {
            require("url", given(settings.url.as_deref()));
            require("from", given(settings.from.as_deref()));
            if let Some(Err(reason)) = settings.url.as_deref().map(super::smtp::parse_url) {
                problem(format!("'url' {reason}"));
            }
        }
        AdapterKind::Sendgrid => {
            let key = settings.api_key.as_ref().map(Secret::expose_str);
            require("api_key", given(key.as_deref()));
            require("from", given(settings.from.as_deref()));
            let verification_key = settings.verification_key.as_deref();
            if verification_key
                .is_some_and(|key| crate::dispatch::sendgrid_events::public_key(key).is_none())
            {
                problem("'verification_key' must be the base64 ECDSA P-256 public key SendGrid shows for its Event Webhook".into());
            }
        }
        _ => return,
    }
    // A sender such as `no-reply@example.com` or `Acme <no-reply@example.com>`.
    if let Some(from) = &settings.from {
        if from.parse::<lettre::message::Mailbox>().is_err() {
            problem("'from' must be an address such as no-reply@example.com or 'Acme <no-reply@example.com>'".into());
        }
    }
}
