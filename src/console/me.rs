//! My security: the signed-in user's own 2FA state and factors. "Turn on two-factor
//! authentication" (an admin, when the account does not require it), "Add authenticator app"
//! (QR code and secret, then the first code), "Add security key" and "Add passkey" (the browser
//! ceremony through `/sdk/webauthn.js`, in `assets/me.js`), recovery codes shown once and
//! "Regenerate", and trusted devices with "Revoke" and "Revoke all". Each is the service call the
//! API makes, with the signed-in user as the acting user.
//!
//! Sub-paths (all POST but the page): `two-factor`, `totp`, `totp/confirm`, `keys/options`
//! (JSON), `keys/<factor>` (JSON), `recovery-codes`, `devices/revoke`, `devices/revoke-all`.

use askama::Template;
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use serde::Deserialize;
use serde_json::json;

use super::layout::{html, json, redirect, Layout, Page, PageError};
use super::session::{read_form, read_signed_json, require, Signed};
use crate::account::audit::Who;
use crate::account::rules::{Actor, TwoFactorRequest};
use crate::account::trust::DeviceId;
use crate::account::user::{FactorType, User, UserId, UserRole};
use crate::account::users::UserPatch;
use crate::account::AccountId;
use crate::clock::rfc3339;
use crate::factors::CredentialJson;
use crate::App;

/// One factor as the page lists it.
pub struct FactorRow {
    pub id: String,
    pub kind: &'static str,
}

/// One trusted device as the page lists it.
pub struct DeviceRow {
    pub id: String,
    pub since: String,
    pub until: String,
}

#[derive(Template)]
#[template(path = "console/me.html")]
struct MePage {
    layout: Layout,
    enabled: bool,
    account_requires: bool,
    /// Show "Turn on two-factor authentication".
    may_turn_on: bool,
    factors: Vec<FactorRow>,
    devices: Vec<DeviceRow>,
    notice: &'static str,
}

#[derive(Template)]
#[template(path = "console/me_totp.html")]
struct TotpPage {
    layout: Layout,
    factor: String,
    /// Empty once shown (a retry of the first code).
    secret: String,
    uri: String,
    qr_svg: String,
    error: String,
}

#[derive(Template)]
#[template(path = "console/me_codes.html")]
struct CodesPage {
    layout: Layout,
    codes: Vec<String>,
    heading: &'static str,
}

/// The signed-in user's account, id, acting actor and audit name.
struct Me {
    account: AccountId,
    user: User,
    actor: Actor,
}

impl Me {
    fn of(signed: &Signed) -> Result<Self, PageError> {
        let (account, actor) = signed.actor().ok_or_else(|| {
            PageError::forbidden("The operator has no second factors of an account.")
        })?;
        let user = signed.user.clone().ok_or_else(PageError::internal)?;
        Ok(Self {
            account,
            user,
            actor,
        })
    }

    fn id(&self) -> &UserId {
        &self.user.id
    }

    fn who(&self) -> Who {
        Who::from(&self.actor)
    }
}

fn not_allowed() -> PageError {
    PageError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "This page does not take that method.",
    )
}

pub async fn page(app: &App, request: Request<Incoming>, action: &str) -> Page {
    let signed = require(app, &request).await?;
    let me = Me::of(&signed)?;
    let method = request.method().clone();
    match (method, action) {
        (Method::GET, "") => overview(app, &signed, &me, request.uri().query()).await,
        (Method::POST, "keys/options") => key_options(app, request, &signed, &me).await,
        (Method::POST, action) if action.starts_with("keys/") => {
            let factor = action.trim_start_matches("keys/").to_owned();
            key_confirm(app, request, &signed, &me, &factor).await
        }
        (Method::POST, action) => {
            let form = read_form(app, request, &signed).await?;
            let field = |name: &str| form.get(name).unwrap_or_default().to_owned();
            match action {
                "two-factor" => turn_on(app, &me).await,
                "totp" => totp_enrol(app, &signed, &me).await,
                "totp/confirm" => {
                    totp_confirm(app, &signed, &me, &field("factor"), &field("code")).await
                }
                "recovery-codes" => regenerate(app, &signed, &me).await,
                "devices/revoke" => revoke(app, &me, &field("device")).await,
                "devices/revoke-all" => revoke_all(app, &me).await,
                _ => Err(PageError::not_found()),
            }
        }
        (_, "") => Err(not_allowed()),
        _ => Err(PageError::not_found()),
    }
}

async fn overview(app: &App, signed: &Signed, me: &Me, query: Option<&str>) -> Page {
    let accounts = app.accounts();
    let policy = accounts.policy(&me.account).await?;
    let enabled = me.user.two_factor_enabled(policy.require_2fa);
    let devices = accounts
        .trusted_devices(&me.account, me.id())
        .await?
        .into_iter()
        .map(|(device, until)| DeviceRow {
            id: device.id.to_string(),
            since: rfc3339(device.created_ms),
            until: rfc3339(until),
        })
        .collect();
    let notice = match query.unwrap_or_default() {
        "added=app" => "Authenticator app added.",
        "added=key" => "Security key added.",
        "added=passkey" => "Passkey added.",
        "two-factor=on" => "Two-factor authentication is on for you.",
        "revoked=1" => "Device revoked.",
        "revoked=all" => "All trusted devices revoked.",
        _ => "",
    };
    html(&MePage {
        layout: signed.layout("My security", "/console/me"),
        enabled,
        account_requires: policy.require_2fa,
        may_turn_on: !enabled && me.user.role != UserRole::Member,
        factors: me
            .user
            .factors
            .iter()
            .map(|factor| FactorRow {
                id: factor.id.clone(),
                kind: match factor.kind {
                    FactorType::Totp => "Authenticator app",
                    FactorType::Webauthn => "Security key",
                    FactorType::Passkey => "Passkey",
                },
            })
            .collect(),
        devices,
        notice,
    })
}

/// "Turn on two-factor authentication": the user's own override, as `PATCH /v1/users/{me}`
/// `{"two_factor": "on"}` acting as themselves.
async fn turn_on(app: &App, me: &Me) -> Page {
    let patch = UserPatch {
        two_factor: Some(TwoFactorRequest::On),
        ..UserPatch::default()
    };
    app.accounts()
        .update_user(&me.account, &me.actor, me.id(), &patch)
        .await?;
    redirect("/console/me?two-factor=on")
}

async fn totp_enrol(app: &App, signed: &Signed, me: &Me) -> Page {
    let account = app
        .find_account(&me.account)
        .await
        .map_err(|_| PageError::internal())?
        .ok_or_else(PageError::not_found)?;
    let enrolment = app
        .factors()
        .enrol_totp(&account, me.id(), None, None)
        .await?;
    html(&TotpPage {
        layout: signed.layout("Add authenticator app", "/console/me"),
        factor: enrolment.factor_id,
        secret: enrolment.secret,
        uri: enrolment.uri,
        qr_svg: enrolment.qr_svg,
        error: String::new(),
    })
}

async fn totp_confirm(app: &App, signed: &Signed, me: &Me, factor: &str, code: &str) -> Page {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    let outcome = app
        .factors()
        .confirm_totp(&me.account, me.who(), me.id(), factor, &code)
        .await?;
    match outcome {
        Ok(confirmed) => match confirmed.recovery_codes {
            Some(codes) => html(&CodesPage {
                layout: signed.layout("Authenticator app added", "/console/me"),
                codes,
                heading: "Your recovery codes",
            }),
            None => redirect("/console/me?added=app"),
        },
        Err(_) => {
            let mut page = TotpPage {
                layout: signed.layout("Add authenticator app", "/console/me"),
                factor: factor.to_owned(),
                secret: String::new(),
                uri: String::new(),
                qr_svg: String::new(),
                error: "That code is not right. Type the code your app shows now.".to_owned(),
            };
            page.layout.title = "Add authenticator app".to_owned();
            super::layout::html_status(StatusCode::UNPROCESSABLE_ENTITY, &page)
        }
    }
}

async fn regenerate(app: &App, signed: &Signed, me: &Me) -> Page {
    let codes = app
        .factors()
        .regenerate_recovery_codes(&me.account, me.who(), me.id())
        .await?;
    html(&CodesPage {
        layout: signed.layout("New recovery codes", "/console/me"),
        codes,
        heading: "Your new recovery codes (the old ones no longer work)",
    })
}

async fn revoke(app: &App, me: &Me, device: &str) -> Page {
    let device = DeviceId::parse(device).ok_or_else(PageError::not_found)?;
    app.accounts()
        .revoke_device(&me.account, &me.actor, me.id(), &device)
        .await?;
    redirect("/console/me?revoked=1")
}

async fn revoke_all(app: &App, me: &Me) -> Page {
    app.accounts()
        .revoke_devices(&me.account, &me.actor, me.id())
        .await?;
    redirect("/console/me?revoked=all")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyKind {
    /// `webauthn` (a security key) or `passkey`.
    kind: String,
}

/// JSON (with the CSRF header): creation options for a security key or a passkey.
async fn key_options(app: &App, request: Request<Incoming>, signed: &Signed, me: &Me) -> Page {
    let body: KeyKind = read_signed_json(app, request, signed).await?;
    let kind = match body.kind.as_str() {
        "webauthn" => FactorType::Webauthn,
        "passkey" => FactorType::Passkey,
        _ => {
            return Err(
                PageError::new(StatusCode::BAD_REQUEST, "kind must be webauthn or passkey")
                    .as_json(),
            )
        }
    };
    let account = app
        .find_account(&me.account)
        .await
        .map_err(|_| PageError::internal().as_json())?
        .ok_or_else(|| PageError::not_found().as_json())?;
    let enrolment = app
        .factors()
        .enrol_webauthn(&account, me.id(), kind)
        .await
        .map_err(|error| PageError::from(error).as_json())?;
    json(
        StatusCode::OK,
        &json!({"factor": enrolment.factor_id, "options": enrolment.options}),
    )
}

/// JSON (with the CSRF header): the new credential; answers the recovery codes when it was the
/// user's first factor (shown once).
async fn key_confirm(
    app: &App,
    request: Request<Incoming>,
    signed: &Signed,
    me: &Me,
    factor: &str,
) -> Page {
    let credential: CredentialJson = read_signed_json(app, request, signed).await?;
    let outcome = app
        .factors()
        .confirm_webauthn(&me.account, me.who(), me.id(), factor, &credential)
        .await
        .map_err(|error| PageError::from(error).as_json())?;
    match outcome {
        Ok(confirmed) => {
            let redirect = match confirmed.factor.kind {
                FactorType::Passkey => "/console/me?added=passkey",
                _ => "/console/me?added=key",
            };
            json(
                StatusCode::OK,
                &json!({"redirect": redirect, "recovery_codes": confirmed.recovery_codes}),
            )
        }
        Err(reason) => {
            let mut error = PageError::new(
                StatusCode::BAD_REQUEST,
                format!("the key was not added: {reason}"),
            );
            error.reason = Some(reason);
            Err(error.as_json())
        }
    }
}
