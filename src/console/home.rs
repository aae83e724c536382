//! The pages around signing in: home, the sign-in page (usernameless passkey), an invitation
//! (registering a passkey), and signing out (here or everywhere).

use askama::Template;
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use serde_json::json;

use super::layout::{html, json, redirect, Layout, Page, PageError};
use super::session::{clear_cookie, read_form, read_json, require, set_cookie, signed_in};
use super::store::Principal;
use crate::factors::CredentialJson;
use crate::App;

fn method_not_allowed() -> PageError {
    PageError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "This page does not take that method.",
    )
}

#[derive(Template)]
#[template(path = "console/home.html")]
struct HomePage {
    layout: Layout,
}

pub async fn home(app: &App, request: Request<Incoming>) -> Page {
    if request.method() != Method::GET {
        return Err(method_not_allowed());
    }
    let signed = require(app, &request).await?;
    html(&HomePage {
        layout: signed.layout("Home", "/console/"),
    })
}

#[derive(Template)]
#[template(path = "console/sign_in.html")]
struct SignInPage {
    layout: Layout,
}

/// GET: the sign-in page; POST (JSON, from its module): the passkey assertion.
pub async fn sign_in(app: &App, request: Request<Incoming>) -> Page {
    match *request.method() {
        Method::GET => {
            if signed_in(app, &request).await?.is_some() {
                return redirect("/console/");
            }
            html(&SignInPage {
                layout: Layout::public("Sign in"),
            })
        }
        Method::POST => {
            let credential: CredentialJson = read_json(app, request).await?;
            let opened = app
                .console()
                .finish_sign_in(&credential)
                .await
                .map_err(|error| PageError::from(error).as_json())?;
            let mut answer = json(StatusCode::OK, &json!({"redirect": "/console/"}))?;
            set_cookie(&mut answer, &opened.token);
            Ok(answer)
        }
        _ => Err(method_not_allowed()),
    }
}

/// POST: request options for a usernameless sign-in.
pub async fn sign_in_options(app: &App, request: Request<Incoming>) -> Page {
    if request.method() != Method::POST {
        return Err(method_not_allowed().as_json());
    }
    let _: serde_json::Value = read_json(app, request).await?;
    let options = app
        .console()
        .begin_sign_in()
        .await
        .map_err(|error| PageError::from(error).as_json())?;
    json(StatusCode::OK, &options)
}

#[derive(Template)]
#[template(path = "console/invitation.html")]
struct InvitationPage {
    layout: Layout,
    /// `ada of account AC…` or `the operator`.
    whom: String,
    token: String,
}

/// `/console/invitations/{token}`: GET the page; POST `{token}/options` for creation options;
/// POST `{token}` with the new passkey.
pub async fn invitation(app: &App, request: Request<Incoming>, tail: &str) -> Page {
    let (token, options) = match tail.split_once('/') {
        Some((token, "options")) => (token, true),
        Some(_) => return Err(PageError::not_found()),
        None => (tail, false),
    };
    let console = app.console();
    let unknown = || {
        PageError::new(
            StatusCode::NOT_FOUND,
            "This invitation is unknown, already used or expired. Ask for a new one.",
        )
    };
    match (request.method().clone(), options) {
        (Method::GET, false) => {
            let invitation = console.invitation(token).await?.ok_or_else(unknown)?;
            let whom = match &invitation.principal {
                Principal::Root => "the operator".to_owned(),
                Principal::User { account, user } => format!("{user} of account {account}"),
            };
            html(&InvitationPage {
                layout: Layout::public("Create your passkey"),
                whom,
                token: token.to_owned(),
            })
        }
        (Method::POST, true) => {
            let _: serde_json::Value = read_json(app, request).await?;
            let options = console
                .begin_registration(token)
                .await
                .map_err(|error| PageError::from(error).as_json())?;
            json(StatusCode::OK, &options)
        }
        (Method::POST, false) => {
            let credential: CredentialJson = read_json(app, request).await?;
            let opened = console
                .finish_registration(token, &credential)
                .await
                .map_err(|error| PageError::from(error).as_json())?;
            let mut answer = json(StatusCode::OK, &json!({"redirect": "/console/"}))?;
            set_cookie(&mut answer, &opened.token);
            Ok(answer)
        }
        _ => Err(method_not_allowed()),
    }
}

/// POST (form): ends this session, or every session of this person.
pub async fn sign_out(app: &App, request: Request<Incoming>, everywhere: bool) -> Page {
    if request.method() != Method::POST {
        return Err(method_not_allowed());
    }
    let signed = require(app, &request).await?;
    read_form(app, request, &signed).await?;
    let console = app.console();
    if everywhere {
        console.sign_out_everywhere(&signed.session).await?;
    } else {
        console.sign_out(&signed.session).await?;
    }
    let mut answer = redirect("/console/sign-in")?;
    clear_cookie(&mut answer);
    Ok(answer)
}
