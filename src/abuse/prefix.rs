//! The number prefix the pumping guard counts by: a number without its last four digits.
//!
//! A pumping attack rents or targets a range of numbers that terminate at one operator, and
//! ranges are allocated in blocks of a thousand to ten thousand numbers: a NANP carrier holds
//! NPA-NXX codes (10 000 numbers) or thousands-blocks, European regulators assign blocks of
//! 1 000 to 10 000 numbers below the national destination code. libphonenumber does not
//! describe destination codes reliably (its NDC length is a formatting guess), so the prefix is
//! the number's country code and national number less its last four digits: for a NANP number
//! exactly the NPA-NXX (`+1415555` of `+14155552671`), for a German mobile the NDC and the next
//! three or four digits (`+4915112` of `+491511234567`). One prefix covers at most 10 000
//! numbers; national numbers of five digits or fewer keep their first digit.

use std::fmt;

use crate::phone::PhoneNumber;

/// Digits a prefix leaves off the end of a number.
pub const SUBSCRIBER_DIGITS: usize = 4;

/// `+` and digits: a number's country code and its national number less the last four digits.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix(String);

impl Prefix {
    pub fn of(number: &PhoneNumber) -> Self {
        let e164 = number.e164();
        let code_digits = number.country_code().to_string().len();
        let national_digits = e164.len().saturating_sub(1 + code_digits);
        let kept = national_digits.saturating_sub(SUBSCRIBER_DIGITS).max(1);
        Self(e164[..(1 + code_digits + kept).min(e164.len())].to_owned())
    }

    /// A prefix as stored or configured: `+` and 2 to 15 digits.
    pub fn parse(input: &str) -> Option<Self> {
        let digits = input.strip_prefix('+')?;
        let well_formed = (2..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0');
        well_formed.then(|| Self(input.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A prefix leaves out the subscriber's digits: it may appear in logs, events and metrics'
/// neighbours (never as a label: its cardinality is not bounded).
impl fmt::Debug for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(e164: &str) -> String {
        Prefix::of(&PhoneNumber::parse(e164).unwrap()).0
    }

    #[test]
    fn a_nanp_prefix_is_the_area_code_and_the_exchange() {
        assert_eq!(prefix("+14155552671"), "+1415555");
    }

    #[test]
    fn a_prefix_drops_the_last_four_digits_of_the_national_number() {
        assert_eq!(prefix("+4915112345678"), "+491511234");
        assert_eq!(prefix("+447400123456"), "+44740012");
        assert_eq!(prefix("+33612345678"), "+3361234");
    }

    #[test]
    fn a_short_national_number_keeps_its_first_digit() {
        // Tuvalu: five-digit fixed lines.
        assert_eq!(prefix("+68820123"), "+6882");
    }

    #[test]
    fn parse_takes_plus_and_digits_only() {
        assert!(Prefix::parse("+49151").is_some());
        for bad in ["49151", "+", "+4", "+49 151", "+0151", "+4915112345678901"] {
            assert!(Prefix::parse(bad).is_none(), "{bad}");
        }
    }
}
