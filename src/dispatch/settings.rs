//! `[dispatch]`: the queue, the retries, and the providers (`[[dispatch.providers]]`, or the
//! legacy single `provider` / `http_url`, turned into one entry here and nowhere else).

use std::collections::HashMap;
use std::time::Duration;

use super::providers::{AdapterKind, ProviderSettings};
use super::router::RouteSettings;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    Log,
    Http,
}

#[derive(Debug, Clone)]
pub struct DispatchSettings {
    /// The single provider used when no `[[dispatch.providers]]` are configured.
    pub provider: ProviderKind,
    pub http_url: String,
    pub http_timeout: Duration,
    pub queue_capacity: usize,
    pub concurrency: usize,
    /// First back-off after a round no provider took, doubled per round up to `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
    pub breaker_failures: u32,
    pub breaker_open: Duration,
    pub reclaim_idle: Duration,
    pub max_deliveries: u64,
    pub poll_interval: Duration,
    /// Redis mode: outbox reads failing for longer than this make `/readyz` answer 503.
    pub outbox_unready_after: Duration,
    /// The most of a provider's answer (or of a receipt) that is read; a longer one fails the
    /// request (retryable for answers, 413 for receipts).
    pub provider_body_limit: usize,
    /// Whether this instance runs delivery workers. Off (Redis only) makes an API-only instance
    /// that queues messages for the instances that deliver them.
    pub workers: bool,
    /// Domain for the Web OTP line (`@domain #code`); empty: none.
    pub web_otp_domain: String,
    /// The URL the gateway is reached at by providers (for receipt signatures); empty: from the
    /// request's Host header.
    pub public_url: String,
    /// The secret unsigned vendors (Vonage, Infobip, MessageBird) put in their receipt URL as
    /// `?token=`, and WhatsApp's webhook verify token; empty: such receipts are refused.
    pub receipt_token: String,
    /// Vendor providers; when empty, one provider from `provider`/`http_url`.
    pub providers: Vec<ProviderSettings>,
    pub routes: Vec<RouteSettings>,
    /// Sends per second per provider name (its contracted throughput).
    pub rates: HashMap<String, u32>,
}

impl DispatchSettings {
    /// The providers to build: the configured vendors, or the single default one.
    /// Each carries `provider_body_limit`.
    pub fn effective_providers(&self) -> Vec<ProviderSettings> {
        let mut providers = if self.providers.is_empty() {
            let mut single = match self.provider {
                ProviderKind::Log => ProviderSettings::new("log", AdapterKind::Log),
                ProviderKind::Http => ProviderSettings::new("http", AdapterKind::Http),
            };
            if self.provider == ProviderKind::Http {
                single.url = Some(self.http_url.clone());
                single.timeout_ms = self.http_timeout.as_millis() as u64;
            }
            vec![single]
        } else {
            self.providers.clone()
        };
        for provider in &mut providers {
            provider.body_limit = self.provider_body_limit;
        }
        providers
    }
}

impl DispatchSettings {
    /// The rules on values that parsed; each broken one adds a line to `errors`.
    pub fn validate(&self, errors: &mut Vec<String>) {
        if self.provider == ProviderKind::Http {
            let ok = reqwest::Url::parse(&self.http_url)
                .is_ok_and(|url| matches!(url.scheme(), "http" | "https"));
            if !ok {
                errors.push(
                    "dispatch.http_url: the http provider needs an http:// or https:// URL"
                        .to_owned(),
                );
            }
        }
        for provider in &self.providers {
            for problem in provider.validate() {
                errors.push(format!("dispatch.providers '{}': {problem}", provider.name));
            }
        }
        let mut names: Vec<&str> = self.providers.iter().map(|p| p.name.as_str()).collect();
        names.sort_unstable();
        if names.windows(2).any(|pair| pair[0] == pair[1]) {
            errors.push("dispatch.providers: names must be unique".to_owned());
        }
    }
}
