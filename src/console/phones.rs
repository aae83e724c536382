//! The Phone numbers page (owners and admins): the account's numbers with the WhatsApp-style
//! two-step PIN (`src/pin/`), masked, with their PIN and lock state; "Set PIN" / "Change PIN"
//! and "Request disable link" as forms that work without JavaScript. Each action is the same
//! `PinService` call the API makes (`POST /v1/phone-numbers/{id}`,
//! `POST /v1/phone-numbers/{id}/two-step/disable-requests`), with the signed-in user's role as
//! the caller's role and the user named in the audit trail, so the number rules answer with
//! their own sentence.

use askama::Template;
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};

use super::layout::{html, html_status, redirect, Layout, Page, PageError};
use super::session::{read_form, require_manager, Signed};
use crate::account::audit::Who;
use crate::account::user::UserRole;
use crate::account::{AccountId, Role};
use crate::clock::rfc3339;
use crate::phone::mask;
use crate::pin::service::PinError;
use crate::pin::{LinkPurpose, PhoneNumberId, Pin, PinRefusal};
use crate::App;

/// Numbers per page (the API's lists page the same way, by id).
const PAGE: usize = 50;

/// One number as the page shows it.
pub struct NumberRow {
    pub id: String,
    pub masked: String,
    pub pin_set: bool,
    pub locked: bool,
    pub registered: bool,
    pub disable_link_until: String,
}

#[derive(Template)]
#[template(path = "console/phones.html")]
struct PhonesPage {
    layout: Layout,
    numbers: Vec<NumberRow>,
    next: String,
    notice: String,
    error: String,
    may_ask_links: bool,
}

/// The key role the PIN rules judge for the signed-in user: owners act as owner keys, admins
/// as admin keys (members never reach this page).
fn pin_role(signed: &Signed) -> Result<Role, PageError> {
    match signed.role() {
        Some(UserRole::Owner) => Ok(Role::Owner),
        Some(UserRole::Admin) => Ok(Role::Admin),
        _ => Err(PageError::forbidden(
            "Only the account's owner and admins may open this page.",
        )),
    }
}

/// The page's statuses and sentences for the PIN service's errors: the API's (`http/error.rs`),
/// worded for a person.
fn pin_error(error: PinError) -> PageError {
    let unprocessable = |message: &str| PageError::new(StatusCode::UNPROCESSABLE_ENTITY, message);
    match error {
        PinError::Forbidden(detail) => PageError::forbidden(&sentence(detail)),
        PinError::BadPin(PinRefusal::Format) => {
            PageError::new(StatusCode::BAD_REQUEST, "The PIN must be exactly 6 digits.")
        }
        PinError::BadPin(PinRefusal::Common(reason)) => unprocessable(&format!(
            "Choose another PIN: {reason}, so it is among the first anyone would try."
        )),
        PinError::NotFound => {
            PageError::new(StatusCode::NOT_FOUND, "No such phone number in this account.")
        }
        PinError::Locked => PageError::new(
            StatusCode::LOCKED,
            "The number is locked after 10 wrong PINs in a row; its owner or an admin unlocks it by setting a new PIN.",
        ),
        PinError::NoEmail => unprocessable(
            "The account has no e-mail address to send the link to; the operator sets one (PUT /v1/accounts/{id}/email).",
        ),
        PinError::AlreadyDisabled => PageError::new(
            StatusCode::CONFLICT,
            "Two-step verification is already off for this number.",
        ),
        PinError::Changed => PageError::new(
            StatusCode::CONFLICT,
            "The PIN changed while this request was checked; try again.",
        ),
        PinError::Wait { retry_after_ms } | PinError::Mismatch { retry_after_ms, .. } => {
            PageError::too_many(retry_after_ms.div_ceil(1000).max(1))
        }
        PinError::Mail(error) => {
            tracing::error!(%error, "mail not sent (console)");
            PageError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "The e-mail could not be sent; nothing was changed. Try again.",
            )
        }
        PinError::Store(error) => error.into(),
        PinError::Exists(_) | PinError::HeldElsewhere => PageError::new(
            StatusCode::CONFLICT,
            "This phone number is already registered.",
        ),
        PinError::LinkUnknown
        | PinError::LinkUsed
        | PinError::LinkExpired
        | PinError::LinkSuperseded => PageError::not_found(),
        PinError::Hash(error) => {
            tracing::error!(%error, "PIN hashing failed (console)");
            PageError::internal()
        }
        PinError::Random => PageError::internal(),
    }
}

/// A rule's lowercase sentence as a sentence on a page.
fn sentence(detail: &str) -> String {
    let mut chars = detail.chars();
    let mut out: String = chars
        .next()
        .map(|c| c.to_uppercase().collect())
        .unwrap_or_default();
    out.push_str(chars.as_str());
    if !out.ends_with('.') {
        out.push('.');
    }
    out
}

/// `?after=PN…` (the last id of the page before), checked before any store read.
fn after_of(query: Option<&str>) -> Result<Option<PhoneNumberId>, PageError> {
    let mut after = None;
    for (name, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match name.as_ref() {
            "after" => {
                after = Some(PhoneNumberId::parse(&value).ok_or_else(|| {
                    PageError::new(StatusCode::BAD_REQUEST, "That is not a page of this list.")
                })?)
            }
            "pin" | "link" => {}
            _ => {
                return Err(PageError::new(
                    StatusCode::BAD_REQUEST,
                    "This page takes no such parameter.",
                ))
            }
        }
    }
    Ok(after)
}

/// The notice after a redirect: `?pin=set` or `?link=sent`.
fn notice_of(query: Option<&str>) -> String {
    let query = query.unwrap_or_default();
    if query.split('&').any(|pair| pair == "pin=set") {
        "PIN saved.".to_owned()
    } else if query.split('&').any(|pair| pair == "link=sent") {
        "A link that turns two-step verification off was e-mailed to the account's address."
            .to_owned()
    } else {
        String::new()
    }
}

async fn render(
    app: &App,
    signed: &Signed,
    account: &AccountId,
    role: Role,
    after: Option<&PhoneNumberId>,
    notice: String,
    error: Option<PageError>,
) -> Page {
    let pins = app.pins();
    let mut records = pins
        .numbers(account, role, after, PAGE + 1)
        .await
        .map_err(pin_error)?;
    let next = if records.len() > PAGE {
        records.truncate(PAGE);
        records
            .last()
            .map(|record| record.id.as_str().to_owned())
            .unwrap_or_default()
    } else {
        String::new()
    };
    let limits = &pins.settings().limits;
    let numbers = records
        .iter()
        .map(|record| NumberRow {
            id: record.id.as_str().to_owned(),
            masked: mask(&record.e164),
            pin_set: record.two_step,
            locked: record.locked(limits),
            registered: record.registered_ms > 0,
            disable_link_until: if record.disable_link_expires_ms > 0 {
                rfc3339(record.disable_link_expires_ms)
            } else {
                String::new()
            },
        })
        .collect();
    let page = PhonesPage {
        layout: signed.layout("Phone numbers", "/console/phone-numbers"),
        numbers,
        next,
        notice,
        error: error
            .as_ref()
            .map(|e| e.message.clone())
            .unwrap_or_default(),
        // The page offers what the rules allow; the service checks again.
        may_ask_links: crate::account::permission::Permission::DisableTwoStep.allows(role),
    };
    match error {
        Some(error) => html_status(error.status, &page),
        None => html(&page),
    }
}

pub async fn page(app: &App, request: Request<Incoming>, tail: &str) -> Page {
    let signed = require_manager(app, &request).await?;
    let role = pin_role(&signed)?;
    let (account, actor) = signed
        .actor()
        .ok_or_else(|| PageError::forbidden("The operator has no phone numbers."))?;
    let who = Who::from(&actor);
    let method = request.method().clone();
    match (method, tail) {
        (Method::GET, "") => {
            let query = request.uri().query();
            let after = after_of(query)?;
            render(
                app,
                &signed,
                &account,
                role,
                after.as_ref(),
                notice_of(query),
                None,
            )
            .await
        }
        (Method::POST, "pin") => {
            let form = read_form(app, request, &signed).await?;
            let id = number_of(form.get("number"))?;
            let outcome = match Pin::parse(form.get("pin").unwrap_or_default().trim()) {
                Err(refusal) => Err(PinError::BadPin(refusal)),
                Ok(pin) => pins_set(app, &account, who, role, &id, &pin).await,
            };
            match outcome {
                Ok(()) => redirect("/console/phone-numbers?pin=set"),
                Err(error) => refused(app, &signed, &account, role, pin_error(error)).await,
            }
        }
        (Method::POST, "disable-link") => {
            let form = read_form(app, request, &signed).await?;
            let id = number_of(form.get("number"))?;
            match app
                .pins()
                .request_link(&account, who, role, &id, LinkPurpose::Disable)
                .await
            {
                Ok(_) => redirect("/console/phone-numbers?link=sent"),
                Err(error) => refused(app, &signed, &account, role, pin_error(error)).await,
            }
        }
        (_, "" | "pin" | "disable-link") => Err(PageError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "This page does not take that method.",
        )),
        _ => Err(PageError::not_found()),
    }
}

async fn pins_set(
    app: &App,
    account: &AccountId,
    who: Who,
    role: Role,
    id: &PhoneNumberId,
    pin: &Pin,
) -> Result<(), PinError> {
    app.pins()
        .set_pin(account, who, role, id, pin, "console")
        .await
        .map(|_| ())
}

/// A refusal on the page itself (the list again, the rule's sentence on top); a failure of the
/// gateway is the error page.
async fn refused(
    app: &App,
    signed: &Signed,
    account: &AccountId,
    role: Role,
    error: PageError,
) -> Page {
    if error.status.is_server_error() || error.status == StatusCode::TOO_MANY_REQUESTS {
        return Err(error);
    }
    render(app, signed, account, role, None, String::new(), Some(error)).await
}

fn number_of(field: Option<&str>) -> Result<PhoneNumberId, PageError> {
    field.and_then(PhoneNumberId::parse).ok_or_else(|| {
        PageError::new(
            StatusCode::NOT_FOUND,
            "No such phone number in this account.",
        )
    })
}
