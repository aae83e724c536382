//! Delivery receipts applied to the messages of verifications, and the events they make: a
//! message newly delivered (`message.delivered`) or newly reported failed by its provider
//! (`message.failed`, reason `undelivered` or `failed`). A receipt repeating the status the
//! message already has makes no event, so a vendor's retried callback is one event.

use crate::dispatch::receipts::{DeliveryStatus, Receipt};
use crate::events::notices::MessageNotice;
use crate::phone::PhoneNumber;
use crate::store::StoreError;
use crate::verify::store::ReceiptApplied;
use crate::verify::Verifier;

impl Verifier {
    /// Applies `provider`'s receipt: false when no message is known by its id.
    pub async fn apply_receipt(
        &self,
        provider: &str,
        receipt: &Receipt,
    ) -> Result<bool, StoreError> {
        let now = self.now_ms();
        let Some(applied) = self.store.apply_receipt(provider, receipt, now).await? else {
            return Ok(false);
        };
        if matches!(
            receipt.status,
            DeliveryStatus::Undelivered | DeliveryStatus::Failed
        ) {
            // The receipt has been applied: a workflow's fallback waiting for it is a hint to
            // bring forward, and its timeout stays the safety net should this call fail.
            let (id, message) = (&applied.verification, &applied.message_id);
            if let Err(error) = self.store.fall_back_now(id, message, now).await {
                tracing::warn!(%error, "could not bring a workflow's fallback forward");
            }
        }
        if let Some((happened, reason)) = event_of(receipt.status, &applied.previous) {
            self.emit_receipt(provider, &applied, happened, reason);
        }
        Ok(true)
    }

    fn emit_receipt(
        &self,
        provider: &str,
        applied: &ReceiptApplied,
        happened: &str,
        reason: Option<&'static str>,
    ) {
        let Ok(to) = PhoneNumber::parse(&applied.to) else {
            return;
        };
        let notice = MessageNotice {
            verification: applied.verification.as_str(),
            to: &to,
            channel: applied.channel.as_str(),
            provider,
            reason,
        };
        self.events.message(&applied.account, happened, &notice);
    }
}

/// The event (what happened, its reason) of a receipt of `status` on a message that was
/// `previous`: none when nothing new happened (queued, sent, or the same outcome again). A
/// `read` on a message not yet known delivered counts as its delivery.
fn event_of(
    status: DeliveryStatus,
    previous: &str,
) -> Option<(&'static str, Option<&'static str>)> {
    let delivered = matches!(previous, "delivered" | "read");
    match status {
        DeliveryStatus::Delivered | DeliveryStatus::Read if !delivered => Some(("delivered", None)),
        DeliveryStatus::Undelivered if previous != "undelivered" && !delivered => {
            Some(("failed", Some("undelivered")))
        }
        DeliveryStatus::Failed if !matches!(previous, "failed" | "undelivered") && !delivered => {
            Some(("failed", Some("failed")))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receipt_makes_an_event_only_when_the_message_reaches_a_new_outcome() {
        use DeliveryStatus::*;
        let cases = [
            (Delivered, "accepted", Some(("delivered", None))),
            (Delivered, "sent", Some(("delivered", None))),
            (Read, "accepted", Some(("delivered", None))),
            (Delivered, "delivered", None),
            (Read, "delivered", None),
            (Sent, "accepted", None),
            (Queued, "accepted", None),
            (Undelivered, "sent", Some(("failed", Some("undelivered")))),
            (Undelivered, "undelivered", None),
            (Failed, "accepted", Some(("failed", Some("failed")))),
            (Failed, "undelivered", None),
            (Failed, "delivered", None),
        ];
        for (status, previous, expected) in cases {
            assert_eq!(
                event_of(status, previous),
                expected,
                "{status:?} after {previous}"
            );
        }
    }
}
