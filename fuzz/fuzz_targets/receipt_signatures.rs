//! The receipt signature checks: `X-Twilio-Signature` (HMAC-SHA1 over the URL and the sorted
//! parameters, with and without the default port) and `X-Hub-Signature-256` (HMAC-SHA256 of the
//! raw body). Any header is refused unless it is the right MAC, and the right MAC is accepted.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use otpgate::dispatch::receipts::{parse_form, verify_meta_signature, verify_twilio_signature};
use ring::hmac;

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    url: &'a str,
    form: &'a [u8],
    header: &'a str,
    secret: &'a str,
    body: &'a [u8],
}

fuzz_target!(|input: Input<'_>| {
    let params = parse_form(input.form);
    let _ = verify_twilio_signature(input.url, &params, input.header, input.secret);
    let _ = verify_meta_signature(input.body, input.header, input.secret);

    // The right MAC passes: Twilio's over the URL exactly as given.
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut signed = input.url.as_bytes().to_vec();
    for (name, value) in sorted {
        signed.extend_from_slice(name.as_bytes());
        signed.extend_from_slice(value.as_bytes());
    }
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, input.secret.as_bytes());
    let right = data_encoding::BASE64.encode(hmac::sign(&key, &signed).as_ref());
    assert!(verify_twilio_signature(
        input.url,
        &params,
        &right,
        input.secret
    ));
    // A MAC under another secret fails.
    let other = format!("{}x", input.secret);
    assert!(!verify_twilio_signature(input.url, &params, &right, &other));

    let key = hmac::Key::new(hmac::HMAC_SHA256, input.secret.as_bytes());
    let right = data_encoding::HEXLOWER.encode(hmac::sign(&key, input.body).as_ref());
    assert!(verify_meta_signature(
        input.body,
        &format!("sha256={right}"),
        input.secret
    ));
    assert!(!verify_meta_signature(
        input.body,
        &format!("sha256={right}"),
        &other
    ));
    assert!(!verify_meta_signature(input.body, &right, input.secret));
});
