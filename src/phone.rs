//! Phone numbers, parsed once at the edge into E.164 and masked whenever they are shown.

use std::fmt;

/// Number of shards a phone number hashes into. Every key of one number's verification lives in
/// one shard, which is also its Redis Cluster hash tag, so each hot step is one script on one node.
pub const SHARD_COUNT: u8 = 64;

/// A validated phone number in E.164 form (`+4915112345678`).
///
/// `Debug` and `Display` print the masked form: a number only appears in full where it is sent.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PhoneNumber {
    e164: String,
    country_code: u16,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PhoneNumberError {
    #[error("must be in E.164 form: '+', a country code and the number, 8 to 15 digits in all, no spaces")]
    NotE164,
    #[error("is not a valid phone number for its country")]
    Invalid,
}

impl PhoneNumber {
    /// Accepts only strict E.164 (no spaces, dashes or national prefixes), then checks the number
    /// against libphonenumber's metadata so that a typo is refused before any message is paid for.
    pub fn parse(input: &str) -> Result<Self, PhoneNumberError> {
        let digits = input.strip_prefix('+').ok_or(PhoneNumberError::NotE164)?;
        let well_formed = (8..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0');
        if !well_formed {
            return Err(PhoneNumberError::NotE164);
        }
        let parsed = phonenumber::parse(None, input).map_err(|_| PhoneNumberError::Invalid)?;
        if !phonenumber::is_valid(&parsed) {
            return Err(PhoneNumberError::Invalid);
        }
        Ok(Self {
            e164: input.to_owned(),
            country_code: parsed.code().value(),
        })
    }

    /// A number this gateway validated earlier and sealed into its own queue: no second
    /// metadata lookup (it costs microseconds per message on the dispatch path).
    pub(crate) fn trusted(e164: String, country_code: u16) -> Self {
        Self { e164, country_code }
    }

    /// The number in full. Call it only to deliver a message or to key a record.
    pub fn e164(&self) -> &str {
        &self.e164
    }

    pub fn country_code(&self) -> u16 {
        self.country_code
    }

    /// The shard this number's records live in: FNV-1a of the E.164 string, stable across
    /// instances and releases because it is written into verification ids.
    pub fn shard(&self) -> u8 {
        shard_of(&self.e164)
    }

    /// `+49151*****678`: the country code and the last three digits, enough to tell numbers apart
    /// in an incident without putting them in the logs.
    pub fn masked(&self) -> String {
        mask(&self.e164)
    }
}

/// Masks any E.164-looking string; used for numbers read back from the store as well.
pub fn mask(e164: &str) -> String {
    let visible_head = 4.min(e164.len());
    let visible_tail = 3.min(e164.len().saturating_sub(visible_head));
    let hidden = e164.len() - visible_head - visible_tail;
    format!(
        "{}{}{}",
        &e164[..visible_head],
        "*".repeat(hidden),
        &e164[e164.len() - visible_tail..]
    )
}

pub(crate) fn shard_of(e164: &str) -> u8 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in e164.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    (hash % u32::from(SHARD_COUNT)) as u8
}

impl fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_a_valid_german_mobile_number() {
        let number = PhoneNumber::parse("+4915112345678").unwrap();
        assert_eq!(number.e164(), "+4915112345678");
        assert_eq!(number.country_code(), 49);
    }

    #[test]
    fn refuses_numbers_that_are_not_strict_e164() {
        for input in [
            "4915112345678",
            "+49 151 12345678",
            "+0151123456",
            "+49151",
            "",
            "+",
            "+4915112345678901",
        ] {
            assert_eq!(
                PhoneNumber::parse(input),
                Err(PhoneNumberError::NotE164),
                "{input}"
            );
        }
    }

    #[test]
    fn refuses_well_formed_numbers_that_do_not_exist() {
        assert_eq!(
            PhoneNumber::parse("+99912345678"),
            Err(PhoneNumberError::Invalid)
        );
    }

    #[test]
    fn masks_all_but_the_country_code_and_the_last_three_digits() {
        let number = PhoneNumber::parse("+4915112345678").unwrap();
        assert_eq!(number.masked(), "+491*******678");
        assert_eq!(format!("{number:?}"), "+491*******678");
        assert!(!format!("{number}").contains("12345"));
    }

    #[test]
    fn shard_is_stable_and_in_range() {
        assert_eq!(shard_of("+4915112345678"), shard_of("+4915112345678"));
        for n in 0..1000 {
            assert!(shard_of(&format!("+49151{n:08}")) < SHARD_COUNT);
        }
    }
}
