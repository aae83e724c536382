//! Sealed payloads read back from the store: the outbox's queued messages (nonce, ciphertext,
//! tag) and factor secrets (`kid:nonce:ciphertext`). Whoever can write to Redis controls these
//! bytes; nothing forged may open, and what we sealed opens unchanged.
#![no_main]

use std::sync::LazyLock;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use otpgate::dispatch::seal::Sealer;
use otpgate::factors::crypto::FactorKeys;
use ring::rand::SystemRandom;

static SEALER: LazyLock<Sealer> =
    LazyLock::new(|| Sealer::new(b"a code key of thirty-two bytes!!"));
static KEYS: LazyLock<FactorKeys> = LazyLock::new(|| {
    FactorKeys::new(&[
        ("k2".to_owned(), vec![2; 32]),
        ("k1".to_owned(), vec![1; 32]),
    ])
    .expect("two well-formed keys")
});

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    forged: &'a [u8],
    forged_text: &'a str,
    plaintext: &'a [u8],
    flip: u16,
}

fuzz_target!(|input: Input<'_>| {
    assert!(SEALER.open(input.forged).is_none());
    assert!(KEYS.open(b"context", input.forged_text).is_err());

    let sealed = SEALER.seal(input.plaintext).expect("the system RNG works");
    assert_eq!(SEALER.open(&sealed).as_deref(), Some(input.plaintext));
    let mut tampered = sealed.clone();
    let bit = usize::from(input.flip) % (tampered.len() * 8);
    tampered[bit / 8] ^= 1 << (bit % 8);
    assert!(SEALER.open(&tampered).is_none());

    let rng = SystemRandom::new();
    let sealed = KEYS
        .seal(&rng, b"context", input.plaintext)
        .expect("the system RNG works");
    assert_eq!(
        KEYS.open(b"context", &sealed).as_deref(),
        Ok(input.plaintext)
    );
    assert!(KEYS.open(b"other context", &sealed).is_err());
});
