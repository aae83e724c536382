//! Trusted devices: after a passed challenge a device gets an opaque 256-bit token, bound to the
//! account and the user, stored only as an HMAC under a server key, and trusted for the policy's
//! duration. Only this module sees a token in clear, and only for the length of a request.

pub mod cache;
pub mod devices;
pub mod invalidation;
pub mod metrics;

use ring::hmac;
use ring::rand::SystemRandom;

use crate::account::policy::{Policy, TrustDuration};
use crate::account::user::{User, UserId};
use crate::account::{text_id, AccountId};
use crate::random::random_bytes;

/// Prefix of every device token, so that secret scanners recognise a leaked one.
pub const TOKEN_PREFIX: &str = "ogd_";
/// 256 random bits in base64url without padding.
const TOKEN_BODY_LENGTH: usize = 43;

pub type DeviceDigest = [u8; 32];

/// The server key under which tokens are MACed (`auth.device_key`).
pub struct DeviceKey(hmac::Key);

impl DeviceKey {
    pub fn new(secret: &[u8]) -> Self {
        Self(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }

    /// The stored form of a token: HMAC-SHA256 over the account, the user and the token, so a
    /// token is worth nothing for another account or user, and a store dump yields no token.
    pub fn digest(&self, account: &AccountId, user: &UserId, token: &str) -> DeviceDigest {
        let mut context = hmac::Context::with_key(&self.0);
        for part in [
            b"otpgate-device-v1".as_slice(),
            account.as_str().as_bytes(),
            user.as_str().as_bytes(),
            token.as_bytes(),
        ] {
            context.update(&(part.len() as u32).to_be_bytes());
            context.update(part);
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(context.sign().as_ref());
        out
    }
}

/// A new token: shown to the caller once, never stored.
pub fn mint_token(rng: &SystemRandom) -> Result<String, ring::error::Unspecified> {
    Ok(format!(
        "{TOKEN_PREFIX}{}",
        data_encoding::BASE64URL_NOPAD.encode(&random_bytes::<32>(rng)?)
    ))
}

/// True for the shape `mint_token` produces; anything else is refused at the edge.
pub fn valid_token_shape(token: &str) -> bool {
    token.strip_prefix(TOKEN_PREFIX).is_some_and(|body| {
        body.len() == TOKEN_BODY_LENGTH
            && body
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// `TD` and 32 hex digits: a device's public id, for listing and revoking it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct DeviceId(String);

text_id!(DeviceId, "TD");

/// A trusted device as stored (under its digest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRecord {
    pub id: DeviceId,
    pub user: UserId,
    pub created_ms: u64,
    /// Created plus the policy's duration at the time it was trusted.
    pub expires_ms: u64,
    /// The user's device epoch when trusted; a later epoch revokes it.
    pub epoch: u64,
}

impl DeviceRecord {
    /// Until when the device is trusted under the *current* policy: a shorter duration (or
    /// every-login) applies to existing devices at their next check; a longer one never extends
    /// them.
    pub fn trusted_until(&self, policy: &Policy) -> Option<u64> {
        if policy.trusted_device == TrustDuration::EveryLogin {
            return None;
        }
        Some(
            self.expires_ms
                .min(self.created_ms + policy.trusted_device.millis()),
        )
    }

    pub fn is_trusted(&self, user: &User, policy: &Policy, now_ms: u64) -> bool {
        self.user == user.id
            && self.epoch == user.device_epoch
            && self
                .trusted_until(policy)
                .is_some_and(|until| now_ms < until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_256_bits_and_their_digest_binds_account_and_user() {
        let rng = SystemRandom::new();
        let token = mint_token(&rng).unwrap();
        assert!(valid_token_shape(&token), "{token}");
        assert!(!valid_token_shape(&token[..token.len() - 1]));
        let key = DeviceKey::new(b"k");
        let account = AccountId::random(&rng).unwrap();
        let other_account = AccountId::random(&rng).unwrap();
        let alice = UserId::parse("alice").unwrap();
        let bob = UserId::parse("bob").unwrap();
        let digest = key.digest(&account, &alice, &token);
        assert_ne!(digest, key.digest(&account, &bob, &token));
        assert_ne!(digest, key.digest(&other_account, &alice, &token));
        assert_ne!(
            digest,
            DeviceKey::new(b"other").digest(&account, &alice, &token)
        );
    }
}
