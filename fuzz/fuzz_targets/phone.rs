//! Phone numbers: strict E.164, then libphonenumber's metadata through otpgate's own compiled
//! patterns. Whatever is accepted survives a round trip, and the answer agrees with the
//! phonenumber crate's own (slower) validation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otpgate::phone::{PhoneNumber, PhoneNumberError, SHARD_COUNT};

fuzz_target!(|input: &str| {
    let ours = PhoneNumber::parse(input);
    let well_formed = input.strip_prefix('+').is_some_and(|digits| {
        (8..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0')
    });
    if !well_formed {
        assert_eq!(ours, Err(PhoneNumberError::NotE164), "{input:?}");
        return;
    }
    let crate_says =
        phonenumber::parse(None, input).is_ok_and(|parsed| phonenumber::is_valid(&parsed));
    assert_eq!(ours.is_ok(), crate_says, "{input}");
    let Ok(number) = ours else {
        return;
    };
    assert_eq!(number.e164(), input);
    assert_eq!(PhoneNumber::parse(number.e164()).as_ref(), Ok(&number));
    assert!(input[1..].starts_with(&number.country_code().to_string()));
    assert!(number.shard() < SHARD_COUNT);
    let masked = number.masked();
    assert_eq!(masked.len(), input.len());
    assert!(masked.ends_with(&input[input.len() - 3..]));
    assert!(masked[4..masked.len() - 3].bytes().all(|b| b == b'*'));
});
