//! Delivery receipts: every vendor's body parser, the form decoder, and the signature checks.

use otpgate::dispatch::providers::smpp::{from_stat, parse_text};
use otpgate::dispatch::receipts::{
    parse_form, parse_infobip, parse_messagebird, parse_twilio, parse_vonage, parse_whatsapp,
    verify_meta_signature, verify_twilio_signature, Receipt,
};
use proptest::prelude::*;
use ring::hmac;

type Parser = fn(&[u8]) -> Result<Vec<Receipt>, String>;

const PARSERS: [(&str, Parser); 5] = [
    ("twilio", parse_twilio),
    ("vonage", parse_vonage),
    ("infobip", parse_infobip),
    ("messagebird", parse_messagebird),
    ("whatsapp", parse_whatsapp),
];

fn twilio_mac(url: &str, params: &[(String, String)], token: &str) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut signed = url.as_bytes().to_vec();
    for (name, value) in sorted {
        signed.extend_from_slice(name.as_bytes());
        signed.extend_from_slice(value.as_bytes());
    }
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, token.as_bytes());
    data_encoding::BASE64.encode(hmac::sign(&key, &signed).as_ref())
}

/// Bodies shaped like each vendor's, with fields of any JSON type.
fn json_body() -> impl Strategy<Value = Vec<u8>> {
    let value = prop_oneof![
        Just(serde_json::Value::Null),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<bool>().prop_map(serde_json::Value::from),
        ".{0,10}".prop_map(serde_json::Value::from),
        prop_oneof![
            Just("delivered"),
            Just("DELIVERED"),
            Just("failed"),
            Just("sent"),
            Just("read")
        ]
        .prop_map(serde_json::Value::from),
    ];
    (value.clone(), value.clone(), value.clone(), value).prop_map(|(a, b, c, d)| {
        serde_json::json!({
            "messageId": a, "status": b, "err-code": c, "client-ref": d, "id": a,
            "reference": c, "statusErrorCode": d,
            "results": [{"messageId": a, "status": {"groupName": b}, "error": {"id": c, "name": d}}],
            "entry": [{"changes": [{"value": {"statuses": [
                {"id": a, "status": b, "errors": [{"code": c, "title": d}]}
            ]}}]}],
        })
        .to_string()
        .into_bytes()
    })
}

proptest! {
    #[test]
    fn every_receipt_parser_answers_any_body_with_receipts_or_a_short_error(
        body in prop_oneof![any::<Vec<u8>>(), json_body(), "[a-zA-Z=&%+0-9]{0,80}".prop_map(String::into_bytes)]
    ) {
        for (vendor, parse) in PARSERS {
            match parse(&body) {
                Ok(receipts) => {
                    for receipt in receipts {
                        prop_assert!(!receipt.provider_message_id.is_empty(), "{}", vendor);
                    }
                }
                Err(error) => prop_assert!(error.len() < 4096, "{}: {} bytes", vendor, error.len()),
            }
        }
    }

    #[test]
    fn form_encoding_round_trips_through_parse_form(
        pairs in prop::collection::vec((".{0,12}", ".{0,12}"), 0..6)
    ) {
        let mut form = form_urlencoded::Serializer::new(String::new());
        for (key, value) in &pairs {
            form.append_pair(key, value);
        }
        prop_assert_eq!(parse_form(form.finish().as_bytes()), pairs);
    }

    #[test]
    fn parse_form_never_loses_a_pair_and_decodes_idempotently(body in any::<Vec<u8>>()) {
        let pairs = parse_form(&body);
        prop_assert!(pairs.len() <= body.split(|&b| b == b'&').count());
        let mut form = form_urlencoded::Serializer::new(String::new());
        for (key, value) in &pairs {
            form.append_pair(key, value);
        }
        prop_assert_eq!(parse_form(form.finish().as_bytes()), pairs);
    }

    #[test]
    fn twilio_status_callbacks_with_a_known_status_give_one_receipt(
        sid in "SM[0-9a-f]{32}",
        status in prop_oneof![Just("queued"), Just("sent"), Just("delivered"), Just("undelivered"), Just("failed")],
        error in prop::option::of("[0-9]{5}"),
    ) {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("MessageSid", &sid).append_pair("MessageStatus", status);
        if let Some(code) = &error {
            form.append_pair("ErrorCode", code);
        }
        let receipts = parse_twilio(form.finish().as_bytes()).unwrap();
        prop_assert_eq!(receipts.len(), 1);
        prop_assert_eq!(&receipts[0].provider_message_id, &sid);
        prop_assert_eq!(receipts[0].status.as_str(), status);
        prop_assert_eq!(receipts[0].error.is_some(), error.is_some());
    }

    #[test]
    fn twilio_signatures_pass_only_with_the_right_mac(
        url in "https?://[a-z]{1,8}\\.example(:[0-9]{2,4})?/[a-z/]{0,10}(\\?[a-z=&]{0,10})?",
        params in prop::collection::vec(("[A-Za-z]{1,8}", ".{0,10}"), 0..5),
        token in "[a-f0-9]{32}",
        header in ".{0,40}",
    ) {
        let right = twilio_mac(&url, &params, &token);
        prop_assert!(verify_twilio_signature(&url, &params, &right, &token));
        prop_assert_eq!(verify_twilio_signature(&url, &params, &header, &token), header.trim() == right);
        let other = format!("{token}0");
        prop_assert!(!verify_twilio_signature(&url, &params, &right, &other));
        if let Some(((name, value), rest)) = params.split_first() {
            let mut tampered = vec![(name.clone(), format!("{value}x"))];
            tampered.extend_from_slice(rest);
            prop_assert!(!verify_twilio_signature(&url, &tampered, &right, &token));
        }
    }

    #[test]
    fn twilio_signatures_over_the_url_with_the_default_port_also_pass(
        host in "[a-z]{1,8}\\.example", path in "/[a-z]{0,8}", token in "[a-f0-9]{32}"
    ) {
        let with_port = format!("https://{host}:443{path}");
        let without = format!("https://{host}{path}");
        let params = vec![("To".to_owned(), "+4915112345678".to_owned())];
        prop_assert!(verify_twilio_signature(&without, &params, &twilio_mac(&with_port, &params, &token), &token));
        prop_assert!(verify_twilio_signature(&with_port, &params, &twilio_mac(&without, &params, &token), &token));
    }

    #[test]
    fn meta_signatures_pass_only_with_the_right_mac(
        body in any::<Vec<u8>>(), secret in "[a-z0-9]{1,32}", header in ".{0,80}"
    ) {
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
        let right = data_encoding::HEXLOWER.encode(hmac::sign(&key, &body).as_ref());
        let header_right = format!("sha256={right}");
        let header_upper = format!(" sha256={} ", right.to_uppercase());
        prop_assert!(verify_meta_signature(&body, &header_right, &secret));
        prop_assert!(verify_meta_signature(&body, &header_upper, &secret));
        let accepted = verify_meta_signature(&body, &header, &secret);
        prop_assert_eq!(
            accepted,
            header.trim().strip_prefix("sha256=").is_some_and(|hex| hex.eq_ignore_ascii_case(&right))
        );
        prop_assert!(!verify_meta_signature(&body, &right, &secret));
    }
}

proptest! {
    #[test]
    fn smpp_receipt_texts_never_panic_and_read_back_their_id_and_stat(
        noise in any::<Vec<u8>>(),
        id in "[0-9A-Za-z]{1,20}",
        stat in prop_oneof![Just("DELIVRD"), Just("UNDELIV"), Just("EXPIRED"), Just("REJECTD")],
        tail in ".{0,40}",
    ) {
        let _ = parse_text(&noise);
        let text = format!("id:{id} sub:001 dlvrd:001 submit date:2612030800 done date:2612030801 stat:{stat} err:000 text:{tail}");
        let parsed = parse_text(text.as_bytes()).expect("a well-formed receipt text");
        prop_assert_eq!(parsed.id, id);
        prop_assert_eq!(parsed.stat.as_str(), stat);
        prop_assert!(from_stat(&parsed.stat).is_some());
    }
}
