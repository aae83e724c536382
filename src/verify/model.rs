//! The verification as the domain sees it: ids, channels, statuses and the state a store returns.

use ring::rand::SystemRandom;
use serde::Serialize;

use crate::account::trust::devices::PhoneApproval;
use crate::account::{hex, is_sid, AccountId};
pub use crate::dispatch::model::{Channel, SendAttempt};
use crate::phone::{PhoneNumber, SHARD_COUNT};
use crate::random::random_bytes;
use crate::verify::code::Tag;

/// `VE` and 32 hex digits, the first two of which are the shard of the number it was sent to:
/// a check by id finds its keys (and its Redis Cluster slot) without a lookup.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct VerificationId(String);

impl VerificationId {
    pub fn random(rng: &SystemRandom, shard: u8) -> Result<Self, ring::error::Unspecified> {
        let random = random_bytes::<15>(rng)?;
        Ok(Self(format!("VE{shard:02x}{}", hex(&random))))
    }

    /// Parses an id from a request; anything else is unknown (404), not malformed, so that ids
    /// from other systems are answered like ids that expired.
    pub fn parse(input: &str) -> Option<Self> {
        let id = is_sid(input, "VE").then(|| Self(input.to_owned()))?;
        (id.shard() < SHARD_COUNT).then_some(id)
    }

    pub fn shard(&self) -> u8 {
        u8::from_str_radix(&self.0[2..4], 16).unwrap_or(u8::MAX)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One code check, as the store counts it.
#[derive(Debug, Clone, Copy)]
pub struct CodeCheck<'a> {
    pub account: &'a AccountId,
    pub target: &'a CheckTarget,
    pub tag: &'a Tag,
    pub now_ms: u64,
    /// Scoped by account and the verification's number, like a send's.
    pub idempotency_key: Option<&'a str>,
}

/// Where a verification stands. Every status but `Pending` is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pending,
    Approved,
    Expired,
    MaxAttemptsReached,
    Canceled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Approved => "approved",
            Status::Expired => "expired",
            Status::MaxAttemptsReached => "max_attempts_reached",
            Status::Canceled => "canceled",
        }
    }

    /// One-letter form used in the stores, to keep a pending verification small.
    pub fn code(self) -> &'static str {
        match self {
            Status::Pending => "p",
            Status::Approved => "a",
            Status::Expired => "x",
            Status::MaxAttemptsReached => "m",
            Status::Canceled => "c",
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        match code {
            "p" => Some(Status::Pending),
            "a" => Some(Status::Approved),
            "x" => Some(Status::Expired),
            "m" => Some(Status::MaxAttemptsReached),
            "c" => Some(Status::Canceled),
            _ => None,
        }
    }
}

/// A verification as read from a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    pub id: VerificationId,
    pub account: AccountId,
    /// E.164, as stored; masked whenever it is logged.
    pub to: String,
    pub channel: Channel,
    /// The stored status. A pending one past `expires_ms` is expired: see [`Self::status_at`].
    pub status: Status,
    pub attempts: u32,
    pub max_attempts: u32,
    pub sends: u32,
    pub created_ms: u64,
    pub expires_ms: u64,
    pub code_length: u8,
}

impl From<&Verification> for PhoneApproval {
    /// What trusting a device on this verification needs of it.
    fn from(verification: &Verification) -> Self {
        PhoneApproval {
            id: verification.id.as_str().to_owned(),
            e164: verification.to.clone(),
            approved: verification.status == Status::Approved,
            expires_ms: verification.expires_ms,
        }
    }
}

impl Verification {
    /// The status as of `now_ms`: expiry is decided by time, whether or not a store wrote it down.
    pub fn status_at(&self, now_ms: u64) -> Status {
        if self.status == Status::Pending && now_ms >= self.expires_ms {
            Status::Expired
        } else {
            self.status
        }
    }

    pub fn attempts_left(&self) -> u32 {
        if self.status == Status::Pending {
            self.max_attempts.saturating_sub(self.attempts)
        } else {
            0
        }
    }
}

/// Everything a store needs to create (or resend) a verification in one atomic step.
#[derive(Debug, Clone)]
pub struct NewVerification {
    /// Used only when no verification is pending for the number; a resend keeps the old id.
    pub id: VerificationId,
    pub account: AccountId,
    pub to: PhoneNumber,
    pub channel: Channel,
    pub code_tag: Tag,
    pub code_length: u8,
    pub now_ms: u64,
    pub ttl_ms: u64,
    /// How long a finished verification stays readable after its expiry.
    pub retention_ms: u64,
    pub max_attempts: u32,
    pub max_sends: u32,
    pub send_quota: SendQuota,
    pub idempotency_key: Option<String>,
    /// The sealed outgoing message, for stores that queue it durably in the same atomic step
    /// (Redis); `None` when the dispatcher queues in memory.
    pub outbox: Option<Vec<u8>>,
    /// The ordered channels after the first, stored in the same step (`verify::workflow`); a
    /// resend without one drops the pending verification's workflow.
    pub workflow: Option<crate::verify::workflow::NewWorkflow>,
}

/// Sends allowed per account and number in a fixed window, counted in the store so that the
/// quota holds across every instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendQuota {
    pub limit: u32,
    pub window_ms: u64,
}

/// What starting a verification did. Refusals are outcomes, not errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartOutcome {
    Created(Verification),
    /// A verification was pending for the number: a fresh code replaced the old one.
    Resent(Verification),
    /// The idempotency key was seen before: the first answer, and no message.
    Replayed(Verification),
    /// The pending verification has used all its sends.
    MaxSendsReached(Verification),
    SendQuotaExceeded {
        retry_after_ms: u64,
    },
    /// Abuse protection refused the send, in the same step (`Store::start_admitted`): nothing
    /// was stored or counted.
    Refused(crate::abuse::Block),
}

/// How a check names its verification.
#[derive(Debug, Clone)]
pub enum CheckTarget {
    Id(VerificationId),
    /// The pending verification of this number in the caller's account.
    To(PhoneNumber),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckOutcome {
    /// This check counted: the verification as it left it (approved only when `valid`), or it
    /// found the code's lifetime over and recorded the expiry.
    Checked {
        verification: Verification,
        valid: bool,
    },
    /// The verification was already final before this check, which counted nothing.
    Final(Verification),
    /// The idempotency key was seen before: the outcome recorded by the check that first used it.
    Replayed {
        verification: Verification,
        valid: bool,
    },
    /// The idempotency key was first used for a check of another verification of the number.
    KeyReused,
    NotFound,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelOutcome {
    Canceled(Verification),
    /// Already final: canceling changes nothing.
    NotPending(Verification),
    NotFound,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_their_shard() {
        let rng = SystemRandom::new();
        for shard in [0, 17, SHARD_COUNT - 1] {
            let id = VerificationId::random(&rng, shard).unwrap();
            assert_eq!(id.as_str().len(), 34);
            assert_eq!(VerificationId::parse(id.as_str()).unwrap().shard(), shard);
        }
    }

    #[test]
    fn ids_with_a_shard_out_of_range_are_unknown() {
        assert!(VerificationId::parse("VEff000000000000000000000000000000").is_none());
        assert!(VerificationId::parse("VE3f000000000000000000000000000000").is_some());
    }

    #[test]
    fn status_codes_round_trip() {
        for status in [
            Status::Pending,
            Status::Approved,
            Status::Expired,
            Status::MaxAttemptsReached,
            Status::Canceled,
        ] {
            assert_eq!(Status::from_code(status.code()), Some(status));
        }
    }
}
