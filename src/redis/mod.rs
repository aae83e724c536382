//! The Redis infrastructure: the connection (`connection.rs`, one client for every adapter,
//! behind a supervisor), key names (`keys.rs`, the only code building them), the scripts
//! (`scripts/*.lua`, loaded by `script.rs` with one prelude), the one mapping of Redis failures
//! to `StoreError`, and one adapter per port: the store ports and dispatch's `Outbox`.

pub mod abuse;
pub mod accounts;
pub mod connection;
pub mod console;
pub mod directory;
pub mod events;
pub mod factors;
pub mod keys;
pub mod outbox;
pub mod pin;
pub(crate) mod script;
pub mod verify;
mod workflow;

pub use abuse::RedisAbuseStore;
pub use accounts::RedisAccounts;
pub use connection::{RedisSettings, Supervision};
pub use console::RedisConsoleStore;
pub use directory::RedisDirectory;
pub use events::RedisWebhookStore;
pub use factors::RedisFactorStore;
pub use keys::KeySpace;
pub use outbox::RedisOutbox;
pub use pin::RedisPinStore;
pub use verify::RedisStore;
