//! Usernameless sign-in with passkeys (issue 18): request options without `allowCredentials`
//! (the browser offers the user's discoverable credentials, also as autofill), then the
//! assertion, whose user handle names the user through the handle index. The challenge is
//! single use, the counter advances atomically and the backup state (BS) is recorded.

use data_encoding::BASE64URL_NOPAD;
use serde_json::{json, Value};

use super::store::{CounterOutcome, KeyCredential, UserRef};
use super::webauthn::{
    b64, challenge_of, descriptors, user_handle, verify_assertion, Assertion, CeremonyState,
    KeyEnrolment,
};
use super::{action, Confirmed, FactorError, FactorService};
use crate::account::audit::{AuditEntry, Who};
use crate::account::user::{FactorType, UserId};
use crate::account::{Account, AccountId};
use crate::random::random_bytes;

/// The kind of a registration's pointer ceremony (`enrol_passkey_by_challenge`).
const REGISTRATION_POINTER: &str = "register_pointer";

/// The answer to a passkey assertion. Refusals are values (`valid: false` with a reason).
#[derive(Debug, Default)]
pub struct PasskeyResult {
    pub valid: bool,
    pub reason: Option<&'static str>,
    pub user: Option<UserId>,
    pub factor_id: Option<String>,
    /// The passed challenge (proof for the login decision and for trusting a device).
    pub passed: Option<super::store::PassedChallenge>,
    /// The credential as it stands after this assertion (counter, BE/BS).
    pub credential: Option<KeyCredential>,
}

impl FactorService {
    /// Opens a usernameless passkey ceremony: request options with a fresh challenge, user
    /// verification required, and no `allowCredentials`.
    pub async fn begin_passkey(&self, account: &AccountId) -> Result<(Value, u64), FactorError> {
        self.begin_passkey_for(account, None, None).await
    }

    /// Opens a passkey ceremony, usernameless (`user` `None`) or bound to `user` (and to one of
    /// their passkeys, `factor`): a bound ceremony lists the user's passkeys in
    /// `allowCredentials`, and its assertion passes only as that user (and that passkey), so an
    /// API that names the user when it asks (Twilio's `identity`) gets that user or nothing.
    pub async fn begin_passkey_for(
        &self,
        account: &AccountId,
        user: Option<&UserId>,
        factor: Option<&str>,
    ) -> Result<(Value, u64), FactorError> {
        self.allowed(account, FactorType::Passkey).await?;
        let rp = &self.settings.relying_party;
        let challenge = random_bytes::<32>(&self.rng)?;
        let mut options = json!({
            "challenge": BASE64URL_NOPAD.encode(&challenge),
            "rpId": rp.id,
            "userVerification": "required",
        });
        if let Some(user_id) = user {
            let user = self.accounts.user(account, user_id).await?;
            let credentials: Vec<_> = self
                .credentials(account, &user, Some(FactorType::Passkey))
                .await?
                .into_iter()
                .filter(|(id, _)| factor.is_none_or(|factor| factor == id))
                .collect();
            if credentials.is_empty() {
                return Err(FactorError::NotFound(match factor {
                    Some(_) => "no such passkey for this user",
                    None => "this user has no passkey",
                }));
            }
            options["allowCredentials"] = Value::Array(descriptors(&credentials));
        }
        let state = CeremonyState {
            kind: "passkey".into(),
            factor: factor.map(str::to_owned),
            passkey: false,
            user: user.map(|user| user.as_str().to_owned()),
            expires_ms: 0,
        };
        let nobody = UserId::usernameless();
        let ttl = self
            .put_ceremony(account, &nobody, &challenge, state)
            .await?;
        options["timeout"] = json!(ttl);
        Ok((options, self.clock.now_ms() + ttl))
    }

    /// Finishes a usernameless ceremony: the challenge is taken once, the user found from the
    /// user handle, the credential among that user's passkeys, the assertion verified with user
    /// verification, and the counter and backup state stored in one step.
    pub async fn finish_passkey(
        &self,
        account: &AccountId,
        who: Who,
        assertion: &super::CredentialJson,
    ) -> Result<PasskeyResult, FactorError> {
        self.allowed(account, FactorType::Passkey).await?;
        let Assertion {
            client_data,
            authenticator_data,
            signature,
            credential_id,
        } = assertion.assertion()?;
        let handle = match assertion.response.user_handle.as_deref() {
            Some(handle) if !handle.is_empty() => Some(b64(handle, "response.userHandle")?),
            _ => None,
        };
        let mut result = PasskeyResult::default();
        let refuse = |mut result: PasskeyResult, reason: &'static str| {
            self.metrics.factor_challenge("passkey", reason);
            result.reason = Some(reason);
            Ok(result)
        };
        let Ok(challenge) = challenge_of(&client_data) else {
            return refuse(result, "malformed");
        };
        let nobody = UserId::usernameless();
        let state = self
            .store
            .take_ceremony(UserRef::new(account, &nobody), &challenge)
            .await?
            .and_then(|s| serde_json::from_str::<CeremonyState>(&s).ok());
        let now = self.clock.now_ms();
        let Some(state) = state.filter(|state| state.kind == "passkey" && now < state.expires_ms)
        else {
            return refuse(result, "unknown_challenge");
        };
        // A passkey always returns its user handle; without one the credential is not
        // discoverable, so not a passkey of this gateway.
        let Some(handle) = handle else {
            return refuse(result, "unknown_credential");
        };
        let Some(user_id) = self.store.user_of_handle(account, &handle).await? else {
            return refuse(result, "unknown_credential");
        };
        // The index only points; the handle must still be the user's own.
        if user_handle(account, &user_id) != handle {
            return refuse(result, "unknown_credential");
        }
        // A ceremony opened for one user passes only as that user.
        if state
            .user
            .as_ref()
            .is_some_and(|bound| bound != user_id.as_str())
        {
            return refuse(result, "wrong_user");
        }
        let user = match self.accounts.user(account, &user_id).await {
            Ok(user) => user,
            Err(crate::account::service::AccountError::NotFound(_)) => {
                return refuse(result, "unknown_credential")
            }
            Err(error) => return Err(error.into()),
        };
        let Some((id, mut credential)) = self
            .credentials(account, &user, Some(FactorType::Passkey))
            .await?
            .into_iter()
            .find(|(_, known)| known.credential_id == credential_id)
        else {
            return refuse(result, "unknown_credential");
        };
        if state.factor.as_ref().is_some_and(|bound| *bound != id) {
            return refuse(result, "unknown_credential");
        }
        result.user = Some(user_id.clone());
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
        if !asserted.user_verified {
            return refuse(result, "user_not_verified");
        }
        let factor = UserRef::new(account, &user_id);
        match self
            .store
            .advance_counter(factor.factor(&id), asserted.counter, asserted.backup)
            .await?
        {
            CounterOutcome::Advanced => {}
            CounterOutcome::NotFound => return refuse(result, "unknown_credential"),
            CounterOutcome::Regressed { stored } => {
                let entry = AuditEntry::new(
                    now,
                    who,
                    action::COUNTER_REGRESSED,
                    format!("user:{user_id}"),
                    json!({"factor": id, "stored": stored, "presented": asserted.counter}),
                );
                if let Err(error) = self.audit(account, &entry).await {
                    tracing::warn!(%error, "audit entry for a counter regression not written");
                }
                tracing::warn!(factor = %id, stored, presented = asserted.counter, "passkey counter went backwards: possible clone");
                return refuse(result, "counter_regressed");
            }
        }
        credential.counter = asserted.counter;
        credential.backup.backed_up = asserted.backup.backed_up;
        self.metrics.factor_challenge("passkey", "accepted");
        result.valid = true;
        result.credential = Some(credential);
        result.passed = Some(self.pass(account, &user_id, "passkey", &id).await?);
        Ok(result)
    }

    /// Opens a passkey registration that can be finished from the credential alone
    /// (`confirm_passkey_by_challenge`), as APIs whose finishing call names neither the user
    /// nor the factor need (Twilio's `VerifyFactor`): beside the user's ceremony, a pointer
    /// to it is kept under the usernameless owner, keyed by the same challenge and as long.
    pub async fn enrol_passkey_by_challenge(
        &self,
        account: &Account,
        user: &UserId,
    ) -> Result<KeyEnrolment, FactorError> {
        let enrolment = self
            .enrol_webauthn(account, user, FactorType::Passkey)
            .await?;
        // The options carry the challenge just drawn, in base64url: it decodes.
        let challenge = enrolment.options["challenge"]
            .as_str()
            .map(|challenge| b64(challenge, "challenge"))
            .ok_or(FactorError::Random)??;
        let pointer = CeremonyState {
            kind: REGISTRATION_POINTER.into(),
            factor: Some(enrolment.factor_id.clone()),
            passkey: true,
            user: Some(user.as_str().to_owned()),
            expires_ms: 0,
        };
        let nobody = UserId::usernameless();
        self.put_ceremony(&account.id, &nobody, &challenge, pointer)
            .await?;
        Ok(enrolment)
    }

    /// Finishes a registration opened by `enrol_passkey_by_challenge`: the pointer is taken
    /// (once), then the registration is confirmed as `confirm_webauthn` does it. The user and
    /// the confirmed factor, or the refusal's reason.
    pub async fn confirm_passkey_by_challenge(
        &self,
        account: &AccountId,
        who: Who,
        credential: &super::CredentialJson,
    ) -> Result<Result<(UserId, Confirmed), &'static str>, FactorError> {
        let refuse = |reason: &'static str| {
            self.metrics
                .factor_enrolment(FactorType::Passkey.as_str(), reason);
            Ok(Err(reason))
        };
        // Bad input is refused before the pointer is taken, so it changes nothing.
        let (client_data, _) = credential.attestation()?;
        let Ok(challenge) = challenge_of(&client_data) else {
            return refuse("malformed");
        };
        let nobody = UserId::usernameless();
        let pointer = self
            .store
            .take_ceremony(UserRef::new(account, &nobody), &challenge)
            .await?
            .and_then(|s| serde_json::from_str::<CeremonyState>(&s).ok())
            .filter(|state| {
                state.kind == REGISTRATION_POINTER && self.clock.now_ms() < state.expires_ms
            });
        let Some((user, factor)) = pointer.and_then(|state| {
            let user = UserId::parse(state.user.as_deref()?)?;
            Some((user, state.factor?))
        }) else {
            return refuse("unknown_challenge");
        };
        Ok(self
            .confirm_webauthn(account, who, &user, &factor, credential)
            .await?
            .map(|confirmed| (user, confirmed)))
    }

    /// A passkey factor's stored credential (counter, BE/BS), to show.
    pub async fn passkey_credential(
        &self,
        account: &AccountId,
        user: &UserId,
        id: &str,
    ) -> Result<Option<KeyCredential>, FactorError> {
        let record = self
            .store
            .get(UserRef::new(account, user).factor(id))
            .await?;
        Ok(record.and_then(|record| record.webauthn))
    }
}
