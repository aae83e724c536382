//! `[verification]`: code length, lifetime, attempts, the code key.

use std::time::Duration;

use crate::secret::Secret;

#[derive(Debug, Clone)]
pub struct VerificationSettings {
    pub code_length: u8,
    /// The fewest digits an account's codes may have (6 by default: 20 bits, NIST SP 800-63B's
    /// minimum for out-of-band secrets); 4 or 5 only when the operator lowers it.
    pub min_code_length: u8,
    pub ttl: Duration,
    pub max_check_attempts: u32,
    pub max_sends: u32,
    pub retention: Duration,
    /// Empty with the embedded store: a random per-process key is drawn.
    pub code_key: Secret,
    pub brand: String,
}

impl VerificationSettings {
    /// The rules on values that parsed; each broken one adds a line to `errors`.
    pub fn validate(&self, errors: &mut Vec<String>) {
        if !(4..=10).contains(&self.min_code_length) {
            errors.push("verification.min_code_length: must be between 4 and 10".to_owned());
        }
        if !(self.min_code_length.max(4)..=10).contains(&self.code_length) {
            errors.push(
                "verification.code_length: must be between verification.min_code_length (default 6) and 10"
                    .to_owned(),
            );
        }
        if self.ttl > Duration::from_secs(600) {
            errors
                .push("verification.ttl_seconds: must be at most 600 (NIST SP 800-63B)".to_owned());
        }
    }
}
