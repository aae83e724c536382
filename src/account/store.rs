//! The account's two ports: `Accounts`, where accounts and their API keys live (adapters
//! `memory::MemoryAccounts` and `redis::RedisAccounts`), and `Directory`, where policies, users,
//! trusted devices and the audit trail live (adapters `memory::MemoryDirectory` and
//! `redis::RedisDirectory`; src/memory/, src/redis/).
//!
//! Like verify's `Store`, each method is one atomic step (one Lua script in Redis, one lock in memory),
//! and a write carries the versions its rules were decided on, so that a concurrent change makes
//! it `Stale` (the caller re-reads and decides again) instead of being overwritten. Every write
//! that changes what the hot path caches publishes its invalidation in the same step.

use async_trait::async_trait;

use crate::account::audit::AuditEntry;
use crate::account::policy::Policy;
use crate::account::trust::{DeviceDigest, DeviceId, DeviceRecord};
use crate::account::user::{User, UserId};
use crate::account::{Account, AccountId, ApiKeyRecord, KeyDigest};
use crate::store::StoreError;

/// Accounts and their API keys (stored as digests). Read on every authenticated request, through
/// the gateway's caches (`App::find_key`, `App::find_account`).
#[async_trait]
pub trait Accounts: Send + Sync + 'static {
    async fn insert_account(&self, account: &Account) -> Result<(), StoreError>;

    async fn get_account(&self, id: &AccountId) -> Result<Option<Account>, StoreError>;

    /// Accounts in the order of their ids, strictly after `after` when given, at most `limit`
    /// of them (the console's Operator page). Only the root key creates accounts, so the index
    /// is as large as the operator made it.
    async fn list_accounts(
        &self,
        after: Option<&AccountId>,
        limit: usize,
    ) -> Result<Vec<Account>, StoreError>;

    async fn insert_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError>;

    async fn find_api_key(&self, digest: &KeyDigest) -> Result<Option<ApiKeyRecord>, StoreError>;

    /// The account's keys in the order of their ids, strictly after `after` when given, at most
    /// `limit` of them: one page, read from the account's own index (no scan of every key).
    async fn list_api_keys(
        &self,
        account: &AccountId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ApiKeyRecord>, StoreError>;

    /// Revokes the account's key `id` in one step, unless it is the account's last owner key:
    /// afterwards no instance finds it (`find_api_key` answers `None`, and every instance's
    /// cache was told to drop it). A retry after a failure part-way finishes the revocation.
    async fn revoke_api_key(
        &self,
        account: &AccountId,
        id: &str,
    ) -> Result<KeyRevocation, StoreError>;

    /// Moves on every reconnect after a store outage (a call answered after calls failed), so
    /// that the caches of keys and accounts flush: Redis may have come back without what they
    /// hold. The embedded store has no outages.
    fn epoch(&self) -> u64 {
        0
    }
}

/// What `Accounts::revoke_api_key` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRevocation {
    Revoked(ApiKeyRecord),
    /// No such key in this account.
    NotFound,
    /// It is the account's last owner key: kept, or nobody could mint keys again.
    LastOwner,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyWrite {
    Written {
        version: u64,
    },
    /// The policy changed since it was read.
    Stale,
    /// The new policy allows SMS and these users have no phone (at most `MISSING_LISTED` of
    /// them, sorted; `count` is all of them).
    MissingPhones {
        count: usize,
        users: Vec<UserId>,
    },
    /// The new policy allows e-mail and these users have no e-mail address (listed like
    /// `MissingPhones`).
    MissingEmails {
        count: usize,
        users: Vec<UserId>,
    },
}

/// How many users without a phone a refusal lists.
pub const MISSING_LISTED: usize = 100;

/// A user write: the full new state, decided on `user.version` and `policy_version`.
#[derive(Debug, Clone)]
pub struct UserWrite {
    pub user: User,
    pub create: bool,
    pub policy_version: u64,
    /// Revoke every trusted device of the user (a phone change, a factor removal).
    pub revoke_devices: bool,
    pub audit: Vec<AuditEntry>,
    /// A create is refused (`LimitReached`, users) when the account already has this many.
    pub max_users: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserWriteOutcome {
    Written {
        version: u64,
        device_epoch: u64,
    },
    /// A create found the account at its bound of users (`max` of them).
    TooManyUsers {
        max: u64,
    },
    Stale,
    Exists,
    NotFound,
}

/// One trusted device of a user to revoke, with its audit entry.
#[derive(Debug, Clone, Copy)]
pub struct DeviceRevocation<'a> {
    pub user: &'a UserId,
    pub device: &'a DeviceId,
    pub audit: &'a AuditEntry,
}

#[derive(Debug, Clone)]
pub struct NewDevice {
    pub digest: DeviceDigest,
    /// `epoch` is ignored: the store stamps the user's current epoch in the same step.
    pub record: DeviceRecord,
    /// The proof (an approved verification's id) is spent: it trusts one device only.
    pub proof: String,
    pub proof_ttl_ms: u64,
    /// Beyond this many devices per user, the one expiring first is dropped.
    pub max_devices: usize,
    /// The account's bound of trusted devices, all users together: at it, nothing is trusted
    /// (and the proof is not spent) until devices expire or are revoked.
    pub max_account_devices: u64,
    pub audit: AuditEntry,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustOutcome {
    Trusted { epoch: u64 },
    NoSuchUser,
    ProofUsed,
    TooManyDevices { max: u64 },
}

#[async_trait]
pub trait Directory: Send + Sync + 'static {
    /// The account's policy; the defaults for new accounts (version 0) when it never set one.
    async fn policy(&self, account: &AccountId) -> Result<Policy, StoreError>;

    /// Replaces the policy if it is still at `policy.version`, with its audit entry.
    async fn write_policy(
        &self,
        account: &AccountId,
        policy: &Policy,
        audit: &AuditEntry,
    ) -> Result<PolicyWrite, StoreError>;

    async fn user(&self, account: &AccountId, user: &UserId) -> Result<Option<User>, StoreError>;

    async fn write_user(
        &self,
        account: &AccountId,
        write: &UserWrite,
    ) -> Result<UserWriteOutcome, StoreError>;

    /// The account's users in the order of their ids, strictly after `after` when given, at most
    /// `limit`: one page, read from the account's own index (no scan of every key).
    async fn list_users(
        &self,
        account: &AccountId,
        after: Option<&UserId>,
        limit: usize,
    ) -> Result<Vec<User>, StoreError>;

    /// The user's trusted devices as stored (bounded per user), any order; the caller decides
    /// which are still trusted (expiry, the user's device epoch, the policy).
    async fn user_devices(
        &self,
        account: &AccountId,
        user: &UserId,
    ) -> Result<Vec<DeviceRecord>, StoreError>;

    async fn trust_device(
        &self,
        account: &AccountId,
        new: &NewDevice,
    ) -> Result<TrustOutcome, StoreError>;

    async fn device(
        &self,
        account: &AccountId,
        digest: &DeviceDigest,
    ) -> Result<Option<DeviceRecord>, StoreError>;

    /// Revokes one device; its digest when it existed.
    async fn revoke_device(
        &self,
        account: &AccountId,
        revocation: &DeviceRevocation<'_>,
    ) -> Result<Option<DeviceDigest>, StoreError>;

    /// Revokes every device of the user (bumps the device epoch); how many were listed, or
    /// `None` when there is no such user.
    async fn revoke_devices(
        &self,
        account: &AccountId,
        user: &UserId,
        audit: &AuditEntry,
    ) -> Result<Option<u64>, StoreError>;

    async fn append_audit(&self, account: &AccountId, entry: &AuditEntry)
        -> Result<(), StoreError>;

    /// Newest first, strictly older than `before` when given.
    async fn audit(
        &self,
        account: &AccountId,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError>;

    /// Whether another instance may change things: then the cache needs the invalidation link.
    fn shared(&self) -> bool;

    fn kind(&self) -> &'static str;
}
