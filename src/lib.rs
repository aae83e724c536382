//! otpgate: a two-factor verification gateway.
//!
//! [`App::build`] (in [`startup`], the composition root) assembles the gateway from
//! [`Settings`]; [`run`] serves it on a listener the caller binds, until a shutdown future
//! resolves. `main.rs` and the tests use exactly this.

pub mod abuse;
pub mod account;
pub mod backoff;
pub mod cache;
pub mod clock;
pub mod config;
pub mod console;
pub mod destination;
pub mod dispatch;
pub mod events;
pub mod factors;
pub mod http;
pub mod limits;
pub mod mail;
pub mod memory;
pub mod metrics;
pub mod paging;
pub mod phone;
pub mod pin;
pub mod random;
pub mod redis;
pub mod secret;
pub mod startup;
pub mod store;
pub mod verify;

use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ring::rand::SystemRandom;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::memory::MemoryStore;
use account::store::Accounts;
use account::{Account, AccountId, ApiKeyRecord, KeyDigest};
use cache::TtlCache;
use clock::Clock;
use config::Settings;
use limits::Limits;
use metrics::Metrics;
use store::StoreError;
use verify::store::Store;
use verify::Verifier;

pub use http::run;
pub use startup::{BuildError, Overrides};

/// The assembled gateway; cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct App(Arc<AppState>);

pub struct AppState {
    settings: Settings,
    store: Arc<dyn Store>,
    /// Accounts and their API keys, read through `keys` and `accounts` below.
    account_records: Arc<dyn Accounts>,
    clock: Arc<dyn Clock>,
    verifier: Verifier,
    /// Users, policy, trusted devices, login decisions, audit.
    account_service: Arc<account::service::AccountService>,
    /// Phone numbers and their two-step PINs, e-mailed links.
    pins: pin::service::PinService,
    /// Authenticator apps, security keys, recovery codes.
    factors: factors::FactorService,
    /// Webhooks out: registrations, tests, deliveries.
    webhooks: events::WebhookService,
    /// The web console: invitations, passkey sign-in, sessions.
    console: console::service::ConsoleService,
    metrics: Arc<Metrics>,
    limits: Limits,
    /// Shared: every keyed request reads its account from here, and a hit then costs an `Arc`
    /// count instead of copying the account's id and name.
    accounts: TtlCache<AccountId, Arc<Account>>,
    /// The epoch of `account_records` the cache above were filled under (see
    /// `Accounts::epoch`).
    auth_epoch: AtomicU64,
    root_key_digest: KeyDigest,
    rng: SystemRandom,
    tasks: TaskTracker,
    stop: CancellationToken,
}

impl App {
    /// Once a second: expire memory-store records, forget idle rate-limit keys, drain metrics.
    fn spawn_housekeeping(&self, memory: Option<Arc<MemoryStore>>) {
        let state = self.0.clone();
        let stop = self.0.stop.clone();
        self.0.tasks.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = stop.cancelled() => break,
                }
                if let Some(memory) = &memory {
                    memory.sweep(state.clock.now_ms());
                }
                state.pins.store().sweep(state.clock.now_ms());
                state.limits.sweep();
                state.metrics.run_upkeep();
            }
        });
    }

    /// Stops background work: the dispatcher delivers what is queued, within `deadline`.
    pub async fn shutdown(&self, deadline: Duration) {
        self.0.stop.cancel();
        self.0.tasks.close();
        if tokio::time::timeout(deadline, self.0.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                ?deadline,
                "background tasks still running after the deadline"
            );
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.0.settings
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.0.store
    }

    /// Accounts and their API keys (uncached; `find_key` and `find_account` read through the
    /// caches).
    pub fn account_records(&self) -> &Arc<dyn Accounts> {
        &self.0.account_records
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.0.clock
    }

    pub fn verifier(&self) -> &Verifier {
        &self.0.verifier
    }

    /// Users, policy, trusted devices, login decisions and the audit trail.
    pub fn accounts(&self) -> &account::service::AccountService {
        &self.0.account_service
    }

    /// Phone numbers, two-step PINs and the e-mailed disable and reset links.
    pub fn pins(&self) -> &pin::service::PinService {
        &self.0.pins
    }

    /// Authenticator apps (TOTP), security keys (WebAuthn) and recovery codes.
    pub fn factors(&self) -> &factors::FactorService {
        &self.0.factors
    }

    /// Webhooks out: the account's registrations and their deliveries.
    pub fn console(&self) -> &console::service::ConsoleService {
        &self.0.console
    }

    pub fn webhooks(&self) -> &events::WebhookService {
        &self.0.webhooks
    }

    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    pub fn limits(&self) -> &Limits {
        &self.0.limits
    }

    pub(crate) fn rng(&self) -> &SystemRandom {
        &self.0.rng
    }

    pub(crate) fn root_key_digest(&self) -> &KeyDigest {
        &self.0.root_key_digest
    }

    /// A key by its digest, through the hot-path cache: a revocation on any instance drops it
    /// there (the invalidation link), and while the link is down nothing is cached.
    pub async fn find_key(
        &self,
        digest: &KeyDigest,
    ) -> Result<Option<Arc<ApiKeyRecord>>, StoreError> {
        let cache = self.0.account_service.cache();
        let now = self.0.clock.now_ms();
        let ticket = cache.ticket();
        if let account::trust::cache::Lookup::Hit(record) = cache.key(digest, now) {
            return Ok(Some(record));
        }
        let found = self
            .0
            .account_records
            .find_api_key(digest)
            .await
            .inspect_err(|_| self.0.metrics.store_error("key"))?;
        if let Some(record) = &found {
            cache.put_key(ticket, record.clone(), now);
        }
        Ok(found.map(Arc::new))
    }

    /// An account by id, through the cache.
    pub async fn find_account(&self, id: &AccountId) -> Result<Option<Arc<Account>>, StoreError> {
        let read = async {
            let found = self.0.account_records.get_account(id).await?;
            Ok::<_, StoreError>(found.map(Arc::new))
        };
        self.through_cache(&self.0.accounts, id, read).await
    }

    /// `key` from `cache`, else from `read` (kept for next time).
    async fn through_cache<K: Eq + Hash + Clone, V: Clone>(
        &self,
        cache: &TtlCache<K, V>,
        key: &K,
        read: impl Future<Output = Result<Option<V>, StoreError>>,
    ) -> Result<Option<V>, StoreError> {
        let now = self.0.clock.now_ms();
        let epoch = self.sync_auth_caches();
        if let Some(value) = cache.get(key, now) {
            return Ok(Some(value));
        }
        let found = read.await?;
        if let Some(value) = &found {
            // A read that straddles a reconnect may predate a loss: not kept.
            if self.0.account_records.epoch() == epoch {
                cache.insert(key.clone(), value.clone(), now);
            }
        }
        Ok(found)
    }

    /// Flushes the account cache on a store reconnect after an outage (the store's
    /// epoch moved): Redis may have come back without what they hold (a restart without
    /// persistence, a failover to a replica that missed the last writes). The hot-path cache
    /// does the same when its invalidation link returns.
    fn sync_auth_caches(&self) -> u64 {
        let epoch = self.0.account_records.epoch();
        if self.0.auth_epoch.load(Ordering::Acquire) != epoch {
            // Cleared before the epoch is recorded, so no caller sees the new epoch and an
            // old entry together.
            self.0.accounts.clear();
            self.0.auth_epoch.store(epoch, Ordering::Release);
            tracing::info!("store reconnected after an outage: key and account caches flushed");
        }
        epoch
    }
}
