//! The composition root: the only code that reads [`Settings`] to build the services. It picks
//! the store (Redis or the embedded one), the keys every service needs, the providers, and wires
//! them into an [`App`]; the support command's service comes from the same builders.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use ring::rand::SystemRandom;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::abuse::{AbuseGuard, AbuseSettings, AbuseStore};
use crate::account::key_digest;
use crate::account::service::AccountService;
use crate::account::store::{Accounts, Directory};
use crate::account::trust::cache::HotCache;
use crate::account::trust::invalidation::{self, LinkSettings};
use crate::account::trust::metrics::HotPathMetrics;
use crate::cache::TtlCache;
use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::dispatch::providers::inbound::{
    InboundReceipt, ProviderContext, ReceiptFate, INBOUND_RECEIPT_QUEUE,
};
use crate::dispatch::providers::{self, AdapterKind, Provider};
use crate::dispatch::router::{BreakerSettings, RetrySettings, Router};
use crate::dispatch::seal::Sealer;
use crate::dispatch::template::WebOtp;
use crate::dispatch::{Dispatcher, DurableQueue, Queue, WorkerSettings, Workers};
use crate::events::store::{WebhookBounds, WebhookStore};
use crate::events::{Deliverer, EmitterSettings, Events, WebhookParts, WebhookService};
use crate::factors::crypto::FactorKeys;
use crate::factors::store::FactorStore;
use crate::factors::FactorService;
use crate::limits::Limits;
use crate::memory::{
    MemoryAbuseStore, MemoryAccounts, MemoryDirectory, MemoryStore, MemoryWebhookStore,
};
use crate::metrics::Metrics;
use crate::pin::service::{PinParts, PinService};
use crate::pin::store::PinStore;
use crate::pin::support::SupportDisable;
use crate::random::random_bytes;
use crate::redis::{
    RedisAbuseStore, RedisAccounts, RedisDirectory, RedisOutbox, RedisSettings, RedisStore,
    RedisWebhookStore, Supervision,
};
use crate::secret::Secret;
use crate::store::StoreError;
use crate::store::StoreSettings;
use crate::verify::store::{Store, StoreSendLog};
use crate::verify::workflow::Sweeper;
use crate::verify::{SendGuard, Verifier};
use crate::{App, AppState};

/// How long a key or account read from the store is trusted before it is read again.
const AUTH_CACHE_TTL: Duration = Duration::from_secs(30);
const AUTH_CACHE_MAX_ENTRIES: usize = 100_000;

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
    #[error("cannot set up webhooks: {0}")]
    Events(String),
}

/// What a test (or an embedder) may swap in; production uses the defaults.
#[derive(Default)]
pub struct Overrides {
    pub clock: Option<Arc<dyn Clock>>,
    pub provider: Option<Arc<dyn Provider>>,
}

/// An HMAC-SHA256 of `label` under `root_secret`: a key for one use, derived from a secret every
/// instance shares, with the label keeping the uses apart.
pub fn derive_key(root_secret: &[u8], label: &[u8]) -> Vec<u8> {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, root_secret);
    ring::hmac::sign(&key, label).as_ref().to_vec()
}

/// What the service builders read: the settings, the Redis connection (none: the embedded
/// store), the code key, the random generator, the clock and the metrics.
struct Parts<'a> {
    settings: &'a Settings,
    redis: Option<&'a RedisStore>,
    code_key: &'a [u8],
    rng: &'a SystemRandom,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
}

/// A key drawn for this process.
fn drawn_key(rng: &SystemRandom) -> Result<Vec<u8>, BuildError> {
    Ok(random_bytes::<32>(rng)
        .map_err(|_| BuildError::Random)?
        .to_vec())
}

impl Parts<'_> {
    /// The configured key, else (with Redis) one derived from the code key every instance
    /// shares, else one drawn for this process. The loader requires the key with Redis, so the
    /// derived one serves embedders building `Settings` by hand.
    fn key(&self, configured: &Secret, label: &[u8]) -> Result<Vec<u8>, BuildError> {
        if !configured.is_empty() {
            Ok(configured.expose().to_vec())
        } else if self.redis.is_some() {
            Ok(derive_key(self.code_key, label))
        } else {
            drawn_key(self.rng)
        }
    }
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

        let mut redis: Option<Arc<RedisStore>> = None;
        let (store, memory): (Arc<dyn Store>, Option<Arc<MemoryStore>>) =
            if settings.store.redis_urls.is_empty() {
                let memory = Arc::new(
                    MemoryStore::new(settings.store.memory_max_verifications)
                        .with_account_share(settings.tenants.memory_account_share_percent),
                );
                (memory.clone(), Some(memory))
            } else {
                // Abuse protection's counters are on this connection (`Parts::abuse`): on a
                // single server the start script admits each send itself.
                let connected = Arc::new(
                    RedisStore::connect(&redis_settings(&settings.store))
                        .await?
                        .admitting_sends(&settings.abuse),
                );
                connected.spawn_supervisor(&tasks, stop.clone(), metrics.clone());
                redis = Some(connected.clone());
                (connected, None)
            };
        let account_records: Arc<dyn Accounts> = match &redis {
            Some(redis) => Arc::new(RedisAccounts::on(redis)),
            None => Arc::new(MemoryAccounts::new()),
        };
        // Without Redis there is one instance, so a per-process MAC key is as good as any.
        let code_key = match &settings.verification.code_key {
            configured if configured.is_empty() => drawn_key(&rng)?,
            configured => configured.expose().to_vec(),
        };

        let parts = Parts {
            settings: &settings,
            redis: redis.as_deref(),
            code_key: &code_key,
            rng: &rng,
            clock: clock.clone(),
            metrics: metrics.clone(),
        };
        let (webhook_store, events) = parts.events(&tasks, &stop);

        let (provider_context, inbound_receipts) =
            ProviderContext::channel(INBOUND_RECEIPT_QUEUE, metrics.clone());
        let router = Arc::new(build_router(
            &settings,
            overrides.provider,
            &provider_context,
            clock.clone(),
            metrics.clone(),
        )?);
        let dispatch = &settings.dispatch;
        let worker_settings = WorkerSettings {
            concurrency: dispatch.concurrency,
            queue_capacity: dispatch.queue_capacity,
            reclaim_idle: dispatch.reclaim_idle,
            max_deliveries: dispatch.max_deliveries,
            poll_interval: dispatch.poll_interval,
            run_workers: dispatch.workers,
            unready_after: dispatch.outbox_unready_after,
        };
        let queue = match &redis {
            Some(redis) => Queue::Durable(DurableQueue {
                store: Arc::new(StoreSendLog(redis.clone(), events.clone())),
                outbox: Arc::new(RedisOutbox::on(redis)),
            }),
            None => Queue::Memory(Arc::new(StoreSendLog(store.clone(), events.clone()))),
        };
        let workers = Workers {
            settings: worker_settings,
            clock: clock.clone(),
            metrics: metrics.clone(),
            tasks: &tasks,
            stop: stop.clone(),
        };
        let dispatcher = Dispatcher::spawn(router, queue, &code_key, workers);
        // Every instance sweeps for due workflow fallbacks; the store fires each step once.
        let sweeper = Sweeper {
            store: store.clone(),
            clock: clock.clone(),
            metrics: metrics.clone(),
            dispatcher: dispatcher.clone(),
            events: events.clone(),
        };
        tasks.spawn(sweeper.run(stop.clone()));
        let web_otp = (!dispatch.web_otp_domain.is_empty()).then(|| WebOtp {
            domain: dispatch.web_otp_domain.clone(),
        });
        let abuse = Arc::new(settings.abuse.clone());
        let account_service = Arc::new(
            parts
                .accounts(&tasks, stop.clone())?
                .with_notices(Arc::new(events.clone()))
                .with_abuse(abuse.clone()),
        );
        let verifier = Verifier::new(
            store.clone(),
            clock.clone(),
            dispatcher,
            metrics.clone(),
            &code_key,
            settings.verification.clone(),
            &settings.limits,
            web_otp,
        )
        .with_events(events.clone())
        .with_abuse(SendGuard {
            guard: parts.abuse(abuse, &tasks, stop.clone()),
            accounts: account_service.clone(),
        });
        let pins = parts
            .pins(account_service.directory().clone())?
            .with_events(events.clone());
        let factors = parts.factors(account_service.clone())?;
        let webhooks = parts.webhooks(webhook_store, account_service.directory(), events)?;
        let console = parts.console(account_service.clone());
        if settings.events.enabled && settings.events.workers {
            let worker = Deliverer::new(webhooks.store().clone(), clock.clone(), &settings.events)
                .map_err(BuildError::Events)?
                .with_metrics(metrics.clone());
            tasks.spawn(Arc::new(worker).run(stop.clone()));
        }

        let root_key_digest = key_digest(
            std::str::from_utf8(settings.auth.root_key.expose())
                .map_err(|_| BuildError::NoRootKey)?,
        );
        let app = App(Arc::new(AppState {
            limits: Limits::new(&settings.limits),
            accounts: TtlCache::new(AUTH_CACHE_TTL, AUTH_CACHE_MAX_ENTRIES),
            auth_epoch: AtomicU64::new(account_records.epoch()),
            settings,
            store,
            account_records,
            clock,
            verifier,
            account_service,
            pins,
            factors,
            webhooks,
            console,
            metrics,
            root_key_digest,
            rng,
            tasks,
            stop,
        }));
        app.spawn_housekeeping(memory);
        spawn_inbound_receipts(&app, inbound_receipts);
        Ok(app)
    }
}

/// Receipts that providers take over their own connections (SMPP), applied as the receipt
/// route applies the HTTP vendors' ones; each provider learns its receipt's fate, to answer its
/// SMSC by it.
fn spawn_inbound_receipts(app: &App, mut inbound: mpsc::Receiver<InboundReceipt>) {
    let (gateway, stop) = (app.clone(), app.0.stop.clone());
    app.0.tasks.spawn(async move {
        loop {
            let next = tokio::select! {
                () = stop.cancelled() => return,
                next = inbound.recv() => next,
            };
            let Some(InboundReceipt {
                provider,
                receipt,
                reply,
            }) = next
            else {
                return;
            };
            let fate = match gateway.verifier().apply_receipt(provider, &receipt).await {
                Ok(true) => {
                    // Counted once kept: an unknown or unkept receipt comes again.
                    gateway.metrics().receipt("smpp", receipt.status.as_str());
                    ReceiptFate::Applied
                }
                Ok(false) => ReceiptFate::Unknown,
                Err(error) => {
                    tracing::warn!(provider, "could not keep an SMPP receipt: {error}");
                    ReceiptFate::Failed
                }
            };
            let _ = reply.send(fate);
        }
    });
}

/// The providers from config (or the one override a test gives) behind the routing table.
fn build_router(
    settings: &Settings,
    override_provider: Option<Arc<dyn Provider>>,
    context: &ProviderContext,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
) -> Result<Router, BuildError> {
    let dispatch = &settings.dispatch;
    let providers: Vec<(Arc<dyn Provider>, Option<u32>)> = match override_provider {
        Some(provider) => vec![(provider, None)],
        None => {
            let mut built = Vec::new();
            for provider in dispatch.effective_providers() {
                if provider.kind == AdapterKind::Log {
                    tracing::warn!("the log provider is active: codes are printed on standard output; use it for development only");
                }
                let rate = dispatch.rates.get(&provider.name).copied();
                built.push((
                    providers::build_receiving(&provider, Some(context))
                        .map_err(BuildError::Provider)?,
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

/// How to reach Redis, from `[store]` (the gateway and the support command both connect).
pub fn redis_settings(store: &StoreSettings) -> RedisSettings {
    RedisSettings {
        urls: store.redis_urls.clone(),
        key_prefix: store.key_prefix.clone(),
        connect_timeout: store.connect_timeout,
        response_timeout: store.response_timeout,
        supervision: Supervision {
            probe_interval: store.probe_interval,
            rebuild_after: store.client_rebuild_after,
            unhealthy_after: store.client_unhealthy_after,
            shard_down_grace: store.shard_down_grace,
        },
    }
}

/// The directory on Redis (shared with the support command).
fn redis_directory(settings: &Settings, redis: &RedisStore) -> RedisDirectory {
    RedisDirectory::new(
        redis.connection(),
        redis.prefix(),
        settings.directory.audit_max_entries,
    )
}

/// The PIN store on the gateway's Redis connection, or in memory.
fn pin_store(settings: &Settings, redis: Option<&RedisStore>) -> Arc<dyn PinStore> {
    use crate::{memory::MemoryPinStore, redis::RedisPinStore};
    match redis {
        Some(redis) => Arc::new(
            RedisPinStore::new(redis.connection(), redis.prefix())
                .with_tenants(settings.tenants.clone()),
        ),
        None => Arc::new(MemoryPinStore::new().with_tenants(settings.tenants.clone())),
    }
}

impl Parts<'_> {
    /// Abuse protection: `[abuse]` over the counters in Redis (on the gateway's connection, so
    /// every instance shares them; with the task that gives back unused sends counted ahead) or
    /// in the embedded store.
    fn abuse(
        &self,
        settings: Arc<AbuseSettings>,
        tasks: &TaskTracker,
        stop: CancellationToken,
    ) -> AbuseGuard {
        let store: Arc<dyn AbuseStore> = match self.redis {
            Some(redis) => {
                let store = Arc::new(RedisAbuseStore::on(redis, &settings));
                // Nothing is ever counted ahead without reservations: nothing to give back.
                if settings.reserve_ahead > 0 {
                    store.clone().spawn_refunds(tasks, stop, self.clock.clone());
                }
                store
            }
            None => Arc::new(MemoryAbuseStore::new(&settings)),
        };
        AbuseGuard::new(settings, store)
    }

    /// The webhook store (on the gateway's Redis, its secrets sealed under a key derived from the
    /// code key; or in memory) and the handle the domain emits through, whose task queues events
    /// in the store until `stop`.
    fn events(
        &self,
        tasks: &TaskTracker,
        stop: &CancellationToken,
    ) -> (Arc<dyn WebhookStore>, Events) {
        let config = &self.settings.events;
        let store: Arc<dyn WebhookStore> = match self.redis {
            Some(redis) => {
                let key = derive_key(self.code_key, b"otpgate webhook secret key");
                Arc::new(RedisWebhookStore::on(redis).with_sealer(Arc::new(Sealer::new(&key))))
            }
            None => Arc::new(MemoryWebhookStore::new(config.max_queued_total)),
        };
        if !config.enabled {
            return (store, Events::disabled());
        }
        let emitter = EmitterSettings {
            buffer: config.emit_buffer,
            max_queued_per_webhook: config.max_queued_per_webhook,
            watch: Some(config.poll_interval),
            metrics: self.metrics.clone(),
        };
        let events = Events::start(
            store.clone(),
            self.clock.clone(),
            emitter,
            tasks,
            stop.clone(),
        );
        (store, events)
    }

    /// The webhooks' service: registrations within `[events]`'s bounds, audited in the directory.
    fn webhooks(
        &self,
        store: Arc<dyn WebhookStore>,
        directory: &Arc<dyn Directory>,
        events: Events,
    ) -> Result<WebhookService, BuildError> {
        let config = &self.settings.events;
        Ok(WebhookService::new(WebhookParts {
            store,
            directory: directory.clone(),
            events,
            clock: self.clock.clone(),
            rules: config.target_rules(),
            bounds: WebhookBounds {
                per_account: config.max_webhooks_per_account,
                total: config.max_webhooks_total,
            },
            enabled: config.enabled,
        }))
    }

    /// The accounts service: the directory on the gateway's Redis connection (or in memory), the
    /// hot-path cache, and, with Redis, the invalidation link as a background task that ends with
    /// `stop`.
    fn accounts(
        &self,
        tasks: &TaskTracker,
        stop: CancellationToken,
    ) -> Result<AccountService, BuildError> {
        let settings = self.settings;
        let config = &settings.directory;
        let device_key = self.key(&settings.auth.device_key, b"otpgate trusted-device key")?;
        let cache = Arc::new(HotCache::new(config.cache_ttl, config.cache_max_entries));
        let hot_metrics = Arc::new(HotPathMetrics::new(&self.metrics));
        let directory: Arc<dyn Directory> = match self.redis {
            None => Arc::new(
                MemoryDirectory::new(config.audit_max_entries).with_bounds(&settings.tenants),
            ),
            Some(redis) => {
                let link = LinkSettings {
                    urls: settings.store.redis_urls.clone(),
                    channel: RedisDirectory::channel(redis.prefix()),
                    connect_timeout: settings.store.connect_timeout,
                    ping_interval: config.invalidation_ping,
                };
                tasks.spawn(invalidation::run(
                    link,
                    cache.clone(),
                    hot_metrics.clone(),
                    stop,
                ));
                Arc::new(redis_directory(settings, redis))
            }
        };
        Ok(AccountService::new(
            directory,
            cache,
            hot_metrics,
            self.clock.clone(),
            &device_key,
            config.clone(),
        )
        .with_tenants(settings.tenants.clone()))
    }

    /// The PIN service: the store, the hasher with the pepper, the configured mailer, audit through
    /// the directory.
    fn pins(&self, directory: Arc<dyn Directory>) -> Result<PinService, BuildError> {
        let settings = self.settings;
        let config = &settings.pin;
        let pepper = self.key(&config.pepper, b"otpgate two-step PIN pepper")?;
        let mailer = crate::mail::build(&settings.mail)
            .map_err(|error| BuildError::Pins(error.to_string()))?;
        Ok(PinService::new(
            PinParts {
                store: pin_store(settings, self.redis),
                hasher: Arc::new(crate::pin::hash::PinHasher::new(
                    pepper,
                    config.settings.cost,
                )),
                mailer,
                directory,
                clock: self.clock.clone(),
                metrics: self.metrics.clone(),
            },
            config.settings,
            &settings.mail.link_base_url,
        ))
    }

    /// The factor service. Keys: the configured ones, current first; with Redis, then one derived
    /// from the code key every instance shares (id `derived`: it seals when nothing is configured);
    /// on the embedded store without keys, a random one for this process. The recovery-code key is
    /// derived from the code key with its own label.
    /// The console: its store on the gateway's Redis (every instance serves every session) or
    /// in memory, its relying party the factors' one (`factors.rp_id`, `factors.origins`).
    fn console(&self, accounts: Arc<AccountService>) -> crate::console::service::ConsoleService {
        use crate::console::store::ConsoleStore;
        let settings = self.settings;
        let store: Arc<dyn ConsoleStore> = match self.redis {
            Some(redis) => {
                Arc::new(crate::redis::RedisConsoleStore::on(redis).with_clock(self.clock.clone()))
            }
            None => Arc::new(crate::memory::MemoryConsoleStore::new(self.clock.clone())),
        };
        crate::console::service::ConsoleService::new(
            store,
            accounts,
            self.clock.clone(),
            settings.factors.relying_party.clone(),
            settings.console.clone(),
            settings.factors.ceremony_ttl.as_millis() as u64,
        )
    }

    fn factors(&self, accounts: Arc<AccountService>) -> Result<FactorService, BuildError> {
        use crate::{memory::MemoryFactorStore, redis::RedisFactorStore};
        let (settings, clock) = (self.settings, &self.clock);
        let config = &settings.factors;
        let mut sealing: Vec<(String, Vec<u8>)> = config
            .keys
            .iter()
            .map(|(id, key)| (id.clone(), key.expose().to_vec()))
            .collect();
        if self.redis.is_some() {
            if sealing.is_empty() {
                tracing::warn!("factors.keys is empty: TOTP secrets are sealed under a key derived from the code key; set OTPGATE_FACTOR_KEYS to rotate it");
            }
            // The derived key seals when none is configured, and keeps opening what it sealed after
            // keys are configured (listed last, unless an operator reused its id).
            if !sealing.iter().any(|(id, _)| id == "derived") {
                sealing.push((
                    "derived".to_owned(),
                    derive_key(self.code_key, b"otpgate factor secret key"),
                ));
            }
        } else if sealing.is_empty() {
            let key = drawn_key(self.rng)
                .map_err(|_| BuildError::Factors("the random generator failed".to_owned()))?;
            sealing.push(("local".to_owned(), key));
        }
        let sealing = FactorKeys::new(&sealing).ok_or_else(|| {
            BuildError::Factors(
                "factors.keys: each key needs a distinct id and 32 bytes".to_owned(),
            )
        })?;
        let store: Arc<dyn FactorStore> = match self.redis {
            Some(redis) => Arc::new(
                RedisFactorStore::new(redis.connection(), redis.prefix())
                    .with_tenants(settings.tenants.clone(), clock.clone()),
            ),
            None => Arc::new(
                MemoryFactorStore::new(clock.clone(), config.memory_max_entries)
                    .with_tenants(settings.tenants.clone()),
            ),
        };
        Ok(FactorService::new(
            store,
            accounts,
            sealing,
            &derive_key(self.code_key, b"otpgate recovery-code key"),
            clock.clone(),
            self.metrics.clone(),
            config.clone(),
        ))
    }
}

/// `otpgate support disable-two-step`: checks the request, connects to the configured Redis
/// (the embedded store lives inside the server process, so there is nothing to connect to
/// without it), and disables through a PIN service built here; the masked number on success.
pub async fn support_disable_two_step(
    settings: &Settings,
    request: &SupportDisable,
) -> Result<String, String> {
    let checked = request.check()?;
    if settings.store.redis_urls.is_empty() {
        return Err("no Redis is configured: the embedded store lives inside the server process; point --config or OTPGATE_REDIS_URL at the deployment's Redis".into());
    }
    let redis = RedisStore::connect(&redis_settings(&settings.store))
        .await
        .map_err(|error| error.to_string())?;
    // Disabling hashes nothing and mails nothing: an empty pepper and the log mailer are inert.
    let service = PinService::new(
        PinParts {
            store: pin_store(settings, Some(&redis)),
            hasher: Arc::new(crate::pin::hash::PinHasher::new(
                Vec::new(),
                settings.pin.settings.cost,
            )),
            mailer: Arc::new(crate::mail::LogMailer::new("")),
            directory: Arc::new(redis_directory(settings, &redis)),
            clock: Arc::new(SystemClock),
            metrics: Arc::new(Metrics::new()),
        },
        settings.pin.settings,
        "",
    );
    checked.run(&service).await
}
