//! The in-process cache in front of the directory for the hot path (trusted-device checks and
//! login decisions): policies, users and devices, each bounded, each entry short-lived.
//!
//! It never makes a revoked or expired thing valid:
//! - every write anywhere publishes an invalidation; every instance drops the entry on receipt;
//! - while the invalidation link is down the cache is flushed and bypassed (no reads, no
//!   writes) until the link is back, when it is flushed again;
//! - a read that raced an invalidation does not put its (possibly stale) answer in: a global
//!   generation is taken before the store read and checked after the insert;
//! - entries expire after `ttl` (checked on every hit), and a device's own expiry is decided
//!   on every use from the cached record and the clock.

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use foldhash::fast::RandomState;

use crate::account::policy::Policy;
use crate::account::trust::{DeviceDigest, DeviceRecord};
use crate::account::user::{User, UserId};
use crate::account::{hex, AccountId, ApiKeyRecord, KeyDigest};

/// One invalidation, as published on the Redis channel: `p|<account>`, `u|<account>|<user>`,
/// `d|<digest hex>`, `k|<API key digest hex>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalidation {
    Policy(AccountId),
    User(AccountId, UserId),
    Device(DeviceDigest),
    /// An API key was revoked.
    Key(KeyDigest),
}

impl Invalidation {
    pub fn encode(&self) -> String {
        match self {
            Invalidation::Policy(account) => format!("p|{account}"),
            Invalidation::User(account, user) => format!("u|{account}|{user}"),
            Invalidation::Device(digest) => format!("d|{}", hex(digest)),
            Invalidation::Key(digest) => format!("k|{}", hex(digest)),
        }
    }

    pub fn decode(message: &str) -> Option<Self> {
        let mut parts = message.split('|');
        let kind = parts.next()?;
        let first = parts.next()?;
        let second = parts.next();
        if parts.next().is_some() {
            return None;
        }
        match (kind, second) {
            ("p", None) => AccountId::parse(first).map(Invalidation::Policy),
            ("u", Some(user)) => Some(Invalidation::User(
                AccountId::parse(first)?,
                UserId::parse(user)?,
            )),
            ("d", None) => {
                let bytes = data_encoding::HEXLOWER.decode(first.as_bytes()).ok()?;
                Some(Invalidation::Device(bytes.try_into().ok()?))
            }
            ("k", None) => {
                let bytes = data_encoding::HEXLOWER.decode(first.as_bytes()).ok()?;
                Some(Invalidation::Key(bytes.try_into().ok()?))
            }
            _ => None,
        }
    }
}

/// What a lookup found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup<V> {
    Hit(V),
    Miss,
    /// The invalidation link is down: ask the store, and do not cache the answer.
    Bypass,
}

/// Taken before a store read; an answer is cached only if no invalidation happened since.
#[derive(Debug, Clone, Copy)]
pub struct Ticket(Option<u64>);

/// A cached value, shared: a hit costs an `Arc` count, not a copy of the record's strings (a
/// user, a device and its account, a key: two to five allocations each on every hit before).
struct Slot<V> {
    value: Arc<V>,
    cached_at_ms: u64,
}

/// The maps hash with foldhash (seeded per map) rather than SipHash: their keys are digests, or
/// ids an account created itself, and only answers the store gave are cached.
type Map<K, V> = DashMap<K, Slot<V>, RandomState>;

/// A user's place in the cache: its account and id.
#[derive(Clone, PartialEq, Eq)]
struct UserKey(AccountId, UserId);

/// A user's place as a lookup borrows it, so that a hit builds no owned key (the two ids were
/// cloned for every lookup before).
trait UserKeyRef {
    fn parts(&self) -> (&str, &str);
}

impl UserKeyRef for UserKey {
    fn parts(&self) -> (&str, &str) {
        (self.0.as_str(), self.1.as_str())
    }
}

impl UserKeyRef for (&AccountId, &UserId) {
    fn parts(&self) -> (&str, &str) {
        (self.0.as_str(), self.1.as_str())
    }
}

impl<'a> Borrow<dyn UserKeyRef + 'a> for UserKey {
    fn borrow(&self) -> &(dyn UserKeyRef + 'a) {
        self
    }
}

// The owned key hashes and compares as its borrowed form, as `Borrow` requires.
impl Hash for dyn UserKeyRef + '_ {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.parts().hash(state);
    }
}

impl PartialEq for dyn UserKeyRef + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for dyn UserKeyRef + '_ {}

impl Hash for UserKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self as &dyn UserKeyRef).hash(state);
    }
}

pub struct HotCache {
    policies: Map<AccountId, Policy>,
    users: Map<UserKey, User>,
    devices: Map<DeviceDigest, (AccountId, DeviceRecord)>,
    /// API keys by digest (`App::find_key`): a revoked key is dropped everywhere like a device.
    keys: Map<KeyDigest, ApiKeyRecord>,
    generation: AtomicU64,
    link_up: AtomicBool,
    flushes: AtomicU64,
    ttl_ms: u64,
    max_entries: usize,
}

impl HotCache {
    /// Starts with the link down: nothing is cached until the invalidation link is up (the
    /// embedded store, a single instance, sets it up at once).
    pub fn new(ttl: Duration, max_entries: usize) -> Self {
        Self {
            policies: DashMap::with_hasher(RandomState::default()),
            users: DashMap::with_hasher(RandomState::default()),
            devices: DashMap::with_hasher(RandomState::default()),
            keys: DashMap::with_hasher(RandomState::default()),
            generation: AtomicU64::new(0),
            link_up: AtomicBool::new(false),
            flushes: AtomicU64::new(0),
            ttl_ms: ttl.as_millis() as u64,
            max_entries,
        }
    }

    pub fn ticket(&self) -> Ticket {
        if self.link_up.load(Ordering::SeqCst) {
            Ticket(Some(self.generation.load(Ordering::SeqCst)))
        } else {
            Ticket(None)
        }
    }

    pub fn link_is_up(&self) -> bool {
        self.link_up.load(Ordering::SeqCst)
    }

    /// Link up: flush (whatever happened while it was down is unknown) and start caching.
    /// Link down: stop caching, then flush.
    pub fn set_link(&self, up: bool) {
        if up {
            self.flush();
            self.link_up.store(true, Ordering::SeqCst);
        } else {
            self.link_up.store(false, Ordering::SeqCst);
            self.flush();
        }
    }

    pub fn flush(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.policies.clear();
        self.users.clear();
        self.devices.clear();
        self.keys.clear();
        self.flushes.fetch_add(1, Ordering::Relaxed);
    }

    /// How many times the cache was flushed (link changes), for tests and logs.
    pub fn flush_count(&self) -> u64 {
        self.flushes.load(Ordering::Relaxed)
    }

    pub fn invalidate(&self, what: &Invalidation) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        match what {
            Invalidation::Policy(account) => {
                self.policies.remove(account);
            }
            Invalidation::User(account, user) => {
                self.users.remove(&(account, user) as &dyn UserKeyRef);
            }
            Invalidation::Device(digest) => {
                self.devices.remove(digest);
            }
            Invalidation::Key(digest) => {
                self.keys.remove(digest);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.policies.len() + self.users.len() + self.devices.len() + self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn policy(&self, account: &AccountId, now_ms: u64) -> Lookup<Arc<Policy>> {
        self.get(&self.policies, account, now_ms)
    }

    pub fn put_policy(&self, ticket: Ticket, account: &AccountId, policy: Policy, now_ms: u64) {
        self.put(&self.policies, ticket, account.clone(), policy, now_ms);
    }

    pub fn user(&self, account: &AccountId, user: &UserId, now_ms: u64) -> Lookup<Arc<User>> {
        self.get(&self.users, &(account, user) as &dyn UserKeyRef, now_ms)
    }

    pub fn put_user(&self, ticket: Ticket, account: &AccountId, user: User, now_ms: u64) {
        let key = UserKey(account.clone(), user.id.clone());
        self.put(&self.users, ticket, key, user, now_ms);
    }

    pub fn device(
        &self,
        digest: &DeviceDigest,
        now_ms: u64,
    ) -> Lookup<Arc<(AccountId, DeviceRecord)>> {
        self.get(&self.devices, digest, now_ms)
    }

    pub fn put_device(
        &self,
        ticket: Ticket,
        digest: DeviceDigest,
        account: &AccountId,
        record: DeviceRecord,
        now_ms: u64,
    ) {
        self.put(
            &self.devices,
            ticket,
            digest,
            (account.clone(), record),
            now_ms,
        );
    }

    pub fn key(&self, digest: &KeyDigest, now_ms: u64) -> Lookup<Arc<ApiKeyRecord>> {
        self.get(&self.keys, digest, now_ms)
    }

    pub fn put_key(&self, ticket: Ticket, record: ApiKeyRecord, now_ms: u64) {
        self.put(&self.keys, ticket, record.digest, record, now_ms);
    }

    fn get<K: Eq + Hash + Borrow<Q>, Q: Eq + Hash + ?Sized, V>(
        &self,
        map: &Map<K, V>,
        key: &Q,
        now_ms: u64,
    ) -> Lookup<Arc<V>> {
        if !self.link_up.load(Ordering::SeqCst) {
            return Lookup::Bypass;
        }
        match map.get(key) {
            Some(slot) if now_ms < slot.cached_at_ms + self.ttl_ms => {
                Lookup::Hit(Arc::clone(&slot.value))
            }
            _ => Lookup::Miss,
        }
    }

    fn put<K: Eq + Hash + Clone, V>(
        &self,
        map: &Map<K, V>,
        ticket: Ticket,
        key: K,
        value: V,
        now_ms: u64,
    ) {
        let Some(generation) = ticket.0 else { return };
        if !self.link_up.load(Ordering::SeqCst)
            || self.generation.load(Ordering::SeqCst) != generation
        {
            return;
        }
        if map.len() >= self.max_entries {
            // Bounded by clearing: simple, and a cold cache only costs store reads.
            map.clear();
        }
        map.insert(
            key.clone(),
            Slot {
                value: Arc::new(value),
                cached_at_ms: now_ms,
            },
        );
        // An invalidation (or flush) that ran between the check above and the insert may have
        // found nothing to remove; it bumped the generation first, so undo the insert.
        if self.generation.load(Ordering::SeqCst) != generation
            || !self.link_up.load(Ordering::SeqCst)
        {
            map.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::policy::Policy;
    use ring::rand::SystemRandom;

    fn account() -> AccountId {
        AccountId::random(&SystemRandom::new()).unwrap()
    }

    #[test]
    fn nothing_is_cached_while_the_link_is_down() {
        let cache = HotCache::new(Duration::from_secs(10), 100);
        let account = account();
        let ticket = cache.ticket();
        cache.put_policy(ticket, &account, Policy::default_for_new_accounts(), 0);
        assert_eq!(cache.policy(&account, 0), Lookup::Bypass);
        cache.set_link(true);
        let ticket = cache.ticket();
        cache.put_policy(ticket, &account, Policy::default_for_new_accounts(), 0);
        assert!(matches!(cache.policy(&account, 0), Lookup::Hit(_)));
        cache.set_link(false);
        assert_eq!(cache.policy(&account, 0), Lookup::Bypass);
        assert!(cache.is_empty(), "a dropped link flushes the cache");
    }

    #[test]
    fn an_answer_read_before_an_invalidation_is_not_cached() {
        let cache = HotCache::new(Duration::from_secs(10), 100);
        cache.set_link(true);
        let account = account();
        let ticket = cache.ticket();
        cache.invalidate(&Invalidation::Policy(account.clone()));
        cache.put_policy(ticket, &account, Policy::default_for_new_accounts(), 0);
        assert_eq!(cache.policy(&account, 0), Lookup::Miss);
    }

    #[test]
    fn entries_expire_and_the_cache_stays_bounded() {
        let cache = HotCache::new(Duration::from_secs(10), 3);
        cache.set_link(true);
        let first = account();
        cache.put_policy(
            cache.ticket(),
            &first,
            Policy::default_for_new_accounts(),
            1_000,
        );
        assert!(matches!(cache.policy(&first, 10_999), Lookup::Hit(_)));
        assert_eq!(cache.policy(&first, 11_000), Lookup::Miss);
        for _ in 0..10 {
            cache.put_policy(
                cache.ticket(),
                &account(),
                Policy::default_for_new_accounts(),
                0,
            );
            assert!(cache.len() <= 3);
        }
    }

    #[test]
    fn a_user_is_found_by_its_account_and_id_and_dropped_by_its_invalidation() {
        let cache = HotCache::new(Duration::from_secs(10), 100);
        cache.set_link(true);
        let (first, second) = (account(), account());
        let id = UserId::parse("ana@example.com").unwrap();
        let user = User {
            id: id.clone(),
            role: crate::account::user::UserRole::Member,
            phone: None,
            email: None,
            two_factor: None,
            factors: Vec::new(),
            device_epoch: 0,
            version: 1,
            created_ms: 0,
            updated_ms: 0,
        };
        cache.put_user(cache.ticket(), &first, user, 0);
        assert!(matches!(cache.user(&first, &id, 0), Lookup::Hit(found) if found.id == id));
        // The same id in another account, and another id in the same account, are not it.
        assert_eq!(cache.user(&second, &id, 0), Lookup::Miss);
        let other = UserId::parse("ana@example.co").unwrap();
        assert_eq!(cache.user(&first, &other, 0), Lookup::Miss);
        cache.invalidate(&Invalidation::User(first.clone(), id.clone()));
        assert_eq!(cache.user(&first, &id, 0), Lookup::Miss);
        assert!(cache.is_empty());
    }

    #[test]
    fn invalidations_round_trip_their_wire_form() {
        let account = account();
        for what in [
            Invalidation::Policy(account.clone()),
            Invalidation::User(account.clone(), UserId::parse("a@b.c").unwrap()),
            Invalidation::Device([7u8; 32]),
            Invalidation::Key([9u8; 32]),
        ] {
            assert_eq!(Invalidation::decode(&what.encode()), Some(what));
        }
        assert_eq!(Invalidation::decode("x|y"), None);
        assert_eq!(Invalidation::decode("p|AC1|extra|more"), None);
    }
}
