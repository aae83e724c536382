//! `ConsoleService`: invitations, the console's passkey ceremonies (registration through an
//! invitation, usernameless sign-in) and sessions with their idle and absolute limits. The
//! WebAuthn checks are the factors module's (`factors::webauthn::checks`); what the console
//! stores is its own (`store.rs`), so signing in to the console never changes a user's login
//! factors and the account's policy on security keys never locks anyone out of the console.

use std::sync::Arc;

use data_encoding::{BASE64URL_NOPAD, HEXLOWER};
use ring::digest::{digest, SHA256};
use ring::rand::SystemRandom;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::store::{
    Bounds, ConsoleCredential, ConsoleStore, Invitation, Principal, Room, SessionRecord,
};
use super::ConsoleSettings;
use crate::account::audit::{AuditEntry, Who};
use crate::account::service::{AccountError, AccountService};
use crate::account::user::UserId;
use crate::account::AccountId;
use crate::clock::Clock;
use crate::factors::webauthn::{
    challenge_of, verify_assertion, verify_registration, CredentialKey, RelyingParty, COSE_EDDSA,
    COSE_ES256,
};
use crate::factors::CredentialJson;
use crate::random::random_bytes;
use crate::store::StoreError;

/// The audit action of a minted console invitation.
pub const INVITATION_MINTED: &str = "console.invitation_minted";

/// How long a person's last console sign-in is remembered (the Users page shows "Never" after).
pub const LAST_SIGN_IN_KEPT_MS: u64 = 400 * 24 * 3_600_000;

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// An invitation, session or credential that does not exist (or no longer).
    #[error("{0}")]
    NotFound(&'static str),
    /// A ceremony that did not pass, with its reason (`wrong_origin`, `user_not_verified`…).
    #[error("refused: {0}")]
    Refused(&'static str),
    #[error("{0}")]
    Invalid(String),
    /// A bound was reached.
    #[error("{0}")]
    Full(&'static str),
    #[error(transparent)]
    Account(#[from] AccountError),
    #[error("the random generator failed")]
    Random,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<ring::error::Unspecified> for ConsoleError {
    fn from(_: ring::error::Unspecified) -> Self {
        ConsoleError::Random
    }
}

/// A session as the pages see it: the principal, the CSRF token, and its id's digest (to sign
/// it out).
#[derive(Debug, Clone)]
pub struct Session {
    pub digest: [u8; 32],
    pub record: SessionRecord,
}

/// A new session: the cookie's value (shown to the browser once) and the session.
pub struct Opened {
    pub token: String,
    pub session: Session,
}

#[derive(Serialize, Deserialize)]
struct CeremonyState {
    /// `register` (through an invitation) or `sign_in`.
    kind: String,
    /// The invitation's digest (hex), for a registration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    invitation: Option<String>,
    expires_ms: u64,
}

pub struct ConsoleService {
    store: Arc<dyn ConsoleStore>,
    accounts: Arc<AccountService>,
    clock: Arc<dyn Clock>,
    rng: SystemRandom,
    rp: RelyingParty,
    settings: ConsoleSettings,
    ceremony_ttl_ms: u64,
}

/// The SHA-256 digest under which a token is stored.
pub fn token_digest(token: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, token.as_bytes()).as_ref());
    out
}

fn b64(input: &str, field: &str) -> Result<Vec<u8>, ConsoleError> {
    BASE64URL_NOPAD
        .decode(input.trim_end_matches('=').as_bytes())
        .map_err(|_| ConsoleError::Invalid(format!("{field} must be base64url")))
}

impl ConsoleService {
    pub fn new(
        store: Arc<dyn ConsoleStore>,
        accounts: Arc<AccountService>,
        clock: Arc<dyn Clock>,
        mut rp: RelyingParty,
        settings: ConsoleSettings,
        ceremony_ttl_ms: u64,
    ) -> Self {
        // A console passkey signs its holder in alone: the key must verify the person.
        rp.require_user_verification = true;
        Self {
            store,
            accounts,
            clock,
            rng: SystemRandom::new(),
            rp,
            settings,
            ceremony_ttl_ms,
        }
    }

    pub fn settings(&self) -> &ConsoleSettings {
        &self.settings
    }

    pub fn store(&self) -> &Arc<dyn ConsoleStore> {
        &self.store
    }

    pub fn accounts(&self) -> &Arc<AccountService> {
        &self.accounts
    }

    pub fn relying_party(&self) -> &RelyingParty {
        &self.rp
    }

    fn token(&self) -> Result<String, ConsoleError> {
        Ok(BASE64URL_NOPAD.encode(&random_bytes::<32>(&self.rng)?))
    }

    fn bounds(&self) -> Bounds {
        Bounds {
            per_principal: self.settings.max_per_user,
            total: self.settings.max_total,
        }
    }

    /// The link an invitation token opens.
    pub fn invitation_url(&self, token: &str) -> String {
        format!(
            "{}/console/invitations/{token}",
            self.settings.base_url(&self.rp).trim_end_matches('/')
        )
    }

    /// Mints an invitation for `principal` (a user must exist; the account's audit trail
    /// records who invited them); answers the link's token once and its expiry.
    pub async fn invite(
        &self,
        principal: &Principal,
        who: Who,
    ) -> Result<(String, u64), ConsoleError> {
        if let Principal::User { account, user } = principal {
            self.accounts.user(account, user).await?;
        }
        let token = self.token()?;
        let ttl = self.settings.invitation_ttl_hours * 3_600_000;
        let expires_ms = self.clock.now_ms() + ttl;
        let invitation = Invitation {
            principal: principal.clone(),
            expires_ms,
        };
        match self
            .store
            .put_invitation(&token_digest(&token), &invitation, ttl, self.bounds())
            .await?
        {
            Room::Stored => {
                if let Principal::User { account, user } = principal {
                    let entry = AuditEntry::new(
                        self.clock.now_ms(),
                        who,
                        INVITATION_MINTED,
                        format!("user:{user}"),
                        json!({"expires_at": crate::clock::rfc3339(expires_ms)}),
                    );
                    self.accounts
                        .directory()
                        .append_audit(account, &entry)
                        .await?;
                }
                Ok((token, expires_ms))
            }
            Room::Full => Err(ConsoleError::Full(
                "too many open invitations for this user; wait for one to expire",
            )),
        }
    }

    /// An invitation still usable, without using it.
    pub async fn invitation(&self, token: &str) -> Result<Option<Invitation>, ConsoleError> {
        let now = self.clock.now_ms();
        Ok(self
            .store
            .invitation(&token_digest(token))
            .await?
            .filter(|invitation| now < invitation.expires_ms))
    }

    async fn open_ceremony(
        &self,
        kind: &str,
        invitation: Option<String>,
    ) -> Result<Vec<u8>, ConsoleError> {
        let challenge = random_bytes::<32>(&self.rng)?.to_vec();
        let state = CeremonyState {
            kind: kind.to_owned(),
            invitation,
            expires_ms: self.clock.now_ms() + self.ceremony_ttl_ms,
        };
        let state = serde_json::to_string(&state).map_err(|_| ConsoleError::Random)?;
        match self
            .store
            .put_ceremony(
                &challenge,
                &state,
                self.ceremony_ttl_ms,
                self.settings.max_total,
            )
            .await?
        {
            Room::Stored => Ok(challenge),
            Room::Full => Err(ConsoleError::Full("too many ceremonies open; retry later")),
        }
    }

    async fn take_ceremony(
        &self,
        client_data: &[u8],
        kind: &str,
    ) -> Result<(Vec<u8>, CeremonyState), ConsoleError> {
        let challenge =
            challenge_of(client_data).map_err(|refusal| ConsoleError::Refused(refusal.as_str()))?;
        let state = self
            .store
            .take_ceremony(&challenge)
            .await?
            .and_then(|state| serde_json::from_str::<CeremonyState>(&state).ok())
            .filter(|state| state.kind == kind && self.clock.now_ms() < state.expires_ms)
            .ok_or(ConsoleError::Refused("unknown_challenge"))?;
        Ok((challenge, state))
    }

    /// The WebAuthn user handle of a console principal: derived, and distinct from the login
    /// factors' handle of the same user, so registering a console passkey never replaces a
    /// login passkey on the same authenticator.
    fn user_handle(principal: &Principal) -> Vec<u8> {
        let label = format!("otpgate-console:{}", principal.encode());
        digest(&SHA256, label.as_bytes()).as_ref()[..16].to_vec()
    }

    /// Creation options for registering a console passkey through an invitation (resident key
    /// and user verification required). The invitation is used only when the passkey is.
    pub async fn begin_registration(&self, token: &str) -> Result<Value, ConsoleError> {
        let invitation = self.invitation(token).await?.ok_or(ConsoleError::NotFound(
            "this invitation is unknown, used or expired",
        ))?;
        let digest = HEXLOWER.encode(&token_digest(token));
        let challenge = self.open_ceremony("register", Some(digest)).await?;
        let name = match &invitation.principal {
            Principal::Root => "operator".to_owned(),
            Principal::User { account, user } => format!("{user} ({account})"),
        };
        Ok(json!({
            "rp": {"id": self.rp.id, "name": format!("{} console", self.rp.name)},
            "user": {
                "id": BASE64URL_NOPAD.encode(&Self::user_handle(&invitation.principal)),
                "name": name,
                "displayName": name,
            },
            "challenge": BASE64URL_NOPAD.encode(&challenge),
            "pubKeyCredParams": [
                {"type": "public-key", "alg": COSE_ES256},
                {"type": "public-key", "alg": COSE_EDDSA},
            ],
            "timeout": self.ceremony_ttl_ms,
            "attestation": "none",
            "authenticatorSelection": {
                "residentKey": "required",
                "requireResidentKey": true,
                "userVerification": "required",
            },
        }))
    }

    /// Finishes a registration: the ceremony is taken once, the attestation checked (user
    /// verified), the invitation used (once), the passkey stored, and a session opened.
    pub async fn finish_registration(
        &self,
        token: &str,
        credential: &CredentialJson,
    ) -> Result<Opened, ConsoleError> {
        let client_data = b64(&credential.response.client_data_json, "clientDataJSON")?;
        let attestation = b64(
            credential
                .response
                .attestation_object
                .as_deref()
                .ok_or_else(|| ConsoleError::Invalid("attestationObject is missing".into()))?,
            "attestationObject",
        )?;
        let (challenge, state) = self.take_ceremony(&client_data, "register").await?;
        let digest = token_digest(token);
        if state.invitation.as_deref() != Some(HEXLOWER.encode(&digest).as_str()) {
            return Err(ConsoleError::Refused("unknown_challenge"));
        }
        let registered = verify_registration(&self.rp, &challenge, &client_data, &attestation)
            .map_err(|refusal| ConsoleError::Refused(refusal.as_str()))?;
        if !registered.user_verified {
            return Err(ConsoleError::Refused("user_not_verified"));
        }
        let invitation = self
            .store
            .take_invitation(&digest)
            .await?
            .filter(|invitation| self.clock.now_ms() < invitation.expires_ms)
            .ok_or(ConsoleError::NotFound(
                "this invitation is unknown, used or expired",
            ))?;
        let stored = ConsoleCredential {
            id: BASE64URL_NOPAD.encode(&registered.credential_id),
            principal: invitation.principal.clone(),
            alg: registered.key.alg,
            key: BASE64URL_NOPAD.encode(&registered.key.bytes),
            counter: registered.counter,
            created_ms: self.clock.now_ms(),
        };
        if self.store.put_credential(&stored, self.bounds()).await? == Room::Full {
            return Err(ConsoleError::Full(
                "too many console passkeys for this user",
            ));
        }
        self.open_session(invitation.principal).await
    }

    /// Request options for a usernameless sign-in: no `allowCredentials`, user verification
    /// required.
    pub async fn begin_sign_in(&self) -> Result<Value, ConsoleError> {
        let challenge = self.open_ceremony("sign_in", None).await?;
        Ok(json!({
            "challenge": BASE64URL_NOPAD.encode(&challenge),
            "rpId": self.rp.id,
            "timeout": self.ceremony_ttl_ms,
            "userVerification": "required",
        }))
    }

    /// Finishes a sign-in: the ceremony taken once, the credential found, the assertion
    /// verified with user verification, the counter advanced, and a session opened for a
    /// principal that still exists.
    pub async fn finish_sign_in(
        &self,
        credential: &CredentialJson,
    ) -> Result<Opened, ConsoleError> {
        let response = &credential.response;
        let client_data = b64(&response.client_data_json, "clientDataJSON")?;
        let missing = |field: &str| ConsoleError::Invalid(format!("{field} is missing"));
        let authenticator_data = b64(
            response
                .authenticator_data
                .as_deref()
                .ok_or_else(|| missing("authenticatorData"))?,
            "authenticatorData",
        )?;
        let signature = b64(
            response
                .signature
                .as_deref()
                .ok_or_else(|| missing("signature"))?,
            "signature",
        )?;
        let id = BASE64URL_NOPAD.encode(&b64(&credential.id, "id")?);
        let (challenge, _) = self.take_ceremony(&client_data, "sign_in").await?;
        let stored = self
            .store
            .credential(&id)
            .await?
            .ok_or(ConsoleError::Refused("unknown_credential"))?;
        let key = CredentialKey {
            alg: stored.alg,
            bytes: b64(&stored.key, "key")?,
        };
        let asserted = verify_assertion(
            &self.rp,
            &challenge,
            &client_data,
            &authenticator_data,
            &signature,
            &key,
        )
        .map_err(|refusal| ConsoleError::Refused(refusal.as_str()))?;
        if !asserted.user_verified {
            return Err(ConsoleError::Refused("user_not_verified"));
        }
        if !self.store.advance_counter(&id, asserted.counter).await? {
            tracing::warn!("console passkey counter went backwards: possible clone");
            return Err(ConsoleError::Refused("counter_regressed"));
        }
        if let Principal::User { account, user } = &stored.principal {
            // A removed user's passkey signs no one in.
            match self.accounts.user(account, user).await {
                Ok(_) => {}
                Err(AccountError::NotFound(_)) => {
                    return Err(ConsoleError::Refused("unknown_credential"))
                }
                Err(error) => return Err(error.into()),
            }
        }
        self.open_session(stored.principal).await
    }

    async fn open_session(&self, principal: Principal) -> Result<Opened, ConsoleError> {
        let token = self.token()?;
        let now = self.clock.now_ms();
        let record = SessionRecord {
            principal,
            created_ms: now,
            last_seen_ms: now,
            csrf: self.token()?,
        };
        let digest = token_digest(&token);
        let room = self
            .store
            .put_session(&digest, &record, self.ttl_at(&record, now), self.bounds())
            .await?;
        if room == Room::Full {
            return Err(ConsoleError::Full(
                "too many open sessions; sign out everywhere first",
            ));
        }
        // The Users page's "Last sign-in"; a full record store skips it (it is informative).
        self.store
            .record_sign_in(
                &record.principal,
                now,
                LAST_SIGN_IN_KEPT_MS,
                self.settings.max_total,
            )
            .await?;
        Ok(Opened {
            token,
            session: Session { digest, record },
        })
    }

    /// How long the store keeps a session touched at `now`: until the idle limit, never past
    /// the absolute one.
    fn ttl_at(&self, record: &SessionRecord, now: u64) -> u64 {
        let idle = self.settings.idle_minutes * 60_000;
        let absolute = record.created_ms + self.settings.absolute_hours * 3_600_000;
        idle.min(absolute.saturating_sub(now)).max(1)
    }

    /// The live session a cookie names, touched (its idle limit starts again); `None` for an
    /// unknown, signed-out, idle or too old one.
    pub async fn session(&self, token: &str) -> Result<Option<Session>, ConsoleError> {
        if token.is_empty() || token.len() > 64 {
            return Ok(None);
        }
        let digest = token_digest(token);
        let Some(mut record) = self.store.session(&digest).await? else {
            return Ok(None);
        };
        let now = self.clock.now_ms();
        let idle = now.saturating_sub(record.last_seen_ms) >= self.settings.idle_minutes * 60_000;
        let old = now.saturating_sub(record.created_ms) >= self.settings.absolute_hours * 3_600_000;
        if idle || old {
            self.store.delete_session(&digest).await?;
            return Ok(None);
        }
        self.store
            .touch_session(&digest, now, self.ttl_at(&record, now))
            .await?;
        record.last_seen_ms = now;
        Ok(Some(Session { digest, record }))
    }

    pub async fn sign_out(&self, session: &Session) -> Result<(), ConsoleError> {
        Ok(self.store.delete_session(&session.digest).await?)
    }

    /// Ends every session of the signed-in principal, on every instance (they share the store).
    pub async fn sign_out_everywhere(&self, session: &Session) -> Result<usize, ConsoleError> {
        Ok(self
            .store
            .delete_sessions_of(&session.record.principal)
            .await?)
    }

    /// When each user last signed in to the console, in the order given.
    pub async fn last_sign_ins(
        &self,
        account: &AccountId,
        users: &[UserId],
    ) -> Result<Vec<Option<u64>>, ConsoleError> {
        let principals: Vec<Principal> = users
            .iter()
            .map(|user| Principal::User {
                account: account.clone(),
                user: user.clone(),
            })
            .collect();
        Ok(self.store.last_sign_ins(&principals).await?)
    }

    /// Whether the operator has a console passkey yet (the gateway mints a first root
    /// invitation at start while not).
    pub async fn operator_enrolled(&self) -> Result<bool, ConsoleError> {
        Ok(self.store.has_root_credential().await?)
    }
}
