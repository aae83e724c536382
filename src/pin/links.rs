//! E-mailed two-step links: a disable or reset link asked for by the owner or an admin, mailed
//! to the account's address, and opened once by whoever holds that mailbox.
//!
//! A link's token routes itself to its account (its first 16 bytes are the account id) and is
//! stored only as its SHA-256 digest; the store decides atomically whether it is still good.

use ring::digest;
use serde_json::json;

use super::service::{PinError, PinService};
use super::store::{LinkInfo, LinkIssue, LinkOpening, LinkUse, NewLink, NumberRef};
use super::{action, LinkPurpose, PhoneNumberId, Pin};
use crate::account::audit::Who;
use crate::account::permission::Permission;
use crate::account::{hex, AccountId, Role};
use crate::events::EventType;
use crate::mail::Mail;
use crate::phone::mask;
use crate::random::random_bytes;

/// A link's consequence, for the answer to whoever opened it.
#[derive(Debug, Clone)]
pub struct LinkDone {
    pub account: AccountId,
    pub number: PhoneNumberId,
    pub masked: String,
}

/// A link was sent: where (masked) and until when it works.
#[derive(Debug, Clone)]
pub struct LinkSent {
    pub sent_to: String,
    pub expires_ms: u64,
}

/// Who opened an e-mailed link, in audit entries: the holder of the account's mailbox.
fn link_holder() -> Who {
    Who {
        key_id: "email-link".into(),
        role: "mailbox".into(),
        acting_user: None,
    }
}

impl PinService {
    /// Asks for a disable or reset link, e-mailed to the account's address. Only the owner and
    /// admins may; anyone else is refused and the refusal is audited.
    pub async fn request_link(
        &self,
        account: &AccountId,
        who: Who,
        role: Role,
        id: &PhoneNumberId,
        purpose: LinkPurpose,
    ) -> Result<LinkSent, PinError> {
        let (permission, what) = match purpose {
            LinkPurpose::Disable => (Permission::DisableTwoStep, action::DISABLE_REFUSED),
            LinkPurpose::Reset => (Permission::ResetTwoStep, action::RESET_REFUSED),
        };
        if !permission.allows(role) {
            self.metrics
                .two_step_link_request(purpose.as_str(), "refused");
            tracing::warn!(account = %account, number = %id, role = role.as_str(), "two-step {} link refused", purpose.as_str());
            self.audit(
                account,
                who,
                what,
                id,
                json!({"role": role.as_str(), "reason": "only the owner or an admin may ask"}),
            )
            .await?;
            return Err(PinError::Forbidden(permission.refusal()));
        }
        let Some(email) = self.store.email(account).await? else {
            self.metrics
                .two_step_link_request(purpose.as_str(), "no_email");
            return Err(PinError::NoEmail);
        };
        let secret = random_bytes::<32>(&self.rng).map_err(|_| PinError::Random)?;
        let token = encode_token(account, &secret);
        let digest = token_digest(&token);
        let now = self.now();
        let ttl = self.settings.link_ttl.as_millis() as u64;
        let e164 = match self
            .store
            .issue_link(&NewLink {
                number: NumberRef { account, id },
                purpose,
                digest,
                now_ms: now,
                ttl_ms: ttl,
            })
            .await?
        {
            LinkIssue::Issued { e164 } => e164,
            LinkIssue::AlreadyDisabled => return Err(PinError::AlreadyDisabled),
            LinkIssue::NotFound => return Err(PinError::NotFound),
        };
        let mail = self.link_mail(&email, role, id, &e164, purpose, &token);
        if let Err(error) = self.mailer.send(&mail).await {
            self.metrics
                .two_step_link_request(purpose.as_str(), "mail_failed");
            tracing::error!(%error, account = %account, "the two-step link could not be mailed");
            return Err(PinError::Mail(error));
        }
        self.metrics.two_step_link_request(purpose.as_str(), "sent");
        let what = match purpose {
            LinkPurpose::Disable => action::DISABLE_REQUESTED,
            LinkPurpose::Reset => action::RESET_REQUESTED,
        };
        let sent_to = mask_email(&email);
        self.audit(
            account,
            who,
            what,
            id,
            json!({"sent_to": sent_to, "expires_ms": now + ttl}),
        )
        .await?;
        Ok(LinkSent {
            sent_to,
            expires_ms: now + ttl,
        })
    }

    fn link_mail(
        &self,
        to: &str,
        role: Role,
        id: &PhoneNumberId,
        e164: &str,
        purpose: LinkPurpose,
        token: &str,
    ) -> Mail {
        let hours = self.settings.link_ttl.as_secs() / 3600;
        let (subject, path, what, unless) = match purpose {
            LinkPurpose::Disable => (
                format!("Turn off two-step verification for {}", mask(e164)),
                "confirm",
                "turn off two-step verification",
                "two-step verification stays on, and nobody can turn it off without this link",
            ),
            LinkPurpose::Reset => (
                format!("Reset the two-step PIN of {}", mask(e164)),
                "reset",
                "set a new two-step PIN without the old one (POST {\"pin\":\"<6 digits>\"} to the link)",
                "the PIN stays as it is",
            ),
        };
        Mail {
            to: to.to_owned(),
            subject,
            html: None,
            body: format!(
                "An {role} key of your otpgate account asked to {what} for the phone number {masked} (id {id}).\n\n\
                 Open this link within {hours} hours to do it; it works once:\n\n{base}/v1/two-step/{path}?token={token}\n\n\
                 If you did not ask for this, ignore this mail: {unless}.\n",
                role = role.as_str(),
                masked = mask(e164),
                base = self.link_base_url,
            ),
        }
    }

    /// What a link is, without using it (for a page that asks for the new PIN).
    pub async fn peek_link(&self, token: &str) -> Result<(LinkInfo, String), PinError> {
        let (account, digest) = decode_token(token).ok_or(PinError::LinkUnknown)?;
        let info = self
            .store
            .peek_link(&account, &digest)
            .await?
            .ok_or(PinError::LinkUnknown)?;
        if info.used {
            return Err(PinError::LinkUsed);
        }
        if self.now() >= info.expires_ms {
            return Err(PinError::LinkExpired);
        }
        let number = NumberRef {
            account: &account,
            id: &info.number,
        };
        let masked = (self.store.get(number).await?)
            .map(|record| mask(&record.e164))
            .ok_or(PinError::LinkUnknown)?;
        Ok((info, masked))
    }

    /// Opens a disable link: two-step goes off, once.
    pub async fn use_disable_link(&self, token: &str) -> Result<LinkDone, PinError> {
        self.use_link(token, LinkPurpose::Disable, None).await
    }

    /// Opens a reset link with the new PIN: it is set (and the number unlocked), once.
    pub async fn use_reset_link(&self, token: &str, pin: &Pin) -> Result<LinkDone, PinError> {
        let (info, _) = self.peek_link(token).await?;
        if info.purpose != LinkPurpose::Reset {
            return Err(PinError::LinkUnknown);
        }
        // Checked before the slow hash, so unknown tokens cost a store read, not a hash.
        let (account, _) = decode_token(token).ok_or(PinError::LinkUnknown)?;
        let number = NumberRef {
            account: &account,
            id: &info.number,
        };
        let record = (self.store.get(number).await?).ok_or(PinError::LinkUnknown)?;
        pin.check_against_number(&record.e164)
            .map_err(PinError::BadPin)?;
        let pin_hash = self.hash(pin).await?;
        self.use_link(token, LinkPurpose::Reset, Some(&pin_hash))
            .await
    }

    async fn use_link(
        &self,
        token: &str,
        purpose: LinkPurpose,
        new_pin_hash: Option<&str>,
    ) -> Result<LinkDone, PinError> {
        let (account, digest) = decode_token(token).ok_or(PinError::LinkUnknown)?;
        let outcome = self
            .store
            .use_link(&LinkOpening {
                account: &account,
                digest: &digest,
                purpose,
                new_pin_hash,
                now_ms: self.now(),
            })
            .await?;
        let outcome_label = match &outcome {
            LinkUse::Done { .. } => "used",
            LinkUse::Unknown => "unknown",
            LinkUse::Used => "replayed",
            LinkUse::Expired => "expired",
            LinkUse::Superseded => "superseded",
            LinkUse::AlreadyDisabled { .. } => "already_disabled",
        };
        self.metrics
            .two_step_link_used(purpose.as_str(), outcome_label);
        match outcome {
            LinkUse::Done {
                number,
                e164,
                was_locked,
            } => {
                let what = match purpose {
                    LinkPurpose::Disable => action::DISABLED,
                    LinkPurpose::Reset => action::PIN_RESET,
                };
                self.audit(
                    &account,
                    link_holder(),
                    what,
                    &number,
                    json!({"via": "email-link", "unlocked": was_locked}),
                )
                .await?;
                tracing::info!(account = %account, number = %number, "two-step {} link used", purpose.as_str());
                let kind = if purpose == LinkPurpose::Disable {
                    EventType::PinDisabled
                } else {
                    EventType::PinChanged
                };
                self.events
                    .pin(&account, kind, number.as_str(), Some(&e164));
                Ok(LinkDone {
                    account,
                    number,
                    masked: mask(&e164),
                })
            }
            LinkUse::AlreadyDisabled { .. } => Err(PinError::AlreadyDisabled),
            LinkUse::Unknown => Err(PinError::LinkUnknown),
            LinkUse::Used => Err(PinError::LinkUsed),
            LinkUse::Expired => Err(PinError::LinkExpired),
            LinkUse::Superseded => Err(PinError::LinkSuperseded),
        }
    }
}

/// A link's token: base64url of the account id's 16 bytes and 32 random bytes (256 bits). The
/// account part only routes the token to its account's slot; the secret part is what counts.
fn encode_token(account: &AccountId, secret: &[u8; 32]) -> String {
    let mut bytes = Vec::with_capacity(48);
    bytes.extend_from_slice(
        &data_encoding::HEXLOWER
            .decode(&account.as_str().as_bytes()[2..])
            .unwrap_or_default(),
    );
    bytes.extend_from_slice(secret);
    data_encoding::BASE64URL_NOPAD.encode(&bytes)
}

/// The account and the stored digest (SHA-256: the token has full entropy, so a slow hash would
/// buy nothing) of a token, when it has the right shape.
fn decode_token(token: &str) -> Option<(AccountId, [u8; 32])> {
    if token.len() != 64 {
        return None;
    }
    let bytes = data_encoding::BASE64URL_NOPAD
        .decode(token.as_bytes())
        .ok()?;
    if bytes.len() != 48 {
        return None;
    }
    let account = AccountId::parse(&format!("AC{}", hex(&bytes[..16])))?;
    Some((account, token_digest(token)))
}

fn token_digest(token: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, token.as_bytes()).as_ref());
    out
}

/// `o***r@example.com`: enough to recognise one's own address.
pub fn mask_email(email: &str) -> String {
    match email.split_once('@') {
        Some((local, domain)) if local.chars().count() > 2 => {
            let first = local.chars().next().unwrap_or('*');
            let last = local.chars().last().unwrap_or('*');
            format!("{first}***{last}@{domain}")
        }
        Some((_, domain)) => format!("***@{domain}"),
        None => "***".into(),
    }
}

#[cfg(test)]
mod tests {
    use ring::rand::SystemRandom;

    use super::*;

    #[test]
    fn tokens_route_to_their_account_and_refuse_other_shapes() {
        let rng = SystemRandom::new();
        let account = AccountId::random(&rng).unwrap();
        let secret = random_bytes::<32>(&rng).unwrap();
        let token = encode_token(&account, &secret);
        assert_eq!(token.len(), 64);
        let (decoded, digest) = decode_token(&token).unwrap();
        assert_eq!(decoded, account);
        assert_eq!(digest, token_digest(&token));
        assert!(decode_token(&token[1..]).is_none());
        assert!(decode_token(&format!("{}!", &token[1..])).is_none());
    }

    #[test]
    fn emails_are_masked() {
        assert_eq!(mask_email("owner@example.com"), "o***r@example.com");
        assert_eq!(mask_email("ab@example.com"), "***@example.com");
    }
}
