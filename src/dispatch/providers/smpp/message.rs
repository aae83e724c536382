//! One message as the submit_sm PDUs that carry it, and what an SMSC's refusal means.
//!
//! Text goes out in the GSM 03.38 default alphabet (data_coding 0) when every character has a
//! place in it, else in UCS-2 (data_coding 8); a text longer than one short message is split
//! into parts that each start with a concatenation UDH (IEI 0x00: reference, total, number) and
//! set the UDHI bit of esm_class. rusmpp's `extra` does the encoding and the splitting.

use rusmpp::extra::concatenation::SubmitSmMultipartExt;
use rusmpp::extra::encoding::ucs2::Ucs2;
use rusmpp::pdus::SubmitSm;
use rusmpp::types::COctetString;
use rusmpp::values::{EsmClass, Npi, RegisteredDelivery, Ton};
use rusmpp::CommandStatus;

use crate::dispatch::providers::ProviderError;
use crate::dispatch::OutgoingMessage;

/// registered_delivery's "SMSC delivery receipt requested where the final outcome is success
/// or failure" (SMPP 3.4 section 5.2.17).
const RECEIPT_ON_FINAL_OUTCOME: u8 = 0x01;

/// The submit_sm PDUs of `message`, in order. Only the last part asks for a delivery receipt:
/// one receipt per message, under the id of its last part, which is the id the send records.
/// `reference` tells this message's parts apart from another's on the handset.
pub fn parts(
    message: &OutgoingMessage,
    source: &str,
    reference: u8,
) -> Result<Vec<SubmitSm>, ProviderError> {
    let (source_ton, source_npi, source_digits) = source_address(source);
    let destination = message.to.e164().trim_start_matches('+');
    let invalid =
        |what: &str| ProviderError::Permanent(format!("the {what} is not an SMPP address"));
    let template = SubmitSm::builder()
        .source_addr_ton(source_ton)
        .source_addr_npi(source_npi)
        .source_addr(
            COctetString::from_str_checked(source_digits).ok_or_else(|| invalid("source"))?,
        )
        // rusmpp's default esm_class has the ANSI-41 "delivery acknowledgement" bit (0x08) set;
        // a plain message in the SMSC's default mode is 0 (SMPP 3.4 section 5.2.12).
        .esm_class(EsmClass::from(0))
        .dest_addr_ton(Ton::International)
        .dest_addr_npi(Npi::Isdn)
        .destination_addr(
            COctetString::from_str_checked(destination).ok_or_else(|| invalid("destination"))?,
        )
        .build();
    let mut parts = template
        .multipart(&message.body)
        .reference_u8(reference)
        .fallback(Ucs2::new())
        .build()
        // Over 255 parts, or nothing either alphabet can carry: no retry changes the text.
        .map_err(|error| ProviderError::Permanent(format!("the text cannot be sent: {error}")))?;
    if let Some(last) = parts.last_mut() {
        last.registered_delivery = RegisteredDelivery::from(RECEIPT_ON_FINAL_OUTCOME);
    }
    Ok(parts)
}

/// An alphanumeric sender (at most 11 characters, GSM's limit) goes as such; `+` and digits as
/// an international number; other digits (a short code) with the SMSC's default plan.
fn source_address(source: &str) -> (Ton, Npi, &str) {
    if let Some(digits) = source.strip_prefix('+') {
        (Ton::International, Npi::Isdn, digits)
    } else if !source.is_empty() && source.bytes().all(|b| b.is_ascii_digit()) {
        (Ton::Unknown, Npi::Unknown, source)
    } else {
        (Ton::Alphanumeric, Npi::Unknown, source)
    }
}

/// A C-octet string of up to `MAX - 1` characters.
trait FromStrChecked: Sized {
    fn from_str_checked(text: &str) -> Option<Self>;
}

impl<const MIN: usize, const MAX: usize> FromStrChecked for COctetString<MIN, MAX> {
    fn from_str_checked(text: &str) -> Option<Self> {
        text.parse().ok()
    }
}

/// What a non-zero command_status of a submit_sm_resp means for the message (SMPP 3.4
/// section 5.1.3). Congestion (ESME_RTHROTTLED, ESME_RMSGQFUL) and the SMSC's own trouble are
/// retryable, and so count against the provider's breaker; a refused address, length or
/// format is permanent. A code the table does not know is retryable: another provider, or the
/// next round, may do better, and a retry loses nothing.
pub fn refusal(status: CommandStatus) -> ProviderError {
    let code: u32 = status.into();
    let reason = format!("the SMSC answered {status:?} (0x{code:08x})");
    match status {
        CommandStatus::EsmeRinvmsglen
        | CommandStatus::EsmeRinvcmdlen
        | CommandStatus::EsmeRinvcmdid
        | CommandStatus::EsmeRinvsrcadr
        | CommandStatus::EsmeRinvdstadr
        | CommandStatus::EsmeRinvesmclass
        | CommandStatus::EsmeRinvsertyp
        | CommandStatus::EsmeRinvsrcton
        | CommandStatus::EsmeRinvsrcnpi
        | CommandStatus::EsmeRinvdstton
        | CommandStatus::EsmeRinvdstnpi
        | CommandStatus::EsmeRinvregdlvflg
        | CommandStatus::EsmeRinvtlvstream
        | CommandStatus::EsmeRtlvnotallwd
        | CommandStatus::EsmeRinvtlvlen
        | CommandStatus::EsmeRinvdftmsgid
        | CommandStatus::EsmeRinvdcs
        | CommandStatus::EsmeRprohibited
        | CommandStatus::EsmeRxPAppn
        | CommandStatus::EsmeRxRAppn => ProviderError::Permanent(reason),
        _ => ProviderError::Retryable(reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn congestion_is_retryable_and_a_bad_address_is_permanent() {
        assert!(matches!(
            refusal(CommandStatus::EsmeRthrottled),
            ProviderError::Retryable(_)
        ));
        assert!(matches!(
            refusal(CommandStatus::EsmeRmsgqful),
            ProviderError::Retryable(_)
        ));
        assert!(matches!(
            refusal(CommandStatus::EsmeRinvdstadr),
            ProviderError::Permanent(_)
        ));
    }

    #[test]
    fn senders_get_the_type_of_number_their_form_says() {
        assert_eq!(source_address("+4930123").0, Ton::International);
        assert_eq!(source_address("12345").0, Ton::Unknown);
        assert_eq!(source_address("otpgate").0, Ton::Alphanumeric);
    }
}
