//! PIN hashing: argon2id (memory-hard) with a 128-bit random salt per PIN and the server-side
//! pepper as argon2's secret input.
//!
//! The stored form carries its own cost parameters (`a2id$<m KiB>$<t>$<p>$<salt>$<hash>`, base64
//! without padding), so instances configured with other costs still verify each other's
//! hashes and a cost change applies to the next PIN set. Hashing takes milliseconds of CPU: the
//! service calls it through `tokio::task::spawn_blocking`, never on an async worker thread.

use argon2::{Algorithm, Argon2, Params, Version};
use data_encoding::BASE64_NOPAD;
use ring::rand::SystemRandom;
use subtle::ConstantTimeEq;

use super::Pin;
use crate::random::random_bytes;

const TAG: &str = "a2id";
const SALT_BYTES: usize = 16;
const HASH_BYTES: usize = 32;
/// Bounds on the costs a stored hash may ask for, so that a corrupt record cannot make a
/// verification allocate gigabytes.
const MAX_MEMORY_KIB: u32 = 1 << 20;
const MAX_ITERATIONS: u32 = 64;
const MAX_PARALLELISM: u32 = 16;

/// Argon2id costs (`[pin]` `argon2_*` in config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashCost {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl HashCost {
    /// OWASP's minimum for argon2id: 19 MiB, 2 passes, 1 lane.
    pub const DEFAULT: HashCost = HashCost {
        memory_kib: 19 * 1024,
        iterations: 2,
        parallelism: 1,
    };

    pub fn validate(&self) -> Result<(), String> {
        if !(8 * self.parallelism.max(1)..=MAX_MEMORY_KIB).contains(&self.memory_kib) {
            return Err(format!(
                "argon2_memory_kib must be between 8 x parallelism and {MAX_MEMORY_KIB}"
            ));
        }
        if !(1..=MAX_ITERATIONS).contains(&self.iterations) {
            return Err(format!(
                "argon2_iterations must be between 1 and {MAX_ITERATIONS}"
            ));
        }
        if !(1..=MAX_PARALLELISM).contains(&self.parallelism) {
            return Err(format!(
                "argon2_parallelism must be between 1 and {MAX_PARALLELISM}"
            ));
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("the system random generator failed")]
    Random,
    #[error("argon2 failed: {0}")]
    Argon2(String),
    #[error("the stored PIN hash is malformed")]
    Malformed,
}

/// Hashes and verifies PINs under one pepper. Cheap to share (`Arc`).
pub struct PinHasher {
    pepper: Vec<u8>,
    cost: HashCost,
    rng: SystemRandom,
}

impl std::fmt::Debug for PinHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PinHasher")
            .field("pepper", &"<redacted>")
            .field("cost", &self.cost)
            .finish()
    }
}

impl PinHasher {
    pub fn new(pepper: Vec<u8>, cost: HashCost) -> Self {
        Self {
            pepper,
            cost,
            rng: SystemRandom::new(),
        }
    }

    pub fn cost(&self) -> HashCost {
        self.cost
    }

    /// A new salted, peppered hash of `pin` in the stored form.
    pub fn hash(&self, pin: &Pin) -> Result<String, HashError> {
        let salt = random_bytes::<SALT_BYTES>(&self.rng).map_err(|_| HashError::Random)?;
        let hash = self.derive(pin, &salt, self.cost)?;
        Ok(format!(
            "{TAG}${}${}${}${}${}",
            self.cost.memory_kib,
            self.cost.iterations,
            self.cost.parallelism,
            BASE64_NOPAD.encode(&salt),
            BASE64_NOPAD.encode(&hash)
        ))
    }

    /// Whether `pin` matches `stored`, compared in constant time.
    pub fn verify(&self, pin: &Pin, stored: &str) -> Result<bool, HashError> {
        let mut parts = stored.split('$');
        if parts.next() != Some(TAG) {
            return Err(HashError::Malformed);
        }
        let mut number = || -> Result<u32, HashError> {
            parts
                .next()
                .and_then(|part| part.parse().ok())
                .ok_or(HashError::Malformed)
        };
        let cost = HashCost {
            memory_kib: number()?,
            iterations: number()?,
            parallelism: number()?,
        };
        cost.validate().map_err(|_| HashError::Malformed)?;
        let mut decode = || -> Result<Vec<u8>, HashError> {
            parts
                .next()
                .and_then(|part| BASE64_NOPAD.decode(part.as_bytes()).ok())
                .ok_or(HashError::Malformed)
        };
        let salt = decode()?;
        let expected = decode()?;
        if salt.len() != SALT_BYTES || expected.len() != HASH_BYTES {
            return Err(HashError::Malformed);
        }
        let actual = self.derive(pin, &salt, cost)?;
        Ok(bool::from(actual.as_slice().ct_eq(expected.as_slice())))
    }

    fn derive(
        &self,
        pin: &Pin,
        salt: &[u8],
        cost: HashCost,
    ) -> Result<[u8; HASH_BYTES], HashError> {
        let params = Params::new(
            cost.memory_kib,
            cost.iterations,
            cost.parallelism,
            Some(HASH_BYTES),
        )
        .map_err(|error| HashError::Argon2(error.to_string()))?;
        let argon =
            Argon2::new_with_secret(&self.pepper, Algorithm::Argon2id, Version::V0x13, params)
                .map_err(|error| HashError::Argon2(error.to_string()))?;
        let mut out = [0u8; HASH_BYTES];
        argon
            .hash_password_into(pin.as_bytes(), salt, &mut out)
            .map_err(|error| HashError::Argon2(error.to_string()))?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHEAP: HashCost = HashCost {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };

    #[test]
    fn a_hash_verifies_its_pin_only() {
        let hasher = PinHasher::new(vec![7; 32], CHEAP);
        let pin = Pin::parse("482915").unwrap();
        let stored = hasher.hash(&pin).unwrap();
        assert!(!stored.contains("482915"));
        assert!(hasher.verify(&pin, &stored).unwrap());
        assert!(!hasher
            .verify(&Pin::parse("482916").unwrap(), &stored)
            .unwrap());
    }

    #[test]
    fn salts_differ_and_the_pepper_matters() {
        let hasher = PinHasher::new(vec![7; 32], CHEAP);
        let pin = Pin::parse("482915").unwrap();
        assert_ne!(hasher.hash(&pin).unwrap(), hasher.hash(&pin).unwrap());
        let stored = hasher.hash(&pin).unwrap();
        let other_pepper = PinHasher::new(vec![8; 32], CHEAP);
        assert!(!other_pepper.verify(&pin, &stored).unwrap());
    }

    #[test]
    fn stored_costs_win_over_the_configured_ones() {
        let pin = Pin::parse("482915").unwrap();
        let stored = PinHasher::new(vec![7; 32], CHEAP).hash(&pin).unwrap();
        let dearer = PinHasher::new(
            vec![7; 32],
            HashCost {
                memory_kib: 128,
                iterations: 2,
                parallelism: 1,
            },
        );
        assert!(dearer.verify(&pin, &stored).unwrap());
    }

    #[test]
    fn malformed_hashes_are_errors_not_matches() {
        let hasher = PinHasher::new(vec![7; 32], CHEAP);
        let pin = Pin::parse("482915").unwrap();
        for bad in [
            "",
            "a2id$64$1$1$AAAA$AAAA",
            "a2id$99999999$1$1$x$y",
            "bcrypt$1$2$3$4$5",
        ] {
            assert!(hasher.verify(&pin, bad).is_err(), "{bad}");
        }
    }
}
