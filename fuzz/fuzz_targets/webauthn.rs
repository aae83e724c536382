//! WebAuthn ceremonies on attacker bytes: clientDataJSON, attestation objects (CBOR),
//! authenticator data and COSE keys. A fixed relying party and challenge; the fuzzer controls
//! one part at a time while the others are valid, so that each parser is reached.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use otpgate::factors::webauthn::{
    challenge_of, parse_cose_key, verify_assertion, verify_registration, CredentialKey, COSE_EDDSA,
};
use otpgate_fuzz::webauthn::{
    attestation_none, auth_data, client_data, ed25519_cose, ed25519_public, relying_party,
    CHALLENGE,
};

#[derive(Arbitrary, Debug)]
enum Input {
    /// Any clientDataJSON, with an otherwise valid registration.
    ClientData(Vec<u8>),
    /// Any attestation object, with valid client data.
    AttestationObject(Vec<u8>),
    /// Valid client data and attestation envelope; authenticator data from the fuzzer.
    AuthData(Vec<u8>),
    /// Authenticator data built around a COSE key from the fuzzer.
    CoseKey {
        flags: u8,
        counter: u32,
        credential_id: Vec<u8>,
        key: Vec<u8>,
    },
    /// An assertion: authenticator data and signature from the fuzzer.
    Assertion {
        auth_data: Vec<u8>,
        signature: Vec<u8>,
    },
}

fuzz_target!(|input: Input| {
    let rp = relying_party();
    match input {
        Input::ClientData(json) => {
            let _ = challenge_of(&json);
            let object = attestation_none(&auth_data(0x45, 1, b"cred", &ed25519_cose()));
            if let Ok(registered) = verify_registration(&rp, &CHALLENGE, &json, &object) {
                // Only client data naming our challenge, type and origin may pass.
                assert_eq!(challenge_of(&json).ok().as_deref(), Some(&CHALLENGE[..]));
                assert_eq!(registered.credential_id, b"cred");
            }
        }
        Input::AttestationObject(object) => {
            let json = client_data("webauthn.create");
            if let Ok(registered) = verify_registration(&rp, &CHALLENGE, &json, &object) {
                assert!((1..=1023).contains(&registered.credential_id.len()));
                assert!(matches!(registered.key.bytes.len(), 32 | 65));
            }
        }
        Input::AuthData(bytes) => {
            let json = client_data("webauthn.create");
            let _ = verify_registration(&rp, &CHALLENGE, &json, &attestation_none(&bytes));
        }
        Input::CoseKey {
            flags,
            counter,
            credential_id,
            key,
        } => {
            if let Ok(value) = ciborium::de::from_reader::<ciborium::value::Value, _>(&key[..]) {
                let _ = parse_cose_key(&value);
            }
            let json = client_data("webauthn.create");
            let data = auth_data(flags | 0x40, counter, &credential_id, &key);
            if let Ok(registered) =
                verify_registration(&rp, &CHALLENGE, &json, &attestation_none(&data))
            {
                assert_eq!(registered.credential_id, credential_id);
                assert_eq!(registered.counter, counter);
            }
        }
        Input::Assertion {
            auth_data,
            signature,
        } => {
            let json = client_data("webauthn.get");
            let key = CredentialKey {
                alg: COSE_EDDSA,
                bytes: ed25519_public().to_vec(),
            };
            // No signature from the fuzzer can be valid for a key it does not hold.
            assert!(
                verify_assertion(&rp, &CHALLENGE, &json, &auth_data, &signature, &key).is_err()
            );
        }
    }
});
