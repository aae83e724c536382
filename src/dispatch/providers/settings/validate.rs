//! The checks of a `[[dispatch.providers]]` entry: every mistake reported at once.

use super::*;

impl ProviderSettings {
    /// Every problem with this entry, each as one sentence that names the provider, so that a
    /// config with several mistakes is fixed in one round.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let who = format!("provider '{}' ({})", self.name, self.kind.as_str());
        let mut problem = |text: String| problems.push(format!("{who}: {text}"));

        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !name_ok {
            problem("name must be 1 to 64 characters of a-z, A-Z, 0-9, '_' or '-' (it appears in metrics and routes)".into());
        }
        if self.timeout_ms == 0 || self.timeout_ms > 120_000 {
            problem("timeout_ms must be between 1 and 120000".into());
        }

        // Fields each kind may carry; any other field that is set is a mistake worth naming.
        let allowed: &[&str] = match self.kind {
            AdapterKind::Twilio => &[
                "base_url",
                "account_sid",
                "auth_token",
                "from",
                "messaging_service_sid",
                "status_callback",
            ],
            AdapterKind::Vonage => &[
                "base_url",
                "api_key",
                "api_secret",
                "from",
                "callback",
                "application_id",
                "private_key",
                "voice_base_url",
                "event_url",
                "signature_secret",
            ],
            AdapterKind::Infobip => &["base_url", "api_key", "from", "notify_url"],
            AdapterKind::Messagebird => &["base_url", "access_key", "originator", "report_url"],
            AdapterKind::Whatsapp => &[
                "base_url",
                "access_token",
                "phone_number_id",
                "template_name",
                "template_languages",
                "api_version",
                "app_secret",
            ],
            AdapterKind::Smtp => &["url", "from", "password"],
            AdapterKind::Sendgrid => &["base_url", "api_key", "from", "verification_key"],
            AdapterKind::Http => &["url"],
            AdapterKind::Smpp => &[
                "address",
                "system_id",
                "password",
                "system_type",
                "from",
                "bind",
                "window",
                "enquire_link_ms",
                "reconnect_max_ms",
            ],
            AdapterKind::Log => &[],
        };
        for (field, set) in self.fields_set() {
            if set && !allowed.contains(&field) {
                problem(format!(
                    "'{field}' does not apply to the {} kind",
                    self.kind.as_str()
                ));
            }
        }

        let require = |field: &str, value: Option<&str>, problem: &mut dyn FnMut(String)| {
            if value.is_none_or(|v| v.trim().is_empty()) {
                problem(format!("'{field}' is required"));
            }
        };
        let require_secret =
            |field: &str, value: &Option<Secret>, problem: &mut dyn FnMut(String)| {
                require(
                    field,
                    value.as_ref().map(Secret::expose_str).as_deref(),
                    problem,
                )
            };
        let url = |field: &str, value: Option<&str>, problem: &mut dyn FnMut(String)| {
            if let Some(value) = value {
                if let Err(reason) = check_url(value) {
                    problem(format!("'{field}' {reason}"));
                }
            }
        };
        url("base_url", self.base_url.as_deref(), &mut problem);
        if let Some(channels) = &self.channels {
            if channels.is_empty() {
                problem("'channels' must list at least one channel".into());
            }
            for channel in channels {
                if !self.kind.capable().contains(channel) {
                    problem(format!(
                        "the {} kind cannot carry '{}' (it carries {})",
                        self.kind.as_str(),
                        channel.as_str(),
                        self.kind
                            .capable()
                            .iter()
                            .map(|c| c.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
            }
        }
        let calls = self.carries(Channel::Call);
        let texts = self.carries(Channel::Sms);
        match self.kind {
            AdapterKind::Twilio => {
                require("account_sid", self.account_sid.as_deref(), &mut problem);
                require_secret("auth_token", &self.auth_token, &mut problem);
                if let Some(sid) = &self.account_sid {
                    if !(sid.starts_with("AC") && sid.len() == 34) {
                        problem(
                            "'account_sid' must be the 34-character SID starting with AC".into(),
                        );
                    }
                }
                match (&self.from, &self.messaging_service_sid) {
                    (None, None) => {
                        problem("one of 'from' or 'messaging_service_sid' is required".into())
                    }
                    (Some(_), Some(_)) => problem(
                        "give 'from' or 'messaging_service_sid', not both (Twilio then ignores 'from')"
                            .into(),
                    ),
                    _ => {}
                }
                if let Some(sid) = &self.messaging_service_sid {
                    if !(sid.starts_with("MG") && sid.len() == 34) {
                        problem(
                            "'messaging_service_sid' must be the 34-character SID starting with MG"
                                .into(),
                        );
                    }
                }
                url(
                    "status_callback",
                    self.status_callback.as_deref(),
                    &mut problem,
                );
                if calls && self.from.is_none() {
                    problem("calls need 'from', a Twilio voice number (a messaging service cannot place calls)".into());
                }
            }
            AdapterKind::Vonage => {
                if texts {
                    require_secret("api_key", &self.api_key, &mut problem);
                    require_secret("api_secret", &self.api_secret, &mut problem);
                }
                require("from", self.from.as_deref(), &mut problem);
                url("callback", self.callback.as_deref(), &mut problem);
                if calls {
                    require(
                        "application_id",
                        self.application_id.as_deref(),
                        &mut problem,
                    );
                    require_secret("private_key", &self.private_key, &mut problem);
                    let numeric = self.from.as_deref().is_some_and(|from| {
                        let digits = from.trim_start_matches('+');
                        !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
                    });
                    if self.from.is_some() && !numeric {
                        problem(
                            "calls need 'from' to be a Vonage number (digits), not a sender name"
                                .into(),
                        );
                    }
                }
                url(
                    "voice_base_url",
                    self.voice_base_url.as_deref(),
                    &mut problem,
                );
                url("event_url", self.event_url.as_deref(), &mut problem);
            }
            AdapterKind::Infobip => {
                if self.base_url.is_none() {
                    problem("'base_url' is required: Infobip gives each account its own (https://xxxxx.api.infobip.com)".into());
                }
                require_secret("api_key", &self.api_key, &mut problem);
                require("from", self.from.as_deref(), &mut problem);
                url("notify_url", self.notify_url.as_deref(), &mut problem);
            }
            AdapterKind::Messagebird => {
                require_secret("access_key", &self.access_key, &mut problem);
                require("originator", self.originator.as_deref(), &mut problem);
                if let Some(originator) = &self.originator {
                    let digits = originator.trim_start_matches('+');
                    let numeric = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
                    if !numeric && originator.chars().count() > 11 {
                        problem("'originator' must be a phone number or at most 11 alphanumeric characters".into());
                    }
                }
                url("report_url", self.report_url.as_deref(), &mut problem);
            }
            AdapterKind::Whatsapp => {
                require(
                    "access_token",
                    self.access_token
                        .as_ref()
                        .map(Secret::expose_str)
                        .as_deref(),
                    &mut problem,
                );
                require(
                    "phone_number_id",
                    self.phone_number_id.as_deref(),
                    &mut problem,
                );
                if let Some(id) = &self.phone_number_id {
                    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
                        problem("'phone_number_id' must be the numeric id Meta shows for the number (not the number itself)".into());
                    }
                }
                if self
                    .template_name
                    .as_deref()
                    .is_some_and(|name| name.trim().is_empty())
                {
                    problem("'template_name' must not be empty".into());
                }
                if self
                    .template_languages
                    .as_ref()
                    .is_some_and(|languages| languages.is_empty())
                {
                    problem("'template_languages' must list at least one language".into());
                }
                let version = self.whatsapp_api_version();
                let version_ok = version.strip_prefix('v').is_some_and(|rest| {
                    !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit() || b == b'.')
                });
                if !version_ok {
                    problem("'api_version' must look like v21.0".into());
                }
            }
            AdapterKind::Smtp | AdapterKind::Sendgrid => {
                crate::dispatch::providers::email_settings::validate(self, &mut problem)
            }
            AdapterKind::Http => {
                require("url", self.url.as_deref(), &mut problem);
                url("url", self.url.as_deref(), &mut problem);
            }
            AdapterKind::Smpp => self.validate_smpp(&mut problem),
            AdapterKind::Log => {}
        }
        problems
    }

    fn fields_set(&self) -> [(&'static str, bool); 34] {
        [
            ("base_url", self.base_url.is_some()),
            ("account_sid", self.account_sid.is_some()),
            ("auth_token", self.auth_token.is_some()),
            (
                "messaging_service_sid",
                self.messaging_service_sid.is_some(),
            ),
            ("status_callback", self.status_callback.is_some()),
            ("from", self.from.is_some()),
            ("api_key", self.api_key.is_some()),
            ("api_secret", self.api_secret.is_some()),
            ("callback", self.callback.is_some()),
            ("application_id", self.application_id.is_some()),
            ("private_key", self.private_key.is_some()),
            ("voice_base_url", self.voice_base_url.is_some()),
            ("event_url", self.event_url.is_some()),
            ("signature_secret", self.signature_secret.is_some()),
            ("notify_url", self.notify_url.is_some()),
            ("access_key", self.access_key.is_some()),
            ("originator", self.originator.is_some()),
            ("report_url", self.report_url.is_some()),
            ("access_token", self.access_token.is_some()),
            ("phone_number_id", self.phone_number_id.is_some()),
            ("template_name", self.template_name.is_some()),
            ("template_languages", self.template_languages.is_some()),
            ("api_version", self.api_version.is_some()),
            ("app_secret", self.app_secret.is_some()),
            ("url", self.url.is_some()),
            ("address", self.address.is_some()),
            ("system_id", self.system_id.is_some()),
            ("password", self.password.is_some()),
            ("system_type", self.system_type.is_some()),
            ("bind", self.bind.is_some()),
            ("window", self.window.is_some()),
            ("enquire_link_ms", self.enquire_link_ms.is_some()),
            ("reconnect_max_ms", self.reconnect_max_ms.is_some()),
            ("verification_key", self.verification_key.is_some()),
        ]
    }
}
