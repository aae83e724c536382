//! The small parsers of request fields and headers: ids (account, verification, user, phone
//! number), codes (verification, TOTP, recovery), PINs, Graph versions, enum fields, e-mail
//! addresses and API keys. Whatever is accepted is well-formed; nothing panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otpgate::account::user::{FactorType, UserId, UserRole};
use otpgate::account::{key_digest, AccountId};
use otpgate::factors::recovery::normalise;
use otpgate::factors::totp::{Algorithm, Totp, TotpParams};
use otpgate::phone::SHARD_COUNT;
use otpgate::pin::{is_graph_version, PhoneNumberId, Pin, PinRefusal};
use otpgate::verify::code::Code;
use otpgate::verify::model::{Channel, VerificationId};

fuzz_target!(|input: &str| {
    if let Some(id) = AccountId::parse(input) {
        assert_eq!(id.as_str(), input);
        assert_eq!(input.len(), 34);
    }
    if let Some(id) = VerificationId::parse(input) {
        assert!(id.shard() < SHARD_COUNT);
    }
    if let Some(id) = UserId::parse(input) {
        assert!(!id.as_str().contains(['{', '}', '|', '/', ' ']));
    }
    if PhoneNumberId::parse(input).is_some() {
        assert_eq!(input.len(), PhoneNumberId::LENGTH);
    }
    match Pin::parse(input) {
        Ok(_) | Err(PinRefusal::Common(_)) => {
            assert!(input.len() == 6 && input.bytes().all(|b| b.is_ascii_digit()))
        }
        Err(PinRefusal::Format) => {}
    }
    if let Some(code) = normalise(input) {
        assert_eq!(code.len(), 12);
        assert_eq!(normalise(&code).as_deref(), Some(code.as_str()));
    }
    if let Some(code) = Code::parse(input) {
        assert!(code.as_str().bytes().all(|b| b.is_ascii_digit()));
    }
    if is_graph_version(input) {
        assert!(input.starts_with('v') && input.len() <= 10);
    }
    let _ = Channel::parse(input);
    let _ = UserRole::parse(input);
    let _ = FactorType::parse(input);
    let _ = Algorithm::parse(input);
    let _ = otpgate::mail::valid_address(input);
    let _ = key_digest(input);
    for (algorithm, digits) in [(Algorithm::Sha1, 6), (Algorithm::Sha512, 8)] {
        let totp = Totp::new(
            b"12345678901234567890",
            TotpParams {
                algorithm,
                digits,
                period: 30,
            },
        );
        if totp.matching_step(input, 59_000).is_some() {
            assert_eq!(input.len(), usize::from(digits));
        }
    }
});
