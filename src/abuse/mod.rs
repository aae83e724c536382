//! Abuse protection (issue 16): what a send may reach and how much of it an account may send.
//!
//! Before anything is stored, the send path makes one call, [`AbuseGuard::admit`]:
//! - the pure checks, in Rust: the destination's region against the channel's geo permission
//!   (`geo.rs`), its number type against the channel's allowed types (`types.rs`; premium rate
//!   and shared cost never);
//! - then one store step (`store.rs`, the [`AbuseStore`] port): the daily caps, the cool-downs
//!   and the pumping guard's rules (`guard.rs`) per number prefix (`prefix.rs`) and per country,
//!   counting the send when it is admitted.
//!
//! The operator's defaults and an account's overrides are `settings.rs`. docs/abuse.md says why
//! each default is what it is.

pub mod geo;
pub mod guard;
pub mod prefix;
pub mod reserve;
pub mod settings;
pub mod store;
pub mod types;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::phone::{NumberType, PhoneNumber, Region};
use crate::store::StoreError;
use guard::DAY_MS;
pub use prefix::Prefix;
pub use reserve::Reservations;
pub use settings::{AbusePolicy, AbuseSettings};
pub use store::{AbuseStore, Admission, Approval, Block, BlockRule, Scope, SendCheck, Usage};

/// A channel a message goes out on, as abuse protection tells them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Sms,
    Whatsapp,
    /// A voice call reading the code out (not sent yet; its defaults are ready).
    Call,
}

/// The outcome of [`AbuseGuard::admit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The send was counted: store and send it.
    Admitted,
    /// Nothing was counted; refuse the send.
    Refused(Refusal),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The channel may not send to this region (422 `geo-permission`).
    Geo { country: Region },
    /// The channel may not send to this kind of number (422 `number-type`).
    NumberType { number_type: NumberType },
    /// A cool-down or a daily cap (429 with `Retry-After`).
    Blocked(Block),
}

impl Refusal {
    /// The problem's `rule` member.
    pub fn rule(&self) -> &'static str {
        match self {
            Refusal::Geo { .. } => "geo-permission",
            Refusal::NumberType { .. } => "number-type",
            Refusal::Blocked(block) => block.rule.as_str(),
        }
    }
}

/// One send, as the send path knows it.
#[derive(Debug, Clone, Copy)]
pub struct Send<'a, 'p> {
    /// The account's id (`AC…`), which the store's check borrows.
    pub account: &'a str,
    /// The account's overrides (the default policy when it has none).
    pub policy: &'p AbusePolicy,
    pub channel: Channel,
    pub to: &'p PhoneNumber,
    pub now_ms: u64,
}

/// Abuse protection as the send path and the usage API call it.
#[derive(Clone)]
pub struct AbuseGuard {
    settings: Arc<AbuseSettings>,
    store: Arc<dyn AbuseStore>,
}

impl AbuseGuard {
    pub fn new(settings: Arc<AbuseSettings>, store: Arc<dyn AbuseStore>) -> Self {
        Self { settings, store }
    }

    pub fn settings(&self) -> &AbuseSettings {
        &self.settings
    }

    /// The one call before a send stores anything: the pure checks, then one store step that
    /// checks and counts. A store failure counts nothing (the caller fails closed).
    pub async fn admit(&self, send: &Send<'_, '_>) -> Result<Decision, StoreError> {
        if let Some(refusal) = self.screen(send) {
            return Ok(Decision::Refused(refusal));
        }
        Ok(match self.admit_checked(&self.check(send)).await? {
            Admission::Admitted => Decision::Admitted,
            Admission::Refused(block) => Decision::Refused(Refusal::Blocked(block)),
        })
    }

    /// The store step of `admit` alone, on a check built by [`Self::check`] from a send the
    /// pure checks (`screen`) passed.
    pub async fn admit_checked(&self, check: &SendCheck<'_>) -> Result<Admission, StoreError> {
        self.store.admit_send(check).await
    }

    /// The checks that need no store: geo permission, then number type.
    pub fn screen(&self, send: &Send<'_, '_>) -> Option<Refusal> {
        let country = send.to.region();
        if !self.settings.geo(send.policy, send.channel).allows(country) {
            return Some(Refusal::Geo { country });
        }
        let number_type = send.to.number_type();
        let allowed = self.settings.number_types(send.policy, send.channel);
        if types::NEVER_ALLOWED.contains(&number_type) || !allowed.contains(number_type) {
            return Some(Refusal::NumberType { number_type });
        }
        None
    }

    /// What the store decides on for `send`.
    pub fn check<'a>(&self, send: &Send<'a, '_>) -> SendCheck<'a> {
        SendCheck {
            account: send.account,
            country: send.to.region(),
            prefix: Prefix::of(send.to),
            guarded: !send.policy.safe_list.covers(send.to),
            prefix_rules: self.settings.prefix_rules(send.policy),
            country_rules: self.settings.country_rules(send.policy),
            caps: self.settings.caps(send.policy),
            now_ms: send.now_ms,
        }
    }

    /// A verification to `to` was approved: counts towards its prefix's and country's
    /// conversion, unless the safe list covers it (its sends were not counted either).
    pub async fn approved(
        &self,
        account: &str,
        policy: &AbusePolicy,
        to: &PhoneNumber,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        if policy.safe_list.covers(to) {
            return Ok(());
        }
        self.store
            .record_approval(&Approval {
                account,
                country: to.region(),
                prefix: &Prefix::of(to),
                now_ms,
            })
            .await
    }

    /// Today's (UTC) messages and the cool-downs running.
    pub async fn usage(&self, account: &str, now_ms: u64) -> Result<Usage, StoreError> {
        self.store.usage(account, now_ms / DAY_MS, now_ms).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryAbuseStore;

    fn guard() -> AbuseGuard {
        let settings = AbuseSettings::default();
        let store = Arc::new(MemoryAbuseStore::new(&settings));
        AbuseGuard::new(Arc::new(settings), store)
    }

    fn account() -> &'static str {
        "AC0123456789abcdef0123456789abcdef"
    }

    async fn decide(
        guard: &AbuseGuard,
        policy: &AbusePolicy,
        channel: Channel,
        to: &str,
    ) -> Decision {
        let to = PhoneNumber::parse(to).unwrap();
        guard
            .admit(&Send {
                account: account(),
                policy,
                channel,
                to: &to,
                now_ms: 1_764_000_000_000,
            })
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn an_account_allowing_only_de_and_at_refuses_a_us_number() {
        let guard = guard();
        let policy: AbusePolicy =
            serde_json::from_str(r#"{"geo": {"sms": {"countries": ["DE", "AT"]}}}"#).unwrap();
        assert_eq!(
            decide(&guard, &policy, Channel::Sms, "+4915112345678").await,
            Decision::Admitted
        );
        let refused = decide(&guard, &policy, Channel::Sms, "+14155552671").await;
        assert_eq!(
            refused,
            Decision::Refused(Refusal::Geo {
                country: Region::parse("US").unwrap()
            })
        );
        let Decision::Refused(refusal) = refused else {
            unreachable!()
        };
        assert_eq!(refusal.rule(), "geo-permission");
        // Refused before the store: nothing counted.
        assert_eq!(
            guard
                .usage(account(), 1_764_000_000_000)
                .await
                .unwrap()
                .total,
            1
        );
    }

    #[tokio::test]
    async fn the_default_refuses_high_risk_regions_until_the_owner_re_enables_them() {
        let guard = guard();
        let tuvalu = "+688901234";
        let refused = decide(&guard, &AbusePolicy::default(), Channel::Sms, tuvalu).await;
        assert!(
            matches!(refused, Decision::Refused(Refusal::Geo { .. })),
            "{refused:?}"
        );
        let policy: AbusePolicy =
            serde_json::from_str(r#"{"geo": {"sms": {"countries": ["*"]}}}"#).unwrap();
        assert_eq!(
            decide(&guard, &policy, Channel::Sms, tuvalu).await,
            Decision::Admitted
        );
    }

    /// Premium rate is refused on every channel; texting refuses fixed lines, calls take them.
    #[tokio::test]
    async fn number_types_are_refused_per_channel_with_their_type() {
        let guard = guard();
        let none = AbusePolicy::default();
        let refused = |number_type| Decision::Refused(Refusal::NumberType { number_type });
        for (channel, to, decision) in [
            (
                Channel::Call,
                "+499001234567",
                refused(NumberType::PremiumRate),
            ),
            (Channel::Sms, "+49301234567", refused(NumberType::FixedLine)),
            (Channel::Call, "+49301234567", Decision::Admitted),
        ] {
            assert_eq!(decide(&guard, &none, channel, to).await, decision, "{to}");
        }
    }
}
