//! The people of an account: their role, phone, 2FA override and enrolled factors.
//!
//! A user's 2FA state is the account's `require_2fa` unless the user carries an override; the
//! override remembers who set it, because a user may undo only what they set themselves.

use ring::rand::SystemRandom;
use serde::Serialize;

use crate::account::{random_sid, text_id};
use crate::destination::EmailAddress;
use crate::phone::PhoneNumber;

/// A user id: chosen by the caller (its own user id, an e-mail address) or generated (`US…`).
///
/// 1 to 64 characters of `A-Z a-z 0-9 . _ - @ +`: no braces (Redis hash tags), no `|` (the
/// invalidation messages' separator), no spaces or control characters.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct UserId(String);

impl UserId {
    pub const MAX_LENGTH: usize = 64;

    pub fn random(rng: &SystemRandom) -> Result<Self, ring::error::Unspecified> {
        random_sid(rng, "US").map(Self)
    }

    pub fn parse(input: &str) -> Option<Self> {
        let ok = (1..=Self::MAX_LENGTH).contains(&input.len())
            && input.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@' | b'+')
            });
        ok.then(|| Self(input.to_owned()))
    }

    /// The owner of usernameless passkey ceremonies (the user is known only from the
    /// assertion): `*`, which no user id parses to, so it never names anyone's entries.
    pub fn usernameless() -> Self {
        Self("*".to_owned())
    }
}

text_id!(UserId);

/// A person's role inside the account (not an API key's role).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UserRole {
    Member,
    Admin,
    Owner,
}

impl UserRole {
    pub fn as_str(self) -> &'static str {
        match self {
            UserRole::Owner => "owner",
            UserRole::Admin => "admin",
            UserRole::Member => "member",
        }
    }

    pub fn parse(input: &str) -> Option<Self> {
        match input {
            "owner" => Some(UserRole::Owner),
            "admin" => Some(UserRole::Admin),
            "member" => Some(UserRole::Member),
            _ => None,
        }
    }
}

/// A second factor a user enrolled. TOTP and WebAuthn enrolment fill this list (a later issue);
/// SMS and WhatsApp are not listed here: they are usable whenever the user has a phone and the
/// policy allows the channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FactorType {
    /// Strongest first: the order is the login challenge's order. A passkey is a discoverable
    /// WebAuthn credential registered with user verification (issue 18).
    Passkey,
    Webauthn,
    Totp,
}

impl FactorType {
    pub fn as_str(self) -> &'static str {
        match self {
            FactorType::Passkey => "passkey",
            FactorType::Webauthn => "webauthn",
            FactorType::Totp => "totp",
        }
    }

    pub fn parse(input: &str) -> Option<Self> {
        match input {
            "passkey" => Some(FactorType::Passkey),
            "webauthn" => Some(FactorType::Webauthn),
            "totp" => Some(FactorType::Totp),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Factor {
    #[serde(rename = "type")]
    pub kind: FactorType,
    /// `FA…` or whatever id the enrolment assigns; 1 to 64 characters like a user id.
    pub id: String,
}

impl Factor {
    pub fn valid_id(id: &str) -> bool {
        UserId::parse(id).is_some()
    }
}

/// Who set a user's override: the owner, or a user acting for themselves (by id), or an admin
/// or partner key acting on someone else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetBy {
    Owner,
    Admin,
    Partner,
    User(UserId),
}

impl SetBy {
    /// The stored form: `owner`, `admin`, `partner` or `user:<id>`.
    pub fn encode(&self) -> String {
        match self {
            SetBy::Owner => "owner".into(),
            SetBy::Admin => "admin".into(),
            SetBy::Partner => "partner".into(),
            SetBy::User(id) => format!("user:{id}"),
        }
    }

    pub fn decode(input: &str) -> Option<Self> {
        match input {
            "owner" => Some(SetBy::Owner),
            "admin" => Some(SetBy::Admin),
            "partner" => Some(SetBy::Partner),
            other => other
                .strip_prefix("user:")
                .and_then(UserId::parse)
                .map(SetBy::User),
        }
    }
}

/// A per-user 2FA override; `None` on a user means "as the account requires".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    pub enabled: bool,
    pub set_by: SetBy,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub role: UserRole,
    pub phone: Option<PhoneNumber>,
    /// Where e-mail codes go (normalised; masked wherever it is shown).
    pub email: Option<EmailAddress>,
    pub two_factor: Option<Override>,
    pub factors: Vec<Factor>,
    /// Trusted devices carry the epoch current when they were trusted; bumping it revokes them
    /// all at once (revoke-all, phone change, factor removal).
    pub device_epoch: u64,
    /// Bumped by every write; writes carry the version they were decided on (optimistic
    /// concurrency), so a rule is never applied to a state that changed under it.
    pub version: u64,
    pub created_ms: u64,
    pub updated_ms: u64,
}

impl User {
    /// Whether this user must pass a second factor, given whether the account requires it.
    pub fn two_factor_enabled(&self, account_requires: bool) -> bool {
        match &self.two_factor {
            Some(over) => over.enabled,
            None => account_requires,
        }
    }

    /// How strongly the override protects the user regardless of the account setting:
    /// 2 = always on, 1 = as the account says, 0 = exempt. Lowering it is weakening.
    pub fn protection_floor(two_factor: &Option<Override>) -> u8 {
        match two_factor {
            Some(Override { enabled: true, .. }) => 2,
            None => 1,
            Some(Override { enabled: false, .. }) => 0,
        }
    }

    /// Factors in the stored form `type:id,type:id`.
    pub fn encode_factors(factors: &[Factor]) -> String {
        factors
            .iter()
            .map(|factor| format!("{}:{}", factor.kind.as_str(), factor.id))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn decode_factors(input: &str) -> Option<Vec<Factor>> {
        if input.is_empty() {
            return Some(Vec::new());
        }
        input
            .split(',')
            .map(|item| {
                let (kind, id) = item.split_once(':')?;
                Some(Factor {
                    kind: FactorType::parse(kind)?,
                    id: id.to_owned(),
                })
            })
            .collect()
    }
}

/// A user with no phone, factor or override, at version 1: what the unit tests start from.
#[cfg(test)]
impl User {
    pub(crate) fn fixture(id: UserId, role: UserRole) -> Self {
        User {
            id,
            role,
            phone: None,
            email: None,
            two_factor: None,
            factors: vec![],
            device_epoch: 0,
            version: 1,
            created_ms: 0,
            updated_ms: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_refuse_separators_and_braces() {
        for good in ["alice", "alice@example.com", "u-1_2.3+x", "US0123"] {
            assert!(UserId::parse(good).is_some(), "{good}");
        }
        let long = "x".repeat(65);
        for bad in ["", "a b", "{a}", "a|b", "a:b", "é", long.as_str()] {
            assert!(UserId::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn factors_and_setters_round_trip_their_stored_form() {
        let factors = vec![
            Factor {
                kind: FactorType::Totp,
                id: "FA1".into(),
            },
            Factor {
                kind: FactorType::Webauthn,
                id: "FA2".into(),
            },
        ];
        assert_eq!(
            User::decode_factors(&User::encode_factors(&factors)),
            Some(factors)
        );
        assert_eq!(User::decode_factors(""), Some(vec![]));
        let by = SetBy::User(UserId::parse("bob").unwrap());
        assert_eq!(SetBy::decode(&by.encode()), Some(by));
        assert_eq!(SetBy::decode("owner"), Some(SetBy::Owner));
    }

    #[test]
    fn the_override_wins_over_the_account_setting() {
        let mut user = User::fixture(UserId::parse("u").unwrap(), UserRole::Member);
        assert!(user.two_factor_enabled(true));
        assert!(!user.two_factor_enabled(false));
        user.two_factor = Some(Override {
            enabled: false,
            set_by: SetBy::Owner,
        });
        assert!(!user.two_factor_enabled(true));
    }
}
