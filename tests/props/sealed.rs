//! Sealed payloads read back from the store: outbox messages and factor secrets.

use otpgate::dispatch::seal::Sealer;
use otpgate::factors::crypto::{FactorKeys, SealError};
use proptest::prelude::*;
use ring::rand::SystemRandom;

fn keys() -> FactorKeys {
    FactorKeys::new(&[
        ("k2".to_owned(), vec![2; 32]),
        ("k1".to_owned(), vec![1; 32]),
    ])
    .unwrap()
}

proptest! {
    #[test]
    fn outbox_messages_open_unchanged_and_not_after_any_bit_flip(
        plaintext in any::<Vec<u8>>(), bit in any::<usize>()
    ) {
        let sealer = Sealer::new(b"a code key of thirty-two bytes!!");
        let sealed = sealer.seal(&plaintext).unwrap();
        prop_assert_eq!(sealer.open(&sealed), Some(plaintext));
        let mut tampered = sealed.clone();
        let bit = bit % (tampered.len() * 8);
        tampered[bit / 8] ^= 1 << (bit % 8);
        prop_assert_eq!(sealer.open(&tampered), None);
        prop_assert_eq!(sealer.open(&sealed[..sealed.len() - 1]), None);
    }

    #[test]
    fn forged_outbox_bytes_never_open(forged in any::<Vec<u8>>()) {
        prop_assert_eq!(Sealer::new(b"a code key of thirty-two bytes!!").open(&forged), None);
    }

    #[test]
    fn factor_secrets_open_only_under_their_key_and_context(
        plaintext in any::<Vec<u8>>(), forged in prop_oneof![".{0,60}", "k[12]:[A-Za-z0-9_-]{0,20}:[A-Za-z0-9_-]{0,40}"]
    ) {
        let keys = keys();
        let sealed = keys.seal(&SystemRandom::new(), b"account|user|factor", &plaintext).unwrap();
        prop_assert_eq!(keys.open(b"account|user|factor", &sealed), Ok(plaintext));
        prop_assert_eq!(keys.open(b"account|user|other", &sealed), Err(SealError::Corrupt));
        prop_assert!(keys.open(b"account|user|factor", &forged).is_err());
    }
}
