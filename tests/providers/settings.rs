//! `[[dispatch.providers]]` tables: one per kind as an operator writes them, the defaults,
//! every mistake reported at once, and secrets kept out of `Debug`.

use otpgate::dispatch::providers::{build, AdapterKind, ProviderSettings};
use serde_json::json;

use crate::helpers::settings;

const EXAMPLE: &str = r#"
[[dispatch.providers]]
name = "twilio-main"
kind = "twilio"
account_sid = "AC0123456789abcdef0123456789abcdef"
auth_token = "your-auth-token"
from = "+15017122661"              # or messaging_service_sid = "MG..."
status_callback = "https://otp.example.com/v1/receipts/twilio-main"
timeout_ms = 4000

[[dispatch.providers]]
name = "vonage"
kind = "vonage"
api_key = "abcd1234"
api_secret = "your-api-secret"
from = "Acme"
callback = "https://otp.example.com/v1/receipts/vonage"

[[dispatch.providers]]
name = "infobip"
kind = "infobip"
base_url = "https://xk9p2.api.infobip.com"
api_key = "your-infobip-api-key"
from = "Acme"
notify_url = "https://otp.example.com/v1/receipts/infobip"

[[dispatch.providers]]
name = "bird"
kind = "messagebird"
access_key = "your-access-key"
originator = "Acme"
report_url = "https://otp.example.com/v1/receipts/bird"

[[dispatch.providers]]
name = "wa"
kind = "whatsapp"
access_token = "your-system-user-token"
phone_number_id = "106540352242922"
template_name = "verification_code"
template_languages = ["en", "de", "fr", "es", "pt_BR", "it"]
api_version = "v21.0"
app_secret = "your-app-secret"

[[dispatch.providers]]
name = "gateway"
kind = "http"
url = "https://sms-gateway.internal/send"

[[dispatch.providers]]
name = "console"
kind = "log"
"#;

fn example() -> Vec<ProviderSettings> {
    config::Config::builder()
        .add_source(config::File::from_str(EXAMPLE, config::FileFormat::Toml))
        .build()
        .expect("TOML parses")
        .get("dispatch.providers")
        .expect("provider tables deserialize")
}

#[test]
fn every_kind_reads_from_toml_validates_and_builds() {
    let providers = example();
    assert_eq!(providers.len(), 7);
    for settings in &providers {
        assert_eq!(
            settings.validate(),
            Vec::<String>::new(),
            "{}",
            settings.name
        );
        let provider = build(settings).expect("builds");
        assert_eq!(provider.name(), settings.name);
    }
    let kinds: Vec<AdapterKind> = providers.iter().map(|s| s.kind).collect();
    assert_eq!(
        kinds,
        [
            AdapterKind::Twilio,
            AdapterKind::Vonage,
            AdapterKind::Infobip,
            AdapterKind::Messagebird,
            AdapterKind::Whatsapp,
            AdapterKind::Http,
            AdapterKind::Log
        ]
    );
    assert_eq!(providers[0].timeout_ms, 4000);
    assert_eq!(providers[1].timeout_ms, 5000);
}

#[test]
fn vendor_base_urls_default_to_the_real_hosts() {
    let providers = example();
    let base = |i: usize| providers[i].effective_base_url().map(str::to_owned);
    assert_eq!(base(0).as_deref(), Some("https://api.twilio.com"));
    assert_eq!(base(1).as_deref(), Some("https://rest.nexmo.com"));
    assert_eq!(base(2).as_deref(), Some("https://xk9p2.api.infobip.com"));
    assert_eq!(base(3).as_deref(), Some("https://rest.messagebird.com"));
    assert_eq!(base(4).as_deref(), Some("https://graph.facebook.com"));
}

#[test]
fn secrets_never_show_in_debug_output() {
    let printed = format!("{:?}", example());
    for secret in [
        "your-auth-token",
        "your-api-secret",
        "abcd1234",
        "your-infobip-api-key",
        "your-access-key",
        "your-system-user-token",
        "your-app-secret",
    ] {
        assert!(!printed.contains(secret), "{secret} leaks: {printed}");
    }
}

#[test]
fn unknown_fields_are_refused_by_the_parser() {
    let error = serde_json::from_value::<ProviderSettings>(json!({
        "name": "tw", "kind": "twilio", "acount_sid": "AC..."
    }))
    .expect_err("a misspelt field is an error");
    assert!(error.to_string().contains("acount_sid"), "{error}");
    assert!(
        serde_json::from_value::<ProviderSettings>(json!({"name": "x", "kind": "sinch"})).is_err()
    );
}

#[test]
fn build_reports_every_problem_of_an_entry_at_once() {
    let broken = settings(json!({
        "name": "wa main",
        "kind": "whatsapp",
        "phone_number_id": "+4915112345678",
        "api_version": "21",
        "from": "Acme",
        "timeout_ms": 0
    }));
    let problems = broken.validate();
    assert_eq!(problems.len(), 6, "{problems:#?}");
    let error = build(&broken).err().expect("refused");
    for expected in [
        "name must be",
        "timeout_ms",
        "'from' does not apply",
        "'access_token' is required",
        "'phone_number_id' must be the numeric id",
        "'api_version' must look like v21.0",
    ] {
        assert!(error.contains(expected), "missing '{expected}' in: {error}");
    }
    assert!(error.contains("provider 'wa main' (whatsapp)"), "{error}");
}

#[test]
fn twilio_needs_exactly_one_sender() {
    let both = settings(json!({
        "name": "tw", "kind": "twilio",
        "account_sid": "AC0123456789abcdef0123456789abcdef", "auth_token": "t",
        "from": "+15017122661", "messaging_service_sid": "MG0123456789abcdef0123456789abcdef"
    }));
    assert!(build(&both).err().expect("refused").contains("not both"));
    let neither = settings(json!({
        "name": "tw", "kind": "twilio",
        "account_sid": "AC0123456789abcdef0123456789abcdef", "auth_token": "t"
    }));
    assert!(build(&neither)
        .err()
        .expect("refused")
        .contains("one of 'from' or 'messaging_service_sid'"));
}

#[test]
fn infobip_without_its_account_base_url_is_refused() {
    let missing = settings(json!({
        "name": "ib", "kind": "infobip", "api_key": "k", "from": "Acme"
    }));
    assert!(build(&missing)
        .err()
        .expect("refused")
        .contains("'base_url' is required"));
}
