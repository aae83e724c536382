//! WebAuthn relying-party checks on ring: registration (attestation `none`, or `packed`
//! self-attestation) and authentication assertions, for ES256 (P-256) and EdDSA (Ed25519) keys.
//!
//! webauthn-rs is not used because it pulls OpenSSL, and the project keeps one crypto stack
//! (ring). What is checked follows WebAuthn Level 2 §7.1 and §7.2: the client data's type,
//! challenge and origin; the authenticator data's RP id hash and flags; the signature over
//! `authenticatorData || SHA-256(clientDataJSON)`; and the signature counter (by the store,
//! atomically). Attestation certificates are not verified: the ceremony asks for `none`, which
//! is what browsers send for a security key when no attestation is requested; a `packed`
//! statement with a certificate chain is refused rather than half-checked.

use ciborium::value::Value;
use data_encoding::BASE64URL_NOPAD;
use ring::digest::{digest, SHA256};
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1, ED25519};
use serde::Deserialize;
use subtle::ConstantTimeEq;

/// The relying party as configured.
#[derive(Debug, Clone)]
pub struct RelyingParty {
    /// The RP id: the site's registrable domain (`example.com`), or `localhost`.
    pub id: String,
    pub name: String,
    /// Origins a ceremony may come from (`https://login.example.com`), exactly.
    pub origins: Vec<String>,
    /// Require the UV flag (a PIN or biometric on the key), not only UP (a touch).
    pub require_user_verification: bool,
}

/// COSE algorithm identifiers we accept.
pub const COSE_ES256: i64 = -7;
pub const COSE_EDDSA: i64 = -8;

/// Why a ceremony was refused: a stable label, also the metric's and the answer's `reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Malformed,
    WrongType,
    ChallengeMismatch,
    WrongOrigin,
    WrongRpId,
    UserNotPresent,
    UserNotVerified,
    NoCredentialData,
    UnsupportedAlgorithm,
    UnsupportedAttestation,
    BadSignature,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Malformed => "malformed",
            Refusal::WrongType => "wrong_type",
            Refusal::ChallengeMismatch => "challenge_mismatch",
            Refusal::WrongOrigin => "wrong_origin",
            Refusal::WrongRpId => "wrong_rp_id",
            Refusal::UserNotPresent => "user_not_present",
            Refusal::UserNotVerified => "user_not_verified",
            Refusal::NoCredentialData => "no_credential_data",
            Refusal::UnsupportedAlgorithm => "unsupported_algorithm",
            Refusal::UnsupportedAttestation => "unsupported_attestation",
            Refusal::BadSignature => "bad_signature",
        }
    }
}

/// A credential's public key: COSE algorithm and the raw key (SEC1 uncompressed point for
/// ES256, 32 bytes for Ed25519).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialKey {
    pub alg: i64,
    pub bytes: Vec<u8>,
}

impl CredentialKey {
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        let algorithm: &dyn ring::signature::VerificationAlgorithm = match self.alg {
            COSE_ES256 => &ECDSA_P256_SHA256_ASN1,
            COSE_EDDSA => &ED25519,
            _ => return false,
        };
        UnparsedPublicKey::new(algorithm, &self.bytes)
            .verify(message, signature)
            .is_ok()
    }
}

/// A verified registration.
#[derive(Debug, Clone)]
pub struct Registered {
    pub credential_id: Vec<u8>,
    pub key: CredentialKey,
    pub counter: u32,
    pub aaguid: [u8; 16],
    pub attestation: &'static str,
    pub user_verified: bool,
    pub backup: BackupState,
}

/// A verified assertion: the counter the store must advance to.
#[derive(Debug, Clone, Copy)]
pub struct Asserted {
    pub counter: u32,
    pub user_verified: bool,
    pub backup: BackupState,
}

/// The backup flags of authenticator data (WebAuthn Level 3 §6.1): BE, the credential may be
/// synced to other devices (a multi-device passkey); BS, it is backed up now. BE never changes
/// for a credential; BS may, so each assertion's is recorded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackupState {
    pub eligible: bool,
    pub backed_up: bool,
}

impl BackupState {
    fn of(flags: u8) -> Self {
        Self {
            eligible: flags & FLAG_BE != 0,
            backed_up: flags & FLAG_BS != 0,
        }
    }
}

#[derive(Deserialize)]
struct ClientDataJson {
    #[serde(rename = "type")]
    kind: String,
    challenge: String,
    origin: String,
}

/// The challenge a clientDataJSON carries, decoded, to find the ceremony it answers.
pub fn challenge_of(client_data_json: &[u8]) -> Result<Vec<u8>, Refusal> {
    let data: ClientDataJson =
        serde_json::from_slice(client_data_json).map_err(|_| Refusal::Malformed)?;
    BASE64URL_NOPAD
        .decode(data.challenge.trim_end_matches('=').as_bytes())
        .map_err(|_| Refusal::Malformed)
}

fn check_client_data(
    rp: &RelyingParty,
    expected_type: &str,
    challenge: &[u8],
    client_data_json: &[u8],
) -> Result<(), Refusal> {
    let data: ClientDataJson =
        serde_json::from_slice(client_data_json).map_err(|_| Refusal::Malformed)?;
    if data.kind != expected_type {
        return Err(Refusal::WrongType);
    }
    let presented = BASE64URL_NOPAD
        .decode(data.challenge.trim_end_matches('=').as_bytes())
        .map_err(|_| Refusal::Malformed)?;
    if !bool::from(presented.ct_eq(challenge)) {
        return Err(Refusal::ChallengeMismatch);
    }
    if !rp.origins.contains(&data.origin) {
        return Err(Refusal::WrongOrigin);
    }
    Ok(())
}

const FLAG_UP: u8 = 0x01;
const FLAG_UV: u8 = 0x04;
const FLAG_BE: u8 = 0x08;
const FLAG_BS: u8 = 0x10;
const FLAG_AT: u8 = 0x40;

struct AuthData {
    rp_id_hash: [u8; 32],
    flags: u8,
    counter: u32,
    attested: Option<(Vec<u8>, [u8; 16], CredentialKey)>,
}

fn parse_auth_data(bytes: &[u8]) -> Result<AuthData, Refusal> {
    if bytes.len() < 37 {
        return Err(Refusal::Malformed);
    }
    let mut rp_id_hash = [0u8; 32];
    rp_id_hash.copy_from_slice(&bytes[..32]);
    let flags = bytes[32];
    let counter = u32::from_be_bytes([bytes[33], bytes[34], bytes[35], bytes[36]]);
    let attested = if flags & FLAG_AT != 0 {
        let rest = &bytes[37..];
        if rest.len() < 18 {
            return Err(Refusal::Malformed);
        }
        let mut aaguid = [0u8; 16];
        aaguid.copy_from_slice(&rest[..16]);
        let id_len = usize::from(u16::from_be_bytes([rest[16], rest[17]]));
        let rest = &rest[18..];
        if rest.len() < id_len || id_len == 0 || id_len > 1023 {
            return Err(Refusal::Malformed);
        }
        let credential_id = rest[..id_len].to_vec();
        let mut reader = std::io::Cursor::new(&rest[id_len..]);
        let cose: Value = ciborium::de::from_reader(&mut reader).map_err(|_| Refusal::Malformed)?;
        Some((credential_id, aaguid, parse_cose_key(&cose)?))
    } else {
        None
    };
    Ok(AuthData {
        rp_id_hash,
        flags,
        counter,
        attested,
    })
}

fn map_get(map: &[(Value, Value)], key: i64) -> Option<&Value> {
    map.iter().find_map(|(k, v)| match k {
        Value::Integer(n) if i128::from(*n) == i128::from(key) => Some(v),
        _ => None,
    })
}

fn text_get<'a>(map: &'a [(Value, Value)], key: &str) -> Option<&'a Value> {
    map.iter().find_map(|(k, v)| match k {
        Value::Text(name) if name == key => Some(v),
        _ => None,
    })
}

fn integer(value: Option<&Value>) -> Option<i128> {
    match value {
        Some(Value::Integer(n)) => Some(i128::from(*n)),
        _ => None,
    }
}

fn bytes(value: Option<&Value>) -> Option<&[u8]> {
    match value {
        Some(Value::Bytes(b)) => Some(b),
        _ => None,
    }
}

/// A COSE_Key (RFC 9053): EC2 P-256 with ES256, or OKP Ed25519 with EdDSA.
pub fn parse_cose_key(value: &Value) -> Result<CredentialKey, Refusal> {
    let Value::Map(map) = value else {
        return Err(Refusal::Malformed);
    };
    let kty = integer(map_get(map, 1)).ok_or(Refusal::Malformed)?;
    let alg = integer(map_get(map, 3)).ok_or(Refusal::Malformed)?;
    let crv = integer(map_get(map, -1));
    let x = bytes(map_get(map, -2));
    match (kty, alg, crv) {
        (2, -7, Some(1)) => {
            let (Some(x), Some(y)) = (x, bytes(map_get(map, -3))) else {
                return Err(Refusal::Malformed);
            };
            if x.len() != 32 || y.len() != 32 {
                return Err(Refusal::Malformed);
            }
            let mut point = Vec::with_capacity(65);
            point.push(0x04);
            point.extend_from_slice(x);
            point.extend_from_slice(y);
            Ok(CredentialKey {
                alg: COSE_ES256,
                bytes: point,
            })
        }
        (1, -8, Some(6)) => {
            let x = x.filter(|x| x.len() == 32).ok_or(Refusal::Malformed)?;
            Ok(CredentialKey {
                alg: COSE_EDDSA,
                bytes: x.to_vec(),
            })
        }
        _ => Err(Refusal::UnsupportedAlgorithm),
    }
}

fn check_rp_and_flags(rp: &RelyingParty, auth: &AuthData) -> Result<(), Refusal> {
    let expected = digest(&SHA256, rp.id.as_bytes());
    if !bool::from(auth.rp_id_hash.ct_eq(expected.as_ref())) {
        return Err(Refusal::WrongRpId);
    }
    if auth.flags & FLAG_UP == 0 {
        return Err(Refusal::UserNotPresent);
    }
    if rp.require_user_verification && auth.flags & FLAG_UV == 0 {
        return Err(Refusal::UserNotVerified);
    }
    Ok(())
}

/// Registration (§7.1): `challenge` is the one the server issued and kept.
pub fn verify_registration(
    rp: &RelyingParty,
    challenge: &[u8],
    client_data_json: &[u8],
    attestation_object: &[u8],
) -> Result<Registered, Refusal> {
    check_client_data(rp, "webauthn.create", challenge, client_data_json)?;
    let object: Value =
        ciborium::de::from_reader(attestation_object).map_err(|_| Refusal::Malformed)?;
    let Value::Map(object) = object else {
        return Err(Refusal::Malformed);
    };
    let fmt = match text_get(&object, "fmt") {
        Some(Value::Text(fmt)) => fmt.as_str(),
        _ => return Err(Refusal::Malformed),
    };
    let auth_bytes = bytes(text_get(&object, "authData")).ok_or(Refusal::Malformed)?;
    let statement = match text_get(&object, "attStmt") {
        Some(Value::Map(statement)) => statement.as_slice(),
        _ => return Err(Refusal::Malformed),
    };
    let auth = parse_auth_data(auth_bytes)?;
    check_rp_and_flags(rp, &auth)?;
    let (credential_id, aaguid, key) = auth.attested.clone().ok_or(Refusal::NoCredentialData)?;
    let attestation = match fmt {
        "none" if statement.is_empty() => "none",
        "packed" if text_get(statement, "x5c").is_none() => {
            // Self attestation: signed by the credential's own key, with its algorithm.
            let alg = integer(text_get(statement, "alg")).ok_or(Refusal::Malformed)?;
            let sig = bytes(text_get(statement, "sig")).ok_or(Refusal::Malformed)?;
            if alg != i128::from(key.alg) {
                return Err(Refusal::UnsupportedAttestation);
            }
            let mut signed = auth_bytes.to_vec();
            signed.extend_from_slice(digest(&SHA256, client_data_json).as_ref());
            if !key.verify(&signed, sig) {
                return Err(Refusal::BadSignature);
            }
            "packed"
        }
        _ => return Err(Refusal::UnsupportedAttestation),
    };
    Ok(Registered {
        credential_id,
        key,
        counter: auth.counter,
        aaguid,
        attestation,
        user_verified: auth.flags & FLAG_UV != 0,
        backup: BackupState::of(auth.flags),
    })
}

/// Authentication (§7.2) against a registered key; the counter is left to the store.
pub fn verify_assertion(
    rp: &RelyingParty,
    challenge: &[u8],
    client_data_json: &[u8],
    authenticator_data: &[u8],
    signature: &[u8],
    key: &CredentialKey,
) -> Result<Asserted, Refusal> {
    check_client_data(rp, "webauthn.get", challenge, client_data_json)?;
    let auth = parse_auth_data(authenticator_data)?;
    check_rp_and_flags(rp, &auth)?;
    let mut signed = authenticator_data.to_vec();
    signed.extend_from_slice(digest(&SHA256, client_data_json).as_ref());
    if !key.verify(&signed, signature) {
        return Err(Refusal::BadSignature);
    }
    Ok(Asserted {
        counter: auth.counter,
        user_verified: auth.flags & FLAG_UV != 0,
        backup: BackupState::of(auth.flags),
    })
}

/// Whether a presented counter may follow the stored one (§7.2 step 21): when either is
/// non-zero the new one must be greater, else the authenticator may be cloned.
pub fn counter_advances(stored: u32, presented: u32) -> bool {
    (stored == 0 && presented == 0) || presented > stored
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_must_grow_unless_the_authenticator_keeps_none() {
        assert!(counter_advances(0, 0));
        assert!(counter_advances(0, 1));
        assert!(counter_advances(5, 6));
        assert!(!counter_advances(5, 5));
        assert!(!counter_advances(5, 4));
        assert!(!counter_advances(5, 0));
    }

    #[test]
    fn cose_keys_of_other_algorithms_are_refused() {
        let rs256 = Value::Map(vec![
            (Value::Integer(1.into()), Value::Integer(3.into())),
            (Value::Integer(3.into()), Value::Integer((-257).into())),
        ]);
        assert_eq!(parse_cose_key(&rs256), Err(Refusal::UnsupportedAlgorithm));
    }

    #[test]
    fn short_authenticator_data_is_malformed() {
        assert!(matches!(parse_auth_data(&[0; 36]), Err(Refusal::Malformed)));
    }
}
