//! otpgate: a two-factor verification gateway.
//!
//! [`App::build`] assembles the gateway from [`Settings`]; [`run`] serves it on a listener the
//! caller binds, until a shutdown future resolves. `main.rs` and the tests use exactly this.

pub mod account;
pub mod audit;
pub mod backoff;
pub mod cache;
pub mod clock;
pub mod config;
pub mod dispatch;
pub mod factors;
pub mod http;
pub mod limits;
pub mod mail;
pub mod memory;
pub mod metrics;
pub mod phone;
pub mod pin;
pub mod redis;
pub mod store;
pub mod trust;
pub mod verify;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ring::rand::SystemRandom;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::memory::MemoryStore;
use crate::redis::RedisSettings;
use crate::redis::{RedisOutbox, RedisStore};
use account::{key_digest, Account, AccountId, ApiKeyRecord, KeyDigest};
use cache::TtlCache;
use clock::{Clock, SystemClock};
use config::Settings;
use dispatch::providers::Provider;
use dispatch::router::{BreakerSettings, RetrySettings, Router};
use dispatch::template::WebOtp;
use dispatch::{Dispatcher, DurableQueue, Queue, WorkerSettings, Workers};
use limits::Limits;
use metrics::Metrics;
use store::StoreError;
use verify::code::random_bytes;
use verify::store::{Store, StoreSendLog};
use verify::Verifier;

pub use http::run;

/// How long a key or account read from the store is trusted before it is read again.
const AUTH_CACHE_TTL: Duration = Duration::from_secs(30);
const AUTH_CACHE_MAX_ENTRIES: usize = 100_000;

/// The assembled gateway; cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct App(Arc<AppState>);

pub struct AppState {
    settings: Settings,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    verifier: Verifier,
    /// Users, policy, trusted devices, login decisions, audit.
    account_service: Arc<account::service::AccountService>,
    /// Phone numbers and their two-step PINs, e-mailed links.
    pins: pin::service::PinService,
    /// Authenticator apps, security keys, recovery codes.
    factors: factors::FactorService,
    metrics: Arc<Metrics>,
    limits: Limits,
    keys: TtlCache<KeyDigest, ApiKeyRecord>,
    accounts: TtlCache<AccountId, Account>,
    /// The store's epoch the two caches above were filled under (see `Store::epoch`).
    auth_epoch: AtomicU64,
    root_key_digest: KeyDigest,
    rng: SystemRandom,
    tasks: TaskTracker,
    stop: CancellationToken,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("auth.root_key is empty; set OTPGATE_ROOT_KEY")]
    NoRootKey,
    #[error("the system random generator failed")]
    Random,
    #[error("cannot reach the store: {0}")]
    Store(#[from] StoreError),
    #[error("cannot set up the provider: {0}")]
    Provider(String),
    #[error("cannot set up two-step PINs or the mailer: {0}")]
    Pins(String),
    #[error("cannot set up second factors: {0}")]
    Factors(String),
}

/// What a test (or an embedder) may swap in; production uses the defaults.
#[derive(Default)]
pub struct Overrides {
    pub clock: Option<Arc<dyn Clock>>,
    pub provider: Option<Arc<dyn Provider>>,
}

/// The providers from config (or the one override a test gives) behind the routing table.
fn build_router(
    settings: &Settings,
    override_provider: Option<Arc<dyn Provider>>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
) -> Result<Router, BuildError> {
    let dispatch = &settings.dispatch;
    let providers: Vec<(Arc<dyn Provider>, Option<u32>)> = match override_provider {
        Some(provider) => vec![(provider, None)],
        None => {
            let mut built = Vec::new();
            for provider in dispatch.effective_providers() {
                if provider.kind == dispatch::providers::AdapterKind::Log {
                    tracing::warn!("the log provider is active: codes are printed on standard output; use it for development only");
                }
                let rate = dispatch.rates.get(&provider.name).copied();
                built.push((
                    dispatch::providers::build(&provider).map_err(BuildError::Provider)?,
                    rate,
                ));
            }
            built
        }
    };
    Router::new(
        providers,
        &dispatch.routes,
        BreakerSettings {
            failures_to_open: dispatch.breaker_failures,
            open_for: dispatch.breaker_open,
        },
        RetrySettings {
            base_backoff: dispatch.retry_base,
            max_backoff: dispatch.retry_max,
        },
        clock,
        metrics,
    )
    .map_err(|errors| BuildError::Provider(errors.join("; ")))
}

impl App {
    pub async fn build(settings: Settings) -> Result<Self, BuildError> {
        Self::build_with(settings, Overrides::default()).await
    }

    pub async fn build_with(settings: Settings, overrides: Overrides) -> Result<Self, BuildError> {
        if settings.auth.root_key.is_empty() {
            return Err(BuildError::NoRootKey);
        }
        // reqwest is built without a default TLS crypto provider so that ring stays the only
        // crypto stack; installing it twice is harmless, hence the ignored result.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let clock = overrides.clock.unwrap_or_else(|| Arc::new(SystemClock));
        let rng = SystemRandom::new();
        let tasks = TaskTracker::new();
        let stop = CancellationToken::new();
        let metrics = Arc::new(Metrics::new());

        // Without Redis there is one instance, so a per-process MAC key is as good as any.
        let code_key = if settings.verification.code_key.is_empty() {
            random_bytes::<32>(&rng)
                .map_err(|_| BuildError::Random)?
                .to_vec()
        } else {
            settings.verification.code_key.expose().to_vec()
        };

        let mut redis: Option<Arc<RedisStore>> = None;
        let (store, memory): (Arc<dyn Store>, Option<Arc<MemoryStore>>) =
            if settings.store.redis_urls.is_empty() {
                let memory = Arc::new(
                    MemoryStore::new(settings.store.memory_max_verifications)
                        .with_account_share(settings.tenants.memory_account_share_percent),
                );
                (memory.clone(), Some(memory))
            } else {
                let connected = Arc::new(
                    RedisStore::connect(&RedisSettings::from_store(&settings.store)).await?,
                );
                connected.spawn_supervisor(&tasks, stop.clone(), metrics.clone());
                redis = Some(connected.clone());
                (connected, None)
            };

        let router = Arc::new(build_router(
            &settings,
            overrides.provider,
            clock.clone(),
            metrics.clone(),
        )?);
        let worker_settings = WorkerSettings {
            concurrency: settings.dispatch.concurrency,
            queue_capacity: settings.dispatch.queue_capacity,
            reclaim_idle: settings.dispatch.reclaim_idle,
            max_deliveries: settings.dispatch.max_deliveries,
            poll_interval: settings.dispatch.poll_interval,
            run_workers: settings.dispatch.workers,
            unready_after: settings.dispatch.outbox_unready_after,
        };
        let queue = match &redis {
            Some(redis) => Queue::Durable(DurableQueue {
                store: Arc::new(StoreSendLog(redis.clone())),
                outbox: Arc::new(RedisOutbox::on(redis)),
            }),
            None => Queue::Memory(Arc::new(StoreSendLog(store.clone()))),
        };
        let workers = Workers {
            settings: worker_settings,
            clock: clock.clone(),
            metrics: metrics.clone(),
            tasks: &tasks,
            stop: stop.clone(),
        };
        let dispatcher = Dispatcher::spawn(router, queue, &code_key, workers);
        let web_otp = (!settings.dispatch.web_otp_domain.is_empty()).then(|| WebOtp {
            domain: settings.dispatch.web_otp_domain.clone(),
        });
        let verifier = Verifier::new(
            store.clone(),
            clock.clone(),
            dispatcher,
            metrics.clone(),
            &code_key,
            settings.verification.clone(),
            &settings.limits,
            web_otp,
        );

        let account_service = account::service::assemble(
            &settings,
            redis.as_deref(),
            &code_key,
            &rng,
            clock.clone(),
            &metrics,
            &tasks,
            stop.clone(),
        )
        .map(Arc::new)
        .map_err(|_| BuildError::Random)?;
        let pins = pin::assemble(
            &settings,
            redis.as_deref(),
            &code_key,
            &rng,
            clock.clone(),
            metrics.clone(),
            account_service.directory().clone(),
        )
        .map_err(BuildError::Pins)?;

        let factors = factors::assemble(
            &settings,
            redis.as_deref(),
            &code_key,
            &rng,
            clock.clone(),
            metrics.clone(),
            account_service.clone(),
        )
        .map_err(BuildError::Factors)?;

        let root_key_digest = key_digest(
            std::str::from_utf8(settings.auth.root_key.expose())
                .map_err(|_| BuildError::NoRootKey)?,
        );
        let app = App(Arc::new(AppState {
            limits: Limits::new(&settings.limits),
            keys: TtlCache::new(AUTH_CACHE_TTL, AUTH_CACHE_MAX_ENTRIES),
            accounts: TtlCache::new(AUTH_CACHE_TTL, AUTH_CACHE_MAX_ENTRIES),
            auth_epoch: AtomicU64::new(store.epoch()),
            settings,
            store,
            clock,
            verifier,
            account_service,
            pins,
            factors,
            metrics,
            root_key_digest,
            rng,
            tasks,
            stop,
        }));
        app.spawn_housekeeping(memory);
        Ok(app)
    }

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

    /// A key by its digest, through the cache.
    pub async fn find_key(&self, digest: &KeyDigest) -> Result<Option<ApiKeyRecord>, StoreError> {
        let now = self.0.clock.now_ms();
        let epoch = self.sync_auth_caches();
        if let Some(key) = self.0.keys.get(digest, now) {
            return Ok(Some(key));
        }
        let found = self.0.store.find_api_key(digest).await?;
        if let Some(key) = &found {
            // A read that straddles a reconnect may predate a loss: not kept.
            if self.0.store.epoch() == epoch {
                self.0.keys.insert(*digest, key.clone(), now);
            }
        }
        Ok(found)
    }

    /// An account by id, through the cache.
    pub async fn find_account(&self, id: &AccountId) -> Result<Option<Account>, StoreError> {
        let now = self.0.clock.now_ms();
        let epoch = self.sync_auth_caches();
        if let Some(account) = self.0.accounts.get(id, now) {
            return Ok(Some(account));
        }
        let found = self.0.store.get_account(id).await?;
        if let Some(account) = &found {
            if self.0.store.epoch() == epoch {
                self.0.accounts.insert(id.clone(), account.clone(), now);
            }
        }
        Ok(found)
    }

    /// Flushes the key and account caches on a store reconnect after an outage (the store's
    /// epoch moved): Redis may have come back without what they hold (a restart without
    /// persistence, a failover to a replica that missed the last writes). The hot-path cache
    /// does the same when its invalidation link returns.
    fn sync_auth_caches(&self) -> u64 {
        let epoch = self.0.store.epoch();
        if self.0.auth_epoch.load(Ordering::Acquire) != epoch {
            // Cleared before the epoch is recorded, so no caller sees the new epoch and an
            // old entry together.
            self.0.keys.clear();
            self.0.accounts.clear();
            self.0.auth_epoch.store(epoch, Ordering::Release);
            tracing::info!("store reconnected after an outage: key and account caches flushed");
        }
        epoch
    }
}
