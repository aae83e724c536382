//! A workflow's later steps (`verify::workflow`): their messages are sealed when the workflow
//! starts and kept by the store beside the verification until the step is reached. On Redis the
//! store queues a reached step's message onto the outbox itself; on the embedded store the
//! sweeper hands it back here to be queued in memory.

use super::{Dispatcher, Mode, OutgoingMessage, Payload, QueueFull};

#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(transparent)]
    QueueFull(#[from] QueueFull),
    #[error("a stored step's message does not open with this gateway's key")]
    Unreadable,
}

impl Dispatcher {
    /// `message` sealed for the store, whatever the queue: a step waits in the store, not in
    /// the queue.
    pub fn seal_step(
        &self,
        message: &OutgoingMessage,
    ) -> Result<Vec<u8>, ring::error::Unspecified> {
        let plain = serde_json::to_vec(&message.payload()).map_err(|_| ring::error::Unspecified)?;
        self.inner.sealer.seal(&plain)
    }

    /// Queues a reached step's sealed message in memory (the embedded store's queue); on a
    /// durable queue the store has queued it already (`sealed` is empty), so this only wakes
    /// the workers.
    pub fn queue_step(&self, verification_id: &str, sealed: &[u8]) -> Result<(), StepError> {
        if let Mode::Durable(wake) = &self.inner.mode {
            wake.notify_one();
            return Ok(());
        }
        let message = self
            .inner
            .sealer
            .open(sealed)
            .and_then(|plain| serde_json::from_slice::<Payload>(&plain).ok())
            .and_then(|payload| OutgoingMessage::from_payload(verification_id.to_owned(), payload))
            .ok_or(StepError::Unreadable)?;
        let ticket = self.ticket()?;
        self.commit(ticket, message);
        Ok(())
    }
}
