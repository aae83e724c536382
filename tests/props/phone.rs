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

/// Every calling code of the metadata, once.
static CODES: LazyLock<Vec<u16>> = LazyLock::new(|| {
    let mut codes: Vec<u16> = DATABASE.iter().map(|meta| meta.country_code()).collect();
    codes.sort_unstable();
    codes.dedup();
    codes
});

/// What a parse answered, comparable: the number, its calling code, type and region.
fn answer(input: &str, fast: bool) -> Result<(String, u16, String, String), PhoneNumberError> {
    let parsed = if fast {
        PhoneNumber::parse(input)
    } else {
        PhoneNumber::parse_with_phonenumber(input)
    };
    parsed.map(|number| {
        (
            number.e164().to_owned(),
            number.country_code(),
            number.number_type().to_string(),
            number.region().to_string(),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    /// `PhoneNumber::parse` skips the crate's general parser for E.164 text: any calling code
    /// followed by any 4 to 13 digits (a national prefix in front, sometimes) gets the answer the
    /// crate's `phonenumber::parse` and the same classification give.
    #[test]
    fn the_fast_parse_answers_as_the_crate_does(
        index in any::<prop::sample::Index>(),
        national_prefix in prop_oneof!["", "0", "1", "8", "9"],
        national in "[0-9]{4,13}",
    ) {
        let input = format!("+{}{national_prefix}{national}", index.get(&CODES));
        prop_assert_eq!(answer(&input, true), answer(&input, false), "{}", input);
    }

    #[test]
    fn the_fast_parse_answers_as_the_crate_does_for_any_digits(input in "\\+[1-9][0-9]{7,14}") {
        prop_assert_eq!(answer(&input, true), answer(&input, false), "{}", input);
    }

    /// Example numbers with a digit changed anywhere keep the answers equal too (a changed
    /// digit moves a number across ranges and types).
    #[test]
    fn the_fast_parse_answers_as_the_crate_does_near_real_numbers(
        index in any::<prop::sample::Index>(), at in any::<prop::sample::Index>(), digit in 0u8..10
    ) {
        let example = index.get::<String>(&EXAMPLES);
        let mut bytes = example.clone().into_bytes();
        let at = 1 + at.index(bytes.len() - 1);
        bytes[at] = b'0' + digit;
        let input = String::from_utf8(bytes).unwrap();
        prop_assert_eq!(answer(&input, true), answer(&input, false), "{}", input);
    }
}

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
