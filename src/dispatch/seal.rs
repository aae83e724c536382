//! Sealing queued messages: a message waiting in Redis holds a code in clear, so it is stored
//! encrypted (AES-256-GCM, ring) under a key derived from the code MAC key with HKDF.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};

pub struct Sealer {
    key: LessSafeKey,
    rng: SystemRandom,
}

/// Label that separates this key from any other derived from the same secret.
const INFO: &[u8] = b"otpgate outbox v1";

impl Sealer {
    pub fn new(secret: &[u8]) -> Self {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"otpgate").extract(secret);
        let mut key = [0u8; 32];
        prk.expand(&[INFO], &AES_256_GCM)
            .and_then(|okm| okm.fill(&mut key))
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        Self {
            key: LessSafeKey::new(
                UnboundKey::new(&AES_256_GCM, &key).expect("the key is 32 bytes"),
            ),
            rng: SystemRandom::new(),
        }
    }

    /// nonce ‖ ciphertext ‖ tag, with a fresh random nonce.
    pub fn seal(&self, plaintext: &[u8]) -> Result<Vec<u8>, ring::error::Unspecified> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce)?;
        let mut sealed = plaintext.to_vec();
        self.key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::empty(),
            &mut sealed,
        )?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    pub fn open(&self, sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < NONCE_LEN {
            return None;
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buffer = ciphertext.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::empty(), &mut buffer)
            .ok()?;
        Some(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_messages_open_only_with_the_same_key_and_unaltered() {
        let sealer = Sealer::new(b"a secret of at least thirty-two bytes!!");
        let sealed = sealer.seal(b"Your code is 123456").unwrap();
        assert!(
            !sealed.windows(6).any(|window| window == b"123456"),
            "the code is not in clear"
        );
        assert_eq!(sealer.open(&sealed).unwrap(), b"Your code is 123456");
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(sealer.open(&tampered).is_none());
        assert!(Sealer::new(b"another secret of thirty-two bytes or more")
            .open(&sealed)
            .is_none());
    }
}
