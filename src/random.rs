//! Random bytes from the OS generator, for every id, token, key and salt the gateway draws. A
//! leaf: it depends on nothing in the crate, so any module can draw without importing a domain.

use ring::rand::{SecureRandom, SystemRandom};

/// Fills `N` random bytes from the OS generator.
pub fn random_bytes<const N: usize>(
    rng: &SystemRandom,
) -> Result<[u8; N], ring::error::Unspecified> {
    let mut bytes = [0u8; N];
    rng.fill(&mut bytes)?;
    Ok(bytes)
}
