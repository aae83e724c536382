//! The operator's way to turn two-step off on an owner's behalf (an owner who lost access to
//! their account's mailbox or keys): `otpgate support disable-two-step`, never the public API.
//!
//! It connects to the configured Redis (the embedded store lives inside the server process, so
//! there is nothing to connect to without Redis), writes the audit entry with the operator and
//! the reason, then disables, and exits.

use std::sync::Arc;

use super::service::PinService;
use super::PhoneNumberId;
use crate::account::AccountId;
use crate::clock::SystemClock;
use crate::config::Settings;
use crate::mail::LogMailer;
use crate::metrics::Metrics;
use crate::redis::RedisDirectory;
use crate::redis::RedisSettings;
use crate::redis::RedisStore;

/// What the support command was asked to do.
#[derive(Debug, Clone)]
pub struct SupportDisable {
    pub account: String,
    pub phone_number: String,
    pub reason: String,
    /// Who ran it (the login name), for the audit entry.
    pub operator: String,
}

/// Disables two-step for one number; the masked number on success, a message otherwise.
pub async fn disable_two_step(
    settings: &Settings,
    request: &SupportDisable,
) -> Result<String, String> {
    let account = AccountId::parse(&request.account)
        .ok_or("--account must be an account id (AC and 32 hex digits)")?;
    let id = PhoneNumberId::parse(&request.phone_number)
        .ok_or("--phone-number must be a phone-number id (15 digits)")?;
    let reason = request.reason.trim();
    if reason.len() < 5 || reason.len() > 500 || reason.chars().any(char::is_control) {
        return Err("--reason must say why, in 5 to 500 printable characters".into());
    }
    if settings.store.redis_urls.is_empty() {
        return Err("no Redis is configured: the embedded store lives inside the server process; point --config or OTPGATE_REDIS_URL at the deployment's Redis".into());
    }
    let redis = RedisStore::connect(&RedisSettings::from_store(&settings.store))
        .await
        .map_err(|error| error.to_string())?;
    let directory = Arc::new(RedisDirectory::new(
        redis.connection(),
        redis.prefix(),
        settings.directory.audit_max_entries,
    ));
    let store = Arc::new(crate::redis::RedisPinStore::new(
        redis.connection(),
        redis.prefix(),
    ));
    // Disabling hashes nothing and mails nothing: an empty pepper and the log mailer are inert.
    let service = PinService::new(
        store,
        Arc::new(super::hash::PinHasher::new(
            Vec::new(),
            settings.pin.settings.cost,
        )),
        Arc::new(LogMailer::new("")),
        directory,
        Arc::new(SystemClock),
        Arc::new(Metrics::new()),
        settings.pin.settings,
        "",
    );
    service
        .support_disable(&account, &id, &request.operator, reason)
        .await
        .map_err(|error| match error {
            super::service::PinError::NotFound => "no such phone number in that account".to_owned(),
            super::service::PinError::AlreadyDisabled => {
                "two-step verification is already off for that number".to_owned()
            }
            other => other.to_string(),
        })
}
