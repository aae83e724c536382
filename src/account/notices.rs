//! What the account tells the world after a change has been stored: the `Notices` port. The
//! events module implements it (webhooks out, `events/notices.rs`); account/ names what happened
//! in its own terms and imports nothing of events, which imports it.

use serde_json::Value;

use crate::account::user::UserId;
use crate::account::AccountId;

/// Called after the change is stored; never fails and never waits (an implementation that
/// cannot pass a notice on drops it).
pub trait Notices: Send + Sync {
    /// The policy changed; `change` is the audit entry's details (`before`, `after`).
    fn policy_changed(&self, account: &AccountId, change: &Value);
    fn device_trusted(&self, account: &AccountId, user: &UserId);
    /// One device of the user, or all of them, revoked (removing a factor revokes them too).
    fn devices_revoked(&self, account: &AccountId, user: &UserId);
    /// A factor of the user confirmed (`added`) or removed; `kind` totp or webauthn.
    fn factor_changed(
        &self,
        account: &AccountId,
        user: &UserId,
        factor: &str,
        kind: &'static str,
        added: bool,
    );
}

/// Tells no one: the service's default, and the embedders' that want no events.
pub struct Silent;

impl Notices for Silent {
    fn policy_changed(&self, _: &AccountId, _: &Value) {}
    fn device_trusted(&self, _: &AccountId, _: &UserId) {}
    fn devices_revoked(&self, _: &AccountId, _: &UserId) {}
    fn factor_changed(&self, _: &AccountId, _: &UserId, _: &str, _: &'static str, _: bool) {}
}
