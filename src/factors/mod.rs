//! Authenticator apps (TOTP) and security keys (WebAuthn), and recovery codes: enrolment,
//! confirmation, challenges, and the proof a passed challenge gives for trusting a device.
//!
//! The user's factor list (what the login decision offers) lives in the directory and is
//! changed through `AccountService` (audited, revoking devices on removal); the factor's own
//! material (sealed TOTP secret and last used step, credential key and counter) lives in the
//! `FactorStore`. A challenge needs both: the factor listed on the user, and its record active.

pub mod crypto;
pub mod memory;
pub mod recovery;
pub mod redis;
pub mod store;
pub mod totp;
pub mod webauthn;

use std::sync::Arc;
use std::time::Duration;

use data_encoding::{BASE32_NOPAD, BASE64URL_NOPAD};
use ring::digest::{digest, SHA256};
use ring::rand::SystemRandom;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::account::policy::PolicyChannel;
use crate::account::rules::Refusal;
use crate::account::service::{AccountError, AccountService};
use crate::account::user::{Factor, FactorType, User, UserId};
use crate::account::{hex, Account, AccountId};
use crate::audit::{AuditEntry, Who};
use crate::clock::Clock;
use crate::directory::Directory;
use crate::metrics::Metrics;
use crate::secret::Secret;
use crate::store::StoreError;
use crate::verify::code::random_bytes;
use crypto::{FactorKeys, SealError};
use recovery::RecoveryHasher;
use store::{
    AttemptLimits, AttemptOutcome, CounterOutcome, FactorRecord, FactorStatus, FactorStore,
    KeyCredential, PassedChallenge, RecoveryOutcome, TotpSecret,
};
use totp::{Algorithm, Totp, TotpParams};
use webauthn::RelyingParty;

/// Audit actions of this module (beside `audit::action`).
pub mod action {
    pub const CODE_REUSED: &str = "factor.code_reused";
    pub const COUNTER_REGRESSED: &str = "factor.counter_regressed";
    pub const RECOVERY_CODE_USED: &str = "recovery_code.used";
    pub const RECOVERY_CODES_REGENERATED: &str = "recovery_codes.regenerated";
}

/// Rules named in refusals of this module.
pub mod rule {
    pub const THE_POLICY_DOES_NOT_ALLOW_THIS_FACTOR: &str = "the-policy-does-not-allow-this-factor";
}

/// `[factors]` settings.
#[derive(Debug, Clone)]
pub struct FactorSettings {
    /// Encryption keys for TOTP secrets, (id, 32 bytes), current first; empty: derived or
    /// random at build (see `assemble`).
    pub keys: Vec<(String, Secret)>,
    /// The issuer in authenticator apps; empty: the account's name.
    pub totp_issuer: String,
    pub totp_algorithm: Algorithm,
    pub totp_digits: u8,
    pub pending_ttl: Duration,
    pub limits: AttemptLimits,
    pub proof_ttl: Duration,
    pub relying_party: RelyingParty,
    pub ceremony_ttl: Duration,
    pub memory_max_entries: usize,
}

impl FactorSettings {
    /// The rules on values that parsed; each broken one adds a line to `errors`.
    pub fn validate(&self, errors: &mut Vec<String>) {
        if !matches!(self.totp_digits, 6 | 8) {
            errors.push("factors.totp_digits: must be 6 or 8".to_owned());
        }
        if self.limits.max_failures > 10 {
            errors.push(
                "factors.max_failures: must be at most 10 (RFC 4226 §7.3: as low as possible)"
                    .to_owned(),
            );
        }
        let rp_id = &self.relying_party.id;
        let rp_ok = !rp_id.is_empty()
            && rp_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
        if !rp_ok {
            errors.push(
                "factors.rp_id: must be a domain name such as example.com (or localhost)"
                    .to_owned(),
            );
        }
        let origins = &self.relying_party.origins;
        let origins_ok = !origins.is_empty()
            && origins.iter().all(|origin| {
                reqwest::Url::parse(origin)
                    .is_ok_and(|url| matches!(url.scheme(), "http" | "https") && url.path() == "/")
            });
        if !origins_ok {
            errors.push("factors.origins: must list origins such as https://login.example.com (scheme, host, optional port)".to_owned());
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FactorError {
    #[error(transparent)]
    Account(#[from] AccountError),
    #[error("{0}")]
    NotFound(&'static str),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    /// Wrong codes used up a round: wait this long.
    #[error("too many wrong codes; retry after {retry_after_ms} ms")]
    Limited { retry_after_ms: u64 },
    #[error("a factor secret cannot be opened: {0}")]
    Seal(#[from] SealError),
    #[error("the random generator failed")]
    Random,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<ring::error::Unspecified> for FactorError {
    fn from(_: ring::error::Unspecified) -> Self {
        FactorError::Random
    }
}

/// A TOTP enrolment: everything the enrolment page shows, once.
#[derive(Debug, Serialize)]
pub struct TotpEnrolment {
    pub factor_id: String,
    pub secret: String,
    pub uri: String,
    pub qr_svg: String,
    pub algorithm: &'static str,
    pub digits: u8,
    pub period: u64,
    pub expires_ms: u64,
}

/// A security-key enrolment: `PublicKeyCredentialCreationOptions` as JSON (binary fields in
/// base64url, as `PublicKeyCredential.parseCreationOptionsFromJSON` reads them).
#[derive(Debug)]
pub struct KeyEnrolment {
    pub factor_id: String,
    pub options: Value,
    pub expires_ms: u64,
}

/// A confirmed factor; `recovery_codes` when it was the user's first (shown once).
#[derive(Debug)]
pub struct Confirmed {
    pub factor: Factor,
    pub user: User,
    pub recovery_codes: Option<Vec<String>>,
}

/// The answer to a challenge. Expected refusals are values (`valid: false` with a reason);
/// only a wait after a round of wrong codes is an error (429).
#[derive(Debug, Default)]
pub struct ChallengeResult {
    pub valid: bool,
    pub kind: &'static str,
    pub factor_id: Option<String>,
    pub reason: Option<&'static str>,
    pub attempts_left: Option<u32>,
    pub retry_after_ms: Option<u64>,
    pub passed: Option<PassedChallenge>,
    pub recovery_codes_left: Option<u32>,
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
}

#[derive(Serialize, Deserialize)]
struct CeremonyState {
    /// `register` or `authenticate`.
    kind: String,
    /// The factor being registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    factor: Option<String>,
    /// Until when it may be answered, by the gateway's clock (the store's TTL only bounds
    /// retention).
    expires_ms: u64,
}

pub struct FactorService {
    store: Arc<dyn FactorStore>,
    directory: Arc<dyn Directory>,
    keys: FactorKeys,
    recovery: RecoveryHasher,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    rng: SystemRandom,
    settings: FactorSettings,
}

fn b64(input: &str, field: &str) -> Result<Vec<u8>, FactorError> {
    BASE64URL_NOPAD
        .decode(input.trim_end_matches('=').as_bytes())
        .map_err(|_| FactorError::Invalid(format!("{field} must be base64url")))
}

fn factor_id(rng: &SystemRandom) -> Result<String, FactorError> {
    Ok(format!("FA{}", hex(&random_bytes::<16>(rng)?)))
}

/// What a sealed secret is bound to (the additional data of AES-GCM).
fn seal_context(account: &AccountId, user: &UserId, id: &str) -> Vec<u8> {
    format!("otpgate totp|{}|{}|{id}", account.as_str(), user.as_str()).into_bytes()
}

fn channel_of(kind: FactorType) -> PolicyChannel {
    match kind {
        FactorType::Totp => PolicyChannel::Totp,
        FactorType::Webauthn => PolicyChannel::Webauthn,
    }
}

impl FactorService {
    pub fn new(
        store: Arc<dyn FactorStore>,
        directory: Arc<dyn Directory>,
        keys: FactorKeys,
        recovery_key: &[u8],
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
        settings: FactorSettings,
    ) -> Self {
        Self {
            store,
            directory,
            keys,
            recovery: RecoveryHasher::new(recovery_key),
            clock,
            metrics,
            rng: SystemRandom::new(),
            settings,
        }
    }

    pub fn settings(&self) -> &FactorSettings {
        &self.settings
    }

    pub fn store(&self) -> &Arc<dyn FactorStore> {
        &self.store
    }

    async fn allowed(
        &self,
        accounts: &AccountService,
        account: &AccountId,
        kind: FactorType,
    ) -> Result<(), FactorError> {
        let policy = accounts.policy(account).await?;
        if policy.channels.contains(channel_of(kind)) {
            return Ok(());
        }
        Err(AccountError::Refused(Refusal::new(
            rule::THE_POLICY_DOES_NOT_ALLOW_THIS_FACTOR,
            format!(
                "the account's policy does not allow {} (channels)",
                kind.as_str()
            ),
        ))
        .into())
    }

    // ---- enrolment ----

    /// Draws a 160-bit secret, seals it, and keeps the factor pending until `confirm_totp`.
    pub async fn enrol_totp(
        &self,
        accounts: &AccountService,
        account: &Account,
        user: &UserId,
        algorithm: Option<Algorithm>,
        digits: Option<u8>,
    ) -> Result<TotpEnrolment, FactorError> {
        self.allowed(accounts, &account.id, FactorType::Totp)
            .await?;
        let found = accounts.user(&account.id, user).await?;
        // Refused before a secret is shown, not after the user scanned it (issue 13 §8).
        accounts.factor_room(&account.id, &found)?;
        let params = TotpParams {
            algorithm: algorithm.unwrap_or(self.settings.totp_algorithm),
            digits: digits.unwrap_or(self.settings.totp_digits),
            period: 30,
        };
        let id = factor_id(&self.rng)?;
        let secret = random_bytes::<{ totp::SECRET_BYTES }>(&self.rng)?;
        let sealed = self
            .keys
            .seal(&self.rng, &seal_context(&account.id, user, &id), &secret)?;
        let now = self.clock.now_ms();
        let record = FactorRecord {
            id: id.clone(),
            kind: FactorType::Totp,
            status: FactorStatus::Pending,
            created_ms: now,
            totp: Some(TotpSecret { sealed, params }),
            webauthn: None,
        };
        let ttl = self.settings.pending_ttl.as_millis() as u64;
        self.store
            .put(&account.id, user, &record, Some(ttl))
            .await?;
        let issuer = if self.settings.totp_issuer.is_empty() {
            account.name.as_str()
        } else {
            self.settings.totp_issuer.as_str()
        };
        let secret_base32 = BASE32_NOPAD.encode(&secret);
        let uri = totp::otpauth_uri(issuer, user.as_str(), &secret_base32, &params);
        let qr_svg = totp::qr_svg(&uri).map_err(|error| {
            tracing::error!(%error, "QR code");
            FactorError::Invalid("the otpauth URI is too long for a QR code".into())
        })?;
        self.metrics.factor_enrolment("totp", "started");
        Ok(TotpEnrolment {
            factor_id: id,
            secret: secret_base32,
            uri,
            qr_svg,
            algorithm: params.algorithm.as_str(),
            digits: params.digits,
            period: params.period,
            expires_ms: now + ttl,
        })
    }

    /// The first valid code activates the factor (its step is used up like any other), adds it
    /// to the user's factors, and, for the user's first factor, makes recovery codes.
    pub async fn confirm_totp(
        &self,
        accounts: &AccountService,
        account: &AccountId,
        who: Who,
        user_id: &UserId,
        id: &str,
        code: &str,
    ) -> Result<Result<Confirmed, ChallengeResult>, FactorError> {
        let user = accounts.user(account, user_id).await?;
        if user.factors.iter().any(|factor| factor.id == id) {
            return Err(FactorError::Conflict(format!(
                "factor '{id}' is already confirmed"
            )));
        }
        let record = self
            .store
            .get(account, user_id, id)
            .await?
            .filter(|record| record.kind == FactorType::Totp)
            .ok_or(FactorError::NotFound(
                "no such pending factor for this user (it may have expired: enrol again)",
            ))?;
        let result = self
            .totp_attempt(account, &who, user_id, &record, code, true)
            .await?;
        if !result.valid {
            return Ok(Err(result));
        }
        self.metrics.factor_enrolment("totp", "confirmed");
        self.activated(accounts, account, who, user, id, FactorType::Totp)
            .await
            .map(Ok)
    }

    async fn activated(
        &self,
        accounts: &AccountService,
        account: &AccountId,
        who: Who,
        user: User,
        id: &str,
        kind: FactorType,
    ) -> Result<Confirmed, FactorError> {
        let first = user.factors.is_empty();
        let factor = Factor {
            kind,
            id: id.to_owned(),
        };
        let user = accounts
            .add_factor(account, who.clone(), &user.id, factor.clone())
            .await?;
        let recovery_codes = if first {
            Some(self.new_recovery_codes(account, &user.id).await?)
        } else {
            None
        };
        Ok(Confirmed {
            factor,
            user,
            recovery_codes,
        })
    }

    /// Opens a registration ceremony: creation options with a fresh 32-byte challenge, whose
    /// state the store keeps for `ceremony_ttl` and gives back once.
    pub async fn enrol_webauthn(
        &self,
        accounts: &AccountService,
        account: &Account,
        user_id: &UserId,
    ) -> Result<KeyEnrolment, FactorError> {
        self.allowed(accounts, &account.id, FactorType::Webauthn)
            .await?;
        let user = accounts.user(&account.id, user_id).await?;
        accounts.factor_room(&account.id, &user)?;
        let id = factor_id(&self.rng)?;
        let challenge = random_bytes::<32>(&self.rng)?;
        let ttl = self.settings.ceremony_ttl.as_millis() as u64;
        let state = serde_json::to_string(&CeremonyState {
            kind: "register".into(),
            factor: Some(id.clone()),
            expires_ms: self.clock.now_ms() + ttl,
        })
        .map_err(|_| FactorError::Random)?;
        self.store
            .put_ceremony(&account.id, user_id, &challenge, &state, ttl)
            .await?;
        let exclude: Vec<Value> = self
            .credentials(&account.id, &user)
            .await?
            .iter()
            .map(|(_, credential)| {
                json!({"type": "public-key", "id": BASE64URL_NOPAD.encode(&credential.credential_id)})
            })
            .collect();
        let rp = &self.settings.relying_party;
        let handle = digest(
            &SHA256,
            format!("otpgate user|{}|{}", account.id.as_str(), user_id.as_str()).as_bytes(),
        );
        let options = json!({
            "rp": {"id": rp.id, "name": rp.name},
            "user": {
                "id": BASE64URL_NOPAD.encode(&handle.as_ref()[..16]),
                "name": user_id.as_str(),
                "displayName": user_id.as_str(),
            },
            "challenge": BASE64URL_NOPAD.encode(&challenge),
            "pubKeyCredParams": [
                {"type": "public-key", "alg": webauthn::COSE_ES256},
                {"type": "public-key", "alg": webauthn::COSE_EDDSA},
            ],
            "timeout": ttl,
            "attestation": "none",
            "excludeCredentials": exclude,
            "authenticatorSelection": {
                "residentKey": "discouraged",
                "userVerification": if rp.require_user_verification { "required" } else { "discouraged" },
            },
        });
        self.metrics.factor_enrolment("webauthn", "started");
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
        accounts: &AccountService,
        account: &AccountId,
        who: Who,
        user_id: &UserId,
        id: &str,
        credential: &CredentialJson,
    ) -> Result<Result<Confirmed, &'static str>, FactorError> {
        let user = accounts.user(account, user_id).await?;
        let client_data = b64(&credential.response.client_data_json, "clientDataJSON")?;
        let attestation = b64(
            credential
                .response
                .attestation_object
                .as_deref()
                .ok_or_else(|| {
                    FactorError::Invalid("credential.response.attestationObject is missing".into())
                })?,
            "attestationObject",
        )?;
        let refuse = |reason: &'static str| {
            self.metrics.factor_enrolment("webauthn", reason);
            Ok(Err(reason))
        };
        let Ok(challenge) = webauthn::challenge_of(&client_data) else {
            return refuse("malformed");
        };
        let state = self
            .store
            .take_ceremony(account, user_id, &challenge)
            .await?;
        let Some(state) = state.and_then(|s| serde_json::from_str::<CeremonyState>(&s).ok()) else {
            return refuse("unknown_challenge");
        };
        if state.kind != "register"
            || state.factor.as_deref() != Some(id)
            || self.clock.now_ms() >= state.expires_ms
        {
            return refuse("unknown_challenge");
        }
        let registered = match webauthn::verify_registration(
            &self.settings.relying_party,
            &challenge,
            &client_data,
            &attestation,
        ) {
            Ok(registered) => registered,
            Err(refusal) => return refuse(refusal.as_str()),
        };
        if self
            .credentials(account, &user)
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
            kind: FactorType::Webauthn,
            status: FactorStatus::Active,
            created_ms: self.clock.now_ms(),
            totp: None,
            webauthn: Some(KeyCredential {
                credential_id: registered.credential_id,
                key: registered.key,
                counter: registered.counter,
            }),
        };
        self.store.put(account, user_id, &record, None).await?;
        self.metrics.factor_enrolment("webauthn", "confirmed");
        self.activated(accounts, account, who, user, id, FactorType::Webauthn)
            .await
            .map(Ok)
    }

    /// The user's listed security keys with their records.
    async fn credentials(
        &self,
        account: &AccountId,
        user: &User,
    ) -> Result<Vec<(String, KeyCredential)>, FactorError> {
        let mut found = Vec::new();
        for factor in user
            .factors
            .iter()
            .filter(|f| f.kind == FactorType::Webauthn)
        {
            if let Some(record) = self.store.get(account, &user.id, &factor.id).await? {
                if let Some(credential) = record.webauthn {
                    found.push((factor.id.clone(), credential));
                }
            }
        }
        Ok(found)
    }

    // ---- challenges ----

    /// Checks a TOTP code against one of the user's confirmed TOTP factors (`factor_id`, or
    /// the only one).
    pub async fn challenge_totp(
        &self,
        accounts: &AccountService,
        account: &AccountId,
        who: Who,
        user_id: &UserId,
        factor: Option<&str>,
        code: &str,
    ) -> Result<ChallengeResult, FactorError> {
        self.allowed(accounts, account, FactorType::Totp).await?;
        let user = accounts.user(account, user_id).await?;
        let listed: Vec<&Factor> = user
            .factors
            .iter()
            .filter(|f| f.kind == FactorType::Totp)
            .collect();
        let id = match (factor, listed.as_slice()) {
            (Some(id), _) => listed
                .iter()
                .find(|f| f.id == id)
                .map(|f| f.id.clone())
                .ok_or(FactorError::NotFound("no such TOTP factor for this user"))?,
            (None, [only]) => only.id.clone(),
            (None, []) => return Err(FactorError::NotFound("this user has no TOTP factor")),
            (None, _) => {
                return Err(FactorError::Invalid(
                    "this user has several TOTP factors: give factor_id".into(),
                ))
            }
        };
        let record = self
            .store
            .get(account, user_id, &id)
            .await?
            .ok_or(FactorError::NotFound("no such TOTP factor for this user"))?;
        let mut result = self
            .totp_attempt(account, &who, user_id, &record, code, false)
            .await?;
        if result.valid {
            result.passed = Some(self.pass(account, user_id, "totp", &id).await?);
        }
        Ok(result)
    }

    /// Derives the candidate steps in process (the secret never leaves it) and lets the store
    /// decide atomically: lock-out, failure count, last used step.
    async fn totp_attempt(
        &self,
        account: &AccountId,
        who: &Who,
        user: &UserId,
        record: &FactorRecord,
        code: &str,
        activate: bool,
    ) -> Result<ChallengeResult, FactorError> {
        let secret_record = record
            .totp
            .as_ref()
            .ok_or_else(|| StoreError::Corrupt("a TOTP factor without a secret".into()))?;
        let secret = self.keys.open(
            &seal_context(account, user, &record.id),
            &secret_record.sealed,
        )?;
        let now = self.clock.now_ms();
        let matched = Totp::new(&secret, secret_record.params).matching_step(code, now);
        let outcome = self
            .store
            .totp_attempt(
                account,
                user,
                &record.id,
                matched,
                activate,
                now,
                &self.settings.limits,
            )
            .await?;
        let mut result = ChallengeResult {
            kind: "totp",
            factor_id: Some(record.id.clone()),
            ..ChallengeResult::default()
        };
        let label = match outcome {
            AttemptOutcome::Accepted => {
                result.valid = true;
                "accepted"
            }
            AttemptOutcome::Replayed => {
                result.reason = Some("code_already_used");
                // ASVS 2.8.5: a reused code is logged, for the user to be told.
                let entry = AuditEntry::new(
                    now,
                    who.clone(),
                    action::CODE_REUSED,
                    format!("user:{user}"),
                    json!({"factor": record.id}),
                );
                if let Err(error) = self.audit(account, &entry).await {
                    tracing::warn!(%error, "audit entry for a reused code not written");
                }
                tracing::warn!(factor = %record.id, "a TOTP code was presented again");
                "replayed"
            }
            AttemptOutcome::Wrong {
                attempts_left,
                wait_ms,
            } => {
                result.reason = Some("wrong_code");
                if wait_ms > 0 {
                    result.attempts_left = Some(0);
                    result.retry_after_ms = Some(wait_ms);
                } else {
                    result.attempts_left = Some(attempts_left);
                }
                "wrong"
            }
            AttemptOutcome::Locked { retry_after_ms } => {
                self.metrics.factor_challenge("totp", "locked");
                return Err(FactorError::Limited { retry_after_ms });
            }
            AttemptOutcome::NotFound => {
                return Err(FactorError::NotFound("no such TOTP factor for this user"))
            }
            AttemptOutcome::NotActive => {
                result.reason = Some("factor_not_confirmed");
                "not_confirmed"
            }
        };
        if !activate {
            self.metrics.factor_challenge("totp", label);
        }
        Ok(result)
    }

    /// Opens an authentication ceremony: request options for the user's registered keys.
    pub async fn begin_webauthn(
        &self,
        accounts: &AccountService,
        account: &AccountId,
        user_id: &UserId,
    ) -> Result<(Value, u64), FactorError> {
        self.allowed(accounts, account, FactorType::Webauthn)
            .await?;
        let user = accounts.user(account, user_id).await?;
        let credentials = self.credentials(account, &user).await?;
        if credentials.is_empty() {
            return Err(FactorError::NotFound("this user has no security key"));
        }
        let challenge = random_bytes::<32>(&self.rng)?;
        let ttl = self.settings.ceremony_ttl.as_millis() as u64;
        let state = serde_json::to_string(&CeremonyState {
            kind: "authenticate".into(),
            factor: None,
            expires_ms: self.clock.now_ms() + ttl,
        })
        .map_err(|_| FactorError::Random)?;
        self.store
            .put_ceremony(account, user_id, &challenge, &state, ttl)
            .await?;
        let rp = &self.settings.relying_party;
        let allow: Vec<Value> = credentials
            .iter()
            .map(|(_, credential)| {
                json!({"type": "public-key", "id": BASE64URL_NOPAD.encode(&credential.credential_id)})
            })
            .collect();
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
        accounts: &AccountService,
        account: &AccountId,
        who: Who,
        user_id: &UserId,
        assertion: &CredentialJson,
    ) -> Result<ChallengeResult, FactorError> {
        self.allowed(accounts, account, FactorType::Webauthn)
            .await?;
        let user = accounts.user(account, user_id).await?;
        let client_data = b64(&assertion.response.client_data_json, "clientDataJSON")?;
        let authenticator_data = b64(
            assertion
                .response
                .authenticator_data
                .as_deref()
                .ok_or_else(|| {
                    FactorError::Invalid("assertion.response.authenticatorData is missing".into())
                })?,
            "authenticatorData",
        )?;
        let signature = b64(
            assertion.response.signature.as_deref().ok_or_else(|| {
                FactorError::Invalid("assertion.response.signature is missing".into())
            })?,
            "signature",
        )?;
        let credential_id = b64(&assertion.id, "assertion.id")?;
        let mut result = ChallengeResult {
            kind: "webauthn",
            ..ChallengeResult::default()
        };
        let refuse = |mut result: ChallengeResult, reason: &'static str| {
            self.metrics.factor_challenge("webauthn", reason);
            result.reason = Some(reason);
            Ok(result)
        };
        let Ok(challenge) = webauthn::challenge_of(&client_data) else {
            return refuse(result, "malformed");
        };
        let state = self
            .store
            .take_ceremony(account, user_id, &challenge)
            .await?
            .and_then(|s| serde_json::from_str::<CeremonyState>(&s).ok());
        let now = self.clock.now_ms();
        if state.is_none_or(|state| state.kind != "authenticate" || now >= state.expires_ms) {
            return refuse(result, "unknown_challenge");
        }
        let Some((id, credential)) = self
            .credentials(account, &user)
            .await?
            .into_iter()
            .find(|(_, known)| known.credential_id == credential_id)
        else {
            return refuse(result, "unknown_credential");
        };
        result.factor_id = Some(id.clone());
        let asserted = match webauthn::verify_assertion(
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
            .advance_counter(account, user_id, &id, asserted.counter)
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

    /// Uses one recovery code.
    pub async fn challenge_recovery(
        &self,
        accounts: &AccountService,
        account: &AccountId,
        who: Who,
        user_id: &UserId,
        code: &str,
    ) -> Result<ChallengeResult, FactorError> {
        accounts.user(account, user_id).await?;
        let mut result = ChallengeResult {
            kind: "recovery_code",
            ..ChallengeResult::default()
        };
        let normalised = recovery::normalise(code).ok_or_else(|| {
            FactorError::Invalid("code must be a recovery code such as abcd-efgh-jkmn".into())
        })?;
        let digest = self.recovery.digest(account, user_id, &normalised);
        let now = self.clock.now_ms();
        match self
            .store
            .use_recovery(account, user_id, &digest, now, &self.settings.limits)
            .await?
        {
            RecoveryOutcome::Used { remaining } => {
                let entry = AuditEntry::new(
                    now,
                    who,
                    action::RECOVERY_CODE_USED,
                    format!("user:{user_id}"),
                    json!({"remaining": remaining}),
                );
                self.audit(account, &entry).await?;
                self.metrics.factor_challenge("recovery_code", "accepted");
                result.valid = true;
                result.recovery_codes_left = Some(remaining);
                result.passed = Some(
                    self.pass(account, user_id, "recovery_code", "recovery")
                        .await?,
                );
            }
            RecoveryOutcome::Wrong {
                attempts_left,
                wait_ms,
            } => {
                self.metrics.factor_challenge("recovery_code", "wrong");
                result.reason = Some("wrong_code");
                result.attempts_left = Some(if wait_ms > 0 { 0 } else { attempts_left });
                result.retry_after_ms = (wait_ms > 0).then_some(wait_ms);
            }
            RecoveryOutcome::Locked { retry_after_ms } => {
                self.metrics.factor_challenge("recovery_code", "locked");
                return Err(FactorError::Limited { retry_after_ms });
            }
        }
        Ok(result)
    }

    async fn pass(
        &self,
        account: &AccountId,
        user: &UserId,
        kind: &str,
        factor: &str,
    ) -> Result<PassedChallenge, FactorError> {
        let ttl = self.settings.proof_ttl.as_millis() as u64;
        let passed = PassedChallenge {
            id: format!("CH{}", hex(&random_bytes::<16>(&self.rng)?)),
            user: user.clone(),
            kind: kind.to_owned(),
            factor: factor.to_owned(),
            expires_ms: self.clock.now_ms() + ttl,
        };
        self.store.put_passed(account, &passed, ttl).await?;
        Ok(passed)
    }

    /// A passed challenge of this account, while it may still be presented.
    pub async fn passed(
        &self,
        account: &AccountId,
        id: &str,
    ) -> Result<Option<PassedChallenge>, FactorError> {
        if !crate::account::is_sid(id, "CH") {
            return Ok(None);
        }
        Ok(self
            .store
            .passed(account, id)
            .await?
            .filter(|passed| self.clock.now_ms() < passed.expires_ms))
    }

    // ---- recovery codes ----

    async fn new_recovery_codes(
        &self,
        account: &AccountId,
        user: &UserId,
    ) -> Result<Vec<String>, FactorError> {
        let mut codes = Vec::with_capacity(recovery::CODES_PER_SET);
        let mut digests = Vec::with_capacity(recovery::CODES_PER_SET);
        while codes.len() < recovery::CODES_PER_SET {
            let code = recovery::generate(&self.rng)?;
            let digest = self.recovery.digest(account, user, &code.replace('-', ""));
            if !digests.contains(&digest) {
                digests.push(digest);
                codes.push(code);
            }
        }
        self.store.replace_recovery(account, user, &digests).await?;
        Ok(codes)
    }

    /// A new set of ten codes; the old set stops working in the same store step.
    pub async fn regenerate_recovery_codes(
        &self,
        accounts: &AccountService,
        account: &AccountId,
        who: Who,
        user_id: &UserId,
    ) -> Result<Vec<String>, FactorError> {
        let user = accounts.user(account, user_id).await?;
        if user.factors.is_empty() {
            return Err(FactorError::Conflict(
                "recovery codes back up an app or a key: enrol one first".into(),
            ));
        }
        let codes = self.new_recovery_codes(account, user_id).await?;
        let entry = AuditEntry::new(
            self.clock.now_ms(),
            who,
            action::RECOVERY_CODES_REGENERATED,
            format!("user:{user_id}"),
            json!({"count": codes.len()}),
        );
        self.audit(account, &entry).await?;
        Ok(codes)
    }

    // ---- removal ----

    /// Removes a factor: first from the user (audited, revoking the user's trusted devices in
    /// the same directory step), then its material. Should the second step fail, the record
    /// left behind is unusable: challenges need the factor listed on the user.
    pub async fn remove(
        &self,
        accounts: &AccountService,
        account: &AccountId,
        actor: &crate::account::rules::Actor,
        user_id: &UserId,
        id: &str,
    ) -> Result<User, FactorError> {
        let user = accounts.remove_factor(account, actor, user_id, id).await?;
        self.store.delete(account, user_id, id).await?;
        if user.factors.is_empty() {
            self.store.delete_recovery(account, user_id).await?;
        }
        Ok(user)
    }

    async fn audit(&self, account: &AccountId, entry: &AuditEntry) -> Result<(), StoreError> {
        // The account's trail lives in the directory.
        self.directory.append_audit(account, entry).await
    }
}
