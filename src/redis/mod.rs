//! The Redis infrastructure: key names (`keys.rs`, the only code building them), the scripts
//! (`scripts/*.lua`, loaded by `script.rs` with one prelude) and the one mapping of Redis
//! failures to `StoreError`. The adapters of each port use them.

pub mod keys;
pub(crate) mod script;

pub use keys::KeySpace;
