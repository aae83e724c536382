//! The login decision: allow, challenge (with which factors, primary first) or enroll.
//!
//! A pure function of the policy, the user and whether the presented device is trusted, so that
//! it is the same whether its inputs came from the cache or from the store.

use serde::Serialize;

use crate::account::policy::{ChannelSet, Policy, PolicyChannel};
use crate::account::user::{FactorType, User};
use crate::phone::mask;

/// A factor offered in a challenge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Offer {
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The enrolled factor's id (TOTP, WebAuthn); absent for the phone channels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The masked number a phone channel sends to, or the masked address of e-mail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllowReason {
    TwoFactorOff,
    TrustedDevice,
    /// The login presented a passkey challenge this user passed with user verification: a
    /// possession factor and a PIN or biometric in one gesture.
    PasskeyVerified,
}

impl AllowReason {
    pub fn as_str(self) -> &'static str {
        match self {
            AllowReason::TwoFactorOff => "two_factor_off",
            AllowReason::TrustedDevice => "trusted_device",
            AllowReason::PasskeyVerified => "passkey_verified",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow(AllowReason),
    /// `factors` strongest first (the first is the primary); `fallbacks` the alternatives
    /// after them, in order: SMS as the alternative of an app or a key (`sms_fallback`), then
    /// a voice call wherever the policy allows calls, then e-mail wherever it allows e-mail.
    Challenge {
        factors: Vec<Offer>,
        fallbacks: Vec<Offer>,
    },
    /// 1send: the account requires 2FA and the user has no usable factor: enrol before access.
    Enroll {
        channels: ChannelSet,
    },
}

impl Decision {
    pub fn label(&self) -> &'static str {
        match self {
            Decision::Allow(_) => "allow",
            Decision::Challenge { .. } => "challenge",
            Decision::Enroll { .. } => "enroll",
        }
    }
}

/// What a login presented beside the user, each already checked against the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Presented {
    /// A device token of a device this user trusts, still within the policy's duration.
    pub trusted_device: bool,
    /// A passed passkey challenge of this user (user verification required by its ceremony).
    pub verified_passkey: bool,
}

pub fn decide(policy: &Policy, user: &User, presented: Presented) -> Decision {
    if !user.two_factor_enabled(policy.require_2fa) {
        return Decision::Allow(AllowReason::TwoFactorOff);
    }
    if presented.trusted_device {
        return Decision::Allow(AllowReason::TrustedDevice);
    }
    if presented.verified_passkey && policy.channels.contains(PolicyChannel::Webauthn) {
        return Decision::Allow(AllowReason::PasskeyVerified);
    }
    let mut strong: Vec<Offer> = Vec::new();
    for kind in [FactorType::Passkey, FactorType::Webauthn, FactorType::Totp] {
        let channel = match kind {
            FactorType::Webauthn | FactorType::Passkey => PolicyChannel::Webauthn,
            FactorType::Totp => PolicyChannel::Totp,
        };
        if !policy.channels.contains(channel) {
            continue;
        }
        strong.extend(
            user.factors
                .iter()
                .filter(|factor| factor.kind == kind)
                .map(|factor| Offer {
                    kind: kind.as_str(),
                    id: Some(factor.id.clone()),
                    to: None,
                }),
        );
    }
    let phone_offer = |channel: PolicyChannel| {
        let phone = user.phone.as_ref()?;
        policy.channels.contains(channel).then(|| Offer {
            kind: channel.as_str(),
            id: None,
            to: Some(mask(phone.e164())),
        })
    };
    // A call reads the code to a landline or a phone without coverage: never the primary
    // factor while a stronger one is there, always offered after it where the policy allows.
    let call = phone_offer(PolicyChannel::Call);
    // E-mail is the weakest (a mailbox is often the account-recovery path itself): always a
    // fallback while any other factor is there, the factor only when it is the last one.
    let email = user
        .email
        .as_ref()
        .filter(|_| policy.channels.contains(PolicyChannel::Email))
        .map(|address| Offer {
            kind: PolicyChannel::Email.as_str(),
            id: None,
            to: Some(address.masked()),
        });
    if !strong.is_empty() {
        let sms = policy
            .sms_fallback
            .then(|| phone_offer(PolicyChannel::Sms))
            .flatten();
        return Decision::Challenge {
            factors: strong,
            fallbacks: sms.into_iter().chain(call).chain(email).collect(),
        };
    }
    // No app or key: the texting channels are the factors, SMS (the default channel) first,
    // and the call their fallback (the factor itself when it is the only phone channel).
    let phone: Vec<Offer> = [PolicyChannel::Sms, PolicyChannel::Whatsapp]
        .into_iter()
        .filter_map(phone_offer)
        .collect();
    let mut rest = call.into_iter().chain(email);
    if !phone.is_empty() {
        return Decision::Challenge {
            factors: phone,
            fallbacks: rest.collect(),
        };
    }
    match rest.next() {
        None => Decision::Enroll {
            channels: policy.channels,
        },
        Some(factor) => Decision::Challenge {
            factors: vec![factor],
            fallbacks: rest.collect(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::policy::TrustDuration;
    use crate::account::user::{Factor, Override, SetBy, UserId, UserRole};
    use crate::phone::PhoneNumber;

    fn policy(channels: &[PolicyChannel], require: bool, fallback: bool) -> Policy {
        Policy {
            require_2fa: require,
            channels: ChannelSet::of(channels),
            sms_fallback: fallback,
            trusted_device: TrustDuration::OneDay,
            abuse: Default::default(),
            workflow: None,
            version: 1,
        }
    }

    fn user(phone: bool, factors: &[FactorType]) -> User {
        User {
            id: UserId::parse("u").unwrap(),
            role: UserRole::Member,
            phone: phone.then(|| PhoneNumber::parse("+4915112345678").unwrap()),
            email: None,
            two_factor: None,
            factors: factors
                .iter()
                .enumerate()
                .map(|(n, kind)| Factor {
                    kind: *kind,
                    id: format!("FA{n}"),
                })
                .collect(),
            device_epoch: 0,
            version: 1,
            created_ms: 0,
            updated_ms: 0,
        }
    }

    #[test]
    fn an_app_comes_first_with_sms_as_the_alternative_where_allowed() {
        use PolicyChannel::*;
        let decision = decide(
            &policy(&[Sms, Totp, Webauthn], true, true),
            &user(true, &[FactorType::Totp, FactorType::Webauthn]),
            Presented::default(),
        );
        let Decision::Challenge { factors, fallbacks } = decision else {
            panic!("{decision:?}")
        };
        let kinds: Vec<_> = factors.iter().map(|offer| offer.kind).collect();
        assert_eq!(kinds, ["webauthn", "totp"]);
        let fallback_kinds: Vec<_> = fallbacks.iter().map(|offer| offer.kind).collect();
        assert_eq!(fallback_kinds, ["sms"]);
    }

    #[test]
    fn email_is_a_fallback_after_every_other_factor_and_the_factor_only_when_alone() {
        use PolicyChannel::*;
        let with_email = |mut user: User| {
            user.email = Some(crate::destination::EmailAddress::parse("jane@example.com").unwrap());
            user
        };
        let kinds = |offers: &[Offer]| offers.iter().map(|o| o.kind).collect::<Vec<_>>();
        let all = policy(&[Sms, Call, Email, Totp], true, true);
        let decision = decide(
            &all,
            &with_email(user(true, &[FactorType::Totp])),
            Presented::default(),
        );
        let Decision::Challenge { factors, fallbacks } = decision else {
            panic!("{decision:?}")
        };
        assert_eq!(kinds(&factors), ["totp"]);
        assert_eq!(kinds(&fallbacks), ["sms", "call", "email"]);
        assert_eq!(fallbacks[2].to.as_deref(), Some("j***@example.com"));

        let decision = decide(&all, &with_email(user(true, &[])), Presented::default());
        let Decision::Challenge { factors, fallbacks } = decision else {
            panic!("{decision:?}")
        };
        assert_eq!(
            (kinds(&factors), kinds(&fallbacks)),
            (vec!["sms"], vec!["call", "email"])
        );

        // No phone: the address is the factor; without e-mail in the policy, enrol.
        let decision = decide(&all, &with_email(user(false, &[])), Presented::default());
        let Decision::Challenge { factors, fallbacks } = decision else {
            panic!("{decision:?}")
        };
        assert_eq!((kinds(&factors), fallbacks.len()), (vec!["email"], 0));
        let no_email = policy(&[Sms, Totp], true, true);
        let decision = decide(
            &no_email,
            &with_email(user(false, &[])),
            Presented::default(),
        );
        assert!(matches!(decision, Decision::Enroll { .. }), "{decision:?}");
        // Allowed by the policy, but the user has no address: not offered.
        let decision = decide(
            &all,
            &user(false, &[FactorType::Totp]),
            Presented::default(),
        );
        assert!(
            matches!(&decision, Decision::Challenge { fallbacks, .. } if fallbacks.is_empty()),
            "{decision:?}"
        );
    }

    #[test]
    fn a_call_is_offered_after_the_strongest_factor_where_the_policy_allows_it() {
        use PolicyChannel::*;
        let app_user = user(true, &[FactorType::Totp]);
        let decision = decide(
            &policy(&[Sms, Call, Totp], true, true),
            &app_user,
            Presented::default(),
        );
        let Decision::Challenge { factors, fallbacks } = decision else {
            panic!("{decision:?}")
        };
        assert_eq!(factors[0].kind, "totp");
        let kinds: Vec<_> = fallbacks.iter().map(|offer| offer.kind).collect();
        assert_eq!(kinds, ["sms", "call"]);
        assert_eq!(fallbacks[1].to.as_deref(), Some("+491*******678"));

        // A phone-only user: SMS is the factor, the call its fallback.
        let decision = decide(
            &policy(&[Sms, Call], true, false),
            &user(true, &[]),
            Presented::default(),
        );
        let Decision::Challenge { factors, fallbacks } = decision else {
            panic!("{decision:?}")
        };
        assert_eq!(factors.iter().map(|o| o.kind).collect::<Vec<_>>(), ["sms"]);
        assert_eq!(
            fallbacks.iter().map(|o| o.kind).collect::<Vec<_>>(),
            ["call"]
        );

        // Calls alone: the call is the factor; without calls in the policy, none is offered.
        let decision = decide(
            &policy(&[Call], true, false),
            &user(true, &[]),
            Presented::default(),
        );
        assert!(
            matches!(&decision, Decision::Challenge { factors, fallbacks } if factors[0].kind == "call" && fallbacks.is_empty()),
            "{decision:?}"
        );
        let decision = decide(
            &policy(&[Sms, Totp], true, false),
            &app_user,
            Presented::default(),
        );
        assert!(
            matches!(&decision, Decision::Challenge { fallbacks, .. } if fallbacks.is_empty()),
            "{decision:?}"
        );
    }

    #[test]
    fn without_sms_fallback_an_app_user_is_not_offered_sms() {
        use PolicyChannel::*;
        let decision = decide(
            &policy(&[Sms, Totp], true, false),
            &user(true, &[FactorType::Totp]),
            Presented::default(),
        );
        assert!(matches!(
            decision,
            Decision::Challenge { fallbacks, .. } if fallbacks.is_empty()
        ));
    }

    #[test]
    fn a_user_override_on_needs_a_factor_even_when_the_account_does_not_require() {
        let mut someone = user(false, &[]);
        someone.two_factor = Some(Override {
            enabled: true,
            set_by: SetBy::Owner,
        });
        let decision = decide(
            &policy(&[PolicyChannel::Totp], false, false),
            &someone,
            Presented::default(),
        );
        assert!(matches!(decision, Decision::Enroll { .. }));
    }

    #[test]
    fn a_verified_passkey_allows_only_while_the_policy_allows_webauthn() {
        use PolicyChannel::*;
        let someone = user(true, &[FactorType::Passkey, FactorType::Totp]);
        let passkey = Presented {
            verified_passkey: true,
            ..Presented::default()
        };
        assert_eq!(
            decide(
                &policy(&[Sms, Totp, Webauthn], true, false),
                &someone,
                passkey
            ),
            Decision::Allow(AllowReason::PasskeyVerified)
        );
        let decision = decide(&policy(&[Sms, Totp], true, false), &someone, passkey);
        let Decision::Challenge { factors, .. } = decision else {
            panic!("{decision:?}")
        };
        assert_eq!(factors.len(), 1);
        assert_eq!(factors[0].kind, "totp");
        let decision = decide(
            &policy(&[Totp, Webauthn], true, false),
            &someone,
            Presented::default(),
        );
        let Decision::Challenge { factors, .. } = decision else {
            panic!("{decision:?}")
        };
        let kinds: Vec<_> = factors.iter().map(|offer| offer.kind).collect();
        assert_eq!(kinds, ["passkey", "totp"]);
    }
}
