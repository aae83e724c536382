//! Every vendor's delivery-receipt body (Twilio form, Vonage and MessageBird form or JSON,
//! Infobip JSON, WhatsApp Cloud API JSON) and the form decoder they share.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otpgate::dispatch::receipts::{
    parse_form, parse_infobip, parse_messagebird, parse_twilio, parse_vonage, parse_whatsapp,
    Receipt,
};

fn check(result: Result<Vec<Receipt>, String>) {
    match result {
        Ok(receipts) => {
            for receipt in receipts {
                assert!(!receipt.provider_message_id.is_empty());
            }
        }
        // Errors end up in logs: vendor values quoted in them are bounded.
        Err(error) => assert!(error.len() < 4096, "{} bytes", error.len()),
    }
}

fuzz_target!(|body: &[u8]| {
    let pairs = parse_form(body);
    // Re-encoding what was decoded decodes to the same pairs.
    let mut encoded = form_urlencoded::Serializer::new(String::new());
    for (key, value) in &pairs {
        encoded.append_pair(key, value);
    }
    assert_eq!(parse_form(encoded.finish().as_bytes()), pairs);
    check(parse_twilio(body));
    check(parse_vonage(body));
    check(parse_infobip(body));
    check(parse_messagebird(body));
    check(parse_whatsapp(body));
});
