//! Standard Webhooks signing (<https://www.standardwebhooks.com/>): every request carries
//! `webhook-id` (the event id, the same on every attempt), `webhook-timestamp` (seconds, the
//! attempt's) and `webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`
//! under the webhook's secret, written `whsec_<base64 of the key>`.

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use crate::secret::Secret;

/// The prefix of a secret as shown to its owner (the spec's and the SDKs' convention).
const PREFIX: &str = "whsec_";

/// Bytes drawn for a new secret (the spec asks for 24 to 64).
const SECRET_BYTES: usize = 32;

/// A webhook's signing key. `Debug` redacts it (through `Secret`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSecret(Secret);

impl WebhookSecret {
    pub fn generate(rng: &SystemRandom) -> Result<Self, ring::error::Unspecified> {
        let mut key = [0u8; SECRET_BYTES];
        rng.fill(&mut key)?;
        Ok(Self(Secret::new(key.to_vec())))
    }

    /// `whsec_<base64>` with a key of 24 to 64 bytes; `None` otherwise.
    pub fn parse(text: &str) -> Option<Self> {
        let key = data_encoding::BASE64
            .decode(text.strip_prefix(PREFIX)?.as_bytes())
            .ok()?;
        (24..=64)
            .contains(&key.len())
            .then(|| Self(Secret::new(key)))
    }

    /// `whsec_<base64>`: shown once to the webhook's owner, and kept by the stores.
    pub fn expose_text(&self) -> String {
        format!("{PREFIX}{}", data_encoding::BASE64.encode(self.0.expose()))
    }

    /// `v1,<base64 signature>` of one attempt.
    pub fn sign(&self, id: &str, timestamp_s: u64, body: &[u8]) -> String {
        let key = hmac::Key::new(hmac::HMAC_SHA256, self.0.expose());
        let mut context = hmac::Context::with_key(&key);
        context.update(id.as_bytes());
        context.update(b".");
        context.update(timestamp_s.to_string().as_bytes());
        context.update(b".");
        context.update(body);
        format!(
            "v1,{}",
            data_encoding::BASE64.encode(context.sign().as_ref())
        )
    }
}

/// The three headers of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    pub id: String,
    pub timestamp: String,
    pub signature: String,
}

impl SignedHeaders {
    pub fn new(secret: &WebhookSecret, id: &str, timestamp_s: u64, body: &[u8]) -> Self {
        Self {
            id: id.to_owned(),
            timestamp: timestamp_s.to_string(),
            signature: secret.sign(id, timestamp_s, body),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Standard Webhooks reference vector (the spec repository's libraries test it).
    #[test]
    fn signs_the_standard_webhooks_reference_vector() {
        let secret = WebhookSecret::parse("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        assert_eq!(
            secret.sign(
                "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
                1_649_367_553,
                br#"{"email":"test@example.com","username":"test_user"}"#
            ),
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
        );
    }

    #[test]
    fn generated_secrets_round_trip_through_their_text_and_never_print() {
        let secret = WebhookSecret::generate(&SystemRandom::new()).unwrap();
        let text = secret.expose_text();
        assert!(text.starts_with("whsec_"));
        assert_eq!(WebhookSecret::parse(&text), Some(secret.clone()));
        assert!(!format!("{secret:?}").contains(&text[6..]));
    }

    #[test]
    fn secrets_without_the_prefix_or_too_short_are_refused() {
        assert!(WebhookSecret::parse("C2FVsBQIhrscChlQIMV+b5sSYspob7oD").is_none());
        assert!(WebhookSecret::parse("whsec_c2hvcnQ=").is_none());
        assert!(WebhookSecret::parse("whsec_not base64").is_none());
    }
}
