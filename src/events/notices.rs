//! The domain's side of events: one method per kind of thing that happens, taking its
//! `EventType` (or dispatch's status word for a message) and the domain's values (events imports
//! none of verify, factors, pin or dispatch: they import it), and the account's `Notices` port. Each builds its event only when the account has a
//! webhook, and never fails: an id that cannot go out in an event (see `SubjectId`) drops the
//! event, logged.

use serde_json::Value;

use super::emit::Events;
use super::model::{Event, EventData, EventType, Label, MaskedNumber, SubjectId, SubjectKind};
use crate::account::notices::Notices;
use crate::account::user::UserId;
use crate::account::AccountId;
use crate::phone::PhoneNumber;

/// A message's side of its event, as dispatch words it; `reason` a word for a failure.
pub struct MessageNotice<'a> {
    pub verification: &'a str,
    pub to: &'a PhoneNumber,
    pub channel: &'static str,
    pub provider: &'a str,
    pub reason: Option<&'static str>,
}

/// What an event is about.
struct About<'a> {
    subject_kind: SubjectKind,
    subject: &'a str,
}

impl Events {
    /// A verification's event (`kind` one of the `Verification…` types). `to` is the number as
    /// stored (E.164); it goes out masked.
    pub fn verification(
        &self,
        account: &AccountId,
        kind: EventType,
        id: &str,
        to: &str,
        channel: &'static str,
        attempts: u32,
    ) {
        let about = About {
            subject_kind: SubjectKind::Verification,
            subject: id,
        };
        self.about(account, kind, about, || EventData {
            to: masked(to),
            channel: Some(Label::new(channel)),
            attempts: (kind != EventType::VerificationCreated).then_some(attempts),
            ..EventData::default()
        });
    }

    /// A message of a verification: `happened` accepted (by its provider), delivered or failed
    /// (dispatch's status words; any other emits nothing).
    pub fn message(&self, account: &AccountId, happened: &str, message: &MessageNotice<'_>) {
        let kind = match happened {
            "accepted" => EventType::MessageAccepted,
            "delivered" => EventType::MessageDelivered,
            "failed" => EventType::MessageFailed,
            _ => return,
        };
        let about = About {
            subject_kind: SubjectKind::Verification,
            subject: message.verification,
        };
        self.about(account, kind, about, || EventData {
            to: Some(MaskedNumber::of(message.to)),
            channel: Some(Label::new(message.channel)),
            provider: Label::parse(message.provider),
            reason: message.reason.map(Label::new),
            ..EventData::default()
        });
    }

    /// A workflow's step left for the next channel: `channel` the one now tried, `reason`
    /// failed or timeout.
    pub fn fallback(
        &self,
        account: &AccountId,
        id: &str,
        to: &str,
        channel: &'static str,
        reason: &'static str,
    ) {
        let about = About {
            subject_kind: SubjectKind::Verification,
            subject: id,
        };
        self.about(account, EventType::VerificationFallback, about, || {
            EventData {
                to: masked(to),
                channel: Some(Label::new(channel)),
                reason: Some(Label::new(reason)),
                ..EventData::default()
            }
        });
    }

    /// A send refused by abuse protection before any verification existed: the subject is the
    /// account, the data the masked number, the channel and the rule that refused it.
    pub fn blocked(
        &self,
        account: &AccountId,
        to: &PhoneNumber,
        channel: &'static str,
        rule: &'static str,
    ) {
        let about = About {
            subject_kind: SubjectKind::Account,
            subject: account.as_str(),
        };
        self.about(account, EventType::VerificationBlocked, about, || {
            EventData {
                to: Some(MaskedNumber::of(to)),
                channel: Some(Label::new(channel)),
                rule: Some(Label::new(rule)),
                ..EventData::default()
            }
        });
    }

    /// A phone number's two-step PIN: `kind` PinChanged (set, changed or reset), PinLocked (by
    /// wrong PINs), PinDisabled (by an e-mailed link or support); `to` the number (E.164) when
    /// known, which goes out masked.
    pub fn pin(&self, account: &AccountId, kind: EventType, number: &str, to: Option<&str>) {
        let about = About {
            subject_kind: SubjectKind::PhoneNumber,
            subject: number,
        };
        self.about(account, kind, about, || EventData {
            to: to.and_then(masked),
            ..EventData::default()
        });
    }

    fn about(
        &self,
        account: &AccountId,
        kind: EventType,
        about: About<'_>,
        data: impl FnOnce() -> EventData,
    ) {
        if !self.watches(account) {
            return;
        }
        let Some(subject) = SubjectId::parse(about.subject) else {
            tracing::debug!(
                event = kind.as_str(),
                "event dropped: its subject's id cannot go out"
            );
            return;
        };
        self.emit(
            account,
            Event::new(kind, about.subject_kind, subject).with(data()),
        );
    }

    fn about_user(&self, account: &AccountId, user: &UserId, kind: EventType) {
        let about = About {
            subject_kind: SubjectKind::User,
            subject: user.as_str(),
        };
        self.about(account, kind, about, EventData::default);
    }
}

/// A number as stored (E.164), masked; `None` when it does not parse.
fn masked(e164: &str) -> Option<MaskedNumber> {
    PhoneNumber::parse(e164).ok().as_ref().map(MaskedNumber::of)
}

impl Notices for Events {
    fn policy_changed(&self, account: &AccountId, change: &Value) {
        let about = About {
            subject_kind: SubjectKind::Account,
            subject: account.as_str(),
        };
        self.about(account, EventType::PolicyChanged, about, || {
            let (before, after) = (&change["before"], &change["after"]);
            let changed = after
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(field, value)| {
                    field.as_str() != "version" && before.get(field) != Some(value)
                })
                .filter_map(|(field, _)| Label::parse(field))
                .collect();
            EventData {
                changed,
                ..EventData::default()
            }
        });
    }

    fn device_trusted(&self, account: &AccountId, user: &UserId) {
        self.about_user(account, user, EventType::DeviceTrusted);
    }

    fn devices_revoked(&self, account: &AccountId, user: &UserId) {
        self.about_user(account, user, EventType::DeviceRevoked);
    }

    fn factor_changed(
        &self,
        account: &AccountId,
        user: &UserId,
        factor: &str,
        factor_type: &'static str,
        added: bool,
    ) {
        let about = About {
            subject_kind: SubjectKind::Factor,
            subject: factor,
        };
        let kind = if added {
            EventType::FactorEnrolled
        } else {
            EventType::FactorRemoved
        };
        self.about(account, kind, about, || EventData {
            user_id: SubjectId::parse(user.as_str()),
            factor_type: Some(Label::new(factor_type)),
            ..EventData::default()
        });
    }
}
