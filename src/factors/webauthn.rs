//! The security-key flow: registration and authentication ceremonies (options out, the
//! browser's credential back, once), and the signature counter advanced by the store. The
//! relying-party checks themselves are in `checks`.

mod checks;

pub use checks::*;

use data_encoding::BASE64URL_NOPAD;
use ring::digest::{digest, SHA256};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::store::{
    CounterOutcome, FactorRecord, FactorStatus, KeyCredential, NewCeremony, NewFactor, UserRef,
};
use super::{action, factor_id, ChallengeResult, Confirmed, FactorError, FactorService};
use crate::account::audit::{AuditEntry, Who};
use crate::account::user::{FactorType, User, UserId};
use crate::account::{Account, AccountId};
use crate::random::random_bytes;

/// A security-key enrolment: `PublicKeyCredentialCreationOptions` as JSON (binary fields in
/// base64url, as `PublicKeyCredential.parseCreationOptionsFromJSON` reads them).
#[derive(Debug)]
pub struct KeyEnrolment {
    pub factor_id: String,
    pub options: Value,
    pub expires_ms: u64,
}

/// A WebAuthn credential as the browser's `PublicKeyCredential.toJSON()` gives it (binary
/// fields base64url); unknown members are ignored, as browsers add some.
#[derive(Debug, Deserialize)]
pub struct CredentialJson {
    pub id: String,
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    pub response: CredentialResponseJson,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CredentialResponseJson {
    #[serde(rename = "clientDataJSON")]
    pub client_data_json: String,
    pub attestation_object: Option<String>,
    pub authenticator_data: Option<String>,
    pub signature: Option<String>,
    /// The user handle a discoverable credential (passkey) returns with an assertion.
    pub user_handle: Option<String>,
}

impl CredentialJson {
    /// A registration's `clientDataJSON` and `attestationObject`, decoded.
    pub(super) fn attestation(&self) -> Result<(Vec<u8>, Vec<u8>), FactorError> {
        let response = &self.response;
        Ok((
            b64(&response.client_data_json, "clientDataJSON")?,
            b64_member(
                response.attestation_object.as_deref(),
                "credential",
                "attestationObject",
            )?,
        ))
    }

    /// An authentication's binary members, decoded.
    pub(super) fn assertion(&self) -> Result<Assertion, FactorError> {
        let response = &self.response;
        Ok(Assertion {
            client_data: b64(&response.client_data_json, "clientDataJSON")?,
            authenticator_data: b64_member(
                response.authenticator_data.as_deref(),
                "assertion",
                "authenticatorData",
            )?,
            signature: b64_member(response.signature.as_deref(), "assertion", "signature")?,
            credential_id: b64(&self.id, "assertion.id")?,
        })
    }
}

/// The decoded members of an authentication response.
pub(super) struct Assertion {
    pub(super) client_data: Vec<u8>,
    pub(super) authenticator_data: Vec<u8>,
    pub(super) signature: Vec<u8>,
    pub(super) credential_id: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
pub(super) struct CeremonyState {
    /// `register`, `authenticate`, or `passkey` (a usernameless authentication).
    pub(super) kind: String,
    /// The factor being registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) factor: Option<String>,
    /// A registration of a passkey (`FactorType::Passkey`) rather than a security key.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(super) passkey: bool,
    /// The user a usernameless ceremony is bound to: a passkey challenge opened for one user
    /// (only that user's assertion passes), or a registration looked up by its challenge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) user: Option<String>,
    /// Until when it may be answered, by the gateway's clock (the store's TTL only bounds
    /// retention).
    pub(super) expires_ms: u64,
}

pub(super) fn b64(input: &str, field: &str) -> Result<Vec<u8>, FactorError> {
    BASE64URL_NOPAD
        .decode(input.trim_end_matches('=').as_bytes())
        .map_err(|_| FactorError::Invalid(format!("{field} must be base64url")))
}

/// A required binary member of a credential's response: `{owner}.response.{field}`, in
/// base64url.
fn b64_member(input: Option<&str>, owner: &str, field: &str) -> Result<Vec<u8>, FactorError> {
    let input = input
        .ok_or_else(|| FactorError::Invalid(format!("{owner}.response.{field} is missing")))?;
    b64(input, field)
}

/// The credentials as `PublicKeyCredentialDescriptor`s (to exclude at registration, or to
/// allow at authentication).
pub(super) fn descriptors(credentials: &[(String, KeyCredential)]) -> Vec<Value> {
    credentials
        .iter()
        .map(|(_, credential)| {
            json!({"type": "public-key", "id": BASE64URL_NOPAD.encode(&credential.credential_id)})
        })
        .collect()
}

/// The WebAuthn user handle of a user: 16 bytes derived from the account and the user, the
/// same in every ceremony, so a passkey's assertion names its user through the handle index.
pub fn user_handle(account: &AccountId, user: &UserId) -> Vec<u8> {
    let handle = digest(
        &SHA256,
        format!("otpgate user|{}|{}", account.as_str(), user.as_str()).as_bytes(),
    );
    handle.as_ref()[..16].to_vec()
}

impl FactorService {
    /// Opens a registration ceremony for a security key (`Webauthn`) or a passkey (`Passkey`:
    /// a discoverable credential with user verification): creation options with a fresh 32-byte
    /// challenge, whose state the store keeps for `ceremony_ttl` and gives back once.
    pub async fn enrol_webauthn(
        &self,
        account: &Account,
        user_id: &UserId,
        kind: FactorType,
    ) -> Result<KeyEnrolment, FactorError> {
        self.allowed(&account.id, kind).await?;
        let user = self.accounts.user(&account.id, user_id).await?;
        self.accounts.factor_room(&account.id, &user)?;
        let id = factor_id(&self.rng)?;
        let passkey = kind == FactorType::Passkey;
        let (challenge, ttl) = self
            .open_ceremony(&account.id, user_id, "register", Some(id.clone()), passkey)
            .await?;
        // Every key of the user, security key or passkey: one authenticator, one credential.
        let exclude = descriptors(&self.credentials(&account.id, &user, None).await?);
        let rp = &self.settings.relying_party;
        let user_verification = if passkey || rp.require_user_verification {
            "required"
        } else {
            "discouraged"
        };
        let selection = if passkey {
            json!({"residentKey": "required", "requireResidentKey": true, "userVerification": "required"})
        } else {
            json!({"residentKey": "discouraged", "userVerification": user_verification})
        };
        let options = json!({
            "rp": {"id": rp.id, "name": rp.name},
            "user": {
                "id": BASE64URL_NOPAD.encode(&user_handle(&account.id, user_id)),
                "name": user_id.as_str(),
                "displayName": user_id.as_str(),
            },
            "challenge": BASE64URL_NOPAD.encode(&challenge),
            "pubKeyCredParams": [
                {"type": "public-key", "alg": COSE_ES256},
                {"type": "public-key", "alg": COSE_EDDSA},
            ],
            "timeout": ttl,
            "attestation": "none",
            "excludeCredentials": exclude,
            "authenticatorSelection": selection,
        });
        self.metrics.factor_enrolment(kind.as_str(), "started");
        Ok(KeyEnrolment {
            factor_id: id,
            options,
            expires_ms: self.clock.now_ms() + ttl,
        })
    }

    /// Finishes a registration: the ceremony's state is taken (once), the attestation checked,
    /// and the credential stored as an active factor.
    pub async fn confirm_webauthn(
        &self,
        account: &AccountId,
        who: Who,
        user_id: &UserId,
        id: &str,
        credential: &CredentialJson,
    ) -> Result<Result<Confirmed, &'static str>, FactorError> {
        let user = self.accounts.user(account, user_id).await?;
        let (client_data, attestation) = credential.attestation()?;
        let mut kind = FactorType::Webauthn;
        let refuse = |kind: FactorType, reason: &'static str| {
            self.metrics.factor_enrolment(kind.as_str(), reason);
            Ok(Err(reason))
        };
        let Ok(challenge) = challenge_of(&client_data) else {
            return refuse(kind, "malformed");
        };
        let state = self
            .store
            .take_ceremony(UserRef::new(account, user_id), &challenge)
            .await?;
        let Some(state) = state.and_then(|s| serde_json::from_str::<CeremonyState>(&s).ok()) else {
            return refuse(kind, "unknown_challenge");
        };
        if state.passkey {
            kind = FactorType::Passkey;
        }
        if state.kind != "register"
            || state.factor.as_deref() != Some(id)
            || self.clock.now_ms() >= state.expires_ms
        {
            return refuse(kind, "unknown_challenge");
        }
        let registered = match verify_registration(
            &self.settings.relying_party,
            &challenge,
            &client_data,
            &attestation,
        ) {
            Ok(registered) => registered,
            Err(refusal) => return refuse(kind, refusal.as_str()),
        };
        // A passkey signs the user in on its own: it must have verified the user (a PIN or a
        // biometric), whatever `factors.require_user_verification` says of security keys.
        if kind == FactorType::Passkey && !registered.user_verified {
            return refuse(kind, "user_not_verified");
        }
        if self
            .credentials(account, &user, None)
            .await?
            .iter()
            .any(|(_, known)| known.credential_id == registered.credential_id)
        {
            return Err(FactorError::Conflict(
                "this security key is already registered for this user".into(),
            ));
        }
        let record = FactorRecord {
            id: id.to_owned(),
            kind,
            status: FactorStatus::Active,
            created_ms: self.clock.now_ms(),
            totp: None,
            webauthn: Some(KeyCredential {
                credential_id: registered.credential_id,
                key: registered.key,
                counter: registered.counter,
                backup: registered.backup,
            }),
        };
        let factor = NewFactor {
            owner: UserRef::new(account, user_id),
            record: &record,
            pending_ttl_ms: None,
        };
        self.store.put(factor).await?;
        if kind == FactorType::Passkey {
            let handle = user_handle(account, user_id);
            self.store
                .put_user_handle(account, &handle, user_id)
                .await?;
        }
        self.activated(account, who, user, id, kind).await
    }

    /// Opens an authentication ceremony: request options for the user's registered keys.
    pub async fn begin_webauthn(
        &self,
        account: &AccountId,
        user_id: &UserId,
    ) -> Result<(Value, u64), FactorError> {
        self.allowed(account, FactorType::Webauthn).await?;
        let user = self.accounts.user(account, user_id).await?;
        let credentials = self
            .credentials(account, &user, Some(FactorType::Webauthn))
            .await?;
        if credentials.is_empty() {
            return Err(FactorError::NotFound("this user has no security key"));
        }
        let (challenge, ttl) = self
            .open_ceremony(account, user_id, "authenticate", None, false)
            .await?;
        let rp = &self.settings.relying_party;
        let allow = descriptors(&credentials);
        Ok((
            json!({
                "challenge": BASE64URL_NOPAD.encode(&challenge),
                "rpId": rp.id,
                "allowCredentials": allow,
                "timeout": ttl,
                "userVerification": if rp.require_user_verification { "required" } else { "discouraged" },
            }),
            self.clock.now_ms() + ttl,
        ))
    }

    /// Finishes an authentication: the ceremony is taken once, the assertion verified, and the
    /// counter advanced atomically (a counter that does not grow is refused and audited).
    pub async fn finish_webauthn(
        &self,
        account: &AccountId,
        who: Who,
        user_id: &UserId,
        assertion: &CredentialJson,
    ) -> Result<ChallengeResult, FactorError> {
        self.allowed(account, FactorType::Webauthn).await?;
        let user = self.accounts.user(account, user_id).await?;
        let Assertion {
            client_data,
            authenticator_data,
            signature,
            credential_id,
        } = assertion.assertion()?;
        let mut result = ChallengeResult {
            kind: "webauthn",
            ..ChallengeResult::default()
        };
        let refuse = |mut result: ChallengeResult, reason: &'static str| {
            self.metrics.factor_challenge("webauthn", reason);
            result.reason = Some(reason);
            Ok(result)
        };
        let Ok(challenge) = challenge_of(&client_data) else {
            return refuse(result, "malformed");
        };
        let state = self
            .store
            .take_ceremony(UserRef::new(account, user_id), &challenge)
            .await?
            .and_then(|s| serde_json::from_str::<CeremonyState>(&s).ok());
        let now = self.clock.now_ms();
        if state.is_none_or(|state| state.kind != "authenticate" || now >= state.expires_ms) {
            return refuse(result, "unknown_challenge");
        }
        let Some((id, credential)) = self
            .credentials(account, &user, Some(FactorType::Webauthn))
            .await?
            .into_iter()
            .find(|(_, known)| known.credential_id == credential_id)
        else {
            return refuse(result, "unknown_credential");
        };
        result.factor_id = Some(id.clone());
        let asserted = match verify_assertion(
            &self.settings.relying_party,
            &challenge,
            &client_data,
            &authenticator_data,
            &signature,
            &credential.key,
        ) {
            Ok(asserted) => asserted,
            Err(refusal) => return refuse(result, refusal.as_str()),
        };
        match self
            .store
            .advance_counter(
                UserRef::new(account, user_id).factor(&id),
                asserted.counter,
                asserted.backup,
            )
            .await?
        {
            CounterOutcome::Advanced => {}
            CounterOutcome::NotFound => return refuse(result, "unknown_credential"),
            CounterOutcome::Regressed { stored } => {
                let entry = AuditEntry::new(
                    self.clock.now_ms(),
                    who,
                    action::COUNTER_REGRESSED,
                    format!("user:{user_id}"),
                    json!({"factor": id, "stored": stored, "presented": asserted.counter}),
                );
                if let Err(error) = self.audit(account, &entry).await {
                    tracing::warn!(%error, "audit entry for a counter regression not written");
                }
                tracing::warn!(factor = %id, stored, presented = asserted.counter, "security key counter went backwards: possible clone");
                return refuse(result, "counter_regressed");
            }
        }
        self.metrics.factor_challenge("webauthn", "accepted");
        result.valid = true;
        result.passed = Some(self.pass(account, user_id, "webauthn", &id).await?);
        Ok(result)
    }

    /// Opens a ceremony of `kind` (`register`, for `factor`, or `authenticate`): a fresh 32-byte
    /// challenge whose state the store keeps for `ceremony_ttl` and gives back once. The
    /// challenge and the ttl in milliseconds.
    pub(super) async fn open_ceremony(
        &self,
        account: &AccountId,
        user: &UserId,
        kind: &str,
        factor: Option<String>,
        passkey: bool,
    ) -> Result<([u8; 32], u64), FactorError> {
        let challenge = random_bytes::<32>(&self.rng)?;
        let state = CeremonyState {
            kind: kind.into(),
            factor,
            passkey,
            user: None,
            expires_ms: 0,
        };
        let ttl = self.put_ceremony(account, user, &challenge, state).await?;
        Ok((challenge, ttl))
    }

    /// Stores a ceremony's `state` under `challenge` for `ceremony_ttl` (its `expires_ms` is
    /// set here, by the gateway's clock); the ttl in milliseconds.
    pub(super) async fn put_ceremony(
        &self,
        account: &AccountId,
        user: &UserId,
        challenge: &[u8],
        mut state: CeremonyState,
    ) -> Result<u64, FactorError> {
        let ttl = self.settings.ceremony_ttl.as_millis() as u64;
        state.expires_ms = self.clock.now_ms() + ttl;
        let state = serde_json::to_string(&state).map_err(|_| FactorError::Random)?;
        self.store
            .put_ceremony(NewCeremony {
                owner: UserRef::new(account, user),
                challenge,
                state: &state,
                ttl_ms: ttl,
            })
            .await?;
        Ok(ttl)
    }

    /// The user's listed WebAuthn credentials of `kind` (security keys or passkeys; both when
    /// `None`) with their records.
    pub(super) async fn credentials(
        &self,
        account: &AccountId,
        user: &User,
        kind: Option<FactorType>,
    ) -> Result<Vec<(String, KeyCredential)>, FactorError> {
        let mut found = Vec::new();
        let wanted = |factor: &&crate::account::user::Factor| match kind {
            Some(kind) => factor.kind == kind,
            None => matches!(factor.kind, FactorType::Webauthn | FactorType::Passkey),
        };
        for factor in user.factors.iter().filter(wanted) {
            let found_record = self
                .store
                .get(UserRef::new(account, &user.id).factor(&factor.id))
                .await?;
            if let Some(record) = found_record {
                if let Some(credential) = record.webauthn {
                    found.push((factor.id.clone(), credential));
                }
            }
        }
        Ok(found)
    }
}
