//! The account-wide 2FA policy: whether 2FA is required, the allowed channels, SMS as the
//! fallback of an app or a key, how long a device stays trusted, and the account's abuse
//! protection (its overrides of the operator's `[abuse]` defaults).

use std::time::Duration;

use serde::Serialize;

use std::sync::Arc;

use crate::abuse::AbusePolicy;

/// A second-factor channel the policy may allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyChannel {
    Sms,
    Whatsapp,
    Totp,
    Webauthn,
}

impl PolicyChannel {
    pub const ALL: [PolicyChannel; 4] = [
        PolicyChannel::Sms,
        PolicyChannel::Whatsapp,
        PolicyChannel::Totp,
        PolicyChannel::Webauthn,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PolicyChannel::Sms => "sms",
            PolicyChannel::Whatsapp => "whatsapp",
            PolicyChannel::Totp => "totp",
            PolicyChannel::Webauthn => "webauthn",
        }
    }

    pub fn parse(input: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|channel| channel.as_str() == input)
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of channels, as a bit set (small, `Copy`, ordered output).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ChannelSet(u8);

impl ChannelSet {
    pub fn of(channels: &[PolicyChannel]) -> Self {
        Self(
            channels
                .iter()
                .fold(0, |bits, channel| bits | channel.bit()),
        )
    }

    pub fn contains(self, channel: PolicyChannel) -> bool {
        self.0 & channel.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn is_subset_of(self, other: ChannelSet) -> bool {
        self.0 & !other.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = PolicyChannel> {
        PolicyChannel::ALL
            .into_iter()
            .filter(move |channel| self.contains(*channel))
    }

    /// The stored form: names joined by commas.
    pub fn encode(self) -> String {
        self.iter()
            .map(PolicyChannel::as_str)
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn decode(input: &str) -> Option<Self> {
        if input.is_empty() {
            return Some(Self::default());
        }
        let channels: Option<Vec<_>> = input.split(',').map(PolicyChannel::parse).collect();
        channels.map(|channels| Self::of(&channels))
    }
}

impl Serialize for ChannelSet {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

/// How long a device stays trusted after a passed challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TrustDuration {
    /// Every login asks for a second factor ("single sign-on" in MessageFlow's words).
    EveryLogin,
    OneDay,
    OneWeek,
    ThirtyDays,
}

impl TrustDuration {
    pub fn as_str(self) -> &'static str {
        match self {
            TrustDuration::EveryLogin => "none",
            TrustDuration::OneDay => "1d",
            TrustDuration::OneWeek => "7d",
            TrustDuration::ThirtyDays => "30d",
        }
    }

    pub fn parse(input: &str) -> Option<Self> {
        match input {
            "none" => Some(TrustDuration::EveryLogin),
            "1d" => Some(TrustDuration::OneDay),
            "7d" => Some(TrustDuration::OneWeek),
            "30d" => Some(TrustDuration::ThirtyDays),
            _ => None,
        }
    }

    pub fn duration(self) -> Duration {
        const DAY: u64 = 86_400;
        Duration::from_secs(match self {
            TrustDuration::EveryLogin => 0,
            TrustDuration::OneDay => DAY,
            TrustDuration::OneWeek => 7 * DAY,
            TrustDuration::ThirtyDays => 30 * DAY,
        })
    }

    pub fn millis(self) -> u64 {
        self.duration().as_millis() as u64
    }
}

impl Serialize for TrustDuration {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// The channels a send that names neither `channel` nor `channels` goes out on, in order
/// (issue 17 item 3). Each is one of the policy's allowed channels that carries a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DefaultWorkflow {
    pub channels: Vec<PolicyChannel>,
    pub fallback_after_seconds: u32,
}

impl DefaultWorkflow {
    /// The stored form: `<seconds> <channel>,<channel>…`.
    pub fn encode(&self) -> String {
        let names: Vec<&str> = self.channels.iter().map(|c| c.as_str()).collect();
        format!("{} {}", self.fallback_after_seconds, names.join(","))
    }

    /// The stored form read back; `None` for an empty field (no default workflow) or a
    /// malformed one.
    pub fn decode(input: &str) -> Option<Self> {
        let (seconds, names) = input.split_once(' ')?;
        let channels: Option<Vec<_>> = names.split(',').map(PolicyChannel::parse).collect();
        Some(Self {
            channels: channels?,
            fallback_after_seconds: seconds.parse().ok()?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Policy {
    pub require_2fa: bool,
    pub channels: ChannelSet,
    /// Offer SMS as the alternative when the primary factor is an app or a key.
    pub sms_fallback: bool,
    pub trusted_device: TrustDuration,
    /// Geo permissions, number types, the pumping guard's rules, daily caps and the safe list,
    /// where the account overrides the operator's defaults (empty: the defaults apply).
    /// Shared: the policy is copied out of the hot cache on every send, the abuse part is not.
    pub abuse: Arc<AbusePolicy>,
    /// The default workflow of a send that names no channel; `None`: SMS.
    pub workflow: Option<DefaultWorkflow>,
    /// 0 for an account that never set its policy (the defaults apply); bumped by every write.
    #[serde(skip)]
    pub version: u64,
}

impl Policy {
    /// What a new account starts with (MessageFlow): 2FA required, by SMS, no trusted devices.
    pub fn default_for_new_accounts() -> Self {
        Self {
            require_2fa: true,
            channels: ChannelSet::of(&[PolicyChannel::Sms]),
            sms_fallback: false,
            trusted_device: TrustDuration::EveryLogin,
            abuse: Arc::default(),
            workflow: None,
            version: 0,
        }
    }

    pub fn sms_active(&self) -> bool {
        self.channels.contains(PolicyChannel::Sms)
    }

    /// The ways in which `new` protects less than `self`; empty when it is at least as strict.
    /// Allowing a channel that was not allowed counts: it adds a way in.
    pub fn weakenings(&self, new: &Policy) -> Vec<&'static str> {
        let mut found = Vec::new();
        if self.require_2fa && !new.require_2fa {
            found.push("require_2fa turned off");
        }
        if !new.channels.is_subset_of(self.channels) {
            found.push("a channel added");
        }
        if !self.sms_fallback && new.sms_fallback {
            found.push("sms_fallback turned on");
        }
        if new.trusted_device > self.trusted_device {
            found.push("trusted_device lengthened");
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_sets_round_trip_and_order() {
        let set = ChannelSet::of(&[PolicyChannel::Totp, PolicyChannel::Sms]);
        assert_eq!(set.encode(), "sms,totp");
        assert_eq!(ChannelSet::decode("sms,totp"), Some(set));
        assert_eq!(ChannelSet::decode("sms,fax"), None);
        let workflow = DefaultWorkflow {
            channels: vec![PolicyChannel::Whatsapp, PolicyChannel::Sms],
            fallback_after_seconds: 45,
        };
        assert_eq!(workflow.encode(), "45 whatsapp,sms");
        assert_eq!(DefaultWorkflow::decode("45 whatsapp,sms"), Some(workflow));
        assert_eq!(DefaultWorkflow::decode(""), None);
        assert!(ChannelSet::of(&[PolicyChannel::Sms]).is_subset_of(set));
        assert!(!set.is_subset_of(ChannelSet::of(&[PolicyChannel::Sms])));
    }

    #[test]
    fn durations_are_ordered_from_every_login_to_thirty_days() {
        assert!(TrustDuration::EveryLogin < TrustDuration::OneDay);
        assert!(TrustDuration::OneWeek < TrustDuration::ThirtyDays);
        assert_eq!(TrustDuration::OneWeek.millis(), 604_800_000);
    }

    #[test]
    fn stricter_policies_are_not_weakenings() {
        let base = Policy {
            require_2fa: false,
            channels: ChannelSet::of(&[PolicyChannel::Sms, PolicyChannel::Totp]),
            sms_fallback: true,
            trusted_device: TrustDuration::OneWeek,
            abuse: Arc::default(),
            workflow: None,
            version: 3,
        };
        let stricter = Policy {
            require_2fa: true,
            channels: ChannelSet::of(&[PolicyChannel::Totp]),
            sms_fallback: false,
            trusted_device: TrustDuration::OneDay,
            abuse: Arc::default(),
            workflow: None,
            version: 3,
        };
        assert!(base.weakenings(&stricter).is_empty());
        assert_eq!(stricter.weakenings(&base).len(), 4);
    }
}
