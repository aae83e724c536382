//! Delivery receipts in deliver_sm: the SMSC's receipt text (SMPP 3.4 appendix B,
//! `id:IIIIIIIIII sub:SSS dlvrd:DDD submit date:YYMMDDhhmm done date:YYMMDDhhmm stat:DDDDDDD
//! err:E text:...`) and the receipted_message_id / message_state TLVs that SMPP 3.4 added for
//! the same facts. The TLVs win where both are present: they are typed, the text is only a
//! convention. Parsed into the one `Receipt` shape the HTTP vendors' receipts use.

use rusmpp::pdus::DeliverSm;
use rusmpp::tlvs::TlvValue;
use rusmpp::values::MessageState;

use crate::dispatch::providers::valid_vendor_id;
use crate::dispatch::receipts::{DeliveryStatus, Receipt};

/// The receipt a deliver_sm carries, or `None` when it carries none (a mobile-originated
/// message, or a receipt without a usable message id).
pub fn from_deliver_sm(deliver: &DeliverSm) -> Option<Receipt> {
    let mut tlv_id = None;
    let mut tlv_state = None;
    for tlv in deliver.tlvs() {
        match tlv.value() {
            Some(TlvValue::ReceiptedMessageId(id)) => tlv_id = Some(id.as_str().to_owned()),
            Some(TlvValue::MessageState(state)) => tlv_state = Some(*state),
            _ => {}
        }
    }
    let text = parse_text(deliver.short_message().as_ref());
    let id = tlv_id
        .or_else(|| text.as_ref().map(|text| text.id.clone()))
        .filter(|id| valid_vendor_id(id))?;
    let status = match (tlv_state, &text) {
        (Some(state), _) => from_state(state)?,
        (None, Some(text)) => from_stat(&text.stat)?,
        (None, None) => return None,
    };
    let error = text
        .and_then(|text| text.err)
        // `err:000` (or `err:0`) is the SMSCs' way of saying "no error".
        .filter(|err| !err.bytes().all(|b| b == b'0'))
        .map(|err| format!("smpp error {err}"));
    Some(Receipt {
        provider_message_id: id,
        status,
        error,
        reference: None,
    })
}

/// The fields of a receipt text that matter here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptText {
    pub id: String,
    pub stat: String,
    pub err: Option<String>,
}

/// Reads `id:` and `stat:` (and `err:`) from a receipt text; the other fields (and their
/// order, which SMSCs vary) do not matter. `text:` ends the fields: what follows is the start
/// of the original message, which is never read.
pub fn parse_text(bytes: &[u8]) -> Option<ReceiptText> {
    let text = std::str::from_utf8(bytes).ok()?;
    let fields = text
        .find(" text:")
        .or_else(|| text.find(" Text:"))
        .map_or(text, |end| &text[..end]);
    let value = |name: &str| {
        let mut rest = fields;
        loop {
            let at = rest.find(name)?;
            let starts_word = at == 0 || rest.as_bytes()[at - 1] == b' ';
            let after = &rest[at + name.len()..];
            if starts_word {
                return after.split(' ').next().map(str::to_owned);
            }
            rest = after;
        }
    };
    Some(ReceiptText {
        id: value("id:").filter(|id| !id.is_empty())?,
        stat: value("stat:")?.to_ascii_uppercase(),
        err: value("err:").filter(|err| !err.is_empty()),
    })
}

/// The receipt text's `stat` values (SMPP 3.4 appendix B).
pub fn from_stat(stat: &str) -> Option<DeliveryStatus> {
    Some(match stat {
        "DELIVRD" => DeliveryStatus::Delivered,
        "EXPIRED" | "UNDELIV" => DeliveryStatus::Undelivered,
        "DELETED" | "REJECTD" => DeliveryStatus::Failed,
        "ACCEPTD" | "ENROUTE" | "UNKNOWN" => DeliveryStatus::Sent,
        _ => return None,
    })
}

/// The message_state TLV (SMPP 3.4 section 5.2.28).
fn from_state(state: MessageState) -> Option<DeliveryStatus> {
    Some(match state {
        MessageState::Delivered => DeliveryStatus::Delivered,
        MessageState::Expired | MessageState::Undeliverable => DeliveryStatus::Undelivered,
        MessageState::Deleted | MessageState::Rejected => DeliveryStatus::Failed,
        MessageState::Enroute | MessageState::Accepted | MessageState::Unknown => {
            DeliveryStatus::Sent
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_appendix_b_receipt_text_is_read() {
        let text = b"id:0123456789 sub:001 dlvrd:001 submit date:2612030800 done date:2612030801 stat:DELIVRD err:000 text:Your code is 123456";
        let parsed = parse_text(text).unwrap();
        assert_eq!(parsed.id, "0123456789");
        assert_eq!(parsed.stat, "DELIVRD");
        assert_eq!(parsed.err.as_deref(), Some("000"));
        assert_eq!(from_stat(&parsed.stat), Some(DeliveryStatus::Delivered));
    }

    #[test]
    fn the_message_text_after_text_is_never_read_as_fields() {
        let parsed = parse_text(b"id:77 stat:UNDELIV err:012 text:id:99 stat:DELIVRD").unwrap();
        assert_eq!(parsed.id, "77");
        assert_eq!(from_stat(&parsed.stat), Some(DeliveryStatus::Undelivered));
    }

    #[test]
    fn a_text_without_id_or_stat_is_no_receipt() {
        assert_eq!(parse_text(b"hello there"), None);
        assert_eq!(parse_text(b"id:5 sub:001"), None);
        assert_eq!(from_stat("SOMETHING"), None);
    }
}
