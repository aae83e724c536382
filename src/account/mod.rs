//! Accounts (tenants) and their API keys; the people, policy and login decision of an account
//! live in the submodules.
//!
//! An account is what a login service belongs to. Keys are 256-bit random strings shown once and
//! stored only as their SHA-256 digest: a key has full entropy, so a slow hash would buy nothing.

pub mod audit;
pub mod hot_path;
pub mod limits;
pub mod login;
pub mod notices;
pub mod permission;
pub mod policy;
pub mod rules;
pub mod service;
pub mod settings;
pub mod store;
pub mod trust;
pub mod user;
pub mod users;

use ring::digest;
use ring::rand::SystemRandom;
use serde::{Deserialize, Serialize};
use std::str::FromStr;

use crate::random::random_bytes;

/// `AC` and 32 lowercase hex digits: Twilio's account-SID shape, so that the Twilio facade can use
/// account ids as they are.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct AccountId(String);

/// `as_str`, and `Debug` and `Display` as the bare text, for an id that wraps a `String`. With
/// a prefix, also `random` and `parse` for the prefix and 32 lowercase hex digits.
macro_rules! text_id {
    ($id:ident, $prefix:literal) => {
        impl $id {
            pub fn random(
                rng: &ring::rand::SystemRandom,
            ) -> Result<Self, ring::error::Unspecified> {
                $crate::account::random_sid(rng, $prefix).map(Self)
            }

            pub fn parse(input: &str) -> Option<Self> {
                $crate::account::sid(input, $prefix).map(Self)
            }
        }

        $crate::account::text_id!($id);
    };
    ($id:ident) => {
        impl $id {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Debug for $id {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::fmt::Display for $id {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}
pub(crate) use text_id;

text_id!(AccountId, "AC");

/// `prefix` and 32 random lowercase hex digits (16 bytes).
pub(crate) fn random_sid(
    rng: &SystemRandom,
    prefix: &str,
) -> Result<String, ring::error::Unspecified> {
    Ok(format!("{prefix}{}", hex(&random_bytes::<16>(rng)?)))
}

/// `input` as an owned id when it has the shape `is_sid` checks.
pub(crate) fn sid(input: &str, prefix: &str) -> Option<String> {
    is_sid(input, prefix).then(|| input.to_owned())
}

/// True when `input` is `prefix` followed by 32 lowercase hex digits.
pub(crate) fn is_sid(input: &str, prefix: &str) -> bool {
    input.len() == 34
        && input.starts_with(prefix)
        && input[2..]
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Whether `id` can be an API key's id (`KY` and 32 lowercase hex digits): a path or a cursor
/// that cannot is refused before any store read.
pub(crate) fn is_key_id(id: &str) -> bool {
    is_sid(id, "KY")
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(bytes)
}

/// What a key may do. The root key is not a role: it lives in config and only manages accounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Runs the account: policy, keys, users.
    Owner,
    /// Manages users and policy within the rules the owner set.
    Admin,
    /// A login service: sends and checks codes, asks for login decisions.
    Service,
    /// Acts for a client; may never disable a protection.
    Partner,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Service => "service",
            Role::Partner => "partner",
        }
    }
}

impl FromStr for Role {
    type Err = ();

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        match input {
            "owner" => Ok(Role::Owner),
            "admin" => Ok(Role::Admin),
            "service" => Ok(Role::Service),
            "partner" => Ok(Role::Partner),
            _ => Err(()),
        }
    }
}

/// An account as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: AccountId,
    pub name: String,
    pub created_ms: u64,
    /// Digits in a code unless a request asks for another length (4–10).
    pub code_length: u8,
}

/// A key as stored: its digest, never the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    /// Public identifier (`KY…`), safe to show in logs and audit entries.
    pub id: String,
    pub account: AccountId,
    pub role: Role,
    pub digest: KeyDigest,
    pub created_ms: u64,
}

pub type KeyDigest = [u8; 32];

/// Prefix of every account key, so that secret scanners can recognise a leaked one.
pub const KEY_PREFIX: &str = "ogk_";

/// A freshly minted key: the secret is returned to the caller once and then forgotten.
pub struct MintedKey {
    pub secret: String,
    pub record: ApiKeyRecord,
}

pub fn mint_key(
    rng: &SystemRandom,
    account: &AccountId,
    role: Role,
    now_ms: u64,
) -> Result<MintedKey, ring::error::Unspecified> {
    let secret = format!(
        "{KEY_PREFIX}{}",
        data_encoding::BASE64URL_NOPAD.encode(&random_bytes::<32>(rng)?)
    );
    let record = ApiKeyRecord {
        id: format!("KY{}", hex(&random_bytes::<16>(rng)?)),
        account: account.clone(),
        role,
        digest: key_digest(&secret),
        created_ms: now_ms,
    };
    Ok(MintedKey { secret, record })
}

pub fn key_digest(secret: &str) -> KeyDigest {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, secret.as_bytes()).as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_keys_are_stored_only_as_their_digest() {
        let rng = SystemRandom::new();
        let account = AccountId::random(&rng).unwrap();
        let minted = mint_key(&rng, &account, Role::Service, 0).unwrap();
        assert!(minted.secret.starts_with(KEY_PREFIX));
        assert_eq!(
            minted.secret.len(),
            KEY_PREFIX.len() + 43,
            "256 bits in base64url"
        );
        assert_eq!(minted.record.digest, key_digest(&minted.secret));
        assert!(!format!("{:?}", minted.record).contains(&minted.secret[4..]));
    }

    #[test]
    fn account_ids_round_trip_and_refuse_other_shapes() {
        let rng = SystemRandom::new();
        let id = AccountId::random(&rng).unwrap();
        assert_eq!(AccountId::parse(id.as_str()), Some(id.clone()));
        assert!(AccountId::parse("AC123").is_none());
        assert!(AccountId::parse(&id.as_str().to_uppercase()).is_none());
        assert!(AccountId::parse(&id.as_str().replacen("AC", "VE", 1)).is_none());
    }
}
