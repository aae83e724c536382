//! Handlers of the accounts API: policy, users, factors, trusted devices, login decisions and
//! the audit trail. They parse, check the key's role, call `AccountService`, and shape JSON;
//! the rules themselves live in `account::rules`.
//!
//! Key roles per route (`account::permission` is the table): owner and admin keys manage policy and
//! people, service keys run logins, partner keys act for a client and never weaken protection
//! (the rules refuse it by name, so partners reach the management routes).

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};

use super::auth::Grant;
use super::body::{json_body, json_response, query_pairs};
use super::error::ApiError;
use super::fields::{optional, workflow};
use super::routes::{Call, Reply};
use super::wire::{
    AuditEntryBody, AuditPageBody, CheckDeviceBody, CreateUserBody, DecisionBody,
    DeviceCheckedBody, DeviceRevokedBody, DeviceTrustedBody, DevicesRevokedBody, LoginBody,
    PatchUserBody, PolicyBody, PutPolicyBody, TrustBody, TwoFactorBody, UserBody,
};
use crate::account::audit::valid_cursor;
use crate::account::login::Decision;
use crate::account::policy::{ChannelSet, DefaultWorkflow, PolicyChannel, TrustDuration};
use crate::account::rules::{rule, Actor, TwoFactorRequest};
use crate::account::service::{NewUser, PolicyUpdate, UserPatch};
use crate::account::trust::{valid_token_shape, DeviceId};
use crate::account::user::{Factor, User, UserId, UserRole};
use crate::account::{AccountId, ApiKeyRecord};
use crate::clock::rfc3339;
use crate::destination::EmailAddress;
use crate::phone::PhoneNumber;
use crate::verify::workflow::DEFAULT_FALLBACK_AFTER_SECONDS;
use crate::App;

const AUDIT_DEFAULT_LIMIT: usize = 50;
const AUDIT_MAX_LIMIT: usize = 500;

/// `GET /v1/policy`.
pub(super) async fn get_policy(call: Call<'_>) -> Reply {
    let (app, _, _, grant) = call.keyed()?;
    let (account, _) = grant.into_key();
    let policy = app.accounts().policy(&account).await?;
    Ok(json_response(StatusCode::OK, &PolicyBody::from(&policy)))
}

/// `GET /v1/users/{user}`.
pub(super) async fn get_user(call: Call<'_>) -> Reply {
    let (app, matched, _, grant) = call.keyed()?;
    let (account, _) = grant.into_key();
    let id = user_param(matched.param)?;
    let user = app.accounts().user(&account, &id).await?;
    user_response(app, &account, StatusCode::OK, &user).await
}

/// `DELETE /v1/users/{user}/factors/{factor}`.
pub(super) async fn remove_factor(call: Call<'_>) -> Reply {
    let (app, matched, request, grant) = call.keyed()?;
    let (account, key) = grant.into_key();
    let id = user_param(matched.param)?;
    let factor = matched
        .second
        .filter(|factor| Factor::valid_id(factor))
        .ok_or(ApiError::NotFound("no such factor for this user"))?;
    let acting = acting_user_from_query(request.uri().query())?;
    let actor = app.accounts().actor(&account, &key, acting).await?;
    // Through the factors service: the factor's material goes with it.
    let user = app.factors().remove(&account, &actor, &id, factor).await?;
    user_response(app, &account, StatusCode::OK, &user).await
}

/// `DELETE /v1/users/{user}/trusted-devices`.
pub(super) async fn revoke_devices(call: Call<'_>) -> Reply {
    let (app, matched, _, grant) = call.keyed()?;
    let (account, key) = grant.into_key();
    let id = user_param(matched.param)?;
    let actor = app.accounts().actor(&account, &key, None).await?;
    let revoked = app.accounts().revoke_devices(&account, &actor, &id).await?;
    Ok(json_response(
        StatusCode::OK,
        &DevicesRevokedBody { user: &id, revoked },
    ))
}

/// `DELETE /v1/users/{user}/trusted-devices/{device}`.
pub(super) async fn revoke_device(call: Call<'_>) -> Reply {
    let (app, matched, _, grant) = call.keyed()?;
    let (account, key) = grant.into_key();
    let id = user_param(matched.param)?;
    let device = matched
        .second
        .and_then(DeviceId::parse)
        .ok_or(ApiError::NotFound("no such trusted device for this user"))?;
    let actor = app.accounts().actor(&account, &key, None).await?;
    app.accounts()
        .revoke_device(&account, &actor, &id, &device)
        .await?;
    Ok(json_response(
        StatusCode::OK,
        &DeviceRevokedBody {
            id: device.as_str(),
            user: &id,
            revoked: true,
        },
    ))
}

fn user_param(param: Option<&str>) -> Result<UserId, ApiError> {
    param
        .and_then(UserId::parse)
        .ok_or(ApiError::NotFound("no such user in this account"))
}

fn parse_user(input: &str, field: &str) -> Result<UserId, ApiError> {
    UserId::parse(input).ok_or_else(|| {
        ApiError::invalid(format!(
            "{field} must be 1 to {} characters of letters, digits and . _ - @ +",
            UserId::MAX_LENGTH
        ))
    })
}

fn parse_phone(input: &str) -> Result<PhoneNumber, ApiError> {
    PhoneNumber::parse(input).map_err(|error| ApiError::invalid(format!("phone {error}")))
}

fn parse_email(input: &str) -> Result<EmailAddress, ApiError> {
    EmailAddress::parse(input).map_err(|error| ApiError::invalid(format!("email {error}")))
}

fn parse_two_factor(input: Option<&str>) -> Result<Option<TwoFactorRequest>, ApiError> {
    let expected = "two_factor must be one of on, off, account";
    optional(input, TwoFactorRequest::parse, expected)
}

// ---- policy ----

pub(super) async fn put_policy(call: Call<'_>) -> Reply {
    let (app, _, grant, body) = call.keyed_json::<PutPolicyBody>().await?;
    let (account, key) = grant.into_key();
    let channels = match &body.channels {
        None => None,
        Some(names) => {
            let mut channels = Vec::with_capacity(names.len());
            for name in names {
                channels.push(PolicyChannel::parse(name).ok_or_else(|| {
                    ApiError::invalid(
                        "channels must be a list of sms, whatsapp, call, email, totp, webauthn",
                    )
                })?);
            }
            Some(ChannelSet::of(&channels))
        }
    };
    let trusted_device =
        match body.trusted_device.as_deref() {
            None => None,
            Some(name) => Some(TrustDuration::parse(name).ok_or_else(|| {
                ApiError::invalid("trusted_device must be one of none, 1d, 7d, 30d")
            })?),
        };
    let workflow = match &body.default_workflow {
        None => None,
        Some(given) if given.channels.is_empty() => Some(None),
        Some(given) => {
            let seconds = given.fallback_after_seconds;
            let channels = workflow(&given.channels, seconds)?
                .into_iter()
                .map(|channel| {
                    // The policy's own channel names: one for every channel that carries a
                    // message, or the policy cannot allow it (422).
                    PolicyChannel::parse(channel.as_str()).ok_or(ApiError::Refused {
                        rule: rule::WORKFLOW_CHANNELS_ARE_ALLOWED,
                        detail: format!("a policy cannot allow {} yet", channel.as_str()),
                        users: Vec::new(),
                    })
                })
                .collect::<Result<_, _>>()?;
            Some(Some(DefaultWorkflow {
                channels,
                fallback_after_seconds: seconds.unwrap_or(DEFAULT_FALLBACK_AFTER_SECONDS),
            }))
        }
    };
    let update = PolicyUpdate {
        require_2fa: body.require_2fa,
        channels,
        sms_fallback: body.sms_fallback,
        trusted_device,
        abuse: body.abuse,
        workflow,
    };
    let actor = actor(app, &account, &key, body.acting_user.as_deref()).await?;
    let policy = app.accounts().set_policy(&account, &actor, &update).await?;
    Ok(json_response(StatusCode::OK, &PolicyBody::from(&policy)))
}

async fn actor(
    app: &App,
    account: &AccountId,
    key: &ApiKeyRecord,
    acting_user: Option<&str>,
) -> Result<Actor, ApiError> {
    let acting = acting_user
        .map(|id| parse_user(id, "acting_user"))
        .transpose()?;
    Ok(app.accounts().actor(account, key, acting).await?)
}

// ---- users ----

async fn user_response(
    app: &App,
    account: &AccountId,
    status: StatusCode,
    user: &User,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let policy = app.accounts().policy(account).await?;
    Ok(json_response(
        status,
        &UserBody {
            id: &user.id,
            role: user.role,
            phone: user.phone.as_ref().map(PhoneNumber::e164),
            email: user.email.as_ref().map(EmailAddress::as_str),
            two_factor: TwoFactorBody {
                enabled: user.two_factor_enabled(policy.require_2fa),
                over: user
                    .two_factor
                    .as_ref()
                    .map(|over| if over.enabled { "on" } else { "off" }),
                set_by: user.two_factor.as_ref().map(|over| over.set_by.encode()),
            },
            factors: &user.factors,
            created_at: rfc3339(user.created_ms),
            updated_at: rfc3339(user.updated_ms),
        },
    ))
}

const ROLE: &str = "role must be one of owner, admin, member";

pub(super) async fn create_user(call: Call<'_>) -> Reply {
    let (app, _, grant, body) = call.keyed_json::<CreateUserBody>().await?;
    let (account, key) = grant.into_key();
    let new = NewUser {
        id: body
            .id
            .as_deref()
            .map(|id| parse_user(id, "id"))
            .transpose()?,
        role: optional(body.role.as_deref(), UserRole::parse, ROLE)?.unwrap_or(UserRole::Member),
        phone: body.phone.as_deref().map(parse_phone).transpose()?,
        email: body.email.as_deref().map(parse_email).transpose()?,
        two_factor: parse_two_factor(body.two_factor.as_deref())?,
    };
    let actor = actor(app, &account, &key, body.acting_user.as_deref()).await?;
    let user = app.accounts().create_user(&account, &actor, &new).await?;
    user_response(app, &account, StatusCode::CREATED, &user).await
}

pub(super) async fn patch_user(call: Call<'_>) -> Reply {
    let (app, matched, request, grant) = call.keyed()?;
    let id = user_param(matched.param)?;
    let (account, key) = grant.into_key();
    let body: PatchUserBody = json_body(app, request).await?;
    let patch = UserPatch {
        role: optional(body.role.as_deref(), UserRole::parse, ROLE)?,
        phone: match body.phone {
            None => None,
            Some(None) => Some(None),
            Some(Some(phone)) => Some(Some(parse_phone(&phone)?)),
        },
        email: match body.email {
            None => None,
            Some(None) => Some(None),
            Some(Some(email)) => Some(Some(parse_email(&email)?)),
        },
        two_factor: parse_two_factor(body.two_factor.as_deref())?,
    };
    let actor = actor(app, &account, &key, body.acting_user.as_deref()).await?;
    let user = app
        .accounts()
        .update_user(&account, &actor, &id, &patch)
        .await?;
    user_response(app, &account, StatusCode::OK, &user).await
}

/// `?acting_user=<id>` on DELETE routes (which have no body); percent-decoded.
fn acting_user_from_query(query: Option<&str>) -> Result<Option<UserId>, ApiError> {
    let mut acting = None;
    for (name, value) in query_pairs(query)? {
        match name.as_str() {
            "acting_user" => acting = Some(parse_user(&value, "acting_user")?),
            other => {
                return Err(ApiError::invalid(format!(
                    "unknown query parameter '{other}'"
                )))
            }
        }
    }
    Ok(acting)
}

// ---- trusted devices ----

pub(super) async fn trust_device(call: Call<'_>) -> Reply {
    let (app, matched, request, grant) = call.keyed()?;
    let id = user_param(matched.param)?;
    let Grant { account, key } = grant;
    let body: TrustBody = json_body(app, request).await?;
    let proof = app
        .factors()
        .device_proof(
            app.verifier(),
            &account,
            body.verification_id.as_deref(),
            body.challenge_id.as_deref(),
        )
        .await?;
    let actor = app.accounts().actor(&account.id, &key, None).await?;
    let trusted = app
        .accounts()
        .trust_device(&account.id, &actor, &id, &proof)
        .await?;
    Ok(trusted_response(&id, &trusted))
}

fn trusted_response(
    id: &UserId,
    trusted: &crate::account::service::TrustedDevice,
) -> Response<Full<Bytes>> {
    json_response(
        StatusCode::CREATED,
        &DeviceTrustedBody {
            id: trusted.id.as_str(),
            user: id,
            token: &trusted.token,
            created_at: rfc3339(trusted.created_ms),
            expires_at: rfc3339(trusted.expires_ms),
        },
    )
}

fn check_token(token: &str) -> Result<(), ApiError> {
    if valid_token_shape(token) {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "device_token must be a token as returned when the device was trusted",
        ))
    }
}

pub(super) async fn check_device(call: Call<'_>) -> Reply {
    let (app, _, grant, body) = call.keyed_json::<CheckDeviceBody>().await?;
    let (account, _) = grant.into_key();
    let user = parse_user(&body.user, "user")?;
    check_token(&body.device_token)?;
    let checked = app
        .accounts()
        .check_device(&account, &user, &body.device_token)
        .await?;
    Ok(json_response(
        StatusCode::OK,
        &DeviceCheckedBody {
            trusted: checked.trusted,
            id: checked.device.as_ref().map(DeviceId::as_str),
            expires_at: checked.until_ms.map(rfc3339),
        },
    ))
}

// ---- logins ----

pub(super) async fn login(call: Call<'_>) -> Reply {
    let (app, _, grant, body) = call.keyed_json::<LoginBody>().await?;
    let (account, _) = grant.into_key();
    let user = parse_user(&body.user, "user")?;
    if let Some(token) = &body.device_token {
        check_token(token)?;
    }
    // A passkey challenge counts only when this user passed it as a passkey (whose ceremony
    // required user verification); any other id is no proof, and the decision says so by
    // not allowing on it.
    let verified_passkey = match &body.challenge_id {
        None => false,
        Some(id) => app
            .factors()
            .passed(&account, id)
            .await?
            .is_some_and(|passed| passed.user == user && passed.kind == "passkey"),
    };
    let decision = app
        .accounts()
        .login(
            &account,
            &user,
            body.device_token.as_deref(),
            verified_passkey,
        )
        .await?;
    let mut answer = DecisionBody {
        decision: decision.label(),
        reason: None,
        factors: None,
        fallback: None,
        fallbacks: None,
        channels: None,
    };
    match &decision {
        Decision::Allow(reason) => answer.reason = Some(reason.as_str()),
        Decision::Challenge { factors, fallbacks } => {
            answer.factors = Some(factors);
            answer.fallback = fallbacks.first();
            answer.fallbacks = Some(fallbacks.as_slice()).filter(|fallbacks| !fallbacks.is_empty());
        }
        Decision::Enroll { channels } => {
            answer.reason = Some("no_enrolled_factor");
            answer.channels = Some(*channels);
        }
    }
    Ok(json_response(StatusCode::OK, &answer))
}

// ---- audit ----

pub(super) async fn audit(call: Call<'_>) -> Reply {
    let (app, _, request, grant) = call.keyed()?;
    let (account, _) = grant.into_key();
    let mut limit = AUDIT_DEFAULT_LIMIT;
    let mut cursor = None;
    for (name, value) in query_pairs(request.uri().query())? {
        match name.as_str() {
            "limit" => {
                limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|limit| (1..=AUDIT_MAX_LIMIT).contains(limit))
                    .ok_or_else(|| {
                        ApiError::invalid(format!("limit must be between 1 and {AUDIT_MAX_LIMIT}"))
                    })?
            }
            "cursor" if valid_cursor(&value) => cursor = Some(value),
            "cursor" => {
                return Err(ApiError::invalid(
                    "cursor must be a next_cursor from an earlier page",
                ))
            }
            other => {
                return Err(ApiError::invalid(format!(
                    "unknown query parameter '{other}'"
                )))
            }
        }
    }
    let page = app
        .accounts()
        .audit_page(&account, cursor.as_deref(), limit)
        .await?;
    Ok(json_response(
        StatusCode::OK,
        &AuditPageBody {
            entries: page.entries.iter().map(AuditEntryBody::from).collect(),
            next_cursor: page.next_cursor.as_deref(),
        },
    ))
}
