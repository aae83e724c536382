//! The Operator page (the operator only, who signs in with a root invitation): "Create
//! account", an account's keys ("Mint key", the secret shown once; "Revoke key"), and how
//! delivery goes on this instance: providers with their breaker state, queue depth and dead
//! letters. Creating and minting are what `POST /v1/accounts` and `POST /v1/accounts/{id}/keys`
//! do with the root key; revoking is the service call `DELETE /v1/keys/{id}` makes, so the
//! last owner key is refused with the rule's sentence. Delivery is read from what the gateway
//! already keeps: the dispatcher's router (breakers) and the metrics (`/metrics`); the page keeps
//! no state of its own.
//!
//! Accounts are listed by id from the store's index of accounts (`Accounts::list_accounts`);
//! an account can also be opened by its id.

use askama::Template;
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};

use super::layout::{html, html_status, redirect, Layout, Page, PageError};
use super::session::{read_form, require, Signed};
use crate::account::audit::Who;
use crate::account::store::KeyRevocation;
use crate::account::{is_key_id, Account, AccountId, Role};
use crate::clock::rfc3339;
use crate::metrics::{DEAD_LETTERS, DISPATCH_OLDEST_AGE, DISPATCH_QUEUE_DEPTH, WEBHOOK_DELIVERIES};
use crate::App;

/// Keys listed per page.
const PAGE: usize = 100;
/// Accounts listed per page.
const ACCOUNTS: usize = 50;

pub struct AccountRow {
    pub id: String,
    pub name: String,
    pub created: String,
}

pub struct KeyRow {
    pub id: String,
    pub role: &'static str,
    pub created: String,
}

pub struct ProviderRow {
    pub name: &'static str,
    pub breaker: &'static str,
}

/// A key minted just now: its secret is on this answer only.
pub struct Minted {
    pub id: String,
    pub role: &'static str,
    pub secret: String,
}

#[derive(Template)]
#[template(path = "console/operator.html")]
struct OperatorPage {
    layout: Layout,
    notice: String,
    error: String,
    /// The account opened (empty: none).
    account: String,
    account_name: String,
    accounts: Vec<AccountRow>,
    /// The `accounts_after` of the next page of accounts, empty on the last.
    accounts_next: String,
    keys: Vec<KeyRow>,
    next: String,
    minted: Option<Minted>,
    roles: [&'static str; 4],
    providers: Vec<ProviderRow>,
    queue_depth: String,
    oldest_age: String,
    dead_letters: String,
    webhook_dead_letters: String,
    outbox: String,
}

/// The operator, or a refusal for anyone else (an account's people never see this page).
async fn require_operator(app: &App, request: &Request<Incoming>) -> Result<Signed, PageError> {
    let signed = require(app, request).await?;
    if !signed.is_operator() {
        return Err(PageError::forbidden(
            "Only the operator may open this page.",
        ));
    }
    Ok(signed)
}

fn breaker_name(code: f64) -> &'static str {
    // The breaker-state gauge's codes (metrics.rs): 0 closed, 1 half-open, 2 open.
    if code >= 2.0 {
        "open"
    } else if code >= 1.0 {
        "half-open"
    } else {
        "closed"
    }
}

/// The sum of a metric's series in Prometheus' text (those carrying `label` when given), or
/// `None` when the gateway has not recorded it yet.
fn metric(text: &str, name: &str, label: Option<&str>) -> Option<f64> {
    let mut total = None;
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let series_name = series.split('{').next().unwrap_or_default();
        if series_name != name || label.is_some_and(|label| !series.contains(label)) {
            continue;
        }
        if let Ok(value) = value.trim().parse::<f64>() {
            total = Some(total.unwrap_or(0.0) + value);
        }
    }
    total
}

fn shown(value: Option<f64>) -> String {
    format!("{}", value.unwrap_or(0.0))
}

/// An account's display name: the API's rule (1 to 100 printable characters, trimmed).
fn account_name(input: &str) -> Option<String> {
    let name = input.trim();
    let valid =
        !name.is_empty() && name.chars().count() <= 100 && !name.chars().any(char::is_control);
    valid.then(|| name.to_owned())
}

fn account_of(field: Option<&str>) -> Result<AccountId, PageError> {
    field
        .map(str::trim)
        .and_then(AccountId::parse)
        .ok_or_else(|| PageError::new(StatusCode::NOT_FOUND, "No such account."))
}

/// What the page was asked in its query: the account, a page of keys, a notice.
struct Query {
    account: Option<AccountId>,
    after: Option<String>,
    accounts_after: Option<AccountId>,
    notice: String,
}

fn query_of(query: Option<&str>) -> Result<Query, PageError> {
    let mut parsed = Query {
        account: None,
        after: None,
        accounts_after: None,
        notice: String::new(),
    };
    for (name, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match name.as_ref() {
            "account" if value.trim().is_empty() => {}
            "account" => parsed.account = Some(account_of(Some(&value))?),
            "after" if is_key_id(&value) => parsed.after = Some(value.into_owned()),
            "accounts_after" => parsed.accounts_after = Some(account_of(Some(&value))?),
            "created" => parsed.notice = "Account created.".to_owned(),
            "revoked" if is_key_id(&value) => {
                parsed.notice = format!("Key {value} revoked: it stops working on every instance.")
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

/// What a render shows besides the account's keys.
#[derive(Default)]
struct Extra {
    notice: String,
    error: Option<PageError>,
    minted: Option<Minted>,
    after: Option<String>,
    accounts_after: Option<AccountId>,
}

async fn render(app: &App, signed: &Signed, account: Option<&Account>, extra: Extra) -> Page {
    let mut keys = Vec::new();
    let mut next = String::new();
    if let Some(account) = account {
        let mut records = app
            .account_records()
            .list_api_keys(&account.id, extra.after.as_deref(), PAGE + 1)
            .await?;
        if records.len() > PAGE {
            records.truncate(PAGE);
            next = records.last().map(|key| key.id.clone()).unwrap_or_default();
        }
        keys = records
            .iter()
            .map(|key| KeyRow {
                id: key.id.clone(),
                role: key.role.as_str(),
                created: rfc3339(key.created_ms),
            })
            .collect();
    }
    let mut listed = app
        .account_records()
        .list_accounts(extra.accounts_after.as_ref(), ACCOUNTS + 1)
        .await?;
    let accounts_next = if listed.len() > ACCOUNTS {
        listed.truncate(ACCOUNTS);
        listed.last().map(|a| a.id.to_string()).unwrap_or_default()
    } else {
        String::new()
    };
    let dispatcher = app.verifier().dispatcher();
    let providers = dispatcher
        .router()
        .slots()
        .iter()
        .map(|slot| ProviderRow {
            name: slot.provider.name(),
            breaker: breaker_name(slot.breaker_state()),
        })
        .collect();
    let metrics = app.metrics().render();
    let page = OperatorPage {
        layout: signed.layout("Operator", "/console/operator"),
        notice: extra.notice,
        error: extra
            .error
            .as_ref()
            .map(|e| e.message.clone())
            .unwrap_or_default(),
        account: account.map(|a| a.id.to_string()).unwrap_or_default(),
        account_name: account.map(|a| a.name.clone()).unwrap_or_default(),
        accounts: listed
            .iter()
            .map(|a| AccountRow {
                id: a.id.to_string(),
                name: a.name.clone(),
                created: rfc3339(a.created_ms),
            })
            .collect(),
        accounts_next,
        keys,
        next,
        minted: extra.minted,
        roles: ["owner", "admin", "service", "partner"],
        providers,
        queue_depth: shown(metric(&metrics, DISPATCH_QUEUE_DEPTH, None)),
        oldest_age: shown(metric(&metrics, DISPATCH_OLDEST_AGE, None)),
        dead_letters: shown(metric(&metrics, DEAD_LETTERS, None)),
        webhook_dead_letters: shown(metric(
            &metrics,
            WEBHOOK_DELIVERIES,
            Some("outcome=\"dead_lettered\""),
        )),
        outbox: match dispatcher.readiness() {
            Ok(()) => "reading".to_owned(),
            Err(why) => why.to_owned(),
        },
    };
    match extra.error {
        Some(error) => html_status(error.status, &page),
        None => html(&page),
    }
}

/// The account by id, or 404.
async fn find(app: &App, id: &AccountId) -> Result<Account, PageError> {
    app.find_account(id)
        .await?
        .map(std::sync::Arc::unwrap_or_clone)
        .ok_or_else(|| PageError::new(StatusCode::NOT_FOUND, "No such account."))
}

pub async fn page(app: &App, request: Request<Incoming>, tail: &str) -> Page {
    let signed = require_operator(app, &request).await?;
    let method = request.method().clone();
    match (method, tail) {
        (Method::GET, "") => {
            let query = query_of(request.uri().query())?;
            let account = match &query.account {
                Some(id) => Some(find(app, id).await?),
                None => None,
            };
            let extra = Extra {
                notice: query.notice,
                after: query.after,
                accounts_after: query.accounts_after,
                ..Extra::default()
            };
            render(app, &signed, account.as_ref(), extra).await
        }
        (Method::POST, "accounts") => {
            let form = read_form(app, request, &signed).await?;
            let Some(name) = account_name(form.get("name").unwrap_or_default()) else {
                let error = PageError::new(
                    StatusCode::BAD_REQUEST,
                    "An account's name is 1 to 100 printable characters.",
                );
                return refused(app, &signed, None, error).await;
            };
            let account = Account {
                id: AccountId::random(app.rng()).map_err(|_| PageError::internal())?,
                name,
                created_ms: app.clock().now_ms(),
                code_length: app.verifier().settings().code_length,
            };
            app.account_records().insert_account(&account).await?;
            tracing::info!(account = %account.id, "account created (console)");
            redirect(&format!(
                "/console/operator?account={}&created=1",
                account.id
            ))
        }
        (Method::POST, "keys") => {
            let form = read_form(app, request, &signed).await?;
            let account = find(app, &account_of(form.get("account"))?).await?;
            let role: Role = match form.get("role").unwrap_or_default().parse() {
                Ok(role) => role,
                Err(()) => {
                    let error = PageError::new(
                        StatusCode::BAD_REQUEST,
                        "A key's role is one of owner, admin, service, partner.",
                    );
                    return refused(app, &signed, Some(&account), error).await;
                }
            };
            let minted = app
                .accounts()
                .mint_key(
                    app.account_records().as_ref(),
                    &account.id,
                    Who::root(),
                    role,
                )
                .await?;
            tracing::info!(account = %account.id, key = %minted.record.id, role = role.as_str(), "key minted (console)");
            let extra = Extra {
                notice: "Key minted. Copy it now: it is shown only this once.".to_owned(),
                minted: Some(Minted {
                    id: minted.record.id.clone(),
                    role: role.as_str(),
                    secret: minted.secret,
                }),
                ..Extra::default()
            };
            render(app, &signed, Some(&account), extra).await
        }
        (Method::POST, "keys/revoke") => {
            let form = read_form(app, request, &signed).await?;
            let account = find(app, &account_of(form.get("account"))?).await?;
            let id = form.get("key").unwrap_or_default();
            let outcome = if is_key_id(id) {
                app.accounts()
                    .revoke_key(app.account_records().as_ref(), &account.id, Who::root(), id)
                    .await?
            } else {
                KeyRevocation::NotFound
            };
            match outcome {
                KeyRevocation::Revoked(record) => {
                    tracing::info!(account = %account.id, key = %record.id, role = record.role.as_str(), "key revoked (console)");
                    redirect(&format!(
                        "/console/operator?account={}&revoked={}",
                        account.id, record.id
                    ))
                }
                KeyRevocation::NotFound => {
                    let error =
                        PageError::new(StatusCode::NOT_FOUND, "No such key in this account.");
                    refused(app, &signed, Some(&account), error).await
                }
                KeyRevocation::LastOwner => {
                    let error = PageError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "The account's last owner key cannot be revoked: mint another owner key first.",
                    );
                    refused(app, &signed, Some(&account), error).await
                }
            }
        }
        (_, "" | "accounts" | "keys" | "keys/revoke") => Err(PageError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "This page does not take that method.",
        )),
        _ => Err(PageError::not_found()),
    }
}

/// A refusal shown on the page itself, with the rule's sentence on top.
async fn refused(app: &App, signed: &Signed, account: Option<&Account>, error: PageError) -> Page {
    let extra = Extra {
        error: Some(error),
        ..Extra::default()
    };
    render(app, signed, account, extra).await
}
