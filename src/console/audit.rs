//! The Audit page (owners and admins): the account's audit trail newest first, a page at a
//! time, filterable by action. It reads through the same `AccountService::audit_page` that
//! `GET /v1/audit` answers from; the filter is the console's own: it walks older pages until a
//! page of matching entries is full or it has looked at `SCAN` entries, and the "Older" link
//! carries on from where it stopped.

use askama::Template;
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};

use super::layout::{html, Layout, Page, PageError};
use super::session::require_manager;
use crate::account::audit::{action, valid_cursor, AuditEntry};
use crate::clock::rfc3339;
use crate::pin;
use crate::App;

/// Entries shown per page (the API's default page).
const PAGE: usize = 50;
/// Entries read from the store per step while filtering (the API's largest page).
const STEP: usize = 500;
/// Entries looked at for one filtered page at most, so one page load stays bounded however
/// rare the action is; the "Older" link goes on from there.
const SCAN: usize = 5_000;

/// The actions the filter suggests (any action may be typed).
const ACTIONS: &[&str] = &[
    action::POLICY_UPDATED,
    action::USER_CREATED,
    action::TWO_FACTOR_CHANGED,
    action::PHONE_CHANGED,
    action::EMAIL_CHANGED,
    action::ROLE_CHANGED,
    action::FACTOR_ADDED,
    action::FACTOR_REMOVED,
    action::DEVICE_TRUSTED,
    action::DEVICE_REVOKED,
    action::DEVICES_REVOKED,
    action::KEY_MINTED,
    action::KEY_REVOKED,
    action::ABUSE_BLOCKED,
    pin::action::NUMBER_ADDED,
    pin::action::NUMBER_REGISTERED,
    pin::action::PIN_SET,
    pin::action::PIN_CHANGED,
    pin::action::ENABLED,
    pin::action::LOCKED,
    pin::action::DISABLE_REQUESTED,
    pin::action::DISABLE_REFUSED,
    pin::action::DISABLED,
    pin::action::RESET_REQUESTED,
    pin::action::PIN_RESET,
];

pub struct Row {
    pub at: String,
    pub action: String,
    pub target: String,
    pub who: String,
    pub details: String,
}

#[derive(Template)]
#[template(path = "console/audit.html")]
struct AuditPageView {
    layout: Layout,
    rows: Vec<Row>,
    action: String,
    actions: &'static [&'static str],
    /// The query of the next (older) page, empty on the last.
    older: String,
    /// The filter stopped looking before the page was full.
    scanned_out: bool,
}

/// What the page was asked: `action` (empty: all) and `cursor`.
struct Query {
    action: String,
    cursor: Option<String>,
}

/// An action is a dotted lowercase name (`key.revoked`); anything else is refused before any
/// store read.
fn valid_action(input: &str) -> bool {
    input.len() <= 64
        && input
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

fn query_of(query: Option<&str>) -> Result<Query, PageError> {
    let mut parsed = Query {
        action: String::new(),
        cursor: None,
    };
    for (name, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match name.as_ref() {
            "action" if valid_action(value.trim()) => parsed.action = value.trim().to_owned(),
            "action" => {
                return Err(PageError::new(
                    StatusCode::BAD_REQUEST,
                    "An action is a name such as key.revoked (lowercase letters, digits, dots).",
                ))
            }
            "cursor" if value.is_empty() => {}
            "cursor" if valid_cursor(&value) => parsed.cursor = Some(value.into_owned()),
            "cursor" => {
                return Err(PageError::new(
                    StatusCode::BAD_REQUEST,
                    "That is not a page of this trail.",
                ))
            }
            _ => {
                return Err(PageError::new(
                    StatusCode::BAD_REQUEST,
                    "This page takes no such parameter.",
                ))
            }
        }
    }
    Ok(parsed)
}

fn row(entry: &AuditEntry) -> Row {
    let who = match &entry.who.acting_user {
        Some(user) => format!("{} ({}, for {user})", entry.who.key_id, entry.who.role),
        None => format!("{} ({})", entry.who.key_id, entry.who.role),
    };
    Row {
        at: rfc3339(entry.at_ms),
        action: entry.action.clone(),
        target: entry.target.clone(),
        who,
        details: if entry.details.is_null() {
            String::new()
        } else {
            entry.details.to_string()
        },
    }
}

pub async fn page(app: &App, request: Request<Incoming>, tail: &str) -> Page {
    let signed = require_manager(app, &request).await?;
    let (account, _) = signed
        .actor()
        .ok_or_else(|| PageError::forbidden("The operator has no account audit trail."))?;
    if !tail.is_empty() {
        return Err(PageError::not_found());
    }
    if request.method() != Method::GET {
        return Err(PageError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "This page does not take that method.",
        ));
    }
    let query = query_of(request.uri().query())?;
    let accounts = app.accounts();
    let mut rows = Vec::new();
    let mut next: Option<String> = None;
    let mut scanned_out = false;
    if query.action.is_empty() {
        let page = accounts
            .audit_page(&account, query.cursor.as_deref(), PAGE)
            .await?;
        rows.extend(page.entries.iter().map(row));
        next = page.next_cursor;
    } else {
        let mut cursor = query.cursor.clone();
        let mut seen = 0;
        'pages: loop {
            let page = accounts
                .audit_page(&account, cursor.as_deref(), STEP)
                .await?;
            for entry in &page.entries {
                seen += 1;
                if entry.action == query.action {
                    rows.push(row(entry));
                    if rows.len() == PAGE {
                        // Older entries follow this one; whether any matches is the next
                        // page's to find.
                        next = Some(entry.id.clone());
                        break 'pages;
                    }
                }
                if seen >= SCAN {
                    next = Some(entry.id.clone());
                    scanned_out = true;
                    break 'pages;
                }
            }
            match page.next_cursor {
                Some(older) => cursor = Some(older),
                None => break,
            }
        }
    }
    let older = next
        .map(|cursor| {
            form_urlencoded::Serializer::new(String::new())
                .append_pair("action", &query.action)
                .append_pair("cursor", &cursor)
                .finish()
        })
        .unwrap_or_default();
    html(&AuditPageView {
        layout: signed.layout("Audit", "/console/audit"),
        rows,
        action: query.action,
        actions: ACTIONS,
        older,
        scanned_out,
    })
}
