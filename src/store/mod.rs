//! `StoreError`, the one failure of every store port (verify's `Store`, the directory, the
//! PIN store, the factor store), and, until they move to `src/redis/`, the Redis connection
//! and the outbox (`store/redis/`).

pub mod redis;

/// A store failure: the store could not answer. Expected refusals are outcomes, not errors.
///
/// `Unavailable` and `OutcomeUnknown` differ in what the caller may tell its client: the first
/// only when the request certainly never reached the store (the connection could not be made),
/// so nothing was changed; the second when it may have been sent (a response timeout, a
/// connection lost with the request on it), so it may or may not have taken effect.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store outcome unknown: {0}")]
    OutcomeUnknown(String),
    #[error("store returned an unexpected answer: {0}")]
    Corrupt(String),
    #[error("store is full ({0} verifications)")]
    Full(usize),
    /// The account reached one of its own bounds (issue 13 §8); nothing was changed. An
    /// expected refusal, but found inside the store's atomic step, so it travels this way.
    #[error(transparent)]
    AccountLimit(#[from] crate::account::limits::LimitReached),
}
