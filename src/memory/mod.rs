//! The in-process adapters of every store port: one process, bounded, with expiry, and the same
//! contract as the Redis adapters (the store suite, `tests/store/`, runs both).

pub mod abuse;
pub mod accounts;
pub mod console;
pub mod directory;
pub mod events;
pub mod factors;
pub mod pin;
pub mod verify;
mod workflow;

pub use abuse::MemoryAbuseStore;
pub use accounts::MemoryAccounts;
pub use console::MemoryConsoleStore;
pub use directory::MemoryDirectory;
pub use events::MemoryWebhookStore;
pub use factors::MemoryFactorStore;
pub use pin::MemoryPinStore;
pub use verify::MemoryStore;
