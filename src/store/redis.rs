//! The Redis connection and the outbox, kept here until they move to `src/redis/` beside the
//! adapters (they are being changed for failover). The outbox is implemented on `RedisStore`
//! (`src/redis/verify.rs`), whose connection, keys and scripts it shares.

pub mod connection;
pub mod outbox;

pub(crate) use crate::redis::script::{store_error, unavailable as read_error};
pub(crate) use crate::redis::verify::{attempt_field, attempt_was_sent};
pub use crate::redis::RedisStore;
pub(crate) use connection::Connection;
pub use connection::{RedisSettings, Supervision};
