//! The proof a request offers for trusting a device, resolved from its ids: an approved
//! verification of the user's phone (`verification_id`) or a second-factor challenge passed in
//! this account (`challenge_id`), exactly one of the two.
//!
//! Whether the proof vouches for the user being trusted is decided by `trust_device` (see
//! `trust::devices::Proof`); here only that it exists in this account.

use super::{FactorError, FactorService};
use crate::account::rules::{rule, Refusal};
use crate::account::service::AccountError;
use crate::account::trust::devices::Proof;
use crate::account::Account;
use crate::verify::model::VerificationId;
use crate::verify::{Verifier, VerifyError};

/// Why no proof could be resolved: a refusal or a malformed request (through `Factor`), or a
/// failure of the verification store.
#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    #[error(transparent)]
    Factor(#[from] FactorError),
    #[error(transparent)]
    Verify(VerifyError),
}

impl FactorService {
    /// Resolves a device-trust request's ids into its `Proof`. Refused (rule
    /// `proof-must-be-…`) when the id names nothing of this account, or a challenge past its
    /// lifetime; invalid unless exactly one id is given.
    pub async fn device_proof(
        &self,
        verifier: &Verifier,
        account: &Account,
        verification_id: Option<&str>,
        challenge_id: Option<&str>,
    ) -> Result<Proof, ProofError> {
        let refused = |detail: &str| {
            FactorError::from(AccountError::from(Refusal::new(
                rule::PROOF_MUST_BE_A_FRESH_APPROVAL_OF_THIS_USER,
                detail,
            )))
        };
        match (verification_id, challenge_id) {
            (Some(id), None) => {
                let not_a_proof = || {
                    refused("verification_id must name an approved verification of this account")
                };
                let id = VerificationId::parse(id).ok_or_else(not_a_proof)?;
                match verifier.get(account, &id).await {
                    Ok(verification) => Ok(Proof::Verification((&verification).into())),
                    Err(VerifyError::NotFound) => Err(not_a_proof().into()),
                    Err(error) => Err(ProofError::Verify(error)),
                }
            }
            (None, Some(id)) => {
                let passed = self.passed(&account.id, id).await?.ok_or_else(|| {
                    refused("challenge_id must name a challenge passed in this account, within its lifetime")
                })?;
                Ok(Proof::Challenge {
                    id: passed.id,
                    user: passed.user,
                    expires_ms: passed.expires_ms,
                })
            }
            _ => Err(FactorError::Account(AccountError::Invalid(
                "give exactly one of verification_id and challenge_id".into(),
            ))
            .into()),
        }
    }
}
