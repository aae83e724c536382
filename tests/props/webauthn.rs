//! WebAuthn: clientDataJSON, attestation objects, authenticator data and COSE keys.

use ciborium::value::{Integer, Value};
use data_encoding::BASE64URL_NOPAD;
use otpgate::factors::webauthn::{
    challenge_of, parse_cose_key, verify_assertion, verify_registration, CredentialKey, Refusal,
    RelyingParty, COSE_EDDSA, COSE_ES256,
};
use proptest::prelude::*;
use ring::digest::{digest, SHA256};

const RP_ID: &str = "example.com";
const ORIGIN: &str = "https://example.com";
const CHALLENGE: [u8; 32] = [7; 32];

fn rp() -> RelyingParty {
    RelyingParty {
        id: RP_ID.to_owned(),
        name: "Example".to_owned(),
        origins: vec![ORIGIN.to_owned()],
        require_user_verification: false,
    }
}

fn client_data(kind: &str) -> Vec<u8> {
    format!(
        r#"{{"type":"{kind}","challenge":"{}","origin":"{ORIGIN}"}}"#,
        BASE64URL_NOPAD.encode(&CHALLENGE)
    )
    .into_bytes()
}

fn cbor(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::ser::into_writer(value, &mut out).unwrap();
    out
}

fn int(n: i64) -> Value {
    Value::Integer(Integer::from(n))
}

fn ed25519_key(x: &[u8]) -> Value {
    Value::Map(vec![
        (int(1), int(1)),
        (int(3), int(-8)),
        (int(-1), int(6)),
        (int(-2), Value::Bytes(x.to_vec())),
    ])
}

fn es256_key(x: &[u8], y: &[u8]) -> Value {
    Value::Map(vec![
        (int(1), int(2)),
        (int(3), int(-7)),
        (int(-1), int(1)),
        (int(-2), Value::Bytes(x.to_vec())),
        (int(-3), Value::Bytes(y.to_vec())),
    ])
}

fn auth_data(flags: u8, counter: u32, credential_id: &[u8], cose_key: &[u8]) -> Vec<u8> {
    let mut out = digest(&SHA256, RP_ID.as_bytes()).as_ref().to_vec();
    out.push(flags);
    out.extend_from_slice(&counter.to_be_bytes());
    if flags & 0x40 != 0 {
        out.extend_from_slice(&[0; 16]);
        out.extend_from_slice(&(credential_id.len() as u16).to_be_bytes());
        out.extend_from_slice(credential_id);
        out.extend_from_slice(cose_key);
    }
    out
}

fn attestation(fmt: Value, statement: Value, auth_data: Value) -> Vec<u8> {
    cbor(&Value::Map(vec![
        (Value::Text("fmt".into()), fmt),
        (Value::Text("attStmt".into()), statement),
        (Value::Text("authData".into()), auth_data),
    ]))
}

fn none_attestation(auth_data: &[u8]) -> Vec<u8> {
    attestation(
        Value::Text("none".into()),
        Value::Map(vec![]),
        Value::Bytes(auth_data.to_vec()),
    )
}

/// Any CBOR value, a few levels deep.
fn any_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(int),
        any::<Vec<u8>>().prop_map(Value::Bytes),
        ".{0,12}".prop_map(Value::Text),
        any::<bool>().prop_map(Value::Bool),
        any::<f64>().prop_map(Value::Float),
        Just(Value::Null),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((inner.clone(), inner), 0..4).prop_map(Value::Map),
        ]
    })
}

/// A COSE key map whose entries have the right labels and values of any type.
fn cose_with_wrong_types() -> impl Strategy<Value = Value> {
    (
        any_value(),
        any_value(),
        any_value(),
        any_value(),
        any_value(),
    )
        .prop_map(|(kty, alg, crv, x, y)| {
            Value::Map(vec![
                (int(1), kty),
                (int(3), alg),
                (int(-1), crv),
                (int(-2), x),
                (int(-3), y),
            ])
        })
}

proptest! {
    #[test]
    fn any_client_data_is_refused_cleanly_unless_it_names_our_challenge_and_origin(
        json in prop_oneof![
            any::<Vec<u8>>(),
            (".{0,20}", ".{0,60}", ".{0,30}").prop_map(|(kind, challenge, origin)| {
                serde_json::json!({"type": kind, "challenge": challenge, "origin": origin})
                    .to_string()
                    .into_bytes()
            }),
            any_value().prop_map(|v| serde_json::json!({"type": format!("{v:?}"), "challenge": 5}).to_string().into_bytes()),
        ]
    ) {
        let _ = challenge_of(&json);
        let object = none_attestation(&auth_data(0x41, 0, b"id", &cbor(&ed25519_key(&[1; 32]))));
        prop_assert!(verify_registration(&rp(), &CHALLENGE, &json, &object).is_err());
    }

    #[test]
    fn any_attestation_object_bytes_are_refused_cleanly(object in any::<Vec<u8>>()) {
        prop_assert!(
            verify_registration(&rp(), &CHALLENGE, &client_data("webauthn.create"), &object).is_err()
        );
    }

    #[test]
    fn attestation_objects_with_wrong_types_are_malformed_or_unsupported(
        fmt in any_value(), statement in any_value(), data in any_value()
    ) {
        let object = attestation(fmt, statement, data);
        let refusal = verify_registration(&rp(), &CHALLENGE, &client_data("webauthn.create"), &object)
            .unwrap_err();
        prop_assert!(matches!(
            refusal,
            Refusal::Malformed | Refusal::UnsupportedAttestation | Refusal::WrongRpId
                | Refusal::UserNotPresent | Refusal::NoCredentialData | Refusal::UnsupportedAlgorithm
        ), "{refusal:?}");
    }

    #[test]
    fn cose_keys_round_trip_through_cbor(x in any::<[u8; 32]>(), y in any::<[u8; 32]>()) {
        let decoded: Value = ciborium::de::from_reader(&cbor(&ed25519_key(&x))[..]).unwrap();
        prop_assert_eq!(
            parse_cose_key(&decoded),
            Ok(CredentialKey { alg: COSE_EDDSA, bytes: x.to_vec() })
        );
        let decoded: Value = ciborium::de::from_reader(&cbor(&es256_key(&x, &y))[..]).unwrap();
        let mut point = vec![4];
        point.extend_from_slice(&x);
        point.extend_from_slice(&y);
        prop_assert_eq!(parse_cose_key(&decoded), Ok(CredentialKey { alg: COSE_ES256, bytes: point }));
    }

    #[test]
    fn cose_keys_with_wrong_types_or_lengths_are_refused(key in prop_oneof![
        cose_with_wrong_types(),
        (0usize..80).prop_filter("not 32", |n| *n != 32).prop_map(|n| ed25519_key(&vec![1; n])),
        (0usize..80, 0usize..80)
            .prop_filter("not both 32", |(a, b)| (*a, *b) != (32, 32))
            .prop_map(|(a, b)| es256_key(&vec![1; a], &vec![2; b])),
        any_value(),
    ]) {
        let refusal = parse_cose_key(&key).unwrap_err();
        prop_assert!(matches!(refusal, Refusal::Malformed | Refusal::UnsupportedAlgorithm));
    }

    #[test]
    fn truncated_authenticator_data_is_malformed(x in any::<[u8; 32]>(), cut in 0usize..1000) {
        let full = auth_data(0x41, 9, b"credential", &cbor(&ed25519_key(&x)));
        let registered = verify_registration(
            &rp(), &CHALLENGE, &client_data("webauthn.create"), &none_attestation(&full)
        ).unwrap();
        prop_assert_eq!(registered.counter, 9);
        let cut = cut % full.len();
        prop_assert_eq!(
            verify_registration(
                &rp(), &CHALLENGE, &client_data("webauthn.create"), &none_attestation(&full[..cut])
            ).unwrap_err(),
            Refusal::Malformed
        );
    }

    #[test]
    fn credential_ids_of_no_bytes_or_over_1023_bytes_are_malformed(
        length in prop_oneof![Just(0usize), 1024usize..1500]
    ) {
        let data = auth_data(0x41, 0, &vec![5; length], &cbor(&ed25519_key(&[1; 32])));
        prop_assert_eq!(
            verify_registration(&rp(), &CHALLENGE, &client_data("webauthn.create"), &none_attestation(&data))
                .unwrap_err(),
            Refusal::Malformed
        );
    }

    #[test]
    fn credential_ids_that_claim_more_bytes_than_remain_are_malformed(
        claimed in 11u16..=u16::MAX
    ) {
        let mut data = auth_data(0x41, 0, b"ten bytes!", &[]);
        let at = 32 + 1 + 4 + 16;
        data[at..at + 2].copy_from_slice(&claimed.to_be_bytes());
        prop_assert_eq!(
            verify_registration(&rp(), &CHALLENGE, &client_data("webauthn.create"), &none_attestation(&data))
                .unwrap_err(),
            Refusal::Malformed
        );
    }

    #[test]
    fn assertions_with_any_authenticator_data_and_signature_are_refused(
        data in any::<Vec<u8>>(), signature in any::<Vec<u8>>(), es256 in any::<bool>()
    ) {
        let key = if es256 {
            CredentialKey { alg: COSE_ES256, bytes: vec![4; 65] }
        } else {
            CredentialKey { alg: COSE_EDDSA, bytes: vec![1; 32] }
        };
        prop_assert!(
            verify_assertion(&rp(), &CHALLENGE, &client_data("webauthn.get"), &data, &signature, &key)
                .is_err()
        );
    }
}
