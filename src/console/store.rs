//! The console's store port: invitations, open passkey ceremonies, the console's passkeys and
//! sessions. Every secret (invitation token, session id) is kept only as its SHA-256 digest;
//! every entry carries its own expiry, and what one principal can grow is bounded by the
//! caller's `Bounds`.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::account::user::UserId;
use crate::account::AccountId;
use crate::store::StoreError;

/// Who a console credential, invitation or session belongs to: the operator (root) or one
/// user of one account.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Principal {
    Root,
    User { account: AccountId, user: UserId },
}

impl Principal {
    /// The stored form: `root` or `<account>/<user>` (neither id may contain `/`).
    pub fn encode(&self) -> String {
        match self {
            Principal::Root => "root".to_owned(),
            Principal::User { account, user } => format!("{account}/{user}"),
        }
    }

    pub fn decode(input: &str) -> Option<Self> {
        if input == "root" {
            return Some(Principal::Root);
        }
        let (account, user) = input.split_once('/')?;
        Some(Principal::User {
            account: AccountId::parse(account)?,
            user: UserId::parse(user)?,
        })
    }

    pub fn account(&self) -> Option<&AccountId> {
        match self {
            Principal::Root => None,
            Principal::User { account, .. } => Some(account),
        }
    }
}

impl Serialize for Principal {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.encode())
    }
}

impl<'de> Deserialize<'de> for Principal {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Principal::decode(&text).ok_or_else(|| serde::de::Error::custom("bad principal"))
    }
}

/// A minted invitation: whose it is and until when it may be used (the gateway's clock).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invitation {
    pub principal: Principal,
    pub expires_ms: u64,
}

/// A passkey registered for the console (not one of the user's login factors: see
/// docs/console.md). The key is kept as its COSE algorithm and raw bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleCredential {
    /// base64url of the credential id.
    pub id: String,
    pub principal: Principal,
    pub alg: i64,
    /// base64url of the raw public key.
    pub key: String,
    pub counter: u32,
    pub created_ms: u64,
}

/// A signed-in session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub principal: Principal,
    pub created_ms: u64,
    pub last_seen_ms: u64,
    /// The CSRF token every form of this session carries (random, base64url).
    pub csrf: String,
}

/// How much one principal, and the store as a whole, may hold.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub per_principal: usize,
    pub total: usize,
}

/// Whether a write found room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Room {
    Stored,
    Full,
}

#[async_trait]
pub trait ConsoleStore: Send + Sync {
    /// Stores an invitation under its token's digest for `ttl_ms`.
    async fn put_invitation(
        &self,
        digest: &[u8; 32],
        invitation: &Invitation,
        ttl_ms: u64,
        bounds: Bounds,
    ) -> Result<Room, StoreError>;
    /// An invitation, without using it (the page shows whose it is).
    async fn invitation(&self, digest: &[u8; 32]) -> Result<Option<Invitation>, StoreError>;
    /// Takes an invitation: the first caller gets it, every later one `None`.
    async fn take_invitation(&self, digest: &[u8; 32]) -> Result<Option<Invitation>, StoreError>;

    /// An open ceremony's state under its challenge, for `ttl_ms`.
    async fn put_ceremony(
        &self,
        challenge: &[u8],
        state: &str,
        ttl_ms: u64,
        total: usize,
    ) -> Result<Room, StoreError>;
    /// Takes a ceremony's state once.
    async fn take_ceremony(&self, challenge: &[u8]) -> Result<Option<String>, StoreError>;

    async fn put_credential(
        &self,
        credential: &ConsoleCredential,
        bounds: Bounds,
    ) -> Result<Room, StoreError>;
    async fn credential(&self, id: &str) -> Result<Option<ConsoleCredential>, StoreError>;
    /// Moves a credential's counter forward; `false` when it would not advance (a clone).
    async fn advance_counter(&self, id: &str, counter: u32) -> Result<bool, StoreError>;
    /// Whether the operator has registered any console passkey.
    async fn has_root_credential(&self) -> Result<bool, StoreError>;

    async fn put_session(
        &self,
        digest: &[u8; 32],
        session: &SessionRecord,
        ttl_ms: u64,
        bounds: Bounds,
    ) -> Result<Room, StoreError>;
    async fn session(&self, digest: &[u8; 32]) -> Result<Option<SessionRecord>, StoreError>;
    /// Records activity: the session's last use and its new time to live.
    async fn touch_session(
        &self,
        digest: &[u8; 32],
        last_seen_ms: u64,
        ttl_ms: u64,
    ) -> Result<(), StoreError>;
    async fn delete_session(&self, digest: &[u8; 32]) -> Result<(), StoreError>;
    /// Ends every session of a principal ("Sign out everywhere"); answers how many.
    async fn delete_sessions_of(&self, principal: &Principal) -> Result<usize, StoreError>;

    /// Records when a person last signed in to the console (the Users page's "Last sign-in"),
    /// kept `ttl_ms`; a write past `total` records is skipped (`Room::Full`), never an error.
    async fn record_sign_in(
        &self,
        principal: &Principal,
        at_ms: u64,
        ttl_ms: u64,
        total: usize,
    ) -> Result<Room, StoreError>;
    /// When each person last signed in, in the order asked (`None`: never, or too long ago).
    async fn last_sign_ins(&self, principals: &[Principal])
        -> Result<Vec<Option<u64>>, StoreError>;

    /// Drops expired entries (the embedded store; Redis expires its own keys).
    fn sweep(&self, _now_ms: u64) {}
}
