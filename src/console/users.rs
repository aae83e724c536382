//! The Users page (owners and admins): the account's users, cursor-paged like `GET /v1/users`
//! (id, role, phone masked, 2FA state, factors, last console sign-in), "Add user", and one page
//! per user with "Two-factor authentication" On / Off / Account default and "Send invitation"
//! (the owner only) and the role (under the account's rules). Each action is the service call
//! the API makes (`POST /v1/users`, `PATCH /v1/users/{user}`,
//! `POST /v1/users/{user}/console-invitations`) with the signed-in user as the acting user, so
//! a refusal shows the rule's own sentence. Every form works without JavaScript.
//!
//! Paths: `/console/users` (GET: the list, `?cursor=` for the next page; POST: add a user),
//! `/console/users/<id>` (GET), and POST `/console/users/<id>/two-factor`, `…/role`,
//! `…/invitation`. An id in a path is percent-encoded.

use askama::Template;
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::layout::{html, html_status, redirect, Layout, Page, PageError};
use super::session::{read_form, require_manager, Form, Signed};
use super::store::Principal;
use crate::account::audit::Who;
use crate::account::rules::{Actor, TwoFactorRequest};
use crate::account::service::{NewUser, UserPatch};
use crate::account::user::{FactorType, User, UserId, UserRole};
use crate::account::AccountId;
use crate::clock::rfc3339;
use crate::destination::EmailAddress;
use crate::paging::{PageRequest, DEFAULT_LIMIT};
use crate::phone::PhoneNumber;
use crate::App;

/// What a user id keeps unencoded in a path: letters, digits, `.`, `_`, `-` (`@` and `+` are
/// encoded so that no browser or proxy reads them as anything but the id).
const ID_IN_PATH: &AsciiSet = &NON_ALPHANUMERIC.remove(b'.').remove(b'_').remove(b'-');

/// The path of one user's page.
fn user_path(id: &UserId) -> String {
    format!(
        "/console/users/{}",
        utf8_percent_encode(id.as_str(), ID_IN_PATH)
    )
}

/// One row of the list.
pub struct UserRow {
    pub id: String,
    pub path: String,
    pub role: &'static str,
    pub phone: String,
    pub two_factor: String,
    pub factors: String,
    pub last_sign_in: String,
}

/// What the "Add user" form shows: empty, or what was just posted (after a refusal).
#[derive(Default)]
pub struct Entered {
    pub id: String,
    pub role: String,
    pub phone: String,
    pub email: String,
}

#[derive(Template)]
#[template(path = "console/users.html")]
struct UsersPage {
    layout: Layout,
    rows: Vec<UserRow>,
    next: String,
    first: bool,
    error: String,
    users: Vec<String>,
    entered: Entered,
    /// A phone channel (SMS, WhatsApp, call) is on: the rules refuse a user without a phone.
    phone_required: bool,
    roles: [&'static str; 3],
}

#[derive(Template)]
#[template(path = "console/users_user.html")]
struct UserPage {
    layout: Layout,
    row: UserRow,
    email: String,
    created: String,
    /// `on`, `off` or `account`: the checked radio button.
    setting: &'static str,
    is_owner: bool,
    roles: [&'static str; 3],
    notice: &'static str,
    error: String,
}

#[derive(Template)]
#[template(path = "console/users_invitation.html")]
struct InvitationPage {
    layout: Layout,
    user: String,
    path: String,
    url: String,
    expires: String,
}

const ROLES: [&str; 3] = ["member", "admin", "owner"];

/// The signed-in manager, their account and the actor the rules judge.
struct Manager {
    signed: Signed,
    account: AccountId,
    actor: Actor,
}

impl Manager {
    fn is_owner(&self) -> bool {
        self.signed.role() == Some(UserRole::Owner)
    }

    /// The owner-only actions (as the API's owner key): a 403 with the sentence for anyone else.
    fn owner_only(&self, what: &str) -> Result<(), PageError> {
        if self.is_owner() {
            Ok(())
        } else {
            Err(PageError::forbidden(&format!(
                "Only the account's owner may {what}. Nothing was changed."
            )))
        }
    }
}

fn not_allowed() -> PageError {
    PageError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "This page does not take that method.",
    )
}

pub async fn page(app: &App, request: Request<Incoming>, tail: &str) -> Page {
    let signed = require_manager(app, &request).await?;
    let (account, actor) = signed
        .actor()
        .ok_or_else(|| PageError::forbidden("The operator has no account's users here."))?;
    let manager = Manager {
        signed,
        account,
        actor,
    };
    let method = request.method().clone();
    let (id, action) = match tail.split_once('/') {
        Some((id, action)) => (id, action),
        None => (tail, ""),
    };
    if id.is_empty() {
        return match method {
            Method::GET => list(app, &manager, request.uri().query()).await,
            Method::POST => {
                let form = read_form(app, request, &manager.signed).await?;
                add(app, &manager, &form).await
            }
            _ => Err(not_allowed()),
        };
    }
    let id = percent_decode_str(id)
        .decode_utf8()
        .ok()
        .and_then(|id| UserId::parse(&id))
        .ok_or_else(no_such_user)?;
    match (method, action) {
        (Method::GET, "") => {
            let notice = match request.uri().query().unwrap_or_default() {
                "added=1" => "User added.",
                "saved=two-factor" => "Two-factor authentication saved.",
                "saved=role" => "Role changed.",
                _ => "",
            };
            let user = app.accounts().user(&manager.account, &id).await?;
            one(app, &manager, &user, notice, None).await
        }
        (Method::POST, "two-factor" | "role" | "invitation") => {
            let form = read_form(app, request, &manager.signed).await?;
            let user = app.accounts().user(&manager.account, &id).await?;
            match action {
                "two-factor" => two_factor(app, &manager, &user, &form).await,
                "role" => role(app, &manager, &user, &form).await,
                _ => invitation(app, &manager, &user).await,
            }
        }
        (_, "") => Err(not_allowed()),
        _ => Err(PageError::not_found()),
    }
}

fn no_such_user() -> PageError {
    PageError::new(
        StatusCode::NOT_FOUND,
        "There is no such user in this account.",
    )
}

/// The page the query asks for (`crate::paging`, the API's rules), its cursor a user's id, and
/// the id to start after; a broken link is a 400 page.
fn paging(query: Option<&str>) -> Result<(PageRequest, Option<UserId>), PageError> {
    let broken = || {
        PageError::new(
            StatusCode::BAD_REQUEST,
            "This page link is broken; open the Users page again.",
        )
    };
    let pairs = form_urlencoded::parse(query.unwrap_or_default().as_bytes());
    let page =
        PageRequest::parse(pairs, |key| UserId::parse(key).is_some()).map_err(|_| broken())?;
    let after = page.after.as_deref().map(UserId::parse);
    match after {
        Some(None) => Err(broken()),
        Some(Some(id)) => Ok((page, Some(id))),
        None => Ok((page, None)),
    }
}

fn factors_of(user: &User) -> String {
    if user.factors.is_empty() {
        return "None".to_owned();
    }
    let kinds: Vec<&str> = user
        .factors
        .iter()
        .map(|factor| match factor.kind {
            FactorType::Totp => "Authenticator app",
            FactorType::Webauthn => "Security key",
            FactorType::Passkey => "Passkey",
        })
        .collect();
    format!("{} ({})", user.factors.len(), kinds.join(", "))
}

fn row_of(user: &User, account_requires: bool, last_sign_in: Option<u64>) -> UserRow {
    let state = if user.two_factor_enabled(account_requires) {
        "On"
    } else {
        "Off"
    };
    let source = if user.two_factor.is_some() {
        "set for this user"
    } else {
        "account default"
    };
    UserRow {
        id: user.id.to_string(),
        path: user_path(&user.id),
        role: user.role.as_str(),
        phone: user
            .phone
            .as_ref()
            .map(PhoneNumber::masked)
            .unwrap_or_else(|| "None".to_owned()),
        two_factor: format!("{state} ({source})"),
        factors: factors_of(user),
        last_sign_in: last_sign_in
            .map(rfc3339)
            .unwrap_or_else(|| "Never".to_owned()),
    }
}

/// The list page, or after a refused "Add user" the first page with the sentence and what was
/// entered.
async fn list(app: &App, manager: &Manager, query: Option<&str>) -> Page {
    render_list(app, manager, paging(query)?, None, Entered::default()).await
}

async fn render_list(
    app: &App,
    manager: &Manager,
    (page, after): (PageRequest, Option<UserId>),
    error: Option<PageError>,
    entered: Entered,
) -> Page {
    let accounts = app.accounts();
    let users = accounts
        .list_users(&manager.account, after.as_ref(), page.fetch())
        .await?;
    let (users, next) = page.finish(users, |user| user.id.as_str());
    let next = next
        .map(|cursor| format!("/console/users?cursor={cursor}"))
        .unwrap_or_default();
    let policy = accounts.policy(&manager.account).await?;
    let ids: Vec<UserId> = users.iter().map(|user| user.id.clone()).collect();
    let sign_ins = app.console().last_sign_ins(&manager.account, &ids).await?;
    let rows = users
        .iter()
        .zip(sign_ins.into_iter().chain(std::iter::repeat(None)))
        .map(|(user, at)| row_of(user, policy.require_2fa, at))
        .collect();
    let page = UsersPage {
        layout: manager.signed.layout("Users", "/console/users"),
        rows,
        next,
        first: after.is_none(),
        error: error
            .as_ref()
            .map(|e| e.message.clone())
            .unwrap_or_default(),
        users: error.as_ref().map(|e| e.users.clone()).unwrap_or_default(),
        entered,
        phone_required: policy.phone_channel_active(),
        roles: ROLES,
    };
    match error {
        Some(error) => html_status(error.status, &page),
        None => html(&page),
    }
}

/// The "Add user" form as `POST /v1/users` takes it; a bad field is a 400 with its sentence.
fn new_user(form: &Form) -> Result<NewUser, PageError> {
    let field = |name: &str| form.get(name).unwrap_or_default().trim();
    let bad = |message: String| PageError::new(StatusCode::BAD_REQUEST, message);
    let id =
        match field("id") {
            "" => None,
            id => Some(UserId::parse(id).ok_or_else(|| {
                bad("A user id is 1 to 64 letters, digits or . _ - @ +.".to_owned())
            })?),
        };
    let role = UserRole::parse(field("role"))
        .ok_or_else(|| bad("The role must be member, admin or owner.".to_owned()))?;
    let phone = match field("phone") {
        "" => None,
        phone => Some(
            PhoneNumber::parse(phone).map_err(|error| bad(format!("The phone number {error}.")))?,
        ),
    };
    let email = match field("email") {
        "" => None,
        email => Some(
            EmailAddress::parse(email)
                .map_err(|error| bad(format!("The e-mail address {error}.")))?,
        ),
    };
    Ok(NewUser {
        id,
        role,
        phone,
        email,
        two_factor: None,
    })
}

async fn add(app: &App, manager: &Manager, form: &Form) -> Page {
    let entered = Entered {
        id: form.get("id").unwrap_or_default().to_owned(),
        role: form.get("role").unwrap_or_default().to_owned(),
        phone: form.get("phone").unwrap_or_default().to_owned(),
        email: form.get("email").unwrap_or_default().to_owned(),
    };
    let first = (
        PageRequest {
            limit: DEFAULT_LIMIT,
            after: None,
        },
        None,
    );
    let new = match new_user(form) {
        Ok(new) => new,
        Err(error) => return render_list(app, manager, first, Some(error), entered).await,
    };
    match app
        .accounts()
        .create_user(&manager.account, &manager.actor, &new)
        .await
    {
        Ok(user) => redirect(&format!("{}?added=1", user_path(&user.id))),
        Err(error) => {
            let error = PageError::from(error);
            if error.status.is_server_error() {
                return Err(error);
            }
            render_list(app, manager, first, Some(error), entered).await
        }
    }
}

/// One user's page, with a refusal's sentence when an action was refused.
async fn one(
    app: &App,
    manager: &Manager,
    user: &User,
    notice: &'static str,
    error: Option<PageError>,
) -> Page {
    let policy = app.accounts().policy(&manager.account).await?;
    let last = app
        .console()
        .last_sign_ins(&manager.account, std::slice::from_ref(&user.id))
        .await?
        .into_iter()
        .next()
        .flatten();
    let page = UserPage {
        layout: manager.signed.layout("Users", "/console/users"),
        row: row_of(user, policy.require_2fa, last),
        email: user
            .email
            .as_ref()
            .map(EmailAddress::masked)
            .unwrap_or_else(|| "None".to_owned()),
        created: rfc3339(user.created_ms),
        setting: match &user.two_factor {
            None => "account",
            Some(over) if over.enabled => "on",
            Some(_) => "off",
        },
        is_owner: manager.is_owner(),
        roles: ROLES,
        notice,
        error: error
            .as_ref()
            .map(|e| e.message.clone())
            .unwrap_or_default(),
    };
    match error {
        Some(error) => html_status(error.status, &page),
        None => html(&page),
    }
}

/// Runs a user change (`PATCH /v1/users/{user}`'s service call); a refusal shows the user's page
/// with the rule's sentence.
async fn change(app: &App, manager: &Manager, user: &User, patch: &UserPatch, saved: &str) -> Page {
    match app
        .accounts()
        .update_user(&manager.account, &manager.actor, &user.id, patch)
        .await
    {
        Ok(_) => redirect(&format!("{}?saved={saved}", user_path(&user.id))),
        Err(error) => {
            let error = PageError::from(error);
            if error.status.is_server_error() {
                return Err(error);
            }
            one(app, manager, user, "", Some(error)).await
        }
    }
}

async fn two_factor(app: &App, manager: &Manager, user: &User, form: &Form) -> Page {
    manager.owner_only("turn two-factor authentication on or off for a user")?;
    let request =
        TwoFactorRequest::parse(form.get("two_factor").unwrap_or_default()).ok_or_else(|| {
            PageError::new(
                StatusCode::BAD_REQUEST,
                "Choose On, Off or Account default.",
            )
        })?;
    let patch = UserPatch {
        two_factor: Some(request),
        ..UserPatch::default()
    };
    change(app, manager, user, &patch, "two-factor").await
}

async fn role(app: &App, manager: &Manager, user: &User, form: &Form) -> Page {
    let role = UserRole::parse(form.get("role").unwrap_or_default()).ok_or_else(|| {
        PageError::new(
            StatusCode::BAD_REQUEST,
            "The role must be member, admin or owner.",
        )
    })?;
    let patch = UserPatch {
        role: Some(role),
        ..UserPatch::default()
    };
    change(app, manager, user, &patch, "role").await
}

/// "Send invitation": the service `POST /v1/users/{user}/console-invitations` uses; the link is
/// shown on this answer only (the store keeps its digest).
async fn invitation(app: &App, manager: &Manager, user: &User) -> Page {
    manager.owner_only("invite people to the console")?;
    let console = app.console();
    let principal = Principal::User {
        account: manager.account.clone(),
        user: user.id.clone(),
    };
    let (token, expires_ms) = console
        .invite(&principal, Who::from(&manager.actor))
        .await?;
    html_status(
        StatusCode::CREATED,
        &InvitationPage {
            layout: manager.signed.layout("Invitation", "/console/users"),
            user: user.id.to_string(),
            path: user_path(&user.id),
            url: console.invitation_url(&token),
            expires: rfc3339(expires_ms),
        },
    )
}
