//! Receipts that arrive over a provider's own connection (SMPP's deliver_sm) instead of the
//! HTTP receipt route. The provider hands each one to the gateway through this bounded queue
//! and waits for its fate, so that it acknowledges a receipt to its SMSC only once the receipt
//! is kept (or is known to concern no message of ours): nothing the SMSC reported is lost when
//! the store is down, since the SMSC delivers an unacknowledged receipt again.

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::dispatch::receipts::Receipt;

/// Receipts waiting for the gateway; a provider whose SMSC sends faster waits (and the SMSC's
/// own window holds it back).
pub const INBOUND_RECEIPT_QUEUE: usize = 1024;

/// One receipt on its way to the store, with the way back for its fate.
pub struct InboundReceipt {
    /// The configured provider name (the key the message's vendor id is stored under).
    pub provider: &'static str,
    pub receipt: Receipt,
    pub reply: oneshot::Sender<ReceiptFate>,
}

/// What became of an inbound receipt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptFate {
    /// Recorded on its message.
    Applied,
    /// No message of this provider has that id (yet: the receipt may overtake the record of
    /// the send it reports on).
    Unknown,
    /// The store failed, or the gateway is stopping.
    Failed,
}

/// The providers' end of the queue, and the gateway's stop signal, which ends the providers'
/// connections.
#[derive(Clone)]
pub struct ReceiptSink {
    sender: mpsc::Sender<InboundReceipt>,
    stop: CancellationToken,
}

impl ReceiptSink {
    /// A sink and the receiver the gateway drains until `stop`.
    pub fn channel(
        capacity: usize,
        stop: CancellationToken,
    ) -> (Self, mpsc::Receiver<InboundReceipt>) {
        let (sender, receiver) = mpsc::channel(capacity);
        (Self { sender, stop }, receiver)
    }

    /// Cancelled when the gateway stops.
    pub fn stopping(&self) -> &CancellationToken {
        &self.stop
    }

    /// Hands `receipt` over and waits for its fate; a gateway that is gone answers `Failed`.
    pub async fn hand_over(&self, provider: &'static str, receipt: Receipt) -> ReceiptFate {
        let (reply, fate) = oneshot::channel();
        let item = InboundReceipt {
            provider,
            receipt,
            reply,
        };
        if self.sender.send(item).await.is_err() {
            return ReceiptFate::Failed;
        }
        fate.await.unwrap_or(ReceiptFate::Failed)
    }
}
