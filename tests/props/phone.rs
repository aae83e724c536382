//! Phone numbers: strict E.164 in, the same E.164 out.

use std::sync::LazyLock;

use otpgate::phone::{mask, PhoneNumber, PhoneNumberError, SHARD_COUNT};
use phonenumber::metadata::DATABASE;
use phonenumber::Mode;
use proptest::prelude::*;

/// Every example number of libphonenumber's metadata, in E.164, that otpgate accepts.
static EXAMPLES: LazyLock<Vec<String>> = LazyLock::new(|| {
    let mut out = Vec::new();
    for meta in DATABASE.iter() {
        let descriptors = meta.descriptors();
        for descriptor in [
            descriptors.fixed_line(),
            descriptors.mobile(),
            descriptors.toll_free(),
        ]
        .into_iter()
        .flatten()
        {
            if let Some(example) = descriptor.example() {
                out.push(format!("+{}{example}", meta.country_code()));
            }
        }
    }
    out.retain(|number| PhoneNumber::parse(number).is_ok());
    assert!(out.len() > 400, "only {} examples", out.len());
    out
});

proptest! {
    #[test]
    fn any_string_is_refused_as_not_e164_unless_it_is_plus_and_8_to_15_digits(input in prop_oneof![
        ".{0,20}",
        "\\+[0-9]{0,20}",
        "\\+[0-9 ()-]{6,18}",
        "[0-9]{8,15}",
    ]) {
        let well_formed = input.strip_prefix('+').is_some_and(|digits| {
            (8..=15).contains(&digits.len())
                && digits.bytes().all(|b| b.is_ascii_digit())
                && !digits.starts_with('0')
        });
        match PhoneNumber::parse(&input) {
            Ok(number) => prop_assert!(well_formed && number.e164() == input),
            Err(PhoneNumberError::Invalid) => prop_assert!(well_formed),
            Err(PhoneNumberError::NotE164) => prop_assert!(!well_formed),
        }
    }

    #[test]
    fn valid_numbers_survive_parse_format_parse(index in any::<prop::sample::Index>()) {
        let input = index.get::<String>(&EXAMPLES);
        let number = PhoneNumber::parse(input).unwrap();
        // phonenumber's own E.164 formatting of the parsed number gives back the same text.
        let parsed = phonenumber::parse(None, number.e164()).unwrap();
        let formatted = parsed.format().mode(Mode::E164).to_string();
        prop_assert_eq!(&formatted, input);
        let again = PhoneNumber::parse(&formatted).unwrap();
        prop_assert_eq!(&again, &number);
        prop_assert_eq!(again.country_code(), parsed.code().value());
        prop_assert!(number.shard() < SHARD_COUNT);
    }

    #[test]
    fn masks_keep_the_length_and_show_only_the_head_and_the_last_three_digits(
        index in any::<prop::sample::Index>()
    ) {
        let number = PhoneNumber::parse(index.get::<String>(&EXAMPLES)).unwrap();
        let masked = number.masked();
        let e164 = number.e164();
        prop_assert_eq!(masked.len(), e164.len());
        prop_assert_eq!(&masked[..4], &e164[..4]);
        prop_assert_eq!(&masked[masked.len() - 3..], &e164[e164.len() - 3..]);
        prop_assert!(masked[4..masked.len() - 3].bytes().all(|b| b == b'*'));
        prop_assert_eq!(mask(e164), masked);
    }

    #[test]
    fn a_valid_number_with_a_digit_more_or_less_never_panics(
        index in any::<prop::sample::Index>(), digit in 0u8..10, drop_last in any::<bool>()
    ) {
        let input = index.get::<String>(&EXAMPLES);
        let changed = if drop_last {
            input[..input.len() - 1].to_owned()
        } else {
            format!("{input}{digit}")
        };
        if let Ok(number) = PhoneNumber::parse(&changed) {
            prop_assert_eq!(number.e164(), changed.as_str());
        }
    }
}
