//! Per-account bounds (issue 13 §8): how much one tenant may hold, so that no account can
//! starve the others of memory, Redis or the embedded store's capacity.
//!
//! Two kinds of bound. Stock bounds (users, phone numbers, factors per user, pending
//! ceremonies) hold on every store and are checked in the same atomic step that adds (one
//! script in Redis, one lock in memory). Shares hold on the embedded store only: one account may
//! fill at most `memory_account_share_percent` of each of its bounded structures, so that one
//! account reaching its share leaves room for every other account's logins.

use std::collections::HashMap;

use crate::account::AccountId;

/// The stock bounds of one account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountLimits {
    /// Users of the account (the directory).
    pub users: u64,
    /// Numbers in the two-step PIN registry.
    pub phone_numbers: u64,
    /// Enrolled factors (authenticator apps, security keys) per user.
    pub factors_per_user: u64,
    /// Unconfirmed TOTP enrolments and open WebAuthn ceremonies at once, all users together.
    pub pending_ceremonies: u64,
    /// Trusted devices of all users together (besides `directory.max_devices_per_user`).
    pub trusted_devices: u64,
}

impl AccountLimits {
    /// The documented defaults (config/default.toml `[tenants]`): far above what one business
    /// needs, far below what fills a gateway's memory.
    pub const DEFAULT: AccountLimits = AccountLimits {
        users: 100_000,
        phone_numbers: 100_000,
        factors_per_user: 10,
        pending_ceremonies: 50_000,
        trusted_devices: 500_000,
    };
}

/// The bounds of every account: the operator's defaults and per-account overrides, both from
/// config (`[tenants]`, `[tenants.accounts.<account id>]`).
#[derive(Debug, Clone)]
pub struct TenantSettings {
    pub defaults: AccountLimits,
    /// Overrides, complete (unset fields were filled from `defaults` when loaded).
    pub accounts: HashMap<AccountId, AccountLimits>,
    /// The embedded store: the share (1–100 %) of each bounded structure one account may fill.
    pub memory_account_share_percent: u8,
    /// The embedded directory: users of all accounts together.
    pub memory_max_users: usize,
    /// The embedded directory: trusted devices of all accounts together.
    pub memory_max_devices: usize,
}

impl Default for TenantSettings {
    fn default() -> Self {
        Self {
            defaults: AccountLimits::DEFAULT,
            accounts: HashMap::new(),
            memory_account_share_percent: 25,
            memory_max_users: 1_000_000,
            memory_max_devices: 2_000_000,
        }
    }
}

impl TenantSettings {
    /// `[tenants.accounts.<account id>]` tables: each field overrides the default; unknown ids,
    /// fields, or zeros add a line to `errors`.
    pub fn overrides(
        defaults: AccountLimits,
        tables: HashMap<String, HashMap<String, u64>>,
        errors: &mut Vec<String>,
    ) -> HashMap<AccountId, AccountLimits> {
        let mut accounts = HashMap::new();
        for (id, fields) in tables {
            let key = format!("tenants.accounts.{id}");
            // The loader may lower-case keys; account ids are `AC` and lowercase hex.
            let Some(account) = id
                .get(2..)
                .and_then(|hex| AccountId::parse(&format!("AC{}", hex.to_lowercase())))
                .filter(|_| id.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("ac")))
            else {
                errors.push(format!("{key}: not an account id (AC and 32 hex digits)"));
                continue;
            };
            let mut limits = defaults;
            for (field, value) in fields {
                let slot = match field.as_str() {
                    "max_users" => &mut limits.users,
                    "max_phone_numbers" => &mut limits.phone_numbers,
                    "max_factors_per_user" => &mut limits.factors_per_user,
                    "max_pending_ceremonies" => &mut limits.pending_ceremonies,
                    "max_trusted_devices" => &mut limits.trusted_devices,
                    other => {
                        errors.push(format!(
                            "{key}.{other}: unknown (max_users, max_phone_numbers, max_factors_per_user, max_pending_ceremonies, max_trusted_devices)"
                        ));
                        continue;
                    }
                };
                if value == 0 {
                    errors.push(format!("{key}.{field}: must be greater than 0"));
                }
                *slot = value;
            }
            accounts.insert(account, limits);
        }
        accounts
    }

    pub fn limits(&self, account: &AccountId) -> AccountLimits {
        self.accounts.get(account).copied().unwrap_or(self.defaults)
    }

    /// One account's share of an embedded structure bounded at `total` (at least 1).
    pub fn share_of(&self, total: usize) -> usize {
        share_of(total, self.memory_account_share_percent)
    }
}

/// `percent` of `total`, rounded down, at least 1.
pub fn share_of(total: usize, percent: u8) -> usize {
    let share = (total as u128 * u128::from(percent.min(100)) / 100) as usize;
    share.max(1)
}

// `Limit` and `LimitReached` live beside `StoreError`, which carries them out of the stores'
// atomic steps: there they depend on nothing, so no module circle runs through the error.
pub use crate::store::{Limit, LimitReached};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_share_is_a_percentage_of_the_total_and_never_zero() {
        assert_eq!(share_of(1_000_000, 25), 250_000);
        assert_eq!(share_of(10, 50), 5);
        assert_eq!(share_of(3, 10), 1);
        assert_eq!(share_of(10, 200), 10, "at most the whole");
    }
}
