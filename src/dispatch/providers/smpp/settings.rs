//! The `smpp` kind's part of a `[[dispatch.providers]]` table: its checks, defaults and the
//! values its sessions are built from.

use std::time::Duration;

use serde::Deserialize;

use crate::dispatch::providers::ProviderSettings;
use crate::secret::Secret;

/// How an SMPP provider binds to its SMSC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmppBind {
    Transceiver,
    TransmitterReceiver,
}

pub const DEFAULT_SMPP_WINDOW: u32 = 10;
pub const DEFAULT_SMPP_ENQUIRE_LINK_MS: u64 = 30_000;
pub const DEFAULT_SMPP_RECONNECT_MAX_MS: u64 = 30_000;

pub(crate) struct Smpp<'a> {
    pub address: &'a str,
    pub system_id: &'a str,
    pub password: Option<&'a Secret>,
    pub system_type: &'a str,
    pub source: &'a str,
    pub bind: SmppBind,
    pub window: u32,
    pub enquire_link: Duration,
    pub reconnect_max: Duration,
}

impl ProviderSettings {
    /// SMPP 3.4's field sizes (section 5.2: system_id 16, password 9, system_type 13 and
    /// source_addr 21 octets, each with its terminating NUL) and sane bounds on the session.
    pub(crate) fn validate_smpp(&self, problem: &mut dyn FnMut(String)) {
        match self.address.as_deref().map(str::trim) {
            None | Some("") => problem("'address' is required (host:port of the SMSC)".into()),
            Some(address) => {
                let port = address
                    .rsplit_once(':')
                    .map(|(host, port)| (host, port.parse::<u16>()));
                if !matches!(port, Some((host, Ok(port))) if !host.is_empty() && port != 0) {
                    problem("'address' must be host:port, such as smsc.example.net:2775".into());
                }
            }
        }
        let sized = |field: &str, value: Option<&str>, max: usize, required: bool| match value {
            None | Some("") if required => Some(format!("'{field}' is required")),
            Some(value)
                if value.len() > max || !value.bytes().all(|b| (b' '..=b'~').contains(&b)) =>
            {
                Some(format!(
                    "'{field}' must be at most {max} printable ASCII characters"
                ))
            }
            _ => None,
        };
        let password = self.password.as_ref().map(Secret::expose_str);
        let checks = [
            sized("system_id", self.system_id.as_deref(), 15, true),
            sized("password", password.as_deref(), 8, false),
            sized("system_type", self.system_type.as_deref(), 12, false),
            sized("from", self.from.as_deref(), 20, true),
        ];
        for found in checks.into_iter().flatten() {
            problem(found);
        }
        if let Some(from) = self.from.as_deref() {
            let digits = from.strip_prefix('+').unwrap_or(from);
            let numeric = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
            if !numeric && from.chars().count() > 11 {
                problem("'from' must be a number or at most 11 characters (GSM's limit for a named sender)".into());
            }
        }
        if self
            .window
            .is_some_and(|window| !(1..=1000).contains(&window))
        {
            problem("'window' must be between 1 and 1000".into());
        }
        if self
            .enquire_link_ms
            .is_some_and(|every| !(1000..=600_000).contains(&every))
        {
            problem("'enquire_link_ms' must be between 1000 and 600000".into());
        }
        if self
            .reconnect_max_ms
            .is_some_and(|max| !(250..=600_000).contains(&max))
        {
            problem("'reconnect_max_ms' must be between 250 and 600000".into());
        }
    }

    /// The entry as SMPP settings with its defaults; `None` when a required field is missing.
    pub(crate) fn smpp(&self) -> Option<Smpp<'_>> {
        Some(Smpp {
            address: self.address.as_deref()?.trim(),
            system_id: self.system_id.as_deref()?,
            password: self.password.as_ref(),
            system_type: self.system_type.as_deref().unwrap_or(""),
            source: self.from.as_deref()?,
            bind: self.bind.unwrap_or(SmppBind::Transceiver),
            window: self.window.unwrap_or(DEFAULT_SMPP_WINDOW),
            enquire_link: Duration::from_millis(
                self.enquire_link_ms.unwrap_or(DEFAULT_SMPP_ENQUIRE_LINK_MS),
            ),
            reconnect_max: Duration::from_millis(
                self.reconnect_max_ms
                    .unwrap_or(DEFAULT_SMPP_RECONNECT_MAX_MS),
            ),
        })
    }
}
