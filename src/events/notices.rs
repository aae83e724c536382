//! The domain's side of events: one method per kind of thing that happens, taking the domain's
//! own words and values (events imports none of verify, factors, pin or dispatch: they import
//! it), and the account's `Notices` port. Each builds its event only when the account has a
//! webhook, and never fails: an id that cannot go out in an event (see `SubjectId`) drops the
//! event, logged.

use serde_json::Value;

use super::emit::Events;
use super::model::{Event, EventData, EventType, Label, MaskedNumber, SubjectId, SubjectKind};
use crate::account::notices::Notices;
use crate::account::user::UserId;
use crate::account::AccountId;
use crate::phone::PhoneNumber;

impl Events {
    /// A verification's event. `happened`: created, approved, canceled, expired,
    /// max_attempts_reached (a verification's status words; any other, such as pending, emits
    /// nothing). `to` is the number as stored (E.164); it goes out masked.
    pub fn verification(
        &self,
        account: &AccountId,
        happened: &str,
        id: &str,
        to: &str,
        channel: &'static str,
        attempts: u32,
    ) {
        let kind = match happened {
            "created" => EventType::VerificationCreated,
            "approved" => EventType::VerificationApproved,
            "canceled" => EventType::VerificationCanceled,
            "expired" => EventType::VerificationExpired,
            "max_attempts_reached" => EventType::VerificationMaxAttemptsReached,
            _ => return,
        };
        if !self.watches(account) {
            return;
        }
        let data = EventData {
            to: PhoneNumber::parse(to).ok().as_ref().map(MaskedNumber::of),
            channel: Some(Label::new(channel)),
            attempts: (kind != EventType::VerificationCreated).then_some(attempts),
            ..EventData::default()
        };
        self.about(account, kind, SubjectKind::Verification, id, data);
    }

    /// A message of a verification: `happened` accepted (by `provider`), delivered or failed
    /// (its receipt, or no provider took it); `reason` a word for a failure.
    pub fn message(
        &self,
        account: &AccountId,
        happened: &str,
        verification: &str,
        to: &PhoneNumber,
        channel: &'static str,
        provider: &str,
        reason: Option<&'static str>,
    ) {
        let kind = match happened {
            "accepted" => EventType::MessageAccepted,
            "delivered" => EventType::MessageDelivered,
            "failed" => EventType::MessageFailed,
            _ => return,
        };
        if !self.watches(account) {
            return;
        }
        let data = EventData {
            to: Some(MaskedNumber::of(to)),
            channel: Some(Label::new(channel)),
            provider: Label::parse(provider),
            reason: reason.map(Label::new),
            ..EventData::default()
        };
        self.about(account, kind, SubjectKind::Verification, verification, data);
    }

    /// A phone number's two-step PIN: `happened` changed (set, changed or reset), locked (by
    /// wrong PINs), disabled (by an e-mailed link or support); `to` the number (E.164) when
    /// known, which goes out masked.
    pub fn pin(&self, account: &AccountId, happened: &str, number: &str, to: Option<&str>) {
        let kind = match happened {
            "changed" => EventType::PinChanged,
            "locked" => EventType::PinLocked,
            "disabled" => EventType::PinDisabled,
            _ => return,
        };
        if !self.watches(account) {
            return;
        }
        let data = EventData {
            to: to
                .and_then(|to| PhoneNumber::parse(to).ok())
                .as_ref()
                .map(MaskedNumber::of),
            ..EventData::default()
        };
        self.about(account, kind, SubjectKind::PhoneNumber, number, data);
    }

    fn about(
        &self,
        account: &AccountId,
        kind: EventType,
        subject_kind: SubjectKind,
        subject: &str,
        data: EventData,
    ) {
        if !self.watches(account) {
            return;
        }
        let Some(subject) = SubjectId::parse(subject) else {
            tracing::debug!(
                event = kind.as_str(),
                "event dropped: its subject's id cannot go out"
            );
            return;
        };
        self.emit(account, Event::new(kind, subject_kind, subject).with(data));
    }
}

impl Notices for Events {
    fn policy_changed(&self, account: &AccountId, change: &Value) {
        if !self.watches(account) {
            return;
        }
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
        let data = EventData {
            changed,
            ..EventData::default()
        };
        self.about(
            account,
            EventType::PolicyChanged,
            SubjectKind::Account,
            account.as_str(),
            data,
        );
    }

    fn device_trusted(&self, account: &AccountId, user: &UserId) {
        self.about(
            account,
            EventType::DeviceTrusted,
            SubjectKind::User,
            user.as_str(),
            EventData::default(),
        );
    }

    fn devices_revoked(&self, account: &AccountId, user: &UserId) {
        self.about(
            account,
            EventType::DeviceRevoked,
            SubjectKind::User,
            user.as_str(),
            EventData::default(),
        );
    }

    fn factor_changed(
        &self,
        account: &AccountId,
        user: &UserId,
        factor: &str,
        factor_type: &'static str,
        added: bool,
    ) {
        let kind = if added {
            EventType::FactorEnrolled
        } else {
            EventType::FactorRemoved
        };
        if !self.watches(account) {
            return;
        }
        let data = EventData {
            user_id: SubjectId::parse(user.as_str()),
            factor_type: Some(Label::new(factor_type)),
            ..EventData::default()
        };
        self.about(account, kind, SubjectKind::Factor, factor, data);
    }
}
