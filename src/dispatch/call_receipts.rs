//! Call status callbacks as receipts: Twilio's call status callback (form-encoded, `CallSid`,
//! `CallStatus`, signed with `X-Twilio-Signature` like the SMS receipts) and Vonage's Voice API
//! event webhook (JSON, `uuid`, `status`, signed with a JWT in `Authorization`: HS256 with the
//! account's signature secret, its `payload_hash` claim the SHA-256 of the body).
//!
//! A call delivers its code when it is answered: an answered call is `delivered`; a call that
//! rang out, was busy or rejected is `undelivered`; one that never reached the network (or was
//! canceled) is `failed`.

use ring::{digest, hmac};
use serde::Deserialize;

use super::receipts::{DeliveryStatus, Receipt};

/// Whether a Twilio callback's form fields are a call's (a `CallSid`, no `MessageSid`).
pub fn is_twilio_call(pairs: &[(String, String)]) -> bool {
    let has = |name: &str| {
        pairs
            .iter()
            .any(|(key, value)| key == name && !value.is_empty())
    };
    has("CallSid") && !has("MessageSid")
}

/// A Twilio call status callback, from its form fields.
pub fn parse_twilio_call(pairs: &[(String, String)]) -> Result<Vec<Receipt>, String> {
    let field = |name: &str| {
        pairs
            .iter()
            .find(|(key, value)| key == name && !value.is_empty())
            .map(|(_, value)| value.as_str())
    };
    let sid = field("CallSid").ok_or("no CallSid")?;
    let status = match field("CallStatus").ok_or("no CallStatus")? {
        "queued" | "initiated" => DeliveryStatus::Queued,
        "ringing" => DeliveryStatus::Sent,
        // Answered: the code is being read (in-progress), or was (completed).
        "in-progress" | "completed" => DeliveryStatus::Delivered,
        "busy" | "no-answer" => DeliveryStatus::Undelivered,
        "failed" | "canceled" => DeliveryStatus::Failed,
        other => return Err(format!("unknown CallStatus '{}'", printable(other))),
    };
    let error = field("ErrorCode")
        .map(|code| format!("twilio error {}", printable(code)))
        .or_else(|| {
            field("SipResponseCode")
                .filter(|_| status != DeliveryStatus::Delivered)
                .map(|code| format!("twilio sip {}", printable(code)))
        });
    Ok(vec![Receipt {
        provider_message_id: sid.to_owned(),
        status,
        error,
        reference: None,
    }])
}

#[derive(Deserialize)]
struct VonageEvent {
    uuid: Option<String>,
    status: Option<String>,
    detail: Option<String>,
}

/// Whether a Vonage webhook body is a Voice API call event (a `uuid`, no SMS `messageId`).
pub fn is_vonage_call_event(body: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Shape {
        uuid: Option<serde_json::Value>,
        #[serde(rename = "messageId")]
        message_id: Option<serde_json::Value>,
    }
    serde_json::from_slice::<Shape>(body)
        .is_ok_and(|shape| shape.uuid.is_some() && shape.message_id.is_none())
}

/// A Vonage Voice API event. Events that say nothing about the call's fate (`human`, `input`,
/// `record`, `transfer`, `disconnected`) give no receipt.
pub fn parse_vonage_call(body: &[u8]) -> Result<Vec<Receipt>, String> {
    let event: VonageEvent = serde_json::from_slice(body)
        .map_err(|error| format!("not a Vonage call event: {error}"))?;
    let uuid = event
        .uuid
        .filter(|uuid| !uuid.is_empty())
        .ok_or("no uuid")?;
    let status = match event.status.as_deref().unwrap_or("") {
        "started" => DeliveryStatus::Queued,
        "ringing" => DeliveryStatus::Sent,
        "answered" | "machine" | "completed" => DeliveryStatus::Delivered,
        "busy" | "timeout" | "unanswered" | "rejected" => DeliveryStatus::Undelivered,
        "failed" | "cancelled" => DeliveryStatus::Failed,
        _ => return Ok(Vec::new()),
    };
    let error = event
        .detail
        .filter(|detail| !detail.is_empty() && status != DeliveryStatus::Delivered)
        .map(|detail| format!("vonage {}", printable(&detail)));
    Ok(vec![Receipt {
        provider_message_id: uuid,
        status,
        error,
        reference: None,
    }])
}

#[derive(Deserialize)]
struct SignedClaims {
    iat: Option<u64>,
    payload_hash: Option<String>,
}

/// How old a signed event may be (its `iat`), and how far in the future, in seconds.
pub const VONAGE_SIGNATURE_MAX_AGE_SECS: u64 = 300;

/// Checks a Vonage signed webhook: `Authorization: Bearer <JWT>`, HS256 keyed with the
/// signature secret, issued within five minutes of `now_secs`, and, when it carries a
/// `payload_hash`, that hash equal to the SHA-256 (hex) of the body as received.
pub fn verify_vonage_signature(
    authorization: &str,
    body: &[u8],
    signature_secret: &[u8],
    now_secs: u64,
) -> bool {
    let Some(token) = authorization.trim().strip_prefix("Bearer ") else {
        return false;
    };
    let mut parts = token.trim().split('.');
    let (Some(header), Some(claims), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let decode = |part: &str| data_encoding::BASE64URL_NOPAD.decode(part.as_bytes()).ok();
    let (Some(header_json), Some(claims_json), Some(signature)) =
        (decode(header), decode(claims), decode(signature))
    else {
        return false;
    };
    let algorithm_ok = serde_json::from_slice::<serde_json::Value>(&header_json)
        .is_ok_and(|header| header["alg"] == "HS256");
    let key = hmac::Key::new(hmac::HMAC_SHA256, signature_secret);
    let signing_input = &token.trim()[..header.len() + 1 + claims.len()];
    if !algorithm_ok || hmac::verify(&key, signing_input.as_bytes(), &signature).is_err() {
        return false;
    }
    let Ok(claims) = serde_json::from_slice::<SignedClaims>(&claims_json) else {
        return false;
    };
    let fresh = claims.iat.is_some_and(|iat| {
        iat <= now_secs + VONAGE_SIGNATURE_MAX_AGE_SECS
            && now_secs <= iat + VONAGE_SIGNATURE_MAX_AGE_SECS
    });
    let payload_ok = claims.payload_hash.is_none_or(|hash| {
        let digest = digest::digest(&digest::SHA256, body);
        hash.eq_ignore_ascii_case(&data_encoding::HEXLOWER.encode(digest.as_ref()))
    });
    fresh && payload_ok
}

fn printable(value: &str) -> String {
    value.chars().filter(|c| !c.is_control()).take(60).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use data_encoding::{BASE64URL_NOPAD, HEXLOWER};

    fn signed(secret: &[u8], claims: serde_json::Value) -> String {
        let header = BASE64URL_NOPAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let claims = BASE64URL_NOPAD.encode(claims.to_string().as_bytes());
        let input = format!("{header}.{claims}");
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), input.as_bytes());
        format!("Bearer {input}.{}", BASE64URL_NOPAD.encode(tag.as_ref()))
    }

    #[test]
    fn a_vonage_event_signature_holds_only_for_its_secret_body_and_time() {
        let body = br#"{"uuid":"63f61863-4a51-4f6b-86e1-46edebcf9356","status":"answered"}"#;
        let hash = HEXLOWER.encode(digest::digest(&digest::SHA256, body).as_ref());
        let now = 1_780_000_000;
        let header = signed(
            b"sig-secret",
            serde_json::json!({"iat": now, "payload_hash": hash, "api_key": "abc"}),
        );
        assert!(verify_vonage_signature(
            &header,
            body,
            b"sig-secret",
            now + 10
        ));
        assert!(!verify_vonage_signature(&header, body, b"other", now));
        assert!(!verify_vonage_signature(&header, b"{}", b"sig-secret", now));
        assert!(!verify_vonage_signature(
            &header,
            body,
            b"sig-secret",
            now + 3600
        ));
        assert!(!verify_vonage_signature(
            "Bearer a.b",
            body,
            b"sig-secret",
            now
        ));
        let unsigned = header.rsplit_once('.').unwrap().0.to_owned() + ".";
        assert!(!verify_vonage_signature(
            &unsigned,
            body,
            b"sig-secret",
            now
        ));
    }

    #[test]
    fn call_statuses_map_to_delivery_outcomes() {
        let twilio = |status: &str| {
            let pairs = vec![
                ("CallSid".to_owned(), "CA0123".to_owned()),
                ("CallStatus".to_owned(), status.to_owned()),
            ];
            parse_twilio_call(&pairs).unwrap()[0].status
        };
        assert_eq!(twilio("ringing"), DeliveryStatus::Sent);
        assert_eq!(twilio("in-progress"), DeliveryStatus::Delivered);
        assert_eq!(twilio("completed"), DeliveryStatus::Delivered);
        assert_eq!(twilio("no-answer"), DeliveryStatus::Undelivered);
        assert_eq!(twilio("failed"), DeliveryStatus::Failed);

        let vonage = |status: &str| {
            let body = format!(r#"{{"uuid":"u-1","status":"{status}"}}"#);
            parse_vonage_call(body.as_bytes()).unwrap()
        };
        assert_eq!(vonage("answered")[0].status, DeliveryStatus::Delivered);
        assert_eq!(vonage("unanswered")[0].status, DeliveryStatus::Undelivered);
        assert_eq!(vonage("cancelled")[0].status, DeliveryStatus::Failed);
        assert!(vonage("human").is_empty());
        assert!(is_vonage_call_event(
            br#"{"uuid":"u-1","status":"started"}"#
        ));
        assert!(!is_vonage_call_event(
            br#"{"messageId":"m","status":"delivered"}"#
        ));
    }
}
