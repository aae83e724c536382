//! Twilio Verify Passkeys on the Twilio facade (issue 18): `Passkeys/Factors`,
//! `Passkeys/VerifyFactor`, `Passkeys/Challenges` and `Passkeys/ApproveChallenge` with Twilio's
//! JSON bodies and field names, on the same passkey flows as the v1 API (`FactorService`).
//!
//! The mapping (README, "Switching from Twilio Verify"), stateless like the Service SID's:
//! - Twilio's `identity` is the otpgate user id; the user must exist (`POST /v1/users`);
//! - a Passkeys Factor SID is the otpgate factor id with `YF` for `FA` (same 32 hex digits);
//! - the Entity SID is `YE` and the user's WebAuthn user handle in hex;
//! - a Challenge SID is `YC` and the first 16 bytes of SHA-256 of the WebAuthn challenge, so
//!   the approval names the challenge its creation did without storing anything more.
//!
//! Refused ceremonies are Twilio's 60311 (factor verification failed) and 60324 (challenge
//! verification failed), 403, with otpgate's reason in the message.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use ring::digest::{digest, SHA256};
use serde::Deserialize;
use serde_json::{json, Value};

use super::body::json_body;
use super::error::ApiError;
use super::routes::{Call, Reply};
use super::twilio::{answer, authenticate, base_url, json, service, service_sid, twilio_date};
use super::twilio_error::TwilioError;
use crate::account::audit::Who;
use crate::account::permission::Permission;
use crate::account::user::UserId;
use crate::account::{hex, is_sid, Account, AccountId};
use crate::factors::webauthn::{challenge_of, user_handle};
use crate::factors::{CredentialJson, FactorError};
use crate::App;

/// `POST /v2/Services/{sid}/Passkeys/Factors`: a passkey registration for `identity`, with
/// its creation options (returned only here).
pub(super) async fn post_factors(call: Call<'_>) -> Reply {
    answer(
        async {
            let (app, account, _, base, body) = passkeys_call::<NewFactorBody>(call).await?;
            create_factor(app, &account, &base, body).await
        }
        .await,
    )
}

/// `POST /v2/Services/{sid}/Passkeys/VerifyFactor`: the registration's credential.
pub(super) async fn post_verify_factor(call: Call<'_>) -> Reply {
    answer(
        async {
            let (app, account, who, base, credential) =
                passkeys_call::<CredentialJson>(call).await?;
            verify_factor(app, &account, &base, who, &credential).await
        }
        .await,
    )
}

/// `POST /v2/Services/{sid}/Passkeys/Challenges`: request options, usernameless or for
/// `identity` (and one of its factors).
pub(super) async fn post_challenges(call: Call<'_>) -> Reply {
    answer(
        async {
            let (app, account, _, base, body) = passkeys_call::<NewChallengeBody>(call).await?;
            create_challenge(app, &account, &base, body).await
        }
        .await,
    )
}

/// `POST /v2/Services/{sid}/Passkeys/ApproveChallenge`: the assertion.
pub(super) async fn post_approve_challenge(call: Call<'_>) -> Reply {
    answer(
        async {
            let (app, account, who, base, assertion) =
                passkeys_call::<CredentialJson>(call).await?;
            approve_challenge(app, &account, &base, who, &assertion).await
        }
        .await,
    )
}

/// The app, the Service of the path for a caller who may run factors with it, the caller as
/// the audit trail names it, the base URL and the JSON body (Twilio's SDKs send these
/// endpoints JSON, not forms; a body serde cannot read is Twilio's 60200).
async fn passkeys_call<T: serde::de::DeserializeOwned>(
    call: Call<'_>,
) -> Result<(&App, std::sync::Arc<Account>, Who, String, T), TwilioError> {
    let caller = authenticate(call.app, call.ip, &call.request).await?;
    let sid = call.matched.param.unwrap_or_default();
    let account = service(call.app, &caller, sid, Permission::UseFactors).await?;
    let base = base_url(&call.request);
    let body = json_body::<T>(call.app, call.request)
        .await
        .map_err(|error| match error {
            ApiError::InvalidRequest(detail) => TwilioError::new(
                StatusCode::BAD_REQUEST,
                60200,
                format!("Invalid parameter: {detail}"),
            ),
            other => other.into(),
        })?;
    Ok((call.app, account, caller.who(), base, body))
}

#[derive(Deserialize)]
struct NewFactorBody {
    friendly_name: Option<String>,
    identity: Option<String>,
    config: Option<FactorConfig>,
}

/// `config`: otpgate's relying party and its passkey criteria are the gateway's (passkeys are
/// always discoverable and user-verifying), so a config may restate them but not change them.
#[derive(Deserialize)]
struct FactorConfig {
    relying_party: Option<RelyingPartyBody>,
    authenticator_attachment: Option<String>,
    discoverable_credentials: Option<String>,
    user_verification: Option<String>,
}

/// `config.relying_party`; its `name` is only shown by browsers, so any is accepted.
#[derive(Deserialize)]
struct RelyingPartyBody {
    id: Option<String>,
    origins: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct NewChallengeBody {
    identity: Option<String>,
    factor_sid: Option<String>,
}

/// Twilio's Factor name is up to 64 characters.
const FRIENDLY_NAME_MAX: usize = 64;

/// A Passkeys Factor SID (`YF…`) from an otpgate factor id (`FA…`).
fn factor_sid(factor: &str) -> String {
    format!("YF{}", factor.get(2..).unwrap_or_default())
}

/// The otpgate factor id of a Passkeys Factor SID, when it has Twilio's shape.
fn factor_of_sid(sid: &str) -> Option<String> {
    is_sid(sid, "YF").then(|| format!("FA{}", sid[2..].to_ascii_lowercase()))
}

/// The Entity SID of a user: `YE` and the user handle's 16 bytes in hex.
fn entity_sid(account: &AccountId, user: &UserId) -> String {
    format!("YE{}", hex(&user_handle(account, user)))
}

/// The Challenge SID of a WebAuthn challenge.
fn challenge_sid(challenge: &[u8]) -> String {
    format!("YC{}", hex(&digest(&SHA256, challenge).as_ref()[..16]))
}

fn identity(value: Option<&str>) -> Result<UserId, TwilioError> {
    let value = value.ok_or_else(|| TwilioError::invalid("identity", "required"))?;
    UserId::parse(value).ok_or_else(|| {
        TwilioError::invalid(
            "identity",
            "1 to 64 characters of letters, digits and . _ - @ + (an otpgate user id)",
        )
    })
}

/// `value` must be one of `allowed` when given.
fn one_of(name: &str, value: Option<&str>, allowed: &[&str]) -> Result<(), TwilioError> {
    match value {
        Some(value) if !allowed.contains(&value) => Err(TwilioError::invalid(
            name,
            &format!("one of {}", allowed.join(", ")),
        )),
        _ => Ok(()),
    }
}

/// The factor flows' errors as Twilio answers them; a missing user or passkey names what.
fn factor_error(error: FactorError, what: &str) -> TwilioError {
    match error {
        FactorError::Invalid(detail) => TwilioError::new(
            StatusCode::BAD_REQUEST,
            60200,
            format!("Invalid parameter: {detail}"),
        ),
        FactorError::NotFound(_)
        | FactorError::Account(crate::account::service::AccountError::NotFound(_)) => {
            TwilioError::not_found(what)
        }
        other => ApiError::from(other).into(),
    }
}

async fn create_factor(
    app: &App,
    account: &Account,
    base: &str,
    body: NewFactorBody,
) -> Result<Response<Full<Bytes>>, TwilioError> {
    let friendly_name = body
        .friendly_name
        .filter(|name| !name.trim().is_empty())
        .ok_or_else(|| {
            TwilioError::new(
                StatusCode::BAD_REQUEST,
                60388,
                "User display name not provided: friendly_name is required",
            )
        })?;
    if friendly_name.chars().count() > FRIENDLY_NAME_MAX {
        return Err(TwilioError::invalid(
            "friendly_name",
            "at most 64 characters",
        ));
    }
    let user = identity(body.identity.as_deref())?;
    let rp = &app.factors().settings().relying_party;
    let mut attachment = None;
    if let Some(config) = &body.config {
        if let Some(party) = &config.relying_party {
            let same = party.id.as_ref().is_none_or(|id| *id == rp.id)
                && party
                    .origins
                    .as_ref()
                    .is_none_or(|origins| origins.iter().all(|origin| rp.origins.contains(origin)));
            if !same {
                return Err(TwilioError::new(
                    StatusCode::BAD_REQUEST,
                    60371,
                    format!(
                        "Relying party invalid: this gateway's relying party is {} (factors.rp_id) with the origins of factors.origins",
                        rp.id
                    ),
                ));
            }
        }
        let attachments = ["platform", "cross-platform", "any"];
        let levels = ["required", "preferred", "discouraged"];
        one_of(
            "config.authenticator_attachment",
            config.authenticator_attachment.as_deref(),
            &attachments,
        )?;
        one_of(
            "config.discoverable_credentials",
            config.discoverable_credentials.as_deref(),
            &levels,
        )?;
        one_of(
            "config.user_verification",
            config.user_verification.as_deref(),
            &levels,
        )?;
        attachment = config
            .authenticator_attachment
            .clone()
            .filter(|attachment| attachment != "any");
    }
    let enrolment = app
        .factors()
        .enrol_passkey_by_challenge(account, &user)
        .await
        .map_err(|error| factor_error(error, &entity_path(account, &user)))?;
    let mut options = enrolment.options;
    // A hint to the browser only: which authenticators it offers.
    if let Some(attachment) = &attachment {
        options["authenticatorSelection"]["authenticatorAttachment"] = json!(attachment);
    }
    let sid = factor_sid(&enrolment.factor_id);
    let now = twilio_date(app.clock().now_ms());
    let mut factor = factor_json(account, &user, &sid, "unverified", &now, base);
    factor["friendly_name"] = json!(friendly_name);
    factor["config"] = config_json(app, attachment.as_deref());
    factor["options"] = json!({"publicKey": options});
    Ok(json(StatusCode::CREATED, &factor))
}

async fn verify_factor(
    app: &App,
    account: &Account,
    base: &str,
    who: Who,
    credential: &CredentialJson,
) -> Result<Response<Full<Bytes>>, TwilioError> {
    let verified = app
        .factors()
        .confirm_passkey_by_challenge(&account.id, who, credential)
        .await
        .map_err(|error| factor_error(error, "factor"))?;
    let (user, confirmed) = verified.map_err(|reason| {
        TwilioError::new(
            StatusCode::FORBIDDEN,
            60311,
            format!("Factor verification failed: {reason}"),
        )
    })?;
    let sid = factor_sid(&confirmed.factor.id);
    let now = twilio_date(app.clock().now_ms());
    let mut factor = factor_json(account, &user, &sid, "verified", &now, base);
    factor["config"] = config_json(app, None);
    Ok(json(StatusCode::OK, &factor))
}

async fn create_challenge(
    app: &App,
    account: &Account,
    base: &str,
    body: NewChallengeBody,
) -> Result<Response<Full<Bytes>>, TwilioError> {
    let user = match body.identity.as_deref() {
        None => None,
        Some(value) => Some(identity(Some(value))?),
    };
    let factor = match body.factor_sid.as_deref() {
        None => None,
        Some(sid) => Some(factor_of_sid(sid).ok_or_else(|| {
            TwilioError::invalid("factor_sid", "a Passkeys Factor SID (YF and 32 hex digits)")
        })?),
    };
    if factor.is_some() && user.is_none() {
        return Err(TwilioError::invalid(
            "identity",
            "required with factor_sid (otpgate finds factors through their user)",
        ));
    }
    let what = match (&user, &body.factor_sid) {
        (Some(user), Some(sid)) => format!("{}/Factors/{sid}", entity_path(account, user)),
        (Some(user), None) => entity_path(account, user),
        _ => "service".to_owned(),
    };
    let (options, expires_ms) = app
        .factors()
        .begin_passkey_for(&account.id, user.as_ref(), factor.as_deref())
        .await
        .map_err(|error| factor_error(error, &what))?;
    // The options carry the challenge just drawn, in base64url: it decodes.
    let challenge = options["challenge"]
        .as_str()
        .and_then(|challenge| {
            data_encoding::BASE64URL_NOPAD
                .decode(challenge.as_bytes())
                .ok()
        })
        .unwrap_or_default();
    let now = twilio_date(app.clock().now_ms());
    let mut body = challenge_json(account, &challenge_sid(&challenge), "pending", &now);
    body["url"] = json!(format!(
        "{}/Passkeys/Challenges",
        service_url(base, account)
    ));
    if let Some(user) = &user {
        body["identity"] = json!(user.as_str());
        body["entity_sid"] = json!(entity_sid(&account.id, user));
    }
    if let Some(factor) = &factor {
        body["factor_sid"] = json!(factor_sid(factor));
    }
    body["expiration_date"] = json!(twilio_date(expires_ms));
    body["options"] = json!({"publicKey": options});
    Ok(json(StatusCode::CREATED, &body))
}

async fn approve_challenge(
    app: &App,
    account: &Account,
    base: &str,
    who: Who,
    assertion: &CredentialJson,
) -> Result<Response<Full<Bytes>>, TwilioError> {
    let result = app
        .factors()
        .finish_passkey(&account.id, who, assertion)
        .await
        .map_err(|error| factor_error(error, "challenge"))?;
    let (true, Some(user), Some(factor)) = (result.valid, &result.user, &result.factor_id) else {
        return Err(TwilioError::new(
            StatusCode::FORBIDDEN,
            60324,
            format!(
                "Challenge verification failed: {}",
                result.reason.unwrap_or("refused")
            ),
        ));
    };
    // The assertion passed, so its clientDataJSON decoded and named the challenge.
    let challenge = data_encoding::BASE64URL_NOPAD
        .decode(
            assertion
                .response
                .client_data_json
                .trim_end_matches('=')
                .as_bytes(),
        )
        .ok()
        .and_then(|client_data| challenge_of(&client_data).ok())
        .unwrap_or_default();
    let now = twilio_date(app.clock().now_ms());
    let mut body = challenge_json(account, &challenge_sid(&challenge), "approved", &now);
    body["url"] = json!(format!(
        "{}/Passkeys/ApproveChallenge",
        service_url(base, account)
    ));
    body["identity"] = json!(user.as_str());
    body["entity_sid"] = json!(entity_sid(&account.id, user));
    body["factor_sid"] = json!(factor_sid(factor));
    body["date_responded"] = json!(now);
    // The passed challenge, for the v1 API's login decision and trusted devices.
    body["metadata"] = json!({
        "otpgate_challenge_id": result.passed.as_ref().map(|passed| passed.id.as_str()),
    });
    Ok(json(StatusCode::OK, &body))
}

/// `{base}/v2/Services/{sid}`.
fn service_url(base: &str, account: &Account) -> String {
    format!("{base}/v2/Services/{}", service_sid(&account.id))
}

/// `/v2/Services/{sid}/Entities/{identity}`, the path Twilio names an entity by.
fn entity_path(account: &Account, user: &UserId) -> String {
    format!(
        "/v2/Services/{}/Entities/{}",
        service_sid(&account.id),
        user.as_str()
    )
}

/// The gateway's passkey criteria in Twilio's `config` shape.
fn config_json(app: &App, attachment: Option<&str>) -> Value {
    let rp = &app.factors().settings().relying_party;
    json!({
        "relying_party": {"id": rp.id, "name": rp.name, "origins": rp.origins},
        "authenticator_attachment": attachment.unwrap_or("any"),
        "discoverable_credentials": "required",
        "user_verification": "required",
    })
}

/// A Passkeys Factor as Twilio shows it (without `options`, which only creation returns).
fn factor_json(
    account: &Account,
    user: &UserId,
    sid: &str,
    status: &str,
    now: &str,
    base: &str,
) -> Value {
    json!({
        "sid": sid,
        "account_sid": account.id.as_str(),
        "service_sid": service_sid(&account.id),
        "entity_sid": entity_sid(&account.id, user),
        "identity": user.as_str(),
        "binding": null,
        "options": null,
        "date_created": now,
        "date_updated": now,
        // otpgate keeps no factor names: the one given is echoed by the creation only.
        "friendly_name": null,
        "status": status,
        "factor_type": "passkeys",
        "config": null,
        "metadata": null,
        "url": format!("{}/Entities/{}/Factors/{sid}", service_url(base, account), user.as_str()),
    })
}

/// A Passkeys Challenge as Twilio shows it; the caller fills in what it knows.
fn challenge_json(account: &Account, sid: &str, status: &str, now: &str) -> Value {
    json!({
        "sid": sid,
        "account_sid": account.id.as_str(),
        "service_sid": service_sid(&account.id),
        "entity_sid": "",
        "identity": "",
        "factor_sid": "",
        "factor_type": "passkeys",
        "status": status,
        "date_created": now,
        "date_updated": now,
        "date_responded": null,
        "details": null,
        "expiration_date": null,
        "hidden_details": null,
        "links": null,
        "metadata": null,
        "responded_reason": "none",
        "url": null,
        "options": null,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factor_sids_and_factor_ids_map_both_ways() {
        let id = "FA0123456789abcdef0123456789abcdef";
        let sid = factor_sid(id);
        assert_eq!(sid, "YF0123456789abcdef0123456789abcdef");
        assert_eq!(factor_of_sid(&sid).as_deref(), Some(id));
        assert_eq!(factor_of_sid("YF0123"), None);
        assert_eq!(factor_of_sid(id), None);
    }

    #[test]
    fn challenge_sids_are_34_characters_and_follow_the_challenge() {
        let sid = challenge_sid(&[7u8; 32]);
        assert_eq!(sid.len(), 34);
        assert!(sid.starts_with("YC"));
        assert_eq!(sid, challenge_sid(&[7u8; 32]));
        assert_ne!(sid, challenge_sid(&[8u8; 32]));
    }
}
