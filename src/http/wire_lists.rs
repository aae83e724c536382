//! The wire format of the list endpoints (cursor-paged: `items`, `next_cursor` null on the last
//! page) and of key revocation: what the handlers write and what `openapi.rs` documents.

use crate::destination::EmailAddress;
use serde::Serialize;
use utoipa::ToSchema;

use super::wire::{KeyRole, TwoFactorBody};
use crate::account::user::{User, UserId, UserRole};
use crate::account::ApiKeyRecord;
use crate::clock::rfc3339;
use crate::phone::PhoneNumber;
use crate::pin::store::NumberRecord;
use crate::pin::AttemptLimits;

/// One of the account's API keys: never the key itself (only its digest is stored).
#[derive(Serialize, ToSchema)]
#[schema(as = KeyListed)]
pub struct KeyListedBody<'a> {
    /// `KY…`: the key's public id.
    pub id: &'a str,
    #[schema(value_type = KeyRole)]
    pub role: &'static str,
    pub created_at: String,
    /// When the key was last used: not recorded yet, always null (a write per request would
    /// cost the hot path a store round trip).
    #[schema(value_type = Option<String>)]
    pub last_used_at: Option<String>,
}

impl<'a> From<&'a ApiKeyRecord> for KeyListedBody<'a> {
    fn from(key: &'a ApiKeyRecord) -> Self {
        Self {
            id: &key.id,
            role: key.role.as_str(),
            created_at: rfc3339(key.created_ms),
            last_used_at: None,
        }
    }
}

#[derive(Serialize, ToSchema)]
#[schema(as = KeyPage)]
pub struct KeyPageBody<'a> {
    /// In the order of their ids.
    pub items: Vec<KeyListedBody<'a>>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = KeyRevoked)]
pub struct KeyRevokedBody<'a> {
    pub id: &'a str,
    #[schema(value_type = KeyRole)]
    pub role: &'static str,
    pub revoked: bool,
}

/// One of the account's users, as a list shows it: the phone masked, never in full.
#[derive(Serialize, ToSchema)]
#[schema(as = UserListed)]
pub struct UserListedBody<'a> {
    #[schema(value_type = String)]
    pub id: &'a UserId,
    /// owner, admin, member.
    #[schema(value_type = String)]
    pub role: UserRole,
    /// `+49151*****678`: the country code and the last three digits; null without a phone.
    pub phone: Option<String>,
    /// `a***@example.com`, masked like the phone; null without an address.
    #[schema(value_type = Option<String>)]
    pub email: Option<String>,
    pub two_factor: TwoFactorBody,
    #[schema(value_type = u64)]
    pub factor_count: usize,
    /// The user's last sign-in to the web console (kept 400 days); null: never, or longer ago.
    #[schema(value_type = Option<String>)]
    pub last_sign_in_at: Option<String>,
    pub created_at: String,
}

impl<'a> UserListedBody<'a> {
    pub fn new(user: &'a User, account_requires: bool, last_sign_in_ms: Option<u64>) -> Self {
        Self {
            id: &user.id,
            role: user.role,
            phone: user.phone.as_ref().map(PhoneNumber::masked),
            email: user.email.as_ref().map(EmailAddress::masked),
            two_factor: TwoFactorBody {
                enabled: user.two_factor_enabled(account_requires),
                over: user
                    .two_factor
                    .as_ref()
                    .map(|over| if over.enabled { "on" } else { "off" }),
                set_by: user.two_factor.as_ref().map(|over| over.set_by.encode()),
            },
            factor_count: user.factors.len(),
            last_sign_in_at: last_sign_in_ms.map(rfc3339),
            created_at: rfc3339(user.created_ms),
        }
    }
}

#[derive(Serialize, ToSchema)]
#[schema(as = UserPage)]
pub struct UserPageBody<'a> {
    /// In the order of their ids.
    pub items: Vec<UserListedBody<'a>>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// One of a user's confirmed factors.
#[derive(Serialize, ToSchema)]
#[schema(as = FactorListed)]
pub struct FactorListedBody<'a> {
    pub id: &'a str,
    /// totp, webauthn.
    #[serde(rename = "type")]
    pub kind: &'static str,
}

#[derive(Serialize, ToSchema)]
#[schema(as = FactorPage)]
pub struct FactorPageBody<'a> {
    /// In the order of their ids.
    pub items: Vec<FactorListedBody<'a>>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// One of a user's devices trusted now (never its token).
#[derive(Serialize, ToSchema)]
#[schema(as = DeviceListed)]
pub struct DeviceListedBody<'a> {
    /// `TD…`: revoke it with `DELETE /v1/users/{user}/trusted-devices/{id}`.
    pub id: &'a str,
    pub created_at: String,
    /// Until when it is trusted under the account's current policy.
    pub trusted_until: String,
}

#[derive(Serialize, ToSchema)]
#[schema(as = DevicePage)]
pub struct DevicePageBody<'a> {
    /// In the order of their ids.
    pub items: Vec<DeviceListedBody<'a>>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// One of the account's phone numbers under two-step protection, masked.
#[derive(Serialize, ToSchema)]
#[schema(as = PhoneNumberListed)]
pub struct NumberListedBody {
    pub id: String,
    /// `+49151*****678`: the country code and the last three digits.
    pub phone_number: String,
    /// Whether a two-step PIN is set: exactly while two-step verification is on (turning it
    /// off clears the PIN).
    pub pin_set: bool,
    /// enabled, disabled.
    #[schema(value_type = String)]
    pub two_step: &'static str,
    /// Locked by consecutive wrong PINs until the owner or an admin sets a new PIN.
    pub locked: bool,
    pub registered: bool,
    pub created_at: String,
}

impl NumberListedBody {
    pub fn new(record: &NumberRecord, limits: &AttemptLimits) -> Self {
        Self {
            id: record.id.as_str().to_owned(),
            phone_number: crate::phone::mask(&record.e164),
            pin_set: record.two_step,
            two_step: if record.two_step {
                "enabled"
            } else {
                "disabled"
            },
            locked: record.locked(limits),
            registered: record.registered_ms > 0,
            created_at: rfc3339(record.created_ms),
        }
    }
}

#[derive(Serialize, ToSchema)]
#[schema(as = PhoneNumberPage)]
pub struct NumberPageBody {
    /// In the order of their ids.
    pub items: Vec<NumberListedBody>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}
