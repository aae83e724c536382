//! Delivery receipts: each vendor's status callback parsed into one `Receipt` shape, and the
//! signature checks that say a callback really came from the vendor. Pure functions: the HTTP
//! routes that receive callbacks and the store that keeps them live elsewhere.

use ring::hmac;
use serde::Deserialize;

/// What a vendor reported about one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The vendor's id, as `Accepted::provider_message_id` held it.
    pub provider_message_id: String,
    pub status: DeliveryStatus,
    /// The vendor's error code and name, when it gave one.
    pub error: Option<String>,
    /// Our own message id, when the vendor echoes the reference we sent (Vonage `client-ref`,
    /// MessageBird `reference`, WhatsApp `biz_opaque_callback_data`).
    pub reference: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryStatus {
    /// Accepted by the vendor, not yet handed to a network.
    Queued,
    /// Handed to the network (or buffered there); the outcome is not known yet.
    Sent,
    Delivered,
    /// The network gave up (expired, unreachable handset).
    Undelivered,
    /// Refused or failed before or at the network.
    Failed,
    /// WhatsApp only: the recipient opened it.
    Read,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Queued => "queued",
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Undelivered => "undelivered",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Read => "read",
        }
    }

    /// No later receipt is expected to change a final status (except `Delivered` → `Read`).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            DeliveryStatus::Delivered
                | DeliveryStatus::Undelivered
                | DeliveryStatus::Failed
                | DeliveryStatus::Read
        )
    }
}

/// Decodes an `application/x-www-form-urlencoded` body or a query string (without its `?`).
/// Pairs keep their order; invalid percent-escapes are kept literally.
pub fn parse_form(input: &[u8]) -> Vec<(String, String)> {
    input
        .split(|&b| b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let mut halves = pair.splitn(2, |&b| b == b'=');
            let key = halves.next().unwrap_or_default();
            let value = halves.next().unwrap_or_default();
            (decode_component(key), decode_component(value))
        })
        .collect()
}

fn decode_component(input: &[u8]) -> String {
    let mut out = Vec::with_capacity(input.len());
    let mut index = 0;
    while index < input.len() {
        match input[index] {
            b'+' => out.push(b' '),
            b'%' if index + 2 < input.len() => {
                match (hex_value(input[index + 1]), hex_value(input[index + 2])) {
                    (Some(high), Some(low)) => {
                        out.push(high << 4 | low);
                        index += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

fn field<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
        .filter(|value| !value.is_empty())
}

/// A provider's optional text, an empty one as none.
fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|value| !value.is_empty())
}

fn looks_like_json(body: &[u8]) -> bool {
    body.iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b == b'{' || b == b'[')
}

// ---------------------------------------------------------------------------------------------
// Twilio

/// A Twilio status callback (form-encoded POST): `MessageSid`, `MessageStatus`, `ErrorCode`.
pub fn parse_twilio(form_body: &[u8]) -> Result<Vec<Receipt>, String> {
    let pairs = parse_form(form_body);
    let sid = field(&pairs, "MessageSid")
        .or_else(|| field(&pairs, "SmsSid"))
        .ok_or("no MessageSid")?;
    let status = field(&pairs, "MessageStatus")
        .or_else(|| field(&pairs, "SmsStatus"))
        .ok_or("no MessageStatus")?;
    let status = match status {
        "accepted" | "queued" | "scheduled" => DeliveryStatus::Queued,
        "sending" | "sent" => DeliveryStatus::Sent,
        "delivered" => DeliveryStatus::Delivered,
        "undelivered" => DeliveryStatus::Undelivered,
        "failed" | "canceled" => DeliveryStatus::Failed,
        "read" => DeliveryStatus::Read,
        other => return Err(format!("unknown MessageStatus '{}'", printable(other))),
    };
    Ok(vec![Receipt {
        provider_message_id: sid.to_owned(),
        status,
        error: field(&pairs, "ErrorCode").map(|code| format!("twilio error {code}")),
        reference: None,
    }])
}

/// Checks `X-Twilio-Signature`: base64 of HMAC-SHA1, keyed with the Auth Token, over the full
/// URL Twilio called followed by every POST parameter as name then value, sorted by name.
/// `url` must be exactly what Twilio was given (scheme, host, path, query); a proxy that
/// rewrites it breaks the check. Like Twilio's own libraries, the URL is also tried with and
/// without the default port, which some setups add or drop.
pub fn verify_twilio_signature(
    url: &str,
    params: &[(String, String)],
    header: &str,
    auth_token: &str,
) -> bool {
    let Ok(signature) = data_encoding::BASE64.decode(header.trim().as_bytes()) else {
        return false;
    };
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, auth_token.as_bytes());
    let check = |url: &str| {
        let mut signed = url.as_bytes().to_vec();
        for (name, value) in &sorted {
            signed.extend_from_slice(name.as_bytes());
            signed.extend_from_slice(value.as_bytes());
        }
        hmac::verify(&key, &signed, &signature).is_ok()
    };
    check(url) || port_variant(url).is_some_and(|other| check(&other))
}

/// The same URL with its default port added when it has none, or removed when it has it.
fn port_variant(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let default = match scheme.to_ascii_lowercase().as_str() {
        "https" => "443",
        "http" => "80",
        _ => return None,
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((userinfo, hostport)) => (format!("{userinfo}@"), hostport),
        None => (String::new(), authority),
    };
    let host_end = if hostport.starts_with('[') {
        hostport.find(']').map_or(hostport.len(), |i| i + 1)
    } else {
        hostport.find(':').unwrap_or(hostport.len())
    };
    let (host, port) = hostport.split_at(host_end);
    let hostport = match port.strip_prefix(':') {
        Some(port) if port == default => host.to_owned(),
        Some(_) => return None,
        None => format!("{host}:{default}"),
    };
    Some(format!("{scheme}://{userinfo}{hostport}{tail}"))
}

// ---------------------------------------------------------------------------------------------
// Vonage

#[derive(Deserialize)]
struct VonageDlr {
    #[serde(rename = "messageId")]
    message_id: Option<String>,
    status: Option<String>,
    #[serde(rename = "err-code")]
    err_code: Option<String>,
    #[serde(rename = "client-ref")]
    client_ref: Option<String>,
}

/// A Vonage SMS delivery receipt, as JSON (POST-JSON webhooks) or as form / query fields
/// (GET and POST webhooks): `messageId`, `status`, `err-code`, `client-ref`.
pub fn parse_vonage(body: &[u8]) -> Result<Vec<Receipt>, String> {
    let dlr: VonageDlr = if looks_like_json(body) {
        serde_json::from_slice(body).map_err(|error| format!("not a Vonage DLR: {error}"))?
    } else {
        let pairs = parse_form(body);
        let get = |name: &str| field(&pairs, name).map(str::to_owned);
        VonageDlr {
            message_id: get("messageId"),
            status: get("status"),
            err_code: get("err-code"),
            client_ref: get("client-ref"),
        }
    };
    let id = non_empty(dlr.message_id).ok_or("no messageId")?;
    let status = match dlr.status.as_deref().ok_or("no status")? {
        "delivered" => DeliveryStatus::Delivered,
        // Accepted and buffered by the carrier, or no outcome known: handed over, still open.
        "accepted" | "buffered" | "unknown" => DeliveryStatus::Sent,
        "expired" => DeliveryStatus::Undelivered,
        "failed" | "rejected" => DeliveryStatus::Failed,
        other => return Err(format!("unknown status '{}'", printable(other))),
    };
    let error = dlr
        .err_code
        .filter(|code| !code.is_empty() && code != "0")
        .map(|code| format!("vonage err-code {code}: {}", vonage_error_name(&code)));
    Ok(vec![Receipt {
        provider_message_id: id,
        status,
        error,
        reference: non_empty(dlr.client_ref),
    }])
}

/// Vonage's DLR error codes (SMS API delivery receipt reference).
fn vonage_error_name(code: &str) -> &'static str {
    match code {
        "1" => "unknown",
        "2" => "absent subscriber, temporary",
        "3" => "absent subscriber, permanent",
        "4" => "call barred by user",
        "5" => "portability error",
        "6" => "anti-spam rejection",
        "7" => "handset busy",
        "8" => "network error",
        "9" => "illegal number",
        "10" => "illegal message",
        "11" => "unroutable",
        "12" => "destination unreachable",
        "13" => "subscriber age restriction",
        "14" => "number blocked by carrier",
        "15" => "prepaid insufficient funds",
        "16" => "gateway quota exceeded",
        "50" => "entity filter",
        "51" => "header filter",
        "52" => "content filter",
        "53" => "consent filter",
        "54" => "regulation error",
        "99" => "general error",
        _ => "other",
    }
}

// ---------------------------------------------------------------------------------------------
// Infobip

#[derive(Deserialize)]
struct InfobipReports {
    results: Vec<InfobipReport>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InfobipReport {
    message_id: Option<String>,
    status: Option<InfobipStatus>,
    error: Option<InfobipError>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InfobipStatus {
    group_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InfobipError {
    id: Option<i64>,
    name: Option<String>,
}

/// Infobip delivery reports (JSON): `results[{messageId, status{groupName}, error{id, name}}]`,
/// one or many per request.
pub fn parse_infobip(body: &[u8]) -> Result<Vec<Receipt>, String> {
    let reports: InfobipReports = serde_json::from_slice(body)
        .map_err(|error| format!("not an Infobip delivery report: {error}"))?;
    reports
        .results
        .into_iter()
        .map(|report| {
            let id = non_empty(report.message_id).ok_or("a result has no messageId")?;
            let group = report.status.and_then(|status| status.group_name);
            let status = match group.as_deref().ok_or("a result has no status.groupName")? {
                "PENDING" => DeliveryStatus::Sent,
                "DELIVERED" => DeliveryStatus::Delivered,
                "UNDELIVERABLE" | "EXPIRED" => DeliveryStatus::Undelivered,
                "REJECTED" => DeliveryStatus::Failed,
                other => return Err(format!("unknown status group '{}'", printable(other))),
            };
            let error = report
                .error
                .filter(|error| error.id.unwrap_or(0) != 0)
                .map(|error| {
                    format!(
                        "infobip error {}: {}",
                        error.id.unwrap_or(0),
                        error.name.unwrap_or_default()
                    )
                });
            Ok(Receipt {
                provider_message_id: id,
                status,
                error,
                reference: None,
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// MessageBird

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessagebirdReport {
    id: Option<String>,
    status: Option<String>,
    reference: Option<String>,
    status_error_code: Option<serde_json::Value>,
}

/// A MessageBird status report: query string (its `reportUrl` is called with GET) or form or
/// JSON body: `id`, `status`, `reference`, `statusErrorCode`.
pub fn parse_messagebird(body_or_query: &[u8]) -> Result<Vec<Receipt>, String> {
    let report: MessagebirdReport = if looks_like_json(body_or_query) {
        serde_json::from_slice(body_or_query)
            .map_err(|error| format!("not a MessageBird status report: {error}"))?
    } else {
        let pairs = parse_form(body_or_query.strip_prefix(b"?").unwrap_or(body_or_query));
        let get = |name: &str| field(&pairs, name).map(str::to_owned);
        MessagebirdReport {
            id: get("id"),
            status: get("status"),
            reference: get("reference"),
            status_error_code: get("statusErrorCode").map(serde_json::Value::String),
        }
    };
    let id = non_empty(report.id).ok_or("no id")?;
    let status = match report.status.as_deref().ok_or("no status")? {
        "scheduled" => DeliveryStatus::Queued,
        "sent" | "buffered" => DeliveryStatus::Sent,
        "delivered" => DeliveryStatus::Delivered,
        "expired" => DeliveryStatus::Undelivered,
        "delivery_failed" => DeliveryStatus::Failed,
        other => return Err(format!("unknown status '{}'", printable(other))),
    };
    let error = report.status_error_code.and_then(|code| match code {
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::String(s) if !s.is_empty() => Some(s),
        _ => None,
    });
    Ok(vec![Receipt {
        provider_message_id: id,
        status,
        error: error.map(|code| format!("messagebird statusErrorCode {code}")),
        reference: non_empty(report.reference),
    }])
}

// ---------------------------------------------------------------------------------------------
// WhatsApp

#[derive(Deserialize)]
struct MetaWebhook {
    #[serde(default)]
    entry: Vec<MetaEntry>,
}

#[derive(Deserialize)]
struct MetaEntry {
    #[serde(default)]
    changes: Vec<MetaChange>,
}

#[derive(Deserialize)]
struct MetaChange {
    value: Option<MetaValue>,
}

#[derive(Deserialize)]
struct MetaValue {
    #[serde(default)]
    statuses: Vec<MetaStatus>,
}

#[derive(Deserialize)]
struct MetaStatus {
    id: Option<String>,
    status: Option<String>,
    biz_opaque_callback_data: Option<String>,
    #[serde(default)]
    errors: Vec<MetaError>,
}

#[derive(Deserialize)]
struct MetaError {
    code: Option<i64>,
    title: Option<String>,
}

/// A WhatsApp Cloud API webhook: every `entry[].changes[].value.statuses[]` becomes a receipt.
/// Deliveries without statuses (incoming messages, other fields) give an empty list, and
/// statuses that say nothing about delivery (`deleted`, `warning`) are skipped.
pub fn parse_whatsapp(body: &[u8]) -> Result<Vec<Receipt>, String> {
    let webhook: MetaWebhook =
        serde_json::from_slice(body).map_err(|error| format!("not a WhatsApp webhook: {error}"))?;
    let mut receipts = Vec::new();
    for status in webhook
        .entry
        .into_iter()
        .flat_map(|entry| entry.changes)
        .filter_map(|change| change.value)
        .flat_map(|value| value.statuses)
    {
        let id = non_empty(status.id).ok_or("a status has no id")?;
        let delivery = match status.status.as_deref().ok_or("a status has no status")? {
            "sent" => DeliveryStatus::Sent,
            "delivered" => DeliveryStatus::Delivered,
            "read" => DeliveryStatus::Read,
            "failed" => DeliveryStatus::Failed,
            _ => continue,
        };
        let error = status.errors.into_iter().next().map(|error| {
            format!(
                "whatsapp error {}: {}",
                error.code.unwrap_or(0),
                error.title.unwrap_or_default()
            )
        });
        receipts.push(Receipt {
            provider_message_id: id,
            status: delivery,
            error,
            reference: non_empty(status.biz_opaque_callback_data),
        });
    }
    Ok(receipts)
}

/// Checks `X-Hub-Signature-256: sha256=<hex>`: HMAC-SHA256 of the raw body, keyed with the
/// Meta app secret. The body must be the bytes as received, before any JSON parsing.
pub fn verify_meta_signature(body: &[u8], header: &str, app_secret: &str) -> bool {
    let Some(hex) = header.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Ok(signature) = data_encoding::HEXLOWER_PERMISSIVE.decode(hex.as_bytes()) else {
        return false;
    };
    let key = hmac::Key::new(hmac::HMAC_SHA256, app_secret.as_bytes());
    hmac::verify(&key, body, &signature).is_ok()
}

/// Vendor values quoted in errors are cut short and stripped of control characters: they come
/// from the network and end up in logs.
fn printable(value: &str) -> String {
    value.chars().filter(|c| !c.is_control()).take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// Twilio's documented example (docs/usage/security and twilio-php's RequestValidator
    /// docs): Auth Token 12345, this URL and these parameters.
    #[test]
    fn twilio_signature_matches_the_documented_example() {
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        let params = pairs(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675309"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("To", "+18005551212"),
        ]);
        assert!(verify_twilio_signature(
            url,
            &params,
            "RSOYDt4T1cUTdK1PDd93/VVr8B8=",
            "12345"
        ));
        assert!(!verify_twilio_signature(
            url,
            &params,
            "RSOYDt4T1cUTdK1PDd93/VVr8B8=",
            "12346"
        ));
        let mut tampered = params.clone();
        tampered[2].1 = "1235".into();
        assert!(!verify_twilio_signature(
            url,
            &tampered,
            "RSOYDt4T1cUTdK1PDd93/VVr8B8=",
            "12345"
        ));
        assert!(!verify_twilio_signature(
            url,
            &params,
            "not base64!",
            "12345"
        ));
    }

    #[test]
    fn form_decoding_handles_plus_and_percent_escapes() {
        assert_eq!(
            parse_form(b"To=%2B4915112345678&Body=Hi+there%21&Bad=%zz&Empty="),
            pairs(&[
                ("To", "+4915112345678"),
                ("Body", "Hi there!"),
                ("Bad", "%zz"),
                ("Empty", "")
            ])
        );
    }

    #[test]
    fn port_variants_add_or_drop_the_default_port() {
        assert_eq!(
            port_variant("https://example.com/a?b=1").as_deref(),
            Some("https://example.com:443/a?b=1")
        );
        assert_eq!(
            port_variant("https://example.com:443/a").as_deref(),
            Some("https://example.com/a")
        );
        assert_eq!(port_variant("https://example.com:8443/a"), None);
    }

    #[test]
    fn meta_signature_is_hmac_sha256_of_the_raw_body() {
        let body = br#"{"object":"whatsapp_business_account"}"#;
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"app-secret");
        let hex = data_encoding::HEXLOWER.encode(hmac::sign(&key, body).as_ref());
        assert!(verify_meta_signature(
            body,
            &format!("sha256={hex}"),
            "app-secret"
        ));
        assert!(verify_meta_signature(
            body,
            &format!("sha256={}", hex.to_uppercase()),
            "app-secret"
        ));
        assert!(!verify_meta_signature(
            body,
            &format!("sha256={hex}"),
            "other"
        ));
        assert!(!verify_meta_signature(
            b"{}",
            &format!("sha256={hex}"),
            "app-secret"
        ));
        assert!(!verify_meta_signature(body, &hex, "app-secret"));
    }
}
