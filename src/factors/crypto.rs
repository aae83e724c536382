//! Factor secrets at rest: AES-256-GCM (ring) under a named key, so keys can be rotated.
//!
//! A sealed secret is `kid:nonce:ciphertext` (nonce and ciphertext+tag in base64url). New
//! secrets use the first (current) key; any listed key opens the secrets sealed under it, so an
//! operator rotates by putting a new key first and keeping the old ones listed until every
//! factor sealed under them is gone. The additional data binds a secret to its account, user and
//! factor, so a sealed value copied onto another factor does not open.

use data_encoding::BASE64URL_NOPAD;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

use crate::secret::Secret;

/// `factors.keys`: `id:key` items separated by commas, each key 32 bytes as hex or base64, ids
/// distinct; each malformed item adds a line to `errors`.
pub fn parse_keys(text: &str, errors: &mut Vec<String>) -> Vec<(String, Secret)> {
    let mut keys: Vec<(String, Secret)> = Vec::new();
    for item in text
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
    {
        let Some((id, key)) = item.split_once(':') else {
            errors.push(
                "factors.keys: each key is written id:key (hex or base64), such as k1:<64 hex digits>"
                    .to_owned(),
            );
            continue;
        };
        if !valid_key_id(id) || keys.iter().any(|(known, _)| known == id) {
            errors.push(format!(
                "factors.keys: key id '{id}' must be 1 to 16 letters, digits, _ or -, and distinct"
            ));
            continue;
        }
        match Secret::decode_key(key, 32).filter(|key| key.expose().len() == 32) {
            Some(key) => keys.push((id.to_owned(), key)),
            None => errors.push(format!(
                "factors.keys: key '{id}' must be exactly 32 bytes, as hex or base64"
            )),
        }
    }
    keys
}

/// A key id: 1 to 16 characters of `A-Z a-z 0-9 _ -` (it is stored before the first `:`).
pub fn valid_key_id(id: &str) -> bool {
    (1..=16).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("the secret was sealed under key id '{0}', which is not configured")]
    UnknownKey(String),
    #[error("the sealed secret is malformed or does not open under its key")]
    Corrupt,
    #[error("the random generator failed")]
    Random,
}

/// The configured keys, current first.
pub struct FactorKeys {
    keys: Vec<(String, LessSafeKey)>,
}

impl std::fmt::Debug for FactorKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.keys.iter().map(|(id, _)| id))
            .finish()
    }
}

impl FactorKeys {
    /// `keys`: (id, 32 bytes), current first. `None` when empty, a key is not 32 bytes, or ids
    /// repeat or are malformed (the config loader reports these with the key's name).
    pub fn new(keys: &[(String, Vec<u8>)]) -> Option<Self> {
        if keys.is_empty() {
            return None;
        }
        let mut built = Vec::with_capacity(keys.len());
        for (id, bytes) in keys {
            if !valid_key_id(id) || built.iter().any(|(known, _)| known == id) {
                return None;
            }
            let key = UnboundKey::new(&AES_256_GCM, bytes).ok()?;
            built.push((id.clone(), LessSafeKey::new(key)));
        }
        Some(Self { keys: built })
    }

    pub fn current_id(&self) -> &str {
        &self.keys[0].0
    }

    pub fn seal(
        &self,
        rng: &SystemRandom,
        context: &[u8],
        plaintext: &[u8],
    ) -> Result<String, SealError> {
        let (id, key) = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill(&mut nonce).map_err(|_| SealError::Random)?;
        let mut buffer = plaintext.to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(context),
            &mut buffer,
        )
        .map_err(|_| SealError::Corrupt)?;
        Ok(format!(
            "{id}:{}:{}",
            BASE64URL_NOPAD.encode(&nonce),
            BASE64URL_NOPAD.encode(&buffer)
        ))
    }

    pub fn open(&self, context: &[u8], sealed: &str) -> Result<Vec<u8>, SealError> {
        let mut parts = sealed.splitn(3, ':');
        let (Some(id), Some(nonce), Some(body)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(SealError::Corrupt);
        };
        let key = self
            .keys
            .iter()
            .find(|(known, _)| known == id)
            .map(|(_, key)| key)
            .ok_or_else(|| SealError::UnknownKey(id.to_owned()))?;
        let nonce: [u8; NONCE_LEN] = BASE64URL_NOPAD
            .decode(nonce.as_bytes())
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or(SealError::Corrupt)?;
        let mut buffer = BASE64URL_NOPAD
            .decode(body.as_bytes())
            .map_err(|_| SealError::Corrupt)?;
        let plain = key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context),
                &mut buffer,
            )
            .map_err(|_| SealError::Corrupt)?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(list: &[(&str, u8)]) -> FactorKeys {
        FactorKeys::new(
            &list
                .iter()
                .map(|(id, fill)| (id.to_string(), vec![*fill; 32]))
                .collect::<Vec<_>>(),
        )
        .unwrap()
    }

    #[test]
    fn a_rotated_key_list_still_opens_secrets_sealed_under_the_old_key() {
        let rng = SystemRandom::new();
        let old = keys(&[("k1", 1)]);
        let sealed = old.seal(&rng, b"ctx", b"secret bytes").unwrap();
        assert!(sealed.starts_with("k1:"));
        let rotated = keys(&[("k2", 2), ("k1", 1)]);
        assert_eq!(rotated.open(b"ctx", &sealed).unwrap(), b"secret bytes");
        assert!(rotated.seal(&rng, b"ctx", b"x").unwrap().starts_with("k2:"));
        let dropped = keys(&[("k2", 2)]);
        assert!(matches!(
            dropped.open(b"ctx", &sealed),
            Err(SealError::UnknownKey(_))
        ));
    }

    #[test]
    fn a_secret_does_not_open_in_another_context_or_when_tampered() {
        let rng = SystemRandom::new();
        let keys = keys(&[("k1", 1)]);
        let sealed = keys.seal(&rng, b"account|alice|FA1", b"secret").unwrap();
        assert_eq!(
            keys.open(b"account|bob|FA1", &sealed),
            Err(SealError::Corrupt)
        );
        let mut tampered = sealed.clone().into_bytes();
        let last = tampered.len() - 1;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        assert!(keys
            .open(
                b"account|alice|FA1",
                std::str::from_utf8(&tampered).unwrap()
            )
            .is_err());
    }

    #[test]
    fn key_lists_refuse_bad_ids_short_keys_and_repeats() {
        assert!(FactorKeys::new(&[]).is_none());
        assert!(FactorKeys::new(&[("a:b".into(), vec![0; 32])]).is_none());
        assert!(FactorKeys::new(&[("a".into(), vec![0; 16])]).is_none());
        assert!(FactorKeys::new(&[("a".into(), vec![0; 32]), ("a".into(), vec![1; 32])]).is_none());
    }
}
