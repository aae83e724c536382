//! Receipt parsers on real-shaped vendor callbacks, and the signature checks (good and
//! tampered).

use otpgate::dispatch::receipts::{
    parse_form, parse_infobip, parse_messagebird, parse_twilio, parse_vonage, parse_whatsapp,
    verify_meta_signature, verify_twilio_signature, DeliveryStatus, Receipt,
};
use ring::hmac;

fn receipt(
    id: &str,
    status: DeliveryStatus,
    error: Option<&str>,
    reference: Option<&str>,
) -> Receipt {
    Receipt {
        provider_message_id: id.to_owned(),
        status,
        error: error.map(str::to_owned),
        reference: reference.map(str::to_owned),
    }
}

/// A Twilio status callback body as Twilio posts it (form-encoded, fields in its order).
const TWILIO_CALLBACK: &str = "SmsSid=SM1f0e8ae6ade43cb3c0ce4525424e404f&SmsStatus=undelivered\
    &MessageStatus=undelivered&To=%2B4915112345678&MessagingServiceSid=MG0123456789abcdef0123456789abcdef\
    &MessageSid=SM1f0e8ae6ade43cb3c0ce4525424e404f&AccountSid=AC0123456789abcdef0123456789abcdef\
    &From=%2B15017122661&ApiVersion=2010-04-01&ErrorCode=30003";

#[test]
fn twilio_status_callback_parses_sid_status_and_error_code() {
    assert_eq!(
        parse_twilio(TWILIO_CALLBACK.as_bytes()),
        Ok(vec![receipt(
            "SM1f0e8ae6ade43cb3c0ce4525424e404f",
            DeliveryStatus::Undelivered,
            Some("twilio error 30003"),
            None
        )])
    );
    let delivered = "MessageSid=SM1&MessageStatus=delivered&AccountSid=AC1";
    assert_eq!(
        parse_twilio(delivered.as_bytes()).expect("parses")[0].status,
        DeliveryStatus::Delivered
    );
    assert!(parse_twilio(b"MessageStatus=sent").is_err());
    assert!(parse_twilio(b"MessageSid=SM1&MessageStatus=exploded").is_err());
}

fn twilio_signature(url: &str, params: &[(String, String)], token: &str) -> String {
    let mut sorted = params.to_vec();
    sorted.sort();
    let mut data = url.to_owned();
    for (key, value) in sorted {
        data.push_str(&key);
        data.push_str(&value);
    }
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, token.as_bytes());
    data_encoding::BASE64.encode(hmac::sign(&key, data.as_bytes()).as_ref())
}

#[test]
fn twilio_signature_accepts_a_good_callback_and_refuses_a_tampered_one() {
    let url = "https://otp.example.com/v1/receipts/twilio-main";
    let params = parse_form(TWILIO_CALLBACK.as_bytes());
    let signature = twilio_signature(url, &params, "auth-token");
    assert!(verify_twilio_signature(
        url,
        &params,
        &signature,
        "auth-token"
    ));

    let mut tampered = params.clone();
    let status = tampered
        .iter_mut()
        .find(|(key, _)| key == "MessageStatus")
        .expect("field");
    status.1 = "delivered".into();
    assert!(!verify_twilio_signature(
        url,
        &tampered,
        &signature,
        "auth-token"
    ));
    assert!(!verify_twilio_signature(
        url,
        &params,
        &signature,
        "other-token"
    ));
    assert!(!verify_twilio_signature(
        "https://evil.example.com/v1/receipts/twilio-main",
        &params,
        &signature,
        "auth-token"
    ));
    assert!(!verify_twilio_signature(url, &params, "", "auth-token"));
}

#[test]
fn twilio_signature_tolerates_the_default_port_as_twilio_libraries_do() {
    let params = parse_form(b"MessageSid=SM1&MessageStatus=sent");
    let signed_with_port = twilio_signature("https://otp.example.com:443/r", &params, "t");
    assert!(verify_twilio_signature(
        "https://otp.example.com/r",
        &params,
        &signed_with_port,
        "t"
    ));
}

#[test]
fn twilio_signature_matches_twilio_documented_example() {
    // twilio.com/docs/usage/security: Auth Token 12345 and these request values.
    let params: Vec<(String, String)> = [
        ("CallSid", "CA1234567890ABCDE"),
        ("Caller", "+14158675309"),
        ("Digits", "1234"),
        ("From", "+14158675309"),
        ("To", "+18005551212"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    assert!(verify_twilio_signature(
        "https://mycompany.com/myapp.php?foo=1&bar=2",
        &params,
        "RSOYDt4T1cUTdK1PDd93/VVr8B8=",
        "12345"
    ));
}

#[test]
fn vonage_dlr_parses_from_json_and_from_query_fields() {
    let json = br#"{
        "msisdn": "4915112345678",
        "to": "Acme",
        "network-code": "26203",
        "messageId": "0A0000000123ABCD1",
        "price": "0.03330000",
        "status": "delivered",
        "scts": "2001011400",
        "err-code": "0",
        "api-key": "abcd1234",
        "client-ref": "MS0123456789abcdef0123456789abcdef",
        "message-timestamp": "2020-01-01 12:00:00"
    }"#;
    assert_eq!(
        parse_vonage(json),
        Ok(vec![receipt(
            "0A0000000123ABCD1",
            DeliveryStatus::Delivered,
            None,
            Some("MS0123456789abcdef0123456789abcdef")
        )])
    );
    let query = b"msisdn=4915112345678&to=Acme&network-code=26203&messageId=0A0000000123ABCD1\
        &price=0.03330000&status=failed&scts=2001011400&err-code=6&api-key=abcd1234\
        &message-timestamp=2020-01-01+12%3A00%3A00";
    assert_eq!(
        parse_vonage(query),
        Ok(vec![receipt(
            "0A0000000123ABCD1",
            DeliveryStatus::Failed,
            Some("vonage err-code 6: anti-spam rejection"),
            None
        )])
    );
    let statuses = [
        ("expired", DeliveryStatus::Undelivered),
        ("rejected", DeliveryStatus::Failed),
        ("accepted", DeliveryStatus::Sent),
        ("buffered", DeliveryStatus::Sent),
        ("unknown", DeliveryStatus::Sent),
    ];
    for (status, expected) in statuses {
        let body = format!("messageId=X1&status={status}&err-code=0");
        assert_eq!(
            parse_vonage(body.as_bytes()).expect("parses")[0].status,
            expected
        );
    }
    assert!(parse_vonage(b"status=delivered").is_err());
}

#[test]
fn infobip_reports_parse_every_result() {
    let body = br#"{
      "results": [
        {
          "bulkId": "BULK-ID-123-xyz",
          "messageId": "MS0123456789abcdef0123456789abcdef",
          "to": "4915112345678",
          "sentAt": "2019-11-09T16:00:00.000+0000",
          "doneAt": "2019-11-09T16:00:00.000+0000",
          "smsCount": 1,
          "price": { "pricePerMessage": 0.01, "currency": "EUR" },
          "status": { "groupId": 3, "groupName": "DELIVERED", "id": 5, "name": "DELIVERED_TO_HANDSET", "description": "Message delivered to handset" },
          "error": { "groupId": 0, "groupName": "OK", "id": 0, "name": "NO_ERROR", "description": "No Error", "permanent": false }
        },
        {
          "bulkId": "BULK-ID-123-xyz",
          "messageId": "12db39c3-7822-4e72-a3ec-c87442c0ffc5",
          "to": "41793026727",
          "sentAt": "2019-11-09T17:00:00.000+0000",
          "doneAt": "2019-11-09T17:00:00.000+0000",
          "smsCount": 1,
          "status": { "groupId": 2, "groupName": "UNDELIVERABLE", "id": 9, "name": "UNDELIVERABLE_NOT_DELIVERED", "description": "Message sent not delivered" },
          "error": { "groupId": 1, "groupName": "HANDSET_ERRORS", "id": 27, "name": "EC_ABSENT_SUBSCRIBER", "description": "Absent Subscriber", "permanent": false }
        }
      ]
    }"#;
    assert_eq!(
        parse_infobip(body),
        Ok(vec![
            receipt(
                "MS0123456789abcdef0123456789abcdef",
                DeliveryStatus::Delivered,
                None,
                None
            ),
            receipt(
                "12db39c3-7822-4e72-a3ec-c87442c0ffc5",
                DeliveryStatus::Undelivered,
                Some("infobip error 27: EC_ABSENT_SUBSCRIBER"),
                None
            ),
        ])
    );
    assert!(
        parse_infobip(b"{\"results\": [{\"status\": {\"groupName\": \"DELIVERED\"}}]}").is_err()
    );
    assert!(parse_infobip(b"not json").is_err());
}

#[test]
fn messagebird_status_report_parses_from_its_query_string() {
    let query = b"id=e8077d803532c0b5937c639b60216938&reference=MS0123456789abcdef0123456789abcdef\
        &recipient=4915112345678&status=delivery_failed&statusDatetime=2024-05-03T14%3A27%3A02%2B00%3A00\
        &statusErrorCode=104&statusReason=unknown+subscriber";
    assert_eq!(
        parse_messagebird(query),
        Ok(vec![receipt(
            "e8077d803532c0b5937c639b60216938",
            DeliveryStatus::Failed,
            Some("messagebird statusErrorCode 104"),
            Some("MS0123456789abcdef0123456789abcdef")
        )])
    );
    let delivered = b"?id=e8077d80&recipient=4915112345678&status=delivered&statusDatetime=2024-05-03T14%3A27%3A02%2B00%3A00";
    assert_eq!(
        parse_messagebird(delivered).expect("parses")[0].status,
        DeliveryStatus::Delivered
    );
    assert!(parse_messagebird(b"id=x&status=teleported").is_err());
}

const WHATSAPP_WEBHOOK: &str = r#"{
  "object": "whatsapp_business_account",
  "entry": [{
    "id": "102290129340398",
    "changes": [{
      "value": {
        "messaging_product": "whatsapp",
        "metadata": { "display_phone_number": "15550783881", "phone_number_id": "106540352242922" },
        "statuses": [
          {
            "id": "wamid.HBgNNDkxNTExMjM0NTY3OBUCABEYEjQzRDYwQkI1NUQyRjYwQ0UzQQA=",
            "status": "delivered",
            "timestamp": "1750263773",
            "recipient_id": "4915112345678",
            "biz_opaque_callback_data": "MS0123456789abcdef0123456789abcdef",
            "pricing": { "billable": true, "pricing_model": "PMP", "category": "authentication", "type": "regular" }
          },
          {
            "id": "wamid.HBgNNDkxNTEyMzQ1Njc4ORUCABEYEjg4QzM4RkI1ODJBNDQ3RUU2MgA=",
            "status": "failed",
            "timestamp": "1750263774",
            "recipient_id": "4915123456789",
            "errors": [{
              "code": 131026,
              "title": "Message undeliverable",
              "message": "Message undeliverable",
              "error_data": { "details": "Message Undeliverable." }
            }]
          }
        ]
      },
      "field": "messages"
    }]
  }]
}"#;

#[test]
fn whatsapp_webhook_yields_every_status() {
    assert_eq!(
        parse_whatsapp(WHATSAPP_WEBHOOK.as_bytes()),
        Ok(vec![
            receipt(
                "wamid.HBgNNDkxNTExMjM0NTY3OBUCABEYEjQzRDYwQkI1NUQyRjYwQ0UzQQA=",
                DeliveryStatus::Delivered,
                None,
                Some("MS0123456789abcdef0123456789abcdef")
            ),
            receipt(
                "wamid.HBgNNDkxNTEyMzQ1Njc4ORUCABEYEjg4QzM4RkI1ODJBNDQ3RUU2MgA=",
                DeliveryStatus::Failed,
                Some("whatsapp error 131026: Message undeliverable"),
                None
            ),
        ])
    );
    let incoming_message = br#"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"value":{"messaging_product":"whatsapp","messages":[{"from":"4915112345678","id":"wamid.X","timestamp":"1","type":"text","text":{"body":"hi"}}]},"field":"messages"}]}]}"#;
    assert_eq!(parse_whatsapp(incoming_message), Ok(vec![]));
    assert!(parse_whatsapp(b"[1, 2]").is_err());
}

#[test]
fn meta_signature_accepts_the_raw_body_and_refuses_a_tampered_one() {
    let body = WHATSAPP_WEBHOOK.as_bytes();
    let key = hmac::Key::new(hmac::HMAC_SHA256, b"meta-app-secret");
    let header = format!(
        "sha256={}",
        data_encoding::HEXLOWER.encode(hmac::sign(&key, body).as_ref())
    );
    assert!(verify_meta_signature(body, &header, "meta-app-secret"));
    let tampered = WHATSAPP_WEBHOOK.replace("\"failed\"", "\"read\"");
    assert!(!verify_meta_signature(
        tampered.as_bytes(),
        &header,
        "meta-app-secret"
    ));
    assert!(!verify_meta_signature(body, &header, "another-secret"));
    assert!(!verify_meta_signature(body, "sha1=abc", "meta-app-secret"));
    assert!(!verify_meta_signature(body, "sha256=zz", "meta-app-secret"));
}
