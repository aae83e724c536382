//! Typed configuration: embedded defaults, then an optional file, then the environment.
//!
//! Every invalid value is collected and reported in one message before the port opens, so an
//! operator fixes a deployment in one round rather than one error per restart.
//!
//! Each module owns its settings type and the rules on its values (`validate`: the server's in
//! `http/settings.rs`, the store's in `store.rs`, ...); this file reads the keys into those types
//! and composes them into [`Settings`]. It builds nothing: that is `startup`'s.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use config::{Config, Environment, File, FileFormat};

use crate::account::settings::DirectorySettings;
use crate::dispatch::providers::ProviderSettings;
use crate::dispatch::settings::{DispatchSettings, ProviderKind};
use crate::http::settings::ServerSettings;
use crate::limits::LimitSettings;
use crate::secret::Secret;
use crate::store::StoreSettings;
use crate::verify::VerificationSettings;
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
    /// Abuse protection's defaults for every account and its stores' bounds (`[abuse]`).
    pub abuse: crate::abuse::AbuseSettings,
    /// Webhooks out (`[events]`, read whole: docs/events.md).
    pub events: crate::events::EventsSettings,
    /// The web console (`[console]`, read whole).
    pub console: crate::console::ConsoleSettings,
}

#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// Empty when not configured: the binary then generates one and prints it once.
    pub root_key: Secret,
    /// The key under which trusted-device tokens are MACed. Empty with the embedded store: a
    /// random per-process key is drawn (and, for embedders building `Settings` by hand with
    /// Redis, one derived from the code key).
    pub device_key: Secret,
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
        let store = StoreSettings {
            redis_urls,
            key_prefix: self.get("store.key_prefix"),
            connect_timeout: self.millis("store.connect_timeout_ms"),
            response_timeout: self.millis("store.response_timeout_ms"),
            memory_max_verifications: self.get("store.memory_max_verifications"),
            probe_interval: self.millis("store.probe_interval_ms"),
            client_rebuild_after: self.millis("store.client_rebuild_after_ms"),
            client_unhealthy_after: self.millis("store.client_unhealthy_after_ms"),
            shard_down_grace: self.millis("store.shard_down_grace_ms"),
        };
        let with_redis = !store.redis_urls.is_empty();

        let code_key = self.key(
            "verification.code_key",
            with_redis.then_some("every instance computes the same MAC"),
        );
        let verification = VerificationSettings {
            code_length: self.get("verification.code_length"),
            min_code_length: self.get("verification.min_code_length"),
            ttl: self.seconds("verification.ttl_seconds"),
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
        let mut providers: Vec<ProviderSettings> = self.get("dispatch.providers");
        for provider in &mut providers {
            for unset in self.secrets_from_env(provider) {
                self.errors
                    .push(format!("dispatch.providers '{}': {unset}", provider.name));
            }
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
        let abuse: crate::abuse::AbuseSettings = self.get("abuse");
        let events: crate::events::EventsSettings = self.get("events");
        let console: crate::console::ConsoleSettings = self.get("console");

        let mut errors = self.errors;
        server.validate(&mut errors);
        store.validate(&mut errors);
        verification.validate(&mut errors);
        dispatch.validate(&mut errors);
        directory.validate(&mut errors);
        pin.validate(&mut errors);
        mail.validate(&mut errors);
        factors.validate(&mut errors);
        abuse.validate(&mut errors);
        events.validate(with_redis, &mut errors);
        console.validate(&mut errors);
        if !errors.is_empty() {
            return Err(ConfigError(errors));
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
            abuse,
            events,
            console,
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
            ("PASSWORD", &mut provider.password),
            ("PRIVATE_KEY", &mut provider.private_key),
            ("SIGNATURE_SECRET", &mut provider.signature_secret),
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
        DirectorySettings {
            cache_ttl: self.millis("directory.cache_ttl_ms"),
            cache_max_entries: self.positive("directory.cache_max_entries") as usize,
            invalidation_ping: self.millis("directory.invalidation_ping_ms"),
            max_devices_per_user: self.positive("directory.max_devices_per_user") as usize,
            audit_max_entries: self.positive("directory.audit_max_entries") as usize,
        }
    }
}

impl Reader {
    /// `[tenants]`: the defaults, then `[tenants.accounts.<account id>]` overrides, each field
    /// an override of the default (unknown ids, fields or zeros are reported).
    fn tenants(&mut self) -> crate::account::limits::TenantSettings {
        use crate::account::limits::{AccountLimits, TenantSettings};
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
        let overrides = self.get("tenants.accounts");
        let accounts = TenantSettings::overrides(defaults, overrides, &mut self.errors);
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
        let limits = AttemptLimits {
            free_attempts: self.positive("pin.free_attempts"),
            attempts_per_wait: 1,
            first_wait_ms: self.seconds("pin.first_wait_seconds").as_millis() as u64,
            max_wait_ms: self.seconds("pin.max_wait_seconds").as_millis() as u64,
            lock_after: Some(self.positive("pin.max_failures")),
        };
        let link_ttl = self.seconds("pin.link_ttl_seconds");
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
        use crate::mail::{MailSettings, MailTransport, SmtpTls};
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
        let tls_name: String = self.get("mail.smtp_tls");
        let smtp_tls = SmtpTls::parse(&tls_name).unwrap_or_else(|| {
            self.errors.push(format!(
                "mail.smtp_tls: '{tls_name}' is not one of none, starttls, tls"
            ));
            SmtpTls::StartTls
        });
        let smtp_password: String = self.get("mail.smtp_password");
        MailSettings {
            transport,
            from: self.get("mail.from"),
            link_base_url: self.get("mail.link_base_url"),
            smtp_host: self.get("mail.smtp_host"),
            smtp_port: self.get("mail.smtp_port"),
            smtp_tls,
            smtp_username: self.get("mail.smtp_username"),
            smtp_password: Secret::from(smtp_password),
            smtp_timeout: self.millis("mail.smtp_timeout_ms"),
        }
    }
}

impl Reader {
    /// `[factors]`: each sealing key is `id:key`, 32 bytes, ids distinct. None is required: with
    /// Redis the gateway then derives one from the code key (and warns at start).
    fn factors(&mut self) -> crate::factors::FactorSettings {
        use crate::factors::crypto::parse_keys;
        use crate::factors::store::AttemptLimits;
        use crate::factors::totp::Algorithm;
        use crate::factors::webauthn::RelyingParty;
        let text: String = self.get("factors.keys");
        let keys = parse_keys(&text, &mut self.errors);
        let algorithm_text: String = self.get("factors.totp_algorithm");
        let totp_algorithm = Algorithm::parse(&algorithm_text).unwrap_or_else(|| {
            self.errors.push(format!(
                "factors.totp_algorithm: '{algorithm_text}' is not one of SHA1, SHA256, SHA512"
            ));
            Algorithm::Sha1
        });
        let limits = AttemptLimits::in_rounds(
            self.positive("factors.max_failures"),
            self.seconds("factors.first_wait_seconds").as_millis() as u64,
            self.seconds("factors.max_wait_seconds").as_millis() as u64,
        );
        let origins_text: String = self.get("factors.origins");
        let origins: Vec<String> = origins_text
            .split(',')
            .map(|origin| origin.trim().trim_end_matches('/').to_owned())
            .filter(|origin| !origin.is_empty())
            .collect();
        crate::factors::FactorSettings {
            keys,
            totp_issuer: self.get("factors.totp_issuer"),
            totp_algorithm,
            totp_digits: self.get("factors.totp_digits"),
            pending_ttl: self.seconds("factors.pending_ttl_seconds"),
            limits,
            proof_ttl: self.seconds("factors.proof_ttl_seconds"),
            relying_party: RelyingParty {
                id: self.get("factors.rp_id"),
                name: self.get("factors.rp_name"),
                origins,
                require_user_verification: self.get("factors.require_user_verification"),
            },
            ceremony_ttl: self.seconds("factors.ceremony_ttl_seconds"),
            memory_max_entries: self.positive("factors.memory_max_entries") as usize,
        }
    }
}
