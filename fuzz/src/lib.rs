//! Shared pieces of otpgate's fuzz targets: valid WebAuthn envelopes around the fuzzed part, and
//! the in-process server the HTTP targets talk to.

pub mod server;

/// Builders of valid WebAuthn parts, so that a target can fuzz one part with the others valid.
pub mod webauthn {
    use ciborium::value::Value;
    use data_encoding::BASE64URL_NOPAD;
    use otpgate::factors::webauthn::RelyingParty;
    use ring::digest::{digest, SHA256};
    use ring::signature::{Ed25519KeyPair, KeyPair};

    pub const RP_ID: &str = "example.com";
    pub const ORIGIN: &str = "https://example.com";
    pub const CHALLENGE: [u8; 32] = [7; 32];

    pub fn relying_party() -> RelyingParty {
        RelyingParty {
            id: RP_ID.to_owned(),
            name: "Example".to_owned(),
            origins: vec![ORIGIN.to_owned()],
            require_user_verification: false,
        }
    }

    /// clientDataJSON of `kind` (`webauthn.create`, `webauthn.get`) for our challenge and origin.
    pub fn client_data(kind: &str) -> Vec<u8> {
        format!(
            r#"{{"type":"{kind}","challenge":"{}","origin":"{ORIGIN}"}}"#,
            BASE64URL_NOPAD.encode(&CHALLENGE)
        )
        .into_bytes()
    }

    /// Authenticator data for our RP id: flags, counter, and (when `flags` has AT) a zero AAGUID,
    /// the credential id and `cose_key` as given.
    pub fn auth_data(flags: u8, counter: u32, credential_id: &[u8], cose_key: &[u8]) -> Vec<u8> {
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

    /// An attestation object `{fmt: "none", attStmt: {}, authData}`.
    pub fn attestation_none(auth_data: &[u8]) -> Vec<u8> {
        let object = Value::Map(vec![
            (Value::Text("fmt".into()), Value::Text("none".into())),
            (Value::Text("attStmt".into()), Value::Map(vec![])),
            (
                Value::Text("authData".into()),
                Value::Bytes(auth_data.to_vec()),
            ),
        ]);
        let mut out = Vec::new();
        ciborium::ser::into_writer(&object, &mut out).expect("writing to a Vec cannot fail");
        out
    }

    fn key_pair() -> Ed25519KeyPair {
        Ed25519KeyPair::from_seed_unchecked(&[9; 32]).expect("any 32-byte seed is a key")
    }

    pub fn ed25519_public() -> [u8; 32] {
        let mut out = [0; 32];
        out.copy_from_slice(key_pair().public_key().as_ref());
        out
    }

    /// The COSE_Key of [`ed25519_public`], CBOR-encoded.
    pub fn ed25519_cose() -> Vec<u8> {
        let key = Value::Map(vec![
            (Value::Integer(1.into()), Value::Integer(1.into())),
            (Value::Integer(3.into()), Value::Integer((-8).into())),
            (Value::Integer((-1).into()), Value::Integer(6.into())),
            (
                Value::Integer((-2).into()),
                Value::Bytes(ed25519_public().to_vec()),
            ),
        ]);
        let mut out = Vec::new();
        ciborium::ser::into_writer(&key, &mut out).expect("writing to a Vec cannot fail");
        out
    }
}
