//! Unit tests of the parent module.

use super::*;

#[test]
fn secrets_do_not_show_in_debug_output() {
    let mut settings = ProviderSettings::new("tw", AdapterKind::Twilio);
    settings.auth_token = Some(Secret::from("very-secret-token"));
    let printed = format!("{settings:?}");
    assert!(!printed.contains("very-secret-token"), "{printed}");
    assert!(printed.contains("[redacted]"));
}

#[test]
fn validate_reports_every_problem_at_once() {
    let mut settings = ProviderSettings::new("bad name", AdapterKind::Twilio);
    settings.url = Some("https://example.com".into());
    settings.status_callback = Some("not a url".into());
    let problems = settings.validate();
    let all = problems.join("\n");
    assert!(all.contains("name must be"), "{all}");
    assert!(all.contains("'url' does not apply"), "{all}");
    assert!(all.contains("'account_sid' is required"), "{all}");
    assert!(all.contains("'auth_token' is required"), "{all}");
    assert!(all.contains("'from' or 'messaging_service_sid'"), "{all}");
    assert!(all.contains("'status_callback' is not a URL"), "{all}");
}

#[test]
fn infobip_needs_its_account_base_url() {
    let mut settings = ProviderSettings::new("ib", AdapterKind::Infobip);
    settings.api_key = Some(Secret::from("k"));
    settings.from = Some("Brand".into());
    assert!(settings
        .validate()
        .join(" ")
        .contains("'base_url' is required"));
    settings.base_url = Some("https://abcde.api.infobip.com".into());
    assert!(settings.validate().is_empty());
}
