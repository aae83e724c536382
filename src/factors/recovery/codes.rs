//! Recovery codes: ten single-use codes per user, shown once, stored as keyed digests.
//!
//! A code is 12 characters of Crockford's base32 alphabet (60 bits), shown as
//! `xxxx-xxxx-xxxx`. With that much entropy a fast keyed hash is enough (a slow one would buy
//! nothing an attacker can use), and the key keeps a Redis dump from being checked offline.

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use crate::account::user::UserId;
use crate::account::AccountId;

/// Codes made per set.
pub const CODES_PER_SET: usize = 10;
/// Crockford's base32 alphabet, lower case: no i, l, o or u to misread.
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
const LENGTH: usize = 12;

pub type CodeDigest = [u8; 32];

/// Draws one code: each character from 5 random bits (32 letters, no bias).
pub fn generate(rng: &SystemRandom) -> Result<String, ring::error::Unspecified> {
    let mut bytes = [0u8; LENGTH];
    rng.fill(&mut bytes)?;
    let mut code = String::with_capacity(LENGTH + 2);
    for (n, byte) in bytes.iter().enumerate() {
        if n > 0 && n % 4 == 0 {
            code.push('-');
        }
        code.push(char::from(ALPHABET[usize::from(byte & 0x1f)]));
    }
    Ok(code)
}

/// The typed code as compared: dashes and spaces dropped, lower case; `None` when it cannot be
/// a recovery code at all.
pub fn normalise(input: &str) -> Option<String> {
    let code: String = input
        .chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .map(|c| c.to_ascii_lowercase())
        .collect();
    (code.len() == LENGTH && code.bytes().all(|b| ALPHABET.contains(&b))).then_some(code)
}

/// The keyed digest a code is stored as, bound to its account and user.
pub struct RecoveryHasher {
    key: hmac::Key,
}

impl RecoveryHasher {
    pub fn new(key: &[u8]) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, key),
        }
    }

    pub fn digest(&self, account: &AccountId, user: &UserId, normalised: &str) -> CodeDigest {
        let mut context = hmac::Context::with_key(&self.key);
        for part in [account.as_str(), user.as_str(), normalised] {
            context.update(&(part.len() as u32).to_be_bytes());
            context.update(part.as_bytes());
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(context.sign().as_ref());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_sixty_bits_in_three_groups_and_normalise_back() {
        let rng = SystemRandom::new();
        let code = generate(&rng).unwrap();
        assert_eq!(code.len(), 14);
        assert_eq!(code.matches('-').count(), 2);
        let typed = code.to_uppercase().replace('-', " ");
        assert_eq!(normalise(&typed).unwrap(), code.replace('-', ""));
        assert!(normalise("short").is_none());
        assert!(
            normalise("iiii-llll-oooo").is_none(),
            "look-alikes are not in the alphabet"
        );
    }

    #[test]
    fn digests_are_bound_to_the_user() {
        let hasher = RecoveryHasher::new(&[7; 32]);
        let rng = SystemRandom::new();
        let account = AccountId::random(&rng).unwrap();
        let alice = UserId::parse("alice").unwrap();
        let bob = UserId::parse("bob").unwrap();
        assert_ne!(
            hasher.digest(&account, &alice, "abcdabcdabcd"),
            hasher.digest(&account, &bob, "abcdabcdabcd")
        );
    }
}
