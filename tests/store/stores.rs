//! One fresh set of the store ports (and, on Redis, dispatch's outbox) per scenario, on the backend it asks for: the memory
//! adapters, or the Redis adapters under a key prefix of their own on the shared server or
//! cluster (so scenarios sharing a server never see each other's keys).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use ring::rand::SystemRandom;

use otpgate::account::limits::TenantSettings;
use otpgate::account::store::{Accounts, Directory};
use otpgate::account::AccountId;
use otpgate::clock::ManualClock;
use otpgate::config::Settings;
use otpgate::console::store::ConsoleStore;
use otpgate::dispatch::outbox::Outbox;
use otpgate::factors::store::FactorStore;
use otpgate::memory::{
    MemoryAccounts, MemoryConsoleStore, MemoryDirectory, MemoryFactorStore, MemoryPinStore,
    MemoryStore,
};
use otpgate::pin::store::PinStore;
use otpgate::redis::{
    RedisAccounts, RedisConsoleStore, RedisDirectory, RedisFactorStore, RedisOutbox, RedisPinStore,
    RedisStore,
};
use otpgate::startup::redis_settings;
use otpgate::verify::store::Store;

use crate::redis_server::{shared_cluster, shared_redis};

/// The gateway's audit trail bound, as configured by default.
const AUDIT_CAP: usize = 1_000;

/// Which adapters a scenario runs on.
#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Memory,
    /// The shared single redis-server.
    Redis,
    /// The shared 3-node cluster.
    Cluster,
}

/// The five ports of one backend, an account of their own and the clock the scenario moves.
pub struct Stores {
    pub verify: Arc<dyn Store>,
    pub accounts: Arc<dyn Accounts>,
    pub directory: Arc<dyn Directory>,
    pub pins: Arc<dyn PinStore>,
    pub factors: Arc<dyn FactorStore>,
    /// The outbox the verify store queues into; none on memory (the memory dispatcher queues
    /// in its own channel).
    pub outbox: Option<Arc<dyn Outbox>>,
    /// The web console's invitations, ceremonies, passkeys and sessions.
    pub console: Arc<dyn ConsoleStore>,
    pub clock: Arc<ManualClock>,
    pub account: AccountId,
    pub rng: SystemRandom,
}

/// Stores with the documented bounds.
pub async fn stores(backend: Backend) -> Stores {
    stores_with(backend, TenantSettings::default()).await
}

/// Stores bounded by `tenants` (the per-account bounds the adapters enforce themselves).
pub async fn stores_with(backend: Backend, tenants: TenantSettings) -> Stores {
    let clock = Arc::new(ManualClock::new(1_764_000_000_000));
    let rng = SystemRandom::new();
    let account = AccountId::random(&rng).expect("random account id");
    let urls = match backend {
        Backend::Memory => {
            return Stores {
                verify: Arc::new(MemoryStore::new(10_000)),
                accounts: Arc::new(MemoryAccounts::new()),
                directory: Arc::new(MemoryDirectory::new(AUDIT_CAP)),
                pins: Arc::new(MemoryPinStore::new().with_tenants(tenants.clone())),
                factors: Arc::new(
                    MemoryFactorStore::new(clock.clone(), 10_000).with_tenants(tenants),
                ),
                outbox: None,
                console: Arc::new(MemoryConsoleStore::new(clock.clone())),
                clock,
                account,
                rng,
            };
        }
        Backend::Redis => vec![shared_redis().url()],
        Backend::Cluster => shared_cluster().urls(),
    };
    let mut settings = Settings::defaults();
    settings.store.redis_urls = urls;
    settings.store.key_prefix = unique_prefix();
    let redis = RedisStore::connect(&redis_settings(&settings.store))
        .await
        .expect("connect to the test Redis");
    Stores {
        accounts: Arc::new(RedisAccounts::on(&redis)),
        directory: Arc::new(RedisDirectory::on(&redis, AUDIT_CAP)),
        pins: Arc::new(RedisPinStore::on(&redis).with_tenants(tenants.clone())),
        factors: Arc::new(RedisFactorStore::on(&redis).with_tenants(tenants, clock.clone())),
        outbox: Some(Arc::new(RedisOutbox::on(&redis))),
        console: Arc::new(RedisConsoleStore::on(&redis).with_clock(clock.clone())),
        verify: Arc::new(redis),
        clock,
        account,
        rng,
    }
}

/// Tenant bounds with `adjust` applied to the defaults of every account.
pub fn bounded(
    adjust: impl FnOnce(&mut otpgate::account::limits::AccountLimits),
) -> TenantSettings {
    let mut tenants = TenantSettings::default();
    adjust(&mut tenants.defaults);
    tenants
}

fn unique_prefix() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "st{}x{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
