//! The web console at `/console/` (issue 18): server-rendered pages (askama templates in
//! `templates/console/`), one stylesheet and a few ES modules embedded in the binary, passkey
//! sign-in, sessions in the store, a CSRF token on every form. Every action is the same service
//! call the API makes, with the signed-in user as the acting user; nothing here decides a rule.
//!
//! - `mod.rs` (this file): `[console]` settings and the page table (`route`): one match arm per
//!   page, each page module owning its GET and POST.
//! - `service.rs`: invitations, ceremonies, sessions; `store.rs`: its port.
//! - `session.rs`: the cookie, the signed-in principal, CSRF checks; `layout.rs`: responses,
//!   security headers, the navigation every page shows; `error.rs`: the statuses of pages;
//!   `assets.rs`: the embedded files.
//! - One file per page: `home.rs` (home, sign-in, invitations), `security.rs`, `me.rs`, and
//!   the pages of later helpers: `users.rs`, `phones.rs`, `audit.rs`, `operator.rs`.

pub mod assets;
pub mod audit;
pub mod error;
pub mod home;
pub mod layout;
pub mod me;
pub mod operator;
pub mod phones;
pub mod security;
pub mod service;
pub mod session;
pub mod store;
pub mod users;

use std::net::IpAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use serde::Deserialize;

use crate::factors::webauthn::RelyingParty;
use crate::App;
use layout::{secure, Page, PageError};

/// `[console]` settings (config/default.toml documents each).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleSettings {
    pub enabled: bool,
    /// The console's public base URL (scheme, host, port) for invitation links; empty: the
    /// first of `factors.origins`.
    pub public_url: String,
    pub invitation_ttl_hours: u64,
    pub idle_minutes: u64,
    pub absolute_hours: u64,
    /// Open invitations, console passkeys and sessions per person (each).
    pub max_per_user: usize,
    /// Each of those in total, in the embedded store.
    pub max_total: usize,
    /// Print a root invitation at start while the operator has no console passkey.
    pub print_root_invitation: bool,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            public_url: String::new(),
            invitation_ttl_hours: 24,
            idle_minutes: 30,
            absolute_hours: 12,
            max_per_user: 10,
            max_total: 100_000,
            print_root_invitation: true,
        }
    }
}

impl ConsoleSettings {
    pub fn validate(&self, errors: &mut Vec<String>) {
        let positive = [
            ("console.invitation_ttl_hours", self.invitation_ttl_hours),
            ("console.idle_minutes", self.idle_minutes),
            ("console.absolute_hours", self.absolute_hours),
            ("console.max_per_user", self.max_per_user as u64),
            ("console.max_total", self.max_total as u64),
        ];
        for (key, value) in positive {
            if value == 0 {
                errors.push(format!("{key}: must be greater than 0"));
            }
        }
        if !self.public_url.is_empty()
            && !reqwest::Url::parse(&self.public_url)
                .is_ok_and(|url| matches!(url.scheme(), "http" | "https"))
        {
            errors.push("console.public_url: must be an http(s) URL or empty".to_owned());
        }
    }

    /// Where invitation links point: `public_url`, else the relying party's first origin
    /// (a passkey can only be made on one of those).
    pub fn base_url(&self, rp: &RelyingParty) -> String {
        if self.public_url.is_empty() {
            rp.origins.first().cloned().unwrap_or_default()
        } else {
            self.public_url.clone()
        }
    }
}

/// Serves one request under `/console` with the security headers on every answer. Posts
/// (sign-in ceremonies, forms) count against the client address's limit, as the API's
/// authenticated routes do; pages and assets do not.
pub async fn handle(app: &App, ip: IpAddr, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let limited = request.method() != Method::GET && request.method() != Method::HEAD;
    let admitted = if limited {
        app.limits().check_ip(ip)
    } else {
        Ok(())
    };
    let mut response = if !app.settings().console.enabled {
        PageError::not_found().into_response()
    } else if let Err(retry) = admitted {
        app.metrics().rate_limited("ip");
        PageError::too_many(retry.seconds()).into_response()
    } else {
        match route(app, request).await {
            Ok(response) => response,
            Err(error) => error.into_response(),
        }
    };
    secure(&mut response);
    response
}

/// The page table: one arm per page; a page module takes its GET and its POSTs.
async fn route(app: &App, request: Request<Incoming>) -> Page {
    let path = request.uri().path().to_owned();
    let rest = path
        .strip_prefix("/console")
        .unwrap_or_default()
        .trim_start_matches('/');
    let mut parts = rest.splitn(2, '/');
    let first = parts.next().unwrap_or_default();
    let tail = parts.next().unwrap_or_default();
    let method = request.method().clone();
    match (first, tail) {
        ("", "") => home::home(app, request).await,
        ("assets", name) if method == Method::GET => assets::serve(name),
        ("sign-in", "") => home::sign_in(app, request).await,
        ("sign-in", "options") => home::sign_in_options(app, request).await,
        ("invitations", token) => home::invitation(app, request, token).await,
        ("sign-out", "") => home::sign_out(app, request, false).await,
        ("sign-out-everywhere", "") => home::sign_out(app, request, true).await,
        ("security", "") => security::page(app, request).await,
        ("me", action) => me::page(app, request, action).await,
        // Pages of later steps: each module owns its page and sub-paths.
        ("users", tail) => users::page(app, request, tail).await,
        ("phone-numbers", tail) => phones::page(app, request, tail).await,
        ("audit", tail) => audit::page(app, request, tail).await,
        ("operator", tail) => operator::page(app, request, tail).await,
        _ => Err(PageError::not_found()),
    }
}
