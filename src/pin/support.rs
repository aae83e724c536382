//! The operator's way to turn two-step off on an owner's behalf (an owner who lost access to
//! their account's mailbox or keys): `otpgate support disable-two-step`, never the public API.
//!
//! The request is checked here; `startup::support_disable_two_step` connects to the configured
//! Redis and builds the service, which writes the audit entry with the operator and the reason,
//! then disables.

use super::service::{PinError, PinService};
use super::PhoneNumberId;
use crate::account::AccountId;

/// What the support command was asked to do.
#[derive(Debug, Clone)]
pub struct SupportDisable {
    pub account: String,
    pub phone_number: String,
    pub reason: String,
    /// Who ran it (the login name), for the audit entry.
    pub operator: String,
}

/// A request whose ids and reason have been checked.
#[derive(Debug)]
pub struct CheckedDisable<'a> {
    account: AccountId,
    id: PhoneNumberId,
    reason: &'a str,
    operator: &'a str,
}

impl SupportDisable {
    /// Parses the ids and checks the reason, before anything connects.
    pub fn check(&self) -> Result<CheckedDisable<'_>, String> {
        let account = AccountId::parse(&self.account)
            .ok_or("--account must be an account id (AC and 32 hex digits)")?;
        let id = PhoneNumberId::parse(&self.phone_number)
            .ok_or("--phone-number must be a phone-number id (15 digits)")?;
        let reason = self.reason.trim();
        if reason.len() < 5 || reason.len() > 500 || reason.chars().any(char::is_control) {
            return Err("--reason must say why, in 5 to 500 printable characters".into());
        }
        Ok(CheckedDisable {
            account,
            id,
            reason,
            operator: &self.operator,
        })
    }
}

impl CheckedDisable<'_> {
    /// Disables two-step for the number; the masked number on success, a message otherwise.
    pub async fn run(&self, service: &PinService) -> Result<String, String> {
        service
            .support_disable(&self.account, &self.id, self.operator, self.reason)
            .await
            .map_err(|error| match error {
                PinError::NotFound => "no such phone number in that account".to_owned(),
                PinError::AlreadyDisabled => {
                    "two-step verification is already off for that number".to_owned()
                }
                other => other.to_string(),
            })
    }
}
