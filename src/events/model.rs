//! What goes out: the event types, what each event is about, its data, and the CloudEvents 1.0
//! envelope that is the body of every webhook request.
//!
//! No event carries a code, a PIN, a secret or a full phone number, and that is a matter of
//! types rather than care: an event's data holds only [`MaskedNumber`] (built from a parsed
//! `PhoneNumber`, it keeps the masked form and the calling code, never the number), [`Label`]s
//! (short tokens that cannot hold a `+` or a run of digits long enough to be a number) and
//! [`SubjectId`]s (ids, never all digits). There is no field of type `String`.

use ring::rand::{SecureRandom, SystemRandom};
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use crate::account::AccountId;
use crate::clock::rfc3339;
use crate::phone::PhoneNumber;

/// Every event type, its name on the wire (`type`), and the subscription filter's vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    VerificationCreated,
    VerificationApproved,
    VerificationCanceled,
    VerificationExpired,
    VerificationMaxAttemptsReached,
    /// A send refused by a protection rule (geo permission, number type, pumping, daily cap).
    VerificationBlocked,
    /// A workflow moved on to its next channel (`verify::workflow`).
    VerificationFallback,
    MessageAccepted,
    MessageDelivered,
    MessageFailed,
    FactorEnrolled,
    FactorRemoved,
    DeviceTrusted,
    DeviceRevoked,
    PolicyChanged,
    PinChanged,
    PinLocked,
    PinDisabled,
    /// `POST /v1/webhooks/{id}/test`: sent to one webhook whatever its filter.
    WebhookTest,
}

impl EventType {
    /// Every type, in the catalogue's order (docs/events.md).
    pub const ALL: [EventType; 19] = [
        EventType::VerificationCreated,
        EventType::VerificationApproved,
        EventType::VerificationCanceled,
        EventType::VerificationExpired,
        EventType::VerificationMaxAttemptsReached,
        EventType::VerificationBlocked,
        EventType::VerificationFallback,
        EventType::MessageAccepted,
        EventType::MessageDelivered,
        EventType::MessageFailed,
        EventType::FactorEnrolled,
        EventType::FactorRemoved,
        EventType::DeviceTrusted,
        EventType::DeviceRevoked,
        EventType::PolicyChanged,
        EventType::PinChanged,
        EventType::PinLocked,
        EventType::PinDisabled,
        EventType::WebhookTest,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::VerificationCreated => "io.otpgate.verification.created",
            EventType::VerificationApproved => "io.otpgate.verification.approved",
            EventType::VerificationCanceled => "io.otpgate.verification.canceled",
            EventType::VerificationExpired => "io.otpgate.verification.expired",
            EventType::VerificationMaxAttemptsReached => {
                "io.otpgate.verification.max_attempts_reached"
            }
            EventType::VerificationBlocked => "io.otpgate.verification.blocked",
            EventType::VerificationFallback => "io.otpgate.verification.fallback",
            EventType::MessageAccepted => "io.otpgate.message.accepted",
            EventType::MessageDelivered => "io.otpgate.message.delivered",
            EventType::MessageFailed => "io.otpgate.message.failed",
            EventType::FactorEnrolled => "io.otpgate.factor.enrolled",
            EventType::FactorRemoved => "io.otpgate.factor.removed",
            EventType::DeviceTrusted => "io.otpgate.device.trusted",
            EventType::DeviceRevoked => "io.otpgate.device.revoked",
            EventType::PolicyChanged => "io.otpgate.policy.changed",
            EventType::PinChanged => "io.otpgate.pin.changed",
            EventType::PinLocked => "io.otpgate.pin.locked",
            EventType::PinDisabled => "io.otpgate.pin.disabled",
            EventType::WebhookTest => "io.otpgate.webhook.test",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

/// Which event types a webhook receives: all, or a list (never empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventFilter {
    All,
    Only(Vec<EventType>),
}

impl EventFilter {
    /// From the registration's `events` list: `["*"]` or an empty list is every type; an
    /// unknown name is refused (and returned).
    pub fn parse<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut kinds = Vec::new();
        for name in names {
            if name == "*" {
                return Ok(EventFilter::All);
            }
            let kind = EventType::parse(name).ok_or_else(|| name.to_owned())?;
            if !kinds.contains(&kind) {
                kinds.push(kind);
            }
        }
        Ok(if kinds.is_empty() {
            EventFilter::All
        } else {
            EventFilter::Only(kinds)
        })
    }

    pub fn accepts(&self, kind: EventType) -> bool {
        match self {
            EventFilter::All => true,
            EventFilter::Only(kinds) => kinds.contains(&kind),
        }
    }

    /// `*` or the type names, space-separated (how the stores keep it).
    pub fn to_words(&self) -> String {
        match self {
            EventFilter::All => "*".to_owned(),
            EventFilter::Only(kinds) => kinds
                .iter()
                .map(|kind| kind.as_str())
                .collect::<Vec<_>>()
                .join(" "),
        }
    }

    /// The inverse of `to_words`; `None` for a type this build does not know.
    pub fn from_words(words: &str) -> Option<Self> {
        let names: Vec<&str> = words.split(' ').filter(|w| !w.is_empty()).collect();
        Self::parse(names).ok()
    }
}

/// What an event is about; its id is in the data as `<kind>_id` and in the envelope's `subject`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectKind {
    Verification,
    User,
    Factor,
    PhoneNumber,
    /// The account itself (policy changes, the test event).
    Account,
}

impl SubjectKind {
    fn field(self) -> &'static str {
        match self {
            SubjectKind::Verification => "verification_id",
            SubjectKind::User => "user_id",
            SubjectKind::Factor => "factor_id",
            SubjectKind::PhoneNumber => "phone_number_id",
            SubjectKind::Account => "account_id",
        }
    }
}

/// An id that may go out in an event: 1 to 64 ASCII letters, digits, `_`, `-`, `.`, `@` or `+`
/// (a user id may be an e-mail address), and not digits alone with or without a leading `+`
/// (so that a phone number cannot pass for one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct SubjectId(String);

impl SubjectId {
    pub fn parse(text: &str) -> Option<Self> {
        let shaped = (1..=64).contains(&text.len())
            && text.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'@' | b'+')
            });
        let number = text
            .trim_start_matches('+')
            .bytes()
            .all(|b| b.is_ascii_digit());
        (shaped && !number).then(|| Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A short word in an event's data (a channel, a status, a rule, a provider's name): 1 to 64
/// ASCII letters, digits, `_`, `-`, `.` or `:`, with at most four digits in a row, so neither
/// a phone number nor a code can be one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Label(std::borrow::Cow<'static, str>);

impl Label {
    /// A label written in the code. Panics in debug builds on a malformed one (a programming
    /// error caught by any test that builds it).
    pub fn new(text: &'static str) -> Self {
        debug_assert!(Self::well_formed(text), "malformed label {text:?}");
        Self(std::borrow::Cow::Borrowed(text))
    }

    /// A label from data (a configured provider name): `None` when it is not one.
    pub fn parse(text: &str) -> Option<Self> {
        Self::well_formed(text).then(|| Self(std::borrow::Cow::Owned(text.to_owned())))
    }

    fn well_formed(text: &str) -> bool {
        let mut digits_in_a_row = 0;
        (1..=64).contains(&text.len())
            && text.bytes().all(|b| {
                digits_in_a_row = if b.is_ascii_digit() {
                    digits_in_a_row + 1
                } else {
                    0
                };
                digits_in_a_row <= 4
                    && (b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
            })
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A phone number as events show it: masked (`+49151*****678`) with its calling code. Only
/// built from a parsed [`PhoneNumber`], and it keeps nothing else of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MaskedNumber {
    masked: String,
    calling_code: u16,
}

impl MaskedNumber {
    pub fn of(number: &PhoneNumber) -> Self {
        Self {
            masked: number.masked(),
            calling_code: number.country_code(),
        }
    }
}

/// What an event says besides its subject and account; every field is optional and only set
/// ones are written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EventData {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<MaskedNumber>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<Label>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Label>,
    /// Which protection refused a send (`geo-permission`, `number-type`, `suspected-pumping`,
    /// `daily-message-cap`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<Label>,
    /// Why a message failed, as a label (never a vendor's free text, which may quote the number).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Label>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<Label>,
    /// The user a factor or device event concerns (the subject is the factor).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<SubjectId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub factor_type: Option<Label>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    /// The policy fields a change touched.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changed: Vec<Label>,
}

/// One event, before it has an id and a time: what the domain hands to `Events::emit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventType,
    pub subject_kind: SubjectKind,
    pub subject: SubjectId,
    pub data: EventData,
}

impl Event {
    pub fn new(kind: EventType, subject_kind: SubjectKind, subject: SubjectId) -> Self {
        Self {
            kind,
            subject_kind,
            subject,
            data: EventData::default(),
        }
    }

    pub fn with(mut self, data: EventData) -> Self {
        self.data = data;
        self
    }

    /// The CloudEvents 1.0 envelope in structured JSON mode: the request body, byte for byte.
    pub fn envelope(&self, account: &AccountId, id: &EventId, time_ms: u64) -> Vec<u8> {
        let envelope = Envelope {
            event: self,
            account,
            id,
            time: rfc3339(time_ms),
        };
        // Serialising plain strings, numbers and these derived types cannot fail.
        serde_json::to_vec(&envelope).unwrap_or_default()
    }
}

/// An event's id, also its `webhook-id`: `msg_` and 32 lowercase hex digits. The same for every
/// webhook and every attempt, so receivers dedupe on it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventId(String);

impl EventId {
    pub fn random(rng: &SystemRandom) -> Result<Self, ring::error::Unspecified> {
        let mut bytes = [0u8; 16];
        rng.fill(&mut bytes)?;
        Ok(Self(format!(
            "msg_{}",
            data_encoding::HEXLOWER.encode(&bytes)
        )))
    }

    pub fn parse(text: &str) -> Option<Self> {
        let hex = text.strip_prefix("msg_")?;
        (hex.len() == 32 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The media type of a structured-mode CloudEvent.
pub const CONTENT_TYPE: &str = "application/cloudevents+json";

struct Envelope<'a> {
    event: &'a Event,
    account: &'a AccountId,
    id: &'a EventId,
    time: String,
}

impl Serialize for Envelope<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(8))?;
        map.serialize_entry("specversion", "1.0")?;
        map.serialize_entry("id", self.id.as_str())?;
        map.serialize_entry(
            "source",
            &format!("/otpgate/accounts/{}", self.account.as_str()),
        )?;
        map.serialize_entry("type", self.event.kind.as_str())?;
        map.serialize_entry("subject", self.event.subject.as_str())?;
        map.serialize_entry("time", &self.time)?;
        map.serialize_entry("datacontenttype", "application/json")?;
        map.serialize_entry(
            "data",
            &Data {
                account_id: self.account.as_str(),
                subject: SubjectField(self.event),
                data: &self.event.data,
            },
        )?;
        map.end()
    }
}

/// `data`: the account id, the subject's id under its kind's name, then the event's fields.
#[derive(Serialize)]
struct Data<'a> {
    account_id: &'a str,
    #[serde(flatten)]
    subject: SubjectField<'a>,
    #[serde(flatten)]
    data: &'a EventData,
}

/// `"<kind>_id": "<id>"`, or nothing when the subject is the account (already `account_id`).
struct SubjectField<'a>(&'a Event);

impl Serialize for SubjectField<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let event = self.0;
        let mut map = serializer.serialize_map(None)?;
        if event.subject_kind != SubjectKind::Account {
            map.serialize_entry(event.subject_kind.field(), event.subject.as_str())?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account() -> AccountId {
        AccountId::parse("AC0123456789abcdef0123456789abcdef").unwrap()
    }

    fn approved() -> Event {
        let number = PhoneNumber::parse("+4915112345678").unwrap();
        Event::new(
            EventType::VerificationApproved,
            SubjectKind::Verification,
            SubjectId::parse("VE07aa11bb22cc33dd44ee55ff66778899").unwrap(),
        )
        .with(EventData {
            to: Some(MaskedNumber::of(&number)),
            channel: Some(Label::new("sms")),
            status: Some(Label::new("approved")),
            attempts: Some(1),
            ..EventData::default()
        })
    }

    #[test]
    fn the_envelope_is_cloudevents_1_0_with_the_account_and_subject_ids() {
        let id = EventId::parse("msg_00112233445566778899aabbccddeeff").unwrap();
        let body = approved().envelope(&account(), &id, 1_700_000_000_123);
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["specversion"], "1.0");
        assert_eq!(json["id"], id.as_str());
        assert_eq!(json["type"], "io.otpgate.verification.approved");
        assert_eq!(
            json["source"],
            "/otpgate/accounts/AC0123456789abcdef0123456789abcdef"
        );
        assert_eq!(json["subject"], "VE07aa11bb22cc33dd44ee55ff66778899");
        assert_eq!(json["time"], "2023-11-14T22:13:20.123Z");
        assert_eq!(json["datacontenttype"], "application/json");
        let data = &json["data"];
        assert_eq!(data["account_id"], "AC0123456789abcdef0123456789abcdef");
        assert_eq!(
            data["verification_id"],
            "VE07aa11bb22cc33dd44ee55ff66778899"
        );
        assert_eq!(data["to"]["masked"], "+491*******678");
        assert_eq!(data["to"]["calling_code"], 49);
        assert_eq!(data["channel"], "sms");
        assert!(data.get("rule").is_none(), "unset fields are not written");
    }

    #[test]
    fn no_envelope_carries_the_full_number() {
        let id = EventId::random(&SystemRandom::new()).unwrap();
        let body = String::from_utf8(approved().envelope(&account(), &id, 0)).unwrap();
        assert!(!body.contains("4915112345678"), "{body}");
        assert!(!body.contains("15112345"), "{body}");
    }

    #[test]
    fn labels_and_subject_ids_cannot_hold_a_number_or_a_code() {
        assert!(Label::parse("twilio-eu").is_some());
        assert!(Label::parse("geo-permission").is_some());
        assert!(Label::parse("+4915112345678").is_none());
        assert!(Label::parse("4915112345678").is_none());
        assert!(Label::parse("123456").is_none(), "a six-digit code");
        assert!(Label::parse("code 123").is_none(), "no spaces");
        assert!(Label::parse("").is_none());
        assert!(SubjectId::parse("4915112345678").is_none());
        assert!(SubjectId::parse("+4915112345678").is_none());
        assert!(SubjectId::parse("VE0123").is_some());
        assert!(SubjectId::parse("ada.lovelace+2fa@example.com").is_some());
        assert!(SubjectId::parse("++4915112345678").is_none());
        assert!(SubjectId::parse(&"a".repeat(65)).is_none());
    }

    #[test]
    fn every_type_has_a_distinct_name_that_parses_back() {
        for kind in EventType::ALL {
            assert_eq!(EventType::parse(kind.as_str()), Some(kind));
            assert!(kind.as_str().starts_with("io.otpgate."));
        }
        let mut names: Vec<&str> = EventType::ALL.iter().map(|k| k.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), EventType::ALL.len());
    }

    #[test]
    fn filters_take_star_or_known_types_and_round_trip_through_words() {
        assert_eq!(EventFilter::parse(["*"]), Ok(EventFilter::All));
        assert_eq!(EventFilter::parse([]), Ok(EventFilter::All));
        assert_eq!(
            EventFilter::parse(["io.otpgate.nope"]),
            Err("io.otpgate.nope".to_owned())
        );
        let filter =
            EventFilter::parse(["io.otpgate.verification.approved", "io.otpgate.pin.locked"])
                .unwrap();
        assert!(filter.accepts(EventType::PinLocked));
        assert!(!filter.accepts(EventType::VerificationCreated));
        assert_eq!(EventFilter::from_words(&filter.to_words()), Some(filter));
        assert_eq!(EventFilter::from_words("*"), Some(EventFilter::All));
    }
}
