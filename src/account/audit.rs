//! The audit trail: who changed what, when, and through which key, for every security-relevant
//! change (policy, overrides, phones, roles, factors, trusted devices, keys minted).
//!
//! Entries are written by the same store step as the change they describe (one Lua script, one
//! lock), except a minted key's entry, which follows the key's insert. They are kept per account
//! in a capped Redis stream (a capped queue in memory), newest first when read.

use serde::Serialize;
use serde_json::Value;

use crate::account::rules::Actor;

/// The actions an entry may name.
pub mod action {
    pub const POLICY_UPDATED: &str = "policy.updated";
    pub const USER_CREATED: &str = "user.created";
    pub const TWO_FACTOR_CHANGED: &str = "user.two_factor_changed";
    pub const PHONE_CHANGED: &str = "user.phone_changed";
    pub const EMAIL_CHANGED: &str = "user.email_changed";
    pub const ROLE_CHANGED: &str = "user.role_changed";
    pub const FACTOR_ADDED: &str = "user.factor_added";
    pub const FACTOR_REMOVED: &str = "user.factor_removed";
    pub const DEVICE_TRUSTED: &str = "device.trusted";
    pub const DEVICE_REVOKED: &str = "device.revoked";
    pub const DEVICES_REVOKED: &str = "devices.revoked_all";
    pub const KEY_MINTED: &str = "key.minted";
    pub const KEY_REVOKED: &str = "key.revoked";
    /// Abuse protection started a block (a pumping cool-down, or a daily cap reached).
    pub const ABUSE_BLOCKED: &str = "abuse.blocked";
}

/// Who made a change: the key (by its public id), the key's role, and the user it acted for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Who {
    pub key_id: String,
    pub role: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acting_user: Option<String>,
}

impl Who {
    /// A claimant from another account, as the holder's trail records it: it never names the
    /// other account or its key.
    pub fn another_account() -> Self {
        Self {
            key_id: "another-account".into(),
            role: "claimant".into(),
            acting_user: None,
        }
    }

    /// The gateway itself (abuse protection), acting on no key's request but its own rules.
    pub fn gateway() -> Self {
        Self {
            key_id: "gateway".into(),
            role: "gateway".into(),
            acting_user: None,
        }
    }

    pub fn root() -> Self {
        Self {
            key_id: "root".into(),
            role: "root".into(),
            acting_user: None,
        }
    }

    pub fn key(key_id: &str, role: &str) -> Self {
        Self {
            key_id: key_id.into(),
            role: role.into(),
            acting_user: None,
        }
    }
}

impl From<&Actor> for Who {
    fn from(actor: &Actor) -> Self {
        Self {
            key_id: actor.key_id.clone(),
            role: actor.key_role.as_str().into(),
            acting_user: actor.acting_user.as_ref().map(|id| id.as_str().to_owned()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    /// Assigned by the store (a stream id in Redis); the paging cursor.
    pub id: String,
    #[serde(skip)]
    pub at_ms: u64,
    pub who: Who,
    pub action: String,
    /// `policy`, `user:<id>`, `device:<id>`, `key:<id>`.
    pub target: String,
    /// What changed, as the action defines it (before/after values; never a secret, phone
    /// numbers masked).
    pub details: Value,
}

impl AuditEntry {
    pub fn new(at_ms: u64, who: Who, action: &str, target: String, details: Value) -> Self {
        Self {
            id: String::new(),
            at_ms,
            who,
            action: action.to_owned(),
            target,
            details,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    /// Pass it back as `cursor` for the next (older) page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// A paging cursor: what the store handed out, checked to be a stream-id shape (`<ms>-<seq>`)
/// so that nothing else reaches a Redis command.
pub fn valid_cursor(input: &str) -> bool {
    let mut parts = input.split('-');
    let ok = |part: Option<&str>| {
        part.is_some_and(|p| {
            !p.is_empty() && p.len() <= 20 && p.bytes().all(|b| b.is_ascii_digit())
        })
    };
    ok(parts.next()) && ok(parts.next()) && parts.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_are_stream_ids_only() {
        assert!(valid_cursor("1700000000000-0"));
        assert!(valid_cursor("0-17"));
        for bad in ["", "-", "1-", "a-1", "1-2-3", "+", "(1-0"] {
            assert!(!valid_cursor(bad), "{bad}");
        }
    }
}
