//! The Redis infrastructure: key names (`keys.rs`, the only code building them), the scripts
//! (`scripts/*.lua`, loaded by `script.rs` with one prelude), the one mapping of Redis failures
//! to `StoreError`, and one adapter per store port. The connection and the outbox are still in
//! `store/redis/`.

pub mod directory;
pub mod factors;
pub mod keys;
pub mod pin;
pub(crate) mod script;
pub mod verify;

pub use directory::RedisDirectory;
pub use factors::RedisFactorStore;
pub use keys::KeySpace;
pub use pin::RedisPinStore;
pub use verify::RedisStore;
