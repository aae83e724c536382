//! The small parsers of request fields and headers: ids, codes, PINs, versions, addresses.

use otpgate::account::user::UserId;
use otpgate::account::AccountId;
use otpgate::factors::recovery::{generate, normalise};
use otpgate::factors::totp::{Algorithm, Totp, TotpParams};
use otpgate::phone::SHARD_COUNT;
use otpgate::pin::{is_graph_version, PhoneNumberId, Pin, PinRefusal};
use otpgate::verify::code::{Code, MAX_CODE_LENGTH, MIN_CODE_LENGTH};
use otpgate::verify::model::VerificationId;
use proptest::prelude::*;
use ring::rand::SystemRandom;

proptest! {
    #[test]
    fn ids_are_accepted_only_in_their_exact_shape(input in prop_oneof![
        ".{0,40}", "(AC|VE)[0-9a-fA-F]{30,34}", "[0-9]{13,17}", "[a-zA-Z0-9.@+_{}| -]{0,70}"
    ]) {
        if let Some(id) = AccountId::parse(&input) {
            prop_assert_eq!(id.as_str(), input.as_str());
            prop_assert!(input.len() == 34 && input[2..].bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        }
        if let Some(id) = VerificationId::parse(&input) {
            prop_assert!(id.shard() < SHARD_COUNT);
        }
        if let Some(id) = UserId::parse(&input) {
            prop_assert!((1..=64).contains(&id.as_str().len()));
            let forbidden = ['{', '}', '|', ' ', '/'];
            prop_assert!(!id.as_str().contains(forbidden), "{:?}", id);
        }
        if PhoneNumberId::parse(&input).is_some() {
            prop_assert!(input.len() == 15 && !input.starts_with('0'));
        }
    }

    #[test]
    fn pins_are_six_digits_and_refusals_say_why(input in prop_oneof![".{0,8}", "[0-9]{5,7}"]) {
        match Pin::parse(&input) {
            Ok(_) | Err(PinRefusal::Common(_)) => {
                prop_assert!(input.len() == 6 && input.bytes().all(|b| b.is_ascii_digit()));
            }
            Err(PinRefusal::Format) => {
                prop_assert!(input.len() != 6 || !input.bytes().all(|b| b.is_ascii_digit()));
            }
        }
    }

    #[test]
    fn recovery_codes_normalise_back_however_they_are_typed(
        upper in any::<bool>(), separator in prop_oneof![Just(""), Just("-"), Just(" "), Just(" - ")]
    ) {
        let code = generate(&SystemRandom::new()).unwrap();
        let mut typed = code.replace('-', separator);
        if upper {
            typed = typed.to_uppercase();
        }
        prop_assert_eq!(normalise(&typed), Some(code.replace('-', "")));
    }

    #[test]
    fn anything_else_typed_as_a_recovery_code_is_refused_or_normal(input in ".{0,30}") {
        if let Some(code) = normalise(&input) {
            prop_assert_eq!(code.len(), 12);
            prop_assert_eq!(normalise(&code), Some(code.clone()));
        }
    }

    #[test]
    fn verification_codes_are_digits_within_the_allowed_lengths(input in prop_oneof![".{0,12}", "[0-9]{0,12}"]) {
        if let Some(code) = Code::parse(&input) {
            prop_assert!(code.as_str().bytes().all(|b| b.is_ascii_digit()));
            prop_assert!((usize::from(MIN_CODE_LENGTH)..=usize::from(MAX_CODE_LENGTH)).contains(&code.as_str().len()));
        }
    }

    #[test]
    fn a_totp_code_matches_only_its_own_window(
        code in prop_oneof![".{0,10}", "[0-9]{6}", "[0-9]{8}"],
        now in 0u64..4_000_000_000_000,
        eight in any::<bool>(),
    ) {
        let digits = if eight { 8 } else { 6 };
        let totp = Totp::new(b"12345678901234567890", TotpParams { algorithm: Algorithm::Sha1, digits, period: 30 });
        if let Some(step) = totp.matching_step(&code, now) {
            prop_assert_eq!(totp.code_at_step(step), code);
            prop_assert!(step.abs_diff(now / 30_000) <= 1);
        }
        let current = totp.code_at(now);
        prop_assert_eq!(totp.matching_step(&current, now), Some(now / 30_000));
    }

    #[test]
    fn graph_versions_are_v_digits_dot_digits(input in prop_oneof![".{0,12}", "v[0-9]{0,5}\\.[0-9]{0,5}"]) {
        if is_graph_version(&input) {
            let (major, minor) = input[1..].split_once('.').unwrap();
            prop_assert!(!major.is_empty() && !minor.is_empty());
            prop_assert!(major.len() <= 4 && minor.len() <= 4);
        }
    }

    #[test]
    fn email_addresses_accepted_have_one_at_and_a_dotted_domain(input in prop_oneof![
        ".{0,30}", "[a-z.+]{0,10}@[a-z.]{0,12}"
    ]) {
        if otpgate::mail::valid_address(&input) {
            let (local, domain) = input.split_once('@').unwrap();
            prop_assert!(!local.is_empty() && domain.contains('.') && !domain.contains('@'));
            prop_assert!(input.bytes().all(|b| b.is_ascii_graphic()));
        }
    }
}
