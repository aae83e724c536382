//! SendGrid's Event Webhook: a JSON array of events, each naming the message by
//! `sg_message_id` (the `X-Message-Id` of the send, then `.` and SendGrid's filter suffix) and
//! echoing our custom arguments. Signed (when the operator turns signing on) with ECDSA P-256
//! over SHA-256: `X-Twilio-Email-Event-Webhook-Signature` is the base64 ASN.1 DER signature of
//! the `X-Twilio-Email-Event-Webhook-Timestamp` value followed by the raw body, checked with the
//! verification key SendGrid shows (base64 DER SubjectPublicKeyInfo).
//!
//! Delivery events become receipts: `processed` queued, `deferred` sent (the receiving server
//! asked to try later), `delivered`, `bounce` undelivered, `dropped` failed. Engagement events
//! (open, click, spam report, unsubscribe) say nothing about delivery and are skipped.

use data_encoding::BASE64;
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1};
use serde::Deserialize;

use super::providers::sendgrid::MESSAGE_ID_ARG;
use super::receipts::{DeliveryStatus, Receipt};

/// The DER header of a P-256 SubjectPublicKeyInfo (`id-ecPublicKey`, `prime256v1`, a 66-byte
/// bit string); the 65 bytes that follow are the uncompressed point ring verifies with.
const P256_SPKI_HEADER: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// The uncompressed P-256 point of a verification key as SendGrid shows it (base64 of the
/// DER SubjectPublicKeyInfo); `None` for anything else.
pub fn public_key(verification_key: &str) -> Option<Vec<u8>> {
    let der = BASE64.decode(verification_key.trim().as_bytes()).ok()?;
    let point = der.strip_prefix(&P256_SPKI_HEADER[..])?;
    (point.len() == 65 && point[0] == 0x04).then(|| point.to_vec())
}

/// Whether `signature` (the header's base64) signs `timestamp` then `body` under the
/// verification key.
pub fn verify_signature(
    verification_key: &str,
    timestamp: &str,
    body: &[u8],
    signature: &str,
) -> bool {
    let (Some(point), Ok(signature)) = (
        public_key(verification_key),
        BASE64.decode(signature.trim().as_bytes()),
    ) else {
        return false;
    };
    let mut signed = Vec::with_capacity(timestamp.len() + body.len());
    signed.extend_from_slice(timestamp.as_bytes());
    signed.extend_from_slice(body);
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, point)
        .verify(&signed, &signature)
        .is_ok()
}

#[derive(Deserialize)]
struct Event {
    #[serde(default)]
    event: String,
    #[serde(default)]
    sg_message_id: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default, rename = "type")]
    bounce_type: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    otpgate_message_id: Option<String>,
}

/// The receipts of one Event Webhook delivery; events of other kinds, or without a message
/// id, are skipped. A body that is not an array of events is refused.
pub fn parse(body: &[u8]) -> Result<Vec<Receipt>, String> {
    let events: Vec<Event> =
        serde_json::from_slice(body).map_err(|_| "not a JSON array of SendGrid events")?;
    let _ = MESSAGE_ID_ARG; // the field `otpgate_message_id` below is that argument
    Ok(events
        .into_iter()
        .filter_map(|event| {
            let status = match event.event.as_str() {
                "processed" => DeliveryStatus::Queued,
                "deferred" => DeliveryStatus::Sent,
                "delivered" => DeliveryStatus::Delivered,
                "bounce" => DeliveryStatus::Undelivered,
                "dropped" => DeliveryStatus::Failed,
                _ => return None,
            };
            let id = event.sg_message_id?;
            let id = id.split('.').next().unwrap_or_default().to_owned();
            if !super::providers::valid_vendor_id(&id) {
                return None;
            }
            let error = match status {
                DeliveryStatus::Undelivered | DeliveryStatus::Failed => Some(error_text(
                    &event.event,
                    event.bounce_type.as_deref(),
                    event.status.as_deref(),
                    event.reason.as_deref(),
                )),
                _ => None,
            };
            Some(Receipt {
                provider_message_id: id,
                status,
                error,
                reference: event.otpgate_message_id,
            })
        })
        .collect())
}

/// `sendgrid bounce (blocked) 5.1.1`: the event, its kind and SMTP status; the reason text is
/// left out (it quotes the receiving server, which may quote the address).
fn error_text(
    event: &str,
    kind: Option<&str>,
    status: Option<&str>,
    _reason: Option<&str>,
) -> String {
    let mut text = format!("sendgrid {event}");
    if let Some(kind) = kind.filter(|kind| kind.bytes().all(|b| b.is_ascii_alphanumeric())) {
        text.push_str(&format!(" ({kind})"));
    }
    if let Some(status) =
        status.filter(|s| s.len() <= 16 && s.bytes().all(|b| b.is_ascii_digit() || b == b'.'))
    {
        text.push_str(&format!(" {status}"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    // SendGrid's own test vector, from its libraries' Event Webhook tests.
    const KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEDr2LjtURuePQzplybdC+u4CwrqDqBaWjcMMsTbhdbcwHBcepxo7yAQGhHPTnlvFYPAZFceEu/1FwCM/QmGUhA==";
    const OTHER_KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEqTxd43gyp8IOEto2LdIfjRQrIbsd4SXZkLW6jDutdhXSJCWHw8REntlo7aNDthvj+y7GjUuFDb/R1NGe1OPzpA==";
    const SIGNATURE: &str = "MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6BpSzoQsbVRamr2nlxFDWYNH2j/0=";
    const TIMESTAMP: &str = "1588788367";
    const PAYLOAD: &str =
        r#"{"category":"example_payload","event":"test_event","message_id":"message_id"}"#;

    #[test]
    fn sendgrids_own_test_vector_verifies() {
        assert!(verify_signature(
            KEY,
            TIMESTAMP,
            PAYLOAD.as_bytes(),
            SIGNATURE
        ));
    }

    #[test]
    fn another_key_payload_timestamp_or_signature_does_not_verify() {
        assert!(!verify_signature(
            OTHER_KEY,
            TIMESTAMP,
            PAYLOAD.as_bytes(),
            SIGNATURE
        ));
        assert!(!verify_signature(KEY, TIMESTAMP, b"payload", SIGNATURE));
        assert!(!verify_signature(
            KEY,
            "1588788368",
            PAYLOAD.as_bytes(),
            SIGNATURE
        ));
        let tampered = SIGNATURE.replace("2j/0=", "3j/0=");
        assert!(!verify_signature(
            KEY,
            TIMESTAMP,
            PAYLOAD.as_bytes(),
            &tampered
        ));
        assert!(!verify_signature(
            "not base64",
            TIMESTAMP,
            PAYLOAD.as_bytes(),
            SIGNATURE
        ));
    }

    #[test]
    fn delivery_events_become_receipts_and_engagement_is_skipped() {
        let body = br#"[
            {"email":"a@example.com","event":"processed","sg_message_id":"abc123.filterdrecv-1","otpgate_message_id":"MS1"},
            {"email":"a@example.com","event":"delivered","sg_message_id":"abc123.filterdrecv-2","response":"250 OK"},
            {"email":"a@example.com","event":"open","sg_message_id":"abc123.x"},
            {"email":"b@example.com","event":"bounce","type":"blocked","status":"5.1.1","reason":"b@example.com unknown","sg_message_id":"def456.y"},
            {"email":"c@example.com","event":"dropped","reason":"Bounced Address","sg_message_id":"ghi789.z"},
            {"email":"d@example.com","event":"delivered"}
        ]"#;
        let receipts = parse(body).unwrap();
        let seen: Vec<(&str, DeliveryStatus)> = receipts
            .iter()
            .map(|r| (r.provider_message_id.as_str(), r.status))
            .collect();
        assert_eq!(
            seen,
            [
                ("abc123", DeliveryStatus::Queued),
                ("abc123", DeliveryStatus::Delivered),
                ("def456", DeliveryStatus::Undelivered),
                ("ghi789", DeliveryStatus::Failed),
            ]
        );
        assert_eq!(receipts[0].reference.as_deref(), Some("MS1"));
        assert_eq!(
            receipts[2].error.as_deref(),
            Some("sendgrid bounce (blocked) 5.1.1")
        );
        assert!(!receipts[2]
            .error
            .as_deref()
            .unwrap_or_default()
            .contains('@'));
        assert!(parse(b"{\"event\":\"delivered\"}").is_err());
    }
}
