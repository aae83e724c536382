//! The Security page (owners and admins): the account's 2FA policy as a form that works without
//! JavaScript. Saving is the same service call `PUT /v1/policy` makes, with the signed-in user as
//! the acting user, so the account's rules (an admin may not turn the requirement off; SMS needs
//! every user's phone) answer with their own sentence. Geo permissions and the pumping guard are
//! shown read-only.

use askama::Template;
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};

use super::layout::{html, html_status, redirect, Layout, Page, PageError};
use super::session::{read_form, require_manager, Form, Signed};
use crate::account::policy::{ChannelSet, Policy, PolicyChannel, TrustDuration};
use crate::account::service::PolicyUpdate;
use crate::App;

/// One checkbox or radio button: its value, label, and whether it is on.
pub struct Choice {
    pub id: String,
    pub value: &'static str,
    pub label: &'static str,
    pub on: bool,
}

#[derive(Template)]
#[template(path = "console/security.html")]
struct SecurityPage {
    layout: Layout,
    require_2fa: bool,
    sms_fallback: bool,
    channels: Vec<Choice>,
    trusted: Vec<Choice>,
    saved: bool,
    error: String,
    users: Vec<String>,
    abuse: String,
}

/// The methods in the order the product pages list them, with their labels.
const METHODS: [(PolicyChannel, &str); 6] = [
    (PolicyChannel::Sms, "SMS"),
    (PolicyChannel::Whatsapp, "WhatsApp"),
    (PolicyChannel::Totp, "Authenticator app"),
    (PolicyChannel::Webauthn, "Security key"),
    (PolicyChannel::Call, "Voice call"),
    (PolicyChannel::Email, "E-mail"),
];

const DURATIONS: [(TrustDuration, &str); 4] = [
    (TrustDuration::EveryLogin, "Every login"),
    (TrustDuration::OneDay, "1 day"),
    (TrustDuration::OneWeek, "1 week"),
    (TrustDuration::ThirtyDays, "30 days"),
];

/// What the form shows: the stored policy, or what was just posted (after a refusal).
struct Shown {
    require_2fa: bool,
    sms_fallback: bool,
    channels: ChannelSet,
    trusted: TrustDuration,
}

impl From<&Policy> for Shown {
    fn from(policy: &Policy) -> Self {
        Self {
            require_2fa: policy.require_2fa,
            sms_fallback: policy.sms_fallback,
            channels: policy.channels,
            trusted: policy.trusted_device,
        }
    }
}

fn render(
    signed: &Signed,
    policy: &Policy,
    shown: &Shown,
    saved: bool,
    error: Option<PageError>,
) -> Page {
    let page = SecurityPage {
        layout: signed.layout("Security", "/console/security"),
        require_2fa: shown.require_2fa,
        sms_fallback: shown.sms_fallback,
        channels: METHODS
            .iter()
            .map(|(channel, label)| Choice {
                id: format!("channel-{}", channel.as_str()),
                value: channel.as_str(),
                label,
                on: shown.channels.contains(*channel),
            })
            .collect(),
        trusted: DURATIONS
            .iter()
            .map(|(duration, label)| Choice {
                id: format!("trusted-{}", duration.as_str()),
                value: duration.as_str(),
                label,
                on: shown.trusted == *duration,
            })
            .collect(),
        saved,
        error: error
            .as_ref()
            .map(|e| e.message.clone())
            .unwrap_or_default(),
        users: error.as_ref().map(|e| e.users.clone()).unwrap_or_default(),
        abuse: if *policy.abuse == Default::default() {
            String::new()
        } else {
            serde_json::to_string_pretty(&*policy.abuse).unwrap_or_default()
        },
    };
    match error {
        Some(error) => html_status(error.status, &page),
        None => html(&page),
    }
}

/// What the form asks for: every field (an unchecked box is absent from a form: off).
fn update_of(form: &Form) -> Result<(PolicyUpdate, Shown), PageError> {
    let mut channels = Vec::new();
    for value in form.all("channel") {
        let channel = PolicyChannel::parse(value)
            .ok_or_else(|| PageError::new(StatusCode::BAD_REQUEST, "Unknown method."))?;
        channels.push(channel);
    }
    let trusted = TrustDuration::parse(form.get("trusted_device").unwrap_or("none"))
        .ok_or_else(|| PageError::new(StatusCode::BAD_REQUEST, "Unknown trusted-device time."))?;
    let shown = Shown {
        require_2fa: form.checked("require_2fa"),
        sms_fallback: form.checked("sms_fallback"),
        channels: ChannelSet::of(&channels),
        trusted,
    };
    let update = PolicyUpdate {
        require_2fa: Some(shown.require_2fa),
        channels: Some(shown.channels),
        sms_fallback: Some(shown.sms_fallback),
        trusted_device: Some(trusted),
        abuse: None,
        workflow: None,
    };
    Ok((update, shown))
}

pub async fn page(app: &App, request: Request<Incoming>) -> Page {
    let signed = require_manager(app, &request).await?;
    let (account, actor) = signed
        .actor()
        .ok_or_else(|| PageError::forbidden("The operator has no account policy."))?;
    let accounts = app.accounts();
    match *request.method() {
        Method::GET => {
            let policy = accounts.policy(&account).await?;
            let saved = request.uri().query() == Some("saved=1");
            render(&signed, &policy, &Shown::from(&policy), saved, None)
        }
        Method::POST => {
            let form = read_form(app, request, &signed).await?;
            let (update, shown) = update_of(&form)?;
            match accounts.set_policy(&account, &actor, &update).await {
                Ok(_) => redirect("/console/security?saved=1"),
                Err(error) => {
                    let error = PageError::from(error);
                    if error.status.is_server_error() {
                        return Err(error);
                    }
                    let policy = accounts.policy(&account).await?;
                    render(&signed, &policy, &shown, false, Some(error))
                }
            }
        }
        _ => Err(PageError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "This page does not take that method.",
        )),
    }
}
