//! `StoreError`, the one failure of every store port (verify's `Store`, the directory, the
//! PIN store, the factor store, dispatch's `Outbox`), and the account bound it may carry
//! (`LimitReached`, issue 13 §8; `account::limits` names it too); `StoreSettings` (`[store]`),
//! which picks the embedded store or Redis, with the rules on its values. A leaf: it depends on
//! no other module, so every port and adapter can use it without a circle.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct StoreSettings {
    /// Empty: the embedded store.
    pub redis_urls: Vec<String>,
    pub key_prefix: String,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub memory_max_verifications: usize,
    /// How often the store client and the nodes are probed (Redis only).
    pub probe_interval: Duration,
    /// A store client that answers nothing for this long while Redis answers is replaced.
    pub client_rebuild_after: Duration,
    /// `/healthz` fails when the store client has answered nothing for this long while Redis
    /// answers.
    pub client_unhealthy_after: Duration,
    /// `/readyz` fails when a cluster shard's master has been unreachable for this long.
    pub shard_down_grace: Duration,
}

impl StoreSettings {
    /// Adds a line to `errors` for each URL that is not a Redis URL and for a key prefix that
    /// would break the keys' hash tags.
    pub fn validate(&self, errors: &mut Vec<String>) {
        for url in &self.redis_urls {
            let ok = (url.starts_with("redis://") || url.starts_with("rediss://"))
                && redis::Client::open(url.as_str()).is_ok();
            if !ok {
                errors.push(format!("store.redis_url: '{url}' is not a redis:// URL"));
            }
        }
        if self.key_prefix.is_empty() || self.key_prefix.contains(['{', '}', ' ']) {
            errors.push("store.key_prefix: must be non-empty, without braces or spaces".to_owned());
        }
    }
}

/// A store failure: the store could not answer. Expected refusals are outcomes, not errors.
///
/// `Unavailable` and `OutcomeUnknown` differ in what the caller may tell its client: the first
/// only when the request certainly never reached the store (the connection could not be made),
/// so nothing was changed; the second when it may have been sent (a response timeout, a
/// connection lost with the request on it), so it may or may not have taken effect.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store outcome unknown: {0}")]
    OutcomeUnknown(String),
    #[error("store returned an unexpected answer: {0}")]
    Corrupt(String),
    #[error("store is full ({0} verifications)")]
    Full(usize),
    /// The account reached one of its own bounds (issue 13 §8); nothing was changed. An
    /// expected refusal, but found inside the store's atomic step, so it travels this way.
    #[error(transparent)]
    AccountLimit(#[from] LimitReached),
}

/// Which bound an account reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Users,
    PhoneNumbers,
    FactorsPerUser,
    PendingCeremonies,
    TrustedDevices,
    /// The embedded store's share of verifications.
    Verifications,
    /// The embedded factor store's share (ceremonies, pending factors, proofs).
    FactorEntries,
    /// Webhooks of one account (`events.max_webhooks_per_account`), and of the whole gateway
    /// (`events.max_webhooks_total`).
    Webhooks,
    GatewayWebhooks,
}

impl Limit {
    /// The name in the problem's `limit` member and in config.
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::Users => "users",
            Limit::PhoneNumbers => "phone_numbers",
            Limit::FactorsPerUser => "factors_per_user",
            Limit::PendingCeremonies => "pending_ceremonies",
            Limit::TrustedDevices => "trusted_devices",
            Limit::Verifications => "verifications",
            Limit::FactorEntries => "factor_entries",
            Limit::Webhooks => "webhooks",
            Limit::GatewayWebhooks => "gateway_webhooks",
        }
    }

    /// Whether the bound frees itself within minutes as entries expire (then a retry later can
    /// succeed: 429), or only when someone removes what is stored, or after days (422).
    pub fn frees_with_time(self) -> bool {
        matches!(
            self,
            Limit::PendingCeremonies | Limit::Verifications | Limit::FactorEntries
        )
    }
}

/// An account reached one of its bounds; nothing was changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the account reached its limit of {max} {}", .limit.as_str())]
pub struct LimitReached {
    pub limit: Limit,
    pub max: u64,
}
