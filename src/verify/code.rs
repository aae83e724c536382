//! One-time codes: drawn uniformly from the OS generator, stored only as an HMAC.

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

/// Shortest and longest code a client may ask for (Twilio's and Vonage's range).
pub const MIN_CODE_LENGTH: u8 = 4;
pub const MAX_CODE_LENGTH: u8 = 10;

/// A code in clear. It exists only between generation and the message body, and between the
/// check request and its MAC; it is never stored and its `Debug` hides it.
pub struct Code(String);

impl Code {
    /// Parses a code typed by a user: digits only, within the allowed lengths.
    pub fn parse(input: &str) -> Option<Self> {
        let length_ok =
            (usize::from(MIN_CODE_LENGTH)..=usize::from(MAX_CODE_LENGTH)).contains(&input.len());
        (length_ok && input.bytes().all(|b| b.is_ascii_digit())).then(|| Self(input.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Code(<redacted>)")
    }
}

/// Draws a `length`-digit code uniformly: rejection sampling over `u64` removes the modulo bias
/// that `random % 10^n` would leave.
pub fn generate(rng: &SystemRandom, length: u8) -> Result<Code, ring::error::Unspecified> {
    debug_assert!((MIN_CODE_LENGTH..=MAX_CODE_LENGTH).contains(&length));
    let modulus = 10u64.pow(u32::from(length));
    // The largest multiple of `modulus` that fits: values at or above it would favour low codes.
    let limit = u64::MAX - (u64::MAX % modulus);
    loop {
        let mut bytes = [0u8; 8];
        rng.fill(&mut bytes)?;
        let value = u64::from_le_bytes(bytes);
        if value < limit {
            return Ok(Code(format!(
                "{:0width$}",
                value % modulus,
                width = usize::from(length)
            )));
        }
    }
}

/// The keyed MAC under which codes are stored. Binding the account into the MAC means a code
/// stored for one account can never match a check made by another, even with equal digits.
pub struct CodeMac {
    key: hmac::Key,
}

/// Length of the stored tag. HMAC-SHA256 truncated to 128 bits (RFC 2104 §5 allows truncation
/// to half the hash), which keeps a pending verification small in Redis.
pub const TAG_LENGTH: usize = 16;

pub type Tag = [u8; TAG_LENGTH];

impl CodeMac {
    pub fn new(secret: &[u8]) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        }
    }

    pub fn tag(&self, account: &str, code: &Code) -> Tag {
        let mut context = hmac::Context::with_key(&self.key);
        context.update(account.as_bytes());
        context.update(&[0]);
        context.update(code.0.as_bytes());
        let full = context.sign();
        let mut tag = [0u8; TAG_LENGTH];
        tag.copy_from_slice(&full.as_ref()[..TAG_LENGTH]);
        tag
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_codes_have_the_asked_length_and_only_digits() {
        let rng = SystemRandom::new();
        for length in MIN_CODE_LENGTH..=MAX_CODE_LENGTH {
            let code = generate(&rng, length).unwrap();
            assert_eq!(code.as_str().len(), usize::from(length));
            assert!(code.as_str().bytes().all(|b| b.is_ascii_digit()));
        }
    }

    #[test]
    fn every_digit_position_is_close_to_uniform() {
        // 60 000 four-digit codes: each digit value is expected 6 000 times per position. A
        // chi-square statistic above 27.88 (9 degrees of freedom, p = 0.001) would reject
        // uniformity; a modulo-biased or constant generator fails by orders of magnitude.
        let rng = SystemRandom::new();
        let mut counts = [[0u32; 10]; 4];
        let draws = 60_000;
        for _ in 0..draws {
            let code = generate(&rng, 4).unwrap();
            for (position, digit) in code.as_str().bytes().enumerate() {
                counts[position][usize::from(digit - b'0')] += 1;
            }
        }
        let expected = f64::from(draws) / 10.0;
        for position in counts {
            let chi_square: f64 = position
                .iter()
                .map(|&observed| (f64::from(observed) - expected).powi(2) / expected)
                .sum();
            assert!(
                chi_square < 27.88,
                "chi-square {chi_square} rejects uniformity"
            );
        }
    }

    #[test]
    fn parse_refuses_letters_and_wrong_lengths() {
        assert!(Code::parse("123456").is_some());
        for bad in [
            "12a456",
            "123",
            "12345678901",
            "",
            " 123456",
            "１２３４５６",
        ] {
            assert!(Code::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn the_tag_depends_on_key_account_and_code() {
        let mac = CodeMac::new(b"server-secret-one");
        let code = Code::parse("123456").unwrap();
        let tag = mac.tag("AC1", &code);
        assert_eq!(tag, mac.tag("AC1", &Code::parse("123456").unwrap()));
        assert_ne!(tag, mac.tag("AC2", &code));
        assert_ne!(tag, mac.tag("AC1", &Code::parse("123457").unwrap()));
        assert_ne!(tag, CodeMac::new(b"server-secret-two").tag("AC1", &code));
    }

    #[test]
    fn debug_never_shows_the_code() {
        let code = Code::parse("987654").unwrap();
        assert!(!format!("{code:?}").contains("987654"));
    }
}
