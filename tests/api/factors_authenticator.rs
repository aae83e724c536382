//! A software security key for the WebAuthn tests, on ring: a P-256 credential, attestation
//! `none`, assertions with a signature counter. It stands in for webauthn-authenticator-rs's
//! SoftToken, which needs OpenSSL (the project keeps ring as its only crypto stack).
//!
//! It plays the browser too: it builds clientDataJSON from the options the gateway returned,
//! with an origin the test chooses, and answers in `PublicKeyCredential.toJSON()` shape.

use ciborium::value::Value as Cbor;
use data_encoding::BASE64URL_NOPAD;
use ring::digest::{digest, SHA256};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
use serde_json::{json, Value};

pub struct SoftKey {
    pair: EcdsaKeyPair,
    pub credential_id: Vec<u8>,
    pub counter: u32,
    rng: SystemRandom,
    /// Flags of the next ceremony: UP (0x01), UV (0x04), BE (0x08), BS (0x10).
    pub flags: u8,
    /// The user handle of a discoverable credential (registered with `residentKey:
    /// "required"`), returned with each assertion as a passkey does; `None` for a plain
    /// security key, which answers `userHandle: null`.
    pub user_handle: Option<String>,
}

/// What the "browser" puts in clientDataJSON and authenticatorData, when a test bends it.
#[derive(Clone)]
pub struct Ceremony<'a> {
    pub origin: &'a str,
    /// The RP id whose hash goes into authenticatorData (normally the options' one).
    pub rp_id: Option<&'a str>,
    /// A challenge to put instead of the options' one.
    pub challenge: Option<String>,
}

impl<'a> Ceremony<'a> {
    pub fn at(origin: &'a str) -> Self {
        Self {
            origin,
            rp_id: None,
            challenge: None,
        }
    }
}

fn b64(bytes: &[u8]) -> String {
    BASE64URL_NOPAD.encode(bytes)
}

fn cbor(value: &Cbor) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::ser::into_writer(value, &mut out).expect("CBOR encodes into a Vec");
    out
}

impl SoftKey {
    pub fn new() -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let mut credential_id = vec![0u8; 32];
        rng.fill(&mut credential_id).unwrap();
        Self {
            pair,
            credential_id,
            counter: 0,
            rng,
            flags: 0x01,
            user_handle: None,
        }
    }

    /// A passkey as a platform authenticator holds it: user verification, backup eligible
    /// and backed up (a synced passkey).
    pub fn passkey() -> Self {
        Self {
            flags: 0x01 | 0x04 | 0x08 | 0x10,
            ..Self::new()
        }
    }

    fn cose_key(&self) -> Vec<u8> {
        let point = self.pair.public_key().as_ref();
        let int = |n: i64| Cbor::Integer(n.into());
        cbor(&Cbor::Map(vec![
            (int(1), int(2)),
            (int(3), int(-7)),
            (int(-1), int(1)),
            (int(-2), Cbor::Bytes(point[1..33].to_vec())),
            (int(-3), Cbor::Bytes(point[33..65].to_vec())),
        ]))
    }

    fn client_data(&self, kind: &str, options: &Value, ceremony: &Ceremony<'_>) -> Vec<u8> {
        let challenge = ceremony
            .challenge
            .clone()
            .unwrap_or_else(|| options["challenge"].as_str().unwrap().to_owned());
        serde_json::to_vec(&json!({
            "type": kind,
            "challenge": challenge,
            "origin": ceremony.origin,
            "crossOrigin": false,
        }))
        .unwrap()
    }

    /// Answers creation options (`public_key` of the enrolment) with a new credential.
    pub fn register(&mut self, options: &Value, ceremony: &Ceremony<'_>) -> Value {
        let rp_id = ceremony
            .rp_id
            .unwrap_or_else(|| options["rp"]["id"].as_str().unwrap());
        let client_data = self.client_data("webauthn.create", options, ceremony);
        if options["authenticatorSelection"]["residentKey"] == "required" {
            self.user_handle = options["user"]["id"].as_str().map(str::to_owned);
        }
        let mut auth_data = digest(&SHA256, rp_id.as_bytes()).as_ref().to_vec();
        auth_data.push(self.flags | 0x40);
        auth_data.extend_from_slice(&self.counter.to_be_bytes());
        auth_data.extend_from_slice(&[0u8; 16]);
        auth_data.extend_from_slice(&(self.credential_id.len() as u16).to_be_bytes());
        auth_data.extend_from_slice(&self.credential_id);
        auth_data.extend_from_slice(&self.cose_key());
        let attestation = cbor(&Cbor::Map(vec![
            (Cbor::Text("fmt".into()), Cbor::Text("none".into())),
            (Cbor::Text("attStmt".into()), Cbor::Map(vec![])),
            (Cbor::Text("authData".into()), Cbor::Bytes(auth_data)),
        ]));
        json!({
            "id": b64(&self.credential_id),
            "rawId": b64(&self.credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64(&client_data),
                "attestationObject": b64(&attestation),
                "transports": ["usb"],
            },
            "clientExtensionResults": {},
            "authenticatorAttachment": "cross-platform",
        })
    }

    /// Answers request options (`public_key` of a challenge) with an assertion; the counter
    /// goes up by one first.
    pub fn assert(&mut self, options: &Value, ceremony: &Ceremony<'_>) -> Value {
        self.counter += 1;
        self.assert_with_counter(options, ceremony, self.counter)
    }

    /// An assertion carrying `counter` as it is (a cloned key's stale counter).
    pub fn assert_with_counter(
        &self,
        options: &Value,
        ceremony: &Ceremony<'_>,
        counter: u32,
    ) -> Value {
        let rp_id = ceremony
            .rp_id
            .unwrap_or_else(|| options["rpId"].as_str().unwrap());
        let client_data = self.client_data("webauthn.get", options, ceremony);
        let mut auth_data = digest(&SHA256, rp_id.as_bytes()).as_ref().to_vec();
        auth_data.push(self.flags);
        auth_data.extend_from_slice(&counter.to_be_bytes());
        let mut signed = auth_data.clone();
        signed.extend_from_slice(digest(&SHA256, &client_data).as_ref());
        let signature = self.pair.sign(&self.rng, &signed).unwrap();
        json!({
            "id": b64(&self.credential_id),
            "rawId": b64(&self.credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64(&client_data),
                "authenticatorData": b64(&auth_data),
                "signature": b64(signature.as_ref()),
                "userHandle": self.user_handle,
            },
            "clientExtensionResults": {},
        })
    }
}
