//! Typed configuration: embedded defaults, then an optional file, then the environment.
//!
//! Every invalid value is collected and reported in one message before the port opens, so an
//! operator fixes a deployment in one round rather than one error per restart.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use std::collections::HashMap;

use config::{Config, Environment, File, FileFormat};

use crate::dispatch::providers::{AdapterKind, ProviderSettings};
use crate::dispatch::router::RouteSettings;
use crate::secret::Secret;
use serde::de::DeserializeOwned;

const DEFAULTS: &str = include_str!("../config/default.toml");

/// Short environment names an operator can use without knowing the file layout.
const ENV_ALIASES: &[(&str, &str)] = &[
    ("OTPGATE_LISTEN", "server.listen"),
    ("OTPGATE_REDIS_URL", "store.redis_url"),
    ("OTPGATE_ROOT_KEY", "auth.root_key"),
    ("OTPGATE_CODE_KEY", "verification.code_key"),
    ("OTPGATE_DEVICE_KEY", "auth.device_key"),
    ("OTPGATE_HTTP_PROVIDER_URL", "dispatch.http_url"),
    ("OTPGATE_RECEIPT_TOKEN", "dispatch.receipt_token"),
    ("OTPGATE_PIN_PEPPER", "pin.pepper"),
    ("OTPGATE_SMTP_USERNAME", "mail.smtp_username"),
    ("OTPGATE_SMTP_PASSWORD", "mail.smtp_password"),
    ("OTPGATE_FACTOR_KEYS", "factors.keys"),
];

#[derive(Debug, Clone)]
pub struct Settings {
    pub server: ServerSettings,
    pub auth: AuthSettings,
    pub store: StoreSettings,
    pub verification: VerificationSettings,
    pub limits: LimitSettings,
    pub dispatch: DispatchSettings,
    pub directory: DirectorySettings,
    /// Phone-number two-step PINs (`[pin]`).
    pub pin: crate::pin::PinConfig,
    /// Outgoing e-mail for two-step links (`[mail]`).
    pub mail: crate::mail::MailSettings,
    /// Authenticator apps, security keys, recovery codes (`[factors]`).
    pub factors: crate::factors::FactorSettings,
    /// Per-account bounds and the embedded store's per-account shares (`[tenants]`).
    pub tenants: crate::account::limits::TenantSettings,
}

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub request_body_limit: usize,
    pub shutdown_grace: Duration,
    /// From accept to the first request's head, whatever the protocol: a socket that sends
    /// nothing (or only half of the HTTP/2 preface) holds a file descriptor for no longer.
    pub first_request_timeout: Duration,
    /// Between requests (HTTP/1 keep-alive and HTTP/2 alike): an idle connection is closed.
    pub idle_timeout: Duration,
    /// From a request's head to the end of its body; past it the request gets 408.
    pub body_read_timeout: Duration,
    /// Open connections per process; 0 derives the cap from the file-descriptor limit
    /// (`limits::connection_cap`), so that the accept loop can never take the descriptors
    /// Redis and the providers need.
    pub max_connections: usize,
    /// Open connections per client address: one host cannot take the whole process cap.
    pub max_connections_per_ip: usize,
}

#[derive(Clone)]
pub struct AuthSettings {
    /// Empty when not configured: the binary then generates one and prints it once.
    pub root_key: Secret,
    /// The key under which trusted-device tokens are MACed. Empty with the embedded store: a
    /// random per-process key is drawn (and, for embedders building `Settings` by hand with
    /// Redis, one derived from the code key).
    pub device_key: Secret,
}

#[derive(Debug, Clone)]
pub struct StoreSettings {
    /// Empty: the embedded store.
    pub redis_urls: Vec<String>,
    pub key_prefix: String,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub memory_max_verifications: usize,
    /// How often the store client and the nodes are probed (Redis only).
    pub probe_interval: Duration,
    /// A store client that answers nothing for this long while Redis answers is replaced.
    pub client_rebuild_after: Duration,
    /// `/healthz` fails when the store client has answered nothing for this long while Redis
    /// answers.
    pub client_unhealthy_after: Duration,
    /// `/readyz` fails when a cluster shard's master has been unreachable for this long.
    pub shard_down_grace: Duration,
}

#[derive(Debug, Clone)]
pub struct VerificationSettings {
    pub code_length: u8,
    /// The fewest digits an account's codes may have (6 by default: 20 bits, NIST SP 800-63B's
    /// minimum for out-of-band secrets); 4 or 5 only when the operator lowers it.
    pub min_code_length: u8,
    pub ttl: Duration,
    pub max_check_attempts: u32,
    pub max_sends: u32,
    pub retention: Duration,
    /// Empty with the embedded store: a random per-process key is drawn.
    pub code_key: Secret,
    pub brand: String,
}

#[derive(Debug, Clone)]
pub struct LimitSettings {
    pub send_per_number: u32,
    pub send_per_number_window: Duration,
    pub per_ip_per_second: u32,
    pub per_key_per_second: u32,
    pub failed_auth_per_ip_per_second: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    Log,
    Http,
}

#[derive(Debug, Clone)]
pub struct DispatchSettings {
    /// The single provider used when no `[[dispatch.providers]]` are configured.
    pub provider: ProviderKind,
    pub http_url: String,
    pub http_timeout: Duration,
    pub queue_capacity: usize,
    pub concurrency: usize,
    /// First back-off after a round no provider took, doubled per round up to `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
    pub breaker_failures: u32,
    pub breaker_open: Duration,
    pub reclaim_idle: Duration,
    pub max_deliveries: u64,
    pub poll_interval: Duration,
    /// Redis mode: outbox reads failing for longer than this make `/readyz` answer 503.
    pub outbox_unready_after: Duration,
    /// The most of a provider's answer (or of a receipt) that is read; a longer one fails the
    /// request (retryable for answers, 413 for receipts).
    pub provider_body_limit: usize,
    /// Whether this instance runs delivery workers. Off (Redis only) makes an API-only instance
    /// that queues messages for the instances that deliver them.
    pub workers: bool,
    /// Domain for the Web OTP line (`@domain #code`); empty: none.
    pub web_otp_domain: String,
    /// The URL the gateway is reached at by providers (for receipt signatures); empty: from the
    /// request's Host header.
    pub public_url: String,
    /// The secret unsigned vendors (Vonage, Infobip, MessageBird) put in their receipt URL as
    /// `?token=`, and WhatsApp's webhook verify token; empty: such receipts are refused.
    pub receipt_token: String,
    /// Vendor providers; when empty, one provider from `provider`/`http_url`.
    pub providers: Vec<ProviderSettings>,
    pub routes: Vec<RouteSettings>,
    /// Sends per second per provider name (its contracted throughput).
    pub rates: HashMap<String, u32>,
}

impl std::fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthSettings")
            .field("root_key", &self.root_key)
            .field("device_key", &self.device_key)
            .finish()
    }
}

/// All the problems found in a configuration, one per line.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
pub struct ConfigError(pub Vec<String>);

impl Settings {
    /// Defaults, then `file`, then the process environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_from(file, std::env::vars())
    }

    /// The embedded defaults alone, as tests start from.
    pub fn defaults() -> Self {
        Self::load_from(None, std::iter::empty())
            .expect("the embedded defaults are valid; a unit test holds this")
    }

    pub fn load_from(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let env: Vec<(String, String)> = env.into_iter().collect();
        let mut builder = Config::builder().add_source(File::from_str(DEFAULTS, FileFormat::Toml));
        if let Some(path) = file {
            builder = builder.add_source(File::from(path).format(FileFormat::Toml).required(true));
        }
        let nested: config::Map<String, String> = env
            .iter()
            .filter(|(name, _)| name.starts_with("OTPGATE_") && name.contains("__"))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        builder = builder.add_source(
            Environment::with_prefix("OTPGATE")
                .separator("__")
                .prefix_separator("_")
                .try_parsing(true)
                .source(Some(nested)),
        );
        for (alias, key) in ENV_ALIASES {
            if let Some((_, value)) = env.iter().find(|(name, _)| name == alias) {
                builder = builder
                    .set_override(*key, value.as_str())
                    .map_err(|error| ConfigError(vec![format!("{alias}: {error}")]))?;
            }
        }
        let config = builder
            .build()
            .map_err(|error| ConfigError(vec![error.to_string()]))?;
        Reader {
            config,
            errors: Vec::new(),
            env,
        }
        .settings()
    }
}

/// Reads keys one by one so that every bad one is reported, not just the first.
struct Reader {
    config: Config,
    errors: Vec<String>,
    env: Vec<(String, String)>,
}

impl Reader {
    fn get<T: DeserializeOwned + Default>(&mut self, key: &str) -> T {
        match self.config.get::<T>(key) {
            Ok(value) => value,
            Err(error) => {
                self.errors.push(format!("{key}: {error}"));
                T::default()
            }
        }
    }

    fn check(&mut self, ok: bool, key: &str, rule: &str) {
        if !ok {
            self.errors.push(format!("{key}: {rule}"));
        }
    }

    fn millis(&mut self, key: &str) -> Duration {
        let value: u64 = self.get(key);
        self.check(value > 0, key, "must be greater than 0");
        Duration::from_millis(value)
    }

    fn seconds(&mut self, key: &str) -> Duration {
        let value: u64 = self.get(key);
        self.check(value > 0, key, "must be greater than 0");
        Duration::from_secs(value)
    }

    fn positive(&mut self, key: &str) -> u32 {
        let value: u32 = self.get(key);
        self.check(value > 0, key, "must be greater than 0");
        value
    }

    fn settings(mut self) -> Result<Settings, ConfigError> {
        let listen_text: String = self.get("server.listen");
        let listen = listen_text.parse::<SocketAddr>().unwrap_or_else(|_| {
            self.errors.push(format!(
                "server.listen: '{listen_text}' is not an address:port such as 127.0.0.1:8080"
            ));
            SocketAddr::from(([127, 0, 0, 1], 8080))
        });
        let server = ServerSettings {
            listen,
            request_body_limit: self.get("server.request_body_limit_bytes"),
            shutdown_grace: self.millis("server.shutdown_grace_ms"),
            first_request_timeout: self.millis("server.first_request_timeout_ms"),
            idle_timeout: self.millis("server.idle_timeout_ms"),
            body_read_timeout: self.millis("server.body_read_timeout_ms"),
            max_connections: self.get("server.max_connections"),
            max_connections_per_ip: self.get("server.max_connections_per_ip"),
        };
        // hyper's HTTP/1 header timeout also runs while a keep-alive connection waits for its
        // next request, so it was an idle timeout in disguise (5 s, HTTP/1 only): the two
        // deadlines below replace it, and a deployment still setting it learns so at start.
        self.check(
            self.config.get::<u64>("server.header_read_timeout_ms").is_err(),
            "server.header_read_timeout_ms",
            "replaced by server.first_request_timeout_ms (from accept to the first request) and server.idle_timeout_ms (between requests)",
        );
        self.check(
            server.max_connections_per_ip > 0,
            "server.max_connections_per_ip",
            "must be greater than 0",
        );
        self.check(
            (256..=1_048_576).contains(&server.request_body_limit),
            "server.request_body_limit_bytes",
            "must be between 256 and 1048576",
        );

        let root_key: String = self.get("auth.root_key");
        self.check(
            root_key.is_empty() || root_key.len() >= 32,
            "auth.root_key",
            "must be at least 32 characters (or empty to generate one)",
        );

        let redis_url: String = self.get("store.redis_url");
        let redis_urls: Vec<String> = redis_url
            .split(',')
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .map(str::to_owned)
            .collect();
        for url in &redis_urls {
            let ok = (url.starts_with("redis://") || url.starts_with("rediss://"))
                && redis::Client::open(url.as_str()).is_ok();
            self.check(
                ok,
                "store.redis_url",
                &format!("'{url}' is not a redis:// URL"),
            );
        }
        let key_prefix: String = self.get("store.key_prefix");
        self.check(
            !key_prefix.is_empty() && !key_prefix.contains(['{', '}', ' ']),
            "store.key_prefix",
            "must be non-empty, without braces or spaces",
        );
        let store = StoreSettings {
            redis_urls,
            key_prefix,
            connect_timeout: self.millis("store.connect_timeout_ms"),
            response_timeout: self.millis("store.response_timeout_ms"),
            memory_max_verifications: self.get("store.memory_max_verifications"),
            probe_interval: self.millis("store.probe_interval_ms"),
            client_rebuild_after: self.millis("store.client_rebuild_after_ms"),
            client_unhealthy_after: self.millis("store.client_unhealthy_after_ms"),
            shard_down_grace: self.millis("store.shard_down_grace_ms"),
        };
        let with_redis = !store.redis_urls.is_empty();

        let min_code_length: u8 = self.get("verification.min_code_length");
        self.check(
            (4..=10).contains(&min_code_length),
            "verification.min_code_length",
            "must be between 4 and 10",
        );
        let code_length: u8 = self.get("verification.code_length");
        self.check(
            (min_code_length.max(4)..=10).contains(&code_length),
            "verification.code_length",
            "must be between verification.min_code_length (default 6) and 10",
        );
        let ttl = self.seconds("verification.ttl_seconds");
        self.check(
            ttl <= Duration::from_secs(600),
            "verification.ttl_seconds",
            "must be at most 600 (NIST SP 800-63B)",
        );
        let code_key = self.key(
            "verification.code_key",
            with_redis.then_some("every instance computes the same MAC"),
        );
        let verification = VerificationSettings {
            code_length,
            min_code_length,
            ttl,
            max_check_attempts: self.positive("verification.max_check_attempts"),
            max_sends: self.positive("verification.max_sends"),
            retention: self.seconds("verification.retention_seconds"),
            code_key,
            brand: self.get("verification.brand"),
        };

        let limits = LimitSettings {
            send_per_number: self.positive("limits.send_per_number"),
            send_per_number_window: self.seconds("limits.send_per_number_window_seconds"),
            per_ip_per_second: self.positive("limits.per_ip_per_second"),
            per_key_per_second: self.positive("limits.per_key_per_second"),
            failed_auth_per_ip_per_second: self.positive("limits.failed_auth_per_ip_per_second"),
        };

        let http_url: String = self.get("dispatch.http_url");
        let provider_name: String = self.get("dispatch.provider");
        let provider = match provider_name.as_str() {
            _ if !http_url.is_empty() => ProviderKind::Http,
            "log" => ProviderKind::Log,
            "http" => ProviderKind::Http,
            other => {
                self.errors.push(format!(
                    "dispatch.provider: '{other}' is not one of log, http"
                ));
                ProviderKind::Log
            }
        };
        if provider == ProviderKind::Http {
            let ok = reqwest::Url::parse(&http_url)
                .is_ok_and(|url| matches!(url.scheme(), "http" | "https"));
            self.check(
                ok,
                "dispatch.http_url",
                "the http provider needs an http:// or https:// URL",
            );
        }
        let mut providers: Vec<ProviderSettings> = self.get("dispatch.providers");
        for provider in &mut providers {
            let unset = self.secrets_from_env(provider);
            for problem in unset.into_iter().chain(provider.validate()) {
                self.errors
                    .push(format!("dispatch.providers '{}': {problem}", provider.name));
            }
        }
        let mut names: Vec<&str> = providers.iter().map(|p| p.name.as_str()).collect();
        names.sort_unstable();
        if names.windows(2).any(|pair| pair[0] == pair[1]) {
            self.errors
                .push("dispatch.providers: names must be unique".to_owned());
        }
        let workers: bool = self.get("dispatch.workers");
        self.check(
            workers || with_redis,
            "dispatch.workers",
            "can be false only with Redis (the embedded queue has no other reader)",
        );
        // Gone: a message is retried for as long as its code lives. Refused rather than
        // ignored, so that nobody believes a bound they set still holds.
        self.check(
            self.config.get::<config::Value>("dispatch.max_attempts").is_err(),
            "dispatch.max_attempts",
            "is gone: a message is retried for as long as its code lives (retry_base_ms, retry_max_ms shape the waits); remove the key",
        );
        let dispatch = DispatchSettings {
            provider,
            http_url,
            http_timeout: self.millis("dispatch.http_timeout_ms"),
            queue_capacity: self.positive("dispatch.queue_capacity") as usize,
            concurrency: self.positive("dispatch.concurrency") as usize,
            retry_base: self.millis("dispatch.retry_base_ms"),
            retry_max: self.millis("dispatch.retry_max_ms"),
            breaker_failures: self.positive("dispatch.breaker_failures"),
            breaker_open: self.millis("dispatch.breaker_open_ms"),
            reclaim_idle: self.millis("dispatch.reclaim_idle_ms"),
            max_deliveries: u64::from(self.positive("dispatch.max_deliveries")),
            poll_interval: self.millis("dispatch.poll_interval_ms"),
            outbox_unready_after: self.millis("dispatch.outbox_unready_after_ms"),
            provider_body_limit: self.positive("dispatch.provider_body_limit_bytes") as usize,
            workers,
            web_otp_domain: self.get("dispatch.web_otp_domain"),
            public_url: self.get("dispatch.public_url"),
            receipt_token: self.get("dispatch.receipt_token"),
            providers,
            routes: self.get("dispatch.routes"),
            rates: self.get("dispatch.rates"),
        };

        let device_key = self.key(
            "auth.device_key",
            with_redis.then_some("every instance recognises the same trusted devices"),
        );
        let directory = self.directory();
        let pin = self.pin(with_redis);
        let mail = self.mail();
        let factors = self.factors();
        let tenants = self.tenants();

        if !self.errors.is_empty() {
            return Err(ConfigError(self.errors));
        }
        Ok(Settings {
            server,
            auth: AuthSettings {
                root_key: Secret::new(root_key),
                device_key,
            },
            store,
            verification,
            limits,
            dispatch,
            directory,
            pin,
            mail,
            factors,
            tenants,
        })
    }
}

impl Reader {
    /// Provider secrets may come from the environment instead of the file:
    /// `OTPGATE_PROVIDER_<NAME>_<FIELD>`, the name upper-cased with other characters as `_`
    /// (`OTPGATE_PROVIDER_TWILIO_MAIN_AUTH_TOKEN` for `twilio-main`'s `auth_token`); a value
    /// written `env:NAME` is read from the variable `NAME`. Both from the environment the
    /// settings are loaded with. Returns the variables named but not set.
    fn secrets_from_env(&self, provider: &mut ProviderSettings) -> Vec<String> {
        let name: String = provider
            .name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect();
        let lookup = |variable: &str| {
            self.env
                .iter()
                .find(|(key, _)| key == variable)
                .map(|(_, value)| Secret::from(value.as_str()))
        };
        let mut problems = Vec::new();
        for (field, slot) in [
            ("AUTH_TOKEN", &mut provider.auth_token),
            ("API_KEY", &mut provider.api_key),
            ("API_SECRET", &mut provider.api_secret),
            ("ACCESS_KEY", &mut provider.access_key),
            ("ACCESS_TOKEN", &mut provider.access_token),
            ("APP_SECRET", &mut provider.app_secret),
        ] {
            if let Some(secret) = lookup(&format!("OTPGATE_PROVIDER_{name}_{field}")) {
                *slot = Some(secret);
            } else if let Some(secret) = slot {
                let text = secret.expose_str().into_owned();
                if let Some(variable) = text.strip_prefix("env:") {
                    *secret = lookup(variable).unwrap_or_else(|| {
                        problems.push(format!(
                            "environment variable {variable} (named by 'env:{variable}') is not set"
                        ));
                        Secret::default()
                    });
                }
            }
        }
        problems
    }
}

impl DispatchSettings {
    /// The providers to build: the configured vendors, or the single default one.
    /// Each carries `provider_body_limit`.
    pub fn effective_providers(&self) -> Vec<ProviderSettings> {
        let mut providers = if self.providers.is_empty() {
            let mut single = match self.provider {
                ProviderKind::Log => ProviderSettings::new("log", AdapterKind::Log),
                ProviderKind::Http => ProviderSettings::new("http", AdapterKind::Http),
            };
            if self.provider == ProviderKind::Http {
                single.url = Some(self.http_url.clone());
                single.timeout_ms = self.http_timeout.as_millis() as u64;
            }
            vec![single]
        } else {
            self.providers.clone()
        };
        for provider in &mut providers {
            provider.body_limit = self.provider_body_limit;
        }
        providers
    }
}

/// The directory and its hot-path cache (`[directory]`): users, policy, trusted devices, audit.
#[derive(Debug, Clone)]
pub struct DirectorySettings {
    /// The longest an entry of the in-process cache is trusted without an invalidation.
    pub cache_ttl: Duration,
    /// Entries per cache map (policies, users, devices) before the map is cleared.
    pub cache_max_entries: usize,
    /// How often the invalidation link proves it is alive (and how long a PING may take).
    pub invalidation_ping: Duration,
    /// Trusted devices per user; beyond it the one expiring first is dropped.
    pub max_devices_per_user: usize,
    /// Audit entries kept per account (a capped stream).
    pub audit_max_entries: usize,
}

impl Reader {
    /// A key of at least 32 bytes (hex or base64); empty when not set, which `shared_by` (why
    /// every instance needs the same one) makes an error.
    fn key(&mut self, key: &str, shared_by: Option<&str>) -> Secret {
        let text: String = self.get(key);
        if text.is_empty() {
            if let Some(reason) = shared_by {
                let variable = ENV_ALIASES
                    .iter()
                    .find(|(_, aliased)| *aliased == key)
                    .map_or(key, |(alias, _)| alias);
                self.errors.push(format!(
                    "{key}: required with Redis so that {reason} (set {variable})"
                ));
            }
            return Secret::default();
        }
        Secret::decode_key(&text, 32).unwrap_or_else(|| {
            self.errors.push(format!(
                "{key}: must be at least 32 bytes, as hex or base64"
            ));
            Secret::default()
        })
    }

    fn directory(&mut self) -> DirectorySettings {
        let settings = DirectorySettings {
            cache_ttl: self.millis("directory.cache_ttl_ms"),
            cache_max_entries: self.positive("directory.cache_max_entries") as usize,
            invalidation_ping: self.millis("directory.invalidation_ping_ms"),
            max_devices_per_user: self.positive("directory.max_devices_per_user") as usize,
            audit_max_entries: self.positive("directory.audit_max_entries") as usize,
        };
        self.check(
            settings.cache_ttl <= Duration::from_secs(300),
            "directory.cache_ttl_ms",
            "must be at most 300000 (it bounds staleness should an invalidation be lost)",
        );
        settings
    }
}

impl Reader {
    /// `[tenants]`: the defaults, then `[tenants.accounts.<account id>]` overrides, each field
    /// an override of the default (unknown ids, fields or zeros are reported).
    fn tenants(&mut self) -> crate::account::limits::TenantSettings {
        use crate::account::limits::{AccountLimits, TenantSettings};
        use crate::account::AccountId;
        let defaults = AccountLimits {
            users: self.positive_u64("tenants.max_users"),
            phone_numbers: self.positive_u64("tenants.max_phone_numbers"),
            factors_per_user: self.positive_u64("tenants.max_factors_per_user"),
            pending_ceremonies: self.positive_u64("tenants.max_pending_ceremonies"),
            trusted_devices: self.positive_u64("tenants.max_trusted_devices"),
        };
        let percent: u32 = self.get("tenants.memory_account_share_percent");
        self.check(
            (1..=100).contains(&percent),
            "tenants.memory_account_share_percent",
            "must be between 1 and 100",
        );
        let memory_max_users = self.positive("tenants.memory_max_users") as usize;
        let memory_max_devices = self.positive("tenants.memory_max_devices") as usize;
        let overrides: HashMap<String, HashMap<String, u64>> = self.get("tenants.accounts");
        let mut accounts = HashMap::new();
        for (id, fields) in overrides {
            let key = format!("tenants.accounts.{id}");
            // The loader may lower-case keys; account ids are `AC` and lowercase hex.
            let Some(account) = id
                .get(2..)
                .and_then(|hex| AccountId::parse(&format!("AC{}", hex.to_lowercase())))
                .filter(|_| id.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("ac")))
            else {
                self.errors
                    .push(format!("{key}: not an account id (AC and 32 hex digits)"));
                continue;
            };
            let mut limits = defaults;
            for (field, value) in fields {
                let slot = match field.as_str() {
                    "max_users" => &mut limits.users,
                    "max_phone_numbers" => &mut limits.phone_numbers,
                    "max_factors_per_user" => &mut limits.factors_per_user,
                    "max_pending_ceremonies" => &mut limits.pending_ceremonies,
                    "max_trusted_devices" => &mut limits.trusted_devices,
                    other => {
                        self.errors.push(format!(
                            "{key}.{other}: unknown (max_users, max_phone_numbers, max_factors_per_user, max_pending_ceremonies, max_trusted_devices)"
                        ));
                        continue;
                    }
                };
                self.check(
                    value > 0,
                    &format!("{key}.{field}"),
                    "must be greater than 0",
                );
                *slot = value;
            }
            accounts.insert(account, limits);
        }
        TenantSettings {
            defaults,
            accounts,
            memory_account_share_percent: percent.clamp(1, 100) as u8,
            memory_max_users,
            memory_max_devices,
        }
    }

    fn positive_u64(&mut self, key: &str) -> u64 {
        let value: u64 = self.get(key);
        self.check(value > 0, key, "must be greater than 0");
        value
    }

    /// `[pin]`: the pepper is required with Redis, like the code key, so that every instance
    /// verifies the same hashes; it is never stored with them.
    fn pin(&mut self, with_redis: bool) -> crate::pin::PinConfig {
        use crate::pin::hash::HashCost;
        use crate::pin::service::PinSettings;
        use crate::pin::AttemptLimits;
        let pepper = self.key(
            "pin.pepper",
            with_redis.then_some("every instance verifies the same PIN hashes"),
        );
        let cost = HashCost {
            memory_kib: self.positive("pin.argon2_memory_kib"),
            iterations: self.positive("pin.argon2_iterations"),
            parallelism: self.positive("pin.argon2_parallelism"),
        };
        if let Err(problem) = cost.validate() {
            self.errors.push(format!("pin: {problem}"));
        }
        let limits = AttemptLimits {
            free_attempts: self.positive("pin.free_attempts"),
            first_wait: self.seconds("pin.first_wait_seconds"),
            max_wait: self.seconds("pin.max_wait_seconds"),
            max_failures: self.positive("pin.max_failures"),
        };
        self.check(
            limits.max_failures <= 10,
            "pin.max_failures",
            "must be at most 10 (NIST SP 800-63B: at most 10 consecutive failed attempts)",
        );
        self.check(
            limits.free_attempts <= limits.max_failures,
            "pin.free_attempts",
            "must be at most pin.max_failures",
        );
        let link_ttl = self.seconds("pin.link_ttl_seconds");
        self.check(
            link_ttl <= Duration::from_secs(7 * 24 * 3600),
            "pin.link_ttl_seconds",
            "must be at most 604800 (7 days)",
        );
        crate::pin::PinConfig {
            settings: PinSettings {
                cost,
                limits,
                link_ttl,
                memory_max_numbers: self.positive("pin.memory_max_numbers") as usize,
            },
            pepper,
        }
    }

    /// `[mail]`: the mailer for two-step links.
    fn mail(&mut self) -> crate::mail::MailSettings {
        use crate::mail::{valid_address, MailSettings, MailTransport, SmtpTls};
        let transport_name: String = self.get("mail.transport");
        let transport = match transport_name.as_str() {
            "log" => MailTransport::Log,
            "smtp" => MailTransport::Smtp,
            other => {
                self.errors
                    .push(format!("mail.transport: '{other}' is not one of log, smtp"));
                MailTransport::Log
            }
        };
        let from: String = self.get("mail.from");
        let address = from
            .rsplit_once('<')
            .map(|(_, rest)| rest.trim_end_matches('>'))
            .unwrap_or(&from);
        self.check(
            valid_address(address.trim()),
            "mail.from",
            "must be an address such as no-reply@example.com or 'otpgate <no-reply@example.com>'",
        );
        let link_base_url: String = self.get("mail.link_base_url");
        let ok = reqwest::Url::parse(&link_base_url)
            .is_ok_and(|url| matches!(url.scheme(), "http" | "https") && url.query().is_none());
        self.check(
            ok,
            "mail.link_base_url",
            "must be an http:// or https:// URL such as https://gateway.example.com",
        );
        let tls_name: String = self.get("mail.smtp_tls");
        let smtp_tls = SmtpTls::parse(&tls_name).unwrap_or_else(|| {
            self.errors.push(format!(
                "mail.smtp_tls: '{tls_name}' is not one of none, starttls, tls"
            ));
            SmtpTls::StartTls
        });
        let smtp_host: String = self.get("mail.smtp_host");
        if transport == MailTransport::Smtp {
            self.check(
                !smtp_host.is_empty(),
                "mail.smtp_host",
                "the smtp transport needs a host",
            );
        }
        let smtp_port: u16 = self.get("mail.smtp_port");
        self.check(smtp_port > 0, "mail.smtp_port", "must be a port number");
        let smtp_password: String = self.get("mail.smtp_password");
        MailSettings {
            transport,
            from,
            link_base_url,
            smtp_host,
            smtp_port,
            smtp_tls,
            smtp_username: self.get("mail.smtp_username"),
            smtp_password: Secret::new(smtp_password),
            smtp_timeout: self.millis("mail.smtp_timeout_ms"),
        }
    }
}

impl Reader {
    /// `[factors]`: each sealing key is `id:key`, 32 bytes, ids distinct. None is required: with
    /// Redis the gateway then derives one from the code key (and warns at start).
    fn factors(&mut self) -> crate::factors::FactorSettings {
        use crate::factors::crypto::valid_key_id;
        use crate::factors::store::AttemptLimits;
        use crate::factors::totp::Algorithm;
        use crate::factors::webauthn::RelyingParty;
        let text: String = self.get("factors.keys");
        let mut keys: Vec<(String, Secret)> = Vec::new();
        for item in text
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
        {
            let Some((id, key)) = item.split_once(':') else {
                self.errors.push(
                    "factors.keys: each key is written id:key (hex or base64), such as k1:<64 hex digits>"
                        .to_owned(),
                );
                continue;
            };
            if !valid_key_id(id) || keys.iter().any(|(known, _)| known == id) {
                self.errors.push(format!(
                    "factors.keys: key id '{id}' must be 1 to 16 letters, digits, _ or -, and distinct"
                ));
                continue;
            }
            match Secret::decode_key(key, 32).filter(|key| key.expose().len() == 32) {
                Some(key) => keys.push((id.to_owned(), key)),
                None => self.errors.push(format!(
                    "factors.keys: key '{id}' must be exactly 32 bytes, as hex or base64"
                )),
            }
        }
        let algorithm_text: String = self.get("factors.totp_algorithm");
        let totp_algorithm = Algorithm::parse(&algorithm_text).unwrap_or_else(|| {
            self.errors.push(format!(
                "factors.totp_algorithm: '{algorithm_text}' is not one of SHA1, SHA256, SHA512"
            ));
            Algorithm::Sha1
        });
        let totp_digits: u8 = self.get("factors.totp_digits");
        self.check(
            matches!(totp_digits, 6 | 8),
            "factors.totp_digits",
            "must be 6 or 8",
        );
        let limits = AttemptLimits {
            max_failures: self.positive("factors.max_failures"),
            first_wait_ms: self.seconds("factors.first_wait_seconds").as_millis() as u64,
            max_wait_ms: self.seconds("factors.max_wait_seconds").as_millis() as u64,
        };
        self.check(
            limits.max_failures <= 10,
            "factors.max_failures",
            "must be at most 10 (RFC 4226 §7.3: as low as possible)",
        );
        let rp_id: String = self.get("factors.rp_id");
        self.check(
            !rp_id.is_empty()
                && rp_id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-'),
            "factors.rp_id",
            "must be a domain name such as example.com (or localhost)",
        );
        let origins_text: String = self.get("factors.origins");
        let origins: Vec<String> = origins_text
            .split(',')
            .map(|origin| origin.trim().trim_end_matches('/').to_owned())
            .filter(|origin| !origin.is_empty())
            .collect();
        let origins_ok = !origins.is_empty()
            && origins.iter().all(|origin| {
                reqwest::Url::parse(origin)
                    .is_ok_and(|url| matches!(url.scheme(), "http" | "https") && url.path() == "/")
            });
        self.check(
            origins_ok,
            "factors.origins",
            "must list origins such as https://login.example.com (scheme, host, optional port)",
        );
        crate::factors::FactorSettings {
            keys,
            totp_issuer: self.get("factors.totp_issuer"),
            totp_algorithm,
            totp_digits,
            pending_ttl: self.seconds("factors.pending_ttl_seconds"),
            limits,
            proof_ttl: self.seconds("factors.proof_ttl_seconds"),
            relying_party: RelyingParty {
                id: rp_id,
                name: self.get("factors.rp_name"),
                origins,
                require_user_verification: self.get("factors.require_user_verification"),
            },
            ceremony_ttl: self.seconds("factors.ceremony_ttl_seconds"),
            memory_max_entries: self.positive("factors.memory_max_entries") as usize,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_embedded_defaults_are_valid() {
        let settings = Settings::defaults();
        assert_eq!(settings.server.listen.to_string(), "127.0.0.1:8080");
        assert!(settings.store.redis_urls.is_empty());
        assert_eq!(settings.verification.code_length, 6);
        assert_eq!(settings.verification.ttl, Duration::from_secs(600));
        assert_eq!(settings.dispatch.provider, ProviderKind::Log);
    }

    #[test]
    fn short_environment_names_override_the_defaults() {
        let settings = Settings::load_from(
            None,
            env(&[
                ("OTPGATE_LISTEN", "0.0.0.0:9000"),
                (
                    "OTPGATE_REDIS_URL",
                    "redis://127.0.0.1:7001,redis://127.0.0.1:7002",
                ),
                ("OTPGATE_CODE_KEY", &"ab".repeat(32)),
                ("OTPGATE_DEVICE_KEY", &"cd".repeat(32)),
                ("OTPGATE_PIN_PEPPER", &"ef".repeat(32)),
                (
                    "OTPGATE_HTTP_PROVIDER_URL",
                    "http://127.0.0.1:9999/messages",
                ),
                ("OTPGATE_ROOT_KEY", &"r".repeat(40)),
            ]),
        )
        .unwrap();
        assert_eq!(settings.server.listen.port(), 9000);
        assert_eq!(settings.store.redis_urls.len(), 2);
        assert_eq!(settings.dispatch.provider, ProviderKind::Http);
        assert_eq!(settings.auth.root_key.expose(), "r".repeat(40).as_bytes());
        assert_eq!(settings.verification.code_key.expose().len(), 32);
    }

    #[test]
    fn nested_environment_names_override_any_key() {
        let settings =
            Settings::load_from(None, env(&[("OTPGATE_VERIFICATION__TTL_SECONDS", "300")]))
                .unwrap();
        assert_eq!(settings.verification.ttl, Duration::from_secs(300));
    }

    #[test]
    fn the_code_length_floor_is_six_and_bounds_the_default_length() {
        assert_eq!(Settings::defaults().verification.min_code_length, 6);
        let error = Settings::load_from(None, env(&[("OTPGATE_VERIFICATION__CODE_LENGTH", "5")]))
            .unwrap_err();
        assert!(
            error.to_string().contains("verification.code_length"),
            "{error}"
        );
        let error =
            Settings::load_from(None, env(&[("OTPGATE_VERIFICATION__MIN_CODE_LENGTH", "3")]))
                .unwrap_err();
        assert!(
            error.to_string().contains("verification.min_code_length"),
            "{error}"
        );
        let lowered = Settings::load_from(
            None,
            env(&[
                ("OTPGATE_VERIFICATION__MIN_CODE_LENGTH", "4"),
                ("OTPGATE_VERIFICATION__CODE_LENGTH", "4"),
            ]),
        )
        .unwrap();
        assert_eq!(lowered.verification.code_length, 4);
    }

    #[test]
    fn the_connection_deadlines_load_and_the_replaced_header_timeout_is_reported() {
        let settings = Settings::load_from(
            None,
            env(&[
                ("OTPGATE_SERVER__IDLE_TIMEOUT_MS", "30000"),
                ("OTPGATE_SERVER__MAX_CONNECTIONS_PER_IP", "64"),
            ]),
        )
        .unwrap();
        assert_eq!(settings.server.idle_timeout, Duration::from_secs(30));
        assert_eq!(
            settings.server.first_request_timeout,
            Duration::from_secs(5)
        );
        assert_eq!(settings.server.body_read_timeout, Duration::from_secs(10));
        assert_eq!(settings.server.max_connections, 0, "derived at start");
        assert_eq!(settings.server.max_connections_per_ip, 64);
        let error = Settings::load_from(
            None,
            env(&[("OTPGATE_SERVER__HEADER_READ_TIMEOUT_MS", "5000")]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("server.header_read_timeout_ms: replaced by"),
            "{error}"
        );
    }

    #[test]
    fn every_invalid_value_is_reported_in_one_error() {
        let error = Settings::load_from(
            None,
            env(&[
                ("OTPGATE_LISTEN", "not-an-address"),
                ("OTPGATE_REDIS_URL", "http://wrong"),
                ("OTPGATE_VERIFICATION__CODE_LENGTH", "12"),
                ("OTPGATE_VERIFICATION__TTL_SECONDS", "3600"),
                ("OTPGATE_DISPATCH__PROVIDER", "carrier-pigeon"),
            ]),
        )
        .unwrap_err();
        let text = error.to_string();
        for key in [
            "server.listen",
            "store.redis_url",
            "verification.code_length",
            "verification.ttl_seconds",
            "verification.code_key",
            "dispatch.provider",
        ] {
            assert!(text.contains(key), "{key} missing from:\n{text}");
        }
    }

    #[test]
    fn only_a_redis_instance_may_run_without_workers() {
        let error =
            Settings::load_from(None, env(&[("OTPGATE_DISPATCH__WORKERS", "false")])).unwrap_err();
        assert!(error.to_string().contains("dispatch.workers"), "{error}");
        let settings = Settings::load_from(
            None,
            env(&[
                ("OTPGATE_DISPATCH__WORKERS", "false"),
                ("OTPGATE_REDIS_URL", "redis://127.0.0.1:1"),
                ("OTPGATE_VERIFICATION__CODE_KEY", &"ab".repeat(32)),
                ("OTPGATE_AUTH__DEVICE_KEY", &"cd".repeat(32)),
                ("OTPGATE_PIN__PEPPER", &"ef".repeat(32)),
            ]),
        )
        .unwrap_or_else(|error| panic!("{error}"));
        assert!(!settings.dispatch.workers);
    }

    #[test]
    fn the_retry_bound_max_attempts_is_refused_and_the_dispatch_defaults_are_documented() {
        let error =
            Settings::load_from(None, env(&[("OTPGATE_DISPATCH__MAX_ATTEMPTS", "3")])).unwrap_err();
        assert!(
            error.to_string().contains("dispatch.max_attempts: is gone"),
            "{error}"
        );
        let settings = Settings::load_from(None, env(&[])).unwrap();
        assert_eq!(settings.dispatch.retry_max, Duration::from_secs(30));
        assert_eq!(
            settings.dispatch.outbox_unready_after,
            Duration::from_secs(10)
        );
        assert_eq!(settings.dispatch.provider_body_limit, 64 * 1024);
        assert!(settings
            .dispatch
            .effective_providers()
            .iter()
            .all(|provider| provider.body_limit == 64 * 1024));
    }

    #[test]
    fn secrets_do_not_appear_in_debug_output() {
        let settings =
            Settings::load_from(None, env(&[("OTPGATE_ROOT_KEY", &"s3cr3t".repeat(8))])).unwrap();
        assert!(!format!("{settings:?}").contains("s3cr3t"));
    }

    #[test]
    fn secrets_written_env_name_come_from_the_environment_the_settings_are_loaded_with() {
        let file = |value: &str| {
            let file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
            let text = format!(
                "[[dispatch.providers]]\nname = \"wa\"\nkind = \"whatsapp\"\naccess_token = \"{value}\"\nphone_number_id = \"106540352242922\"\n"
            );
            std::fs::write(file.path(), text).unwrap();
            file
        };
        let token = |settings: &Settings| {
            settings.dispatch.providers[0]
                .access_token
                .as_ref()
                .map(|secret| secret.expose_str().into_owned())
        };
        let named = file("env:OTPGATE_TEST_PROVIDER_SECRET_7F3A");
        let settings = Settings::load_from(
            Some(named.path()),
            env(&[("OTPGATE_TEST_PROVIDER_SECRET_7F3A", "from-the-environment")]),
        )
        .unwrap();
        assert_eq!(token(&settings).as_deref(), Some("from-the-environment"));
        let missing = Settings::load_from(Some(named.path()), env(&[])).unwrap_err();
        assert!(missing
            .to_string()
            .contains("OTPGATE_TEST_PROVIDER_SECRET_7F3A"));
        let plain = file("literal");
        let settings = Settings::load_from(Some(plain.path()), env(&[])).unwrap();
        assert_eq!(token(&settings).as_deref(), Some("literal"));
    }
}
