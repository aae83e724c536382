//! The loader: embedded defaults, environment overrides, every invalid value in one error,
//! secrets kept out of `Debug` and read from the environment the settings are loaded with.

use std::time::Duration;

use otpgate::account::limits::AccountLimits;
use otpgate::account::AccountId;
use otpgate::config::{ConfigError, Settings};
use otpgate::dispatch::settings::ProviderKind;

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
        Settings::load_from(None, env(&[("OTPGATE_VERIFICATION__TTL_SECONDS", "300")])).unwrap();
    assert_eq!(settings.verification.ttl, Duration::from_secs(300));
}

#[test]
fn the_code_length_floor_is_six_and_bounds_the_default_length() {
    assert_eq!(Settings::defaults().verification.min_code_length, 6);
    let error =
        Settings::load_from(None, env(&[("OTPGATE_VERIFICATION__CODE_LENGTH", "5")])).unwrap_err();
    assert!(
        error.to_string().contains("verification.code_length"),
        "{error}"
    );
    let error = Settings::load_from(None, env(&[("OTPGATE_VERIFICATION__MIN_CODE_LENGTH", "3")]))
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

const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";

fn load(env: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    Settings::load_from(
        None,
        env.iter()
            .map(|(name, value)| (name.to_string(), value.to_string())),
    )
}

#[test]
fn the_operator_raises_one_accounts_bound_and_the_others_keep_the_defaults() {
    let settings = load(&[
        (
            "OTPGATE_TENANTS__ACCOUNTS__AC0123456789ABCDEF0123456789ABCDEF__MAX_USERS",
            "500000",
        ),
        ("OTPGATE_TENANTS__MAX_FACTORS_PER_USER", "4"),
    ])
    .unwrap();
    let tenants = &settings.tenants;
    let raised = tenants.limits(&AccountId::parse(ACCOUNT).unwrap());
    assert_eq!(raised.users, 500_000);
    assert_eq!(raised.factors_per_user, 4, "unset fields keep the defaults");
    let other = AccountId::parse("AC00000000000000000000000000000000").unwrap();
    assert_eq!(tenants.limits(&other).users, AccountLimits::DEFAULT.users);
    assert_eq!(
        Settings::defaults().tenants.defaults,
        AccountLimits::DEFAULT,
        "config/default.toml and the constant agree"
    );
}

#[test]
fn bad_overrides_are_all_reported() {
    let error = load(&[
        ("OTPGATE_TENANTS__ACCOUNTS__NOTANACCOUNT__MAX_USERS", "5"),
        (
            "OTPGATE_TENANTS__ACCOUNTS__AC0123456789ABCDEF0123456789ABCDEF__MAX_USER",
            "5",
        ),
        ("OTPGATE_TENANTS__MEMORY_ACCOUNT_SHARE_PERCENT", "0"),
    ])
    .unwrap_err()
    .to_string();
    assert!(error.contains("not an account id"), "{error}");
    assert!(error.contains("max_user: unknown"), "{error}");
    assert!(error.contains("memory_account_share_percent"), "{error}");
}
