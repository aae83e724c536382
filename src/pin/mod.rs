//! Phone-number two-step verification (WhatsApp Business style): a 6-digit PIN per registered
//! phone number, on by default, needed to register the number, never disabled through the API.
//!
//! - `mod.rs` (this file): the `Pin` newtype, the blocklist, phone-number ids, the settings.
//! - `hash.rs`: argon2id with a per-PIN salt and the server-side pepper.
//! - `store.rs`: the `PinStore` seam (one atomic step per method); `memory.rs`, `redis.rs`.
//! - `service.rs`: `PinService`, what the handlers and the support command call.
//! - `links.rs`: the e-mailed disable and reset links (`PinService`'s link methods).
//! - `support.rs`: the operator command `otpgate support disable-two-step`.
//!
//! A plaintext PIN exists only in the request that carries it and in the `Pin` parsed from it;
//! `Pin`'s `Debug` hides it and nothing logs it. Stored is an argon2id hash keyed by the pepper,
//! which lives in config or the environment, never in the store: a dump of the store alone does
//! not let anyone brute-force the 10⁶ PINs offline.

pub mod hash;
pub mod links;
pub mod service;
pub mod store;
pub mod support;

use std::fmt;
use std::time::Duration;

use ring::rand::SystemRandom;

pub use crate::backoff::AttemptLimits;

use crate::account::text_id;
use crate::random::random_bytes;

/// The audit actions of this module (entries go to the account's audit trail).
pub mod action {
    pub const NUMBER_ADDED: &str = "phone_number.added";
    pub const NUMBER_REGISTERED: &str = "phone_number.registered";
    /// In the account that took a number from another one (its PIN, or two-step off there).
    pub const TRANSFERRED_IN: &str = "phone_number.transferred_in";
    /// In the account that lost it.
    pub const TRANSFERRED_OUT: &str = "phone_number.transferred_out";
    /// In both accounts: another account tried to add the number and was refused.
    pub const CLAIM_REFUSED: &str = "phone_number.claim_refused";
    pub const PIN_SET: &str = "two_step.pin_set";
    pub const PIN_CHANGED: &str = "two_step.pin_changed";
    pub const ENABLED: &str = "two_step.enabled";
    pub const LOCKED: &str = "two_step.locked";
    pub const DISABLE_REQUESTED: &str = "two_step.disable_requested";
    pub const DISABLE_REFUSED: &str = "two_step.disable_refused";
    pub const DISABLED: &str = "two_step.disabled";
    pub const SUPPORT_DISABLED: &str = "two_step.disabled_by_support";
    pub const RESET_REQUESTED: &str = "two_step.reset_requested";
    pub const RESET_REFUSED: &str = "two_step.reset_refused";
    pub const PIN_RESET: &str = "two_step.pin_reset";
}

/// A two-step PIN: exactly six ASCII digits. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Pin([u8; 6]);

/// Why a PIN was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinRefusal {
    /// Not exactly six digits (400).
    Format,
    /// Well-formed but too easy to guess (422): the reason names the pattern.
    Common(&'static str),
}

/// PINs seen most often in leaked six-digit PIN sets and lists of weak codes, beyond the
/// patterns `Pin::parse` refuses by rule (one digit repeated, straight runs, `ababab`, `abcabc`).
const BLOCKLIST: &[&str] = &[
    "000001", "100000", "102030", "112211", "110110", "100100", "112233", "121314", "123321",
    "123654", "654123", "147258", "258369", "147852", "159357", "159753", "357159", "753159",
    "246810", "135790", "520520", "520131", "521521", "789456", "456123", "741852", "852963",
    "963852", "951753", "696969", "101101", "131313", "200000", "654456", "111222", "112112",
    "121121", "123000", "000123", "999000", "007007", "142536", "147369", "314159", "198900",
    "199000", "200200", "111000", "222000", "110011", "111112", "211111",
];

impl Pin {
    pub const LENGTH: usize = 6;

    /// Exactly six ASCII digits, not a common PIN.
    pub fn parse(input: &str) -> Result<Self, PinRefusal> {
        let bytes = input.as_bytes();
        if bytes.len() != Self::LENGTH || !bytes.iter().all(u8::is_ascii_digit) {
            return Err(PinRefusal::Format);
        }
        let mut digits = [0u8; 6];
        digits.copy_from_slice(bytes);
        if let Some(reason) = common_pattern(&digits) {
            return Err(PinRefusal::Common(reason));
        }
        Ok(Self(digits))
    }

    /// Refuses a PIN that is the number's own last six digits: the first thing anyone tries.
    pub fn check_against_number(&self, e164: &str) -> Result<(), PinRefusal> {
        if e164.as_bytes().ends_with(&self.0) {
            return Err(PinRefusal::Common(
                "it is the last six digits of the phone number",
            ));
        }
        Ok(())
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin(******)")
    }
}

fn common_pattern(d: &[u8; 6]) -> Option<&'static str> {
    if d.iter().all(|&b| b == d[0]) {
        return Some("it repeats one digit");
    }
    let steps: Vec<i8> = d.windows(2).map(|w| w[1] as i8 - w[0] as i8).collect();
    if steps.iter().all(|&s| s == 1) || steps.iter().all(|&s| s == -1) {
        return Some("it is a straight run of digits");
    }
    if d[0] == d[2] && d[2] == d[4] && d[1] == d[3] && d[3] == d[5] {
        return Some("it repeats a pair of digits");
    }
    if d[..3] == d[3..] {
        return Some("it repeats three digits");
    }
    let text = std::str::from_utf8(d).unwrap_or_default();
    if BLOCKLIST.contains(&text) {
        return Some("it is on the list of common PINs");
    }
    None
}

/// A phone number's id: 15 digits without a leading zero, like the Graph API's numeric
/// phone-number ids, so that a Graph client can use ours in `POST /{version}/{id}` as they are.
/// Ids are random and scoped to an account: another account's id is simply not found.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PhoneNumberId(String);

impl PhoneNumberId {
    pub const LENGTH: usize = 15;

    /// The empty id, below every real one: where an ordered range of one account's numbers
    /// starts. Never stored.
    pub(crate) fn lowest() -> Self {
        Self(String::new())
    }

    pub fn random(rng: &SystemRandom) -> Result<Self, ring::error::Unspecified> {
        // Rejection sampling keeps the ids uniform over [10^14, 10^15).
        const LOW: u64 = 100_000_000_000_000;
        const SPAN: u64 = 900_000_000_000_000;
        let zone = u64::MAX - (u64::MAX % SPAN);
        loop {
            let value = u64::from_be_bytes(random_bytes::<8>(rng)?);
            if value < zone {
                return Ok(Self((LOW + value % SPAN).to_string()));
            }
        }
    }

    pub fn parse(input: &str) -> Option<Self> {
        (input.len() == Self::LENGTH
            && !input.starts_with('0')
            && input.bytes().all(|b| b.is_ascii_digit()))
        .then(|| Self(input.to_owned()))
    }
}

text_id!(PhoneNumberId);

/// A Graph API version segment: `v` then digits, a dot, digits (`v24.0`).
pub fn is_graph_version(segment: &str) -> bool {
    let Some(rest) = segment.strip_prefix('v') else {
        return false;
    };
    let Some((major, minor)) = rest.split_once('.') else {
        return false;
    };
    let digits = |part: &str| {
        !part.is_empty() && part.len() <= 4 && part.bytes().all(|b| b.is_ascii_digit())
    };
    digits(major) && digits(minor)
}

/// `[pin]` in config: the service's settings and the pepper.
#[derive(Debug, Clone)]
pub struct PinConfig {
    pub settings: service::PinSettings,
    /// The server-side pepper (argon2's secret input): 32+ bytes, the same on every instance.
    /// Empty with the embedded store: a random per-process pepper is drawn.
    pub pepper: crate::secret::Secret,
}

impl Default for PinConfig {
    fn default() -> Self {
        Self {
            settings: service::PinSettings {
                cost: hash::HashCost::DEFAULT,
                limits: AttemptLimits {
                    free_attempts: 3,
                    attempts_per_wait: 1,
                    first_wait_ms: 30_000,
                    max_wait_ms: 3_600_000,
                    lock_after: Some(10),
                },
                link_ttl: Duration::from_secs(24 * 3600),
                memory_max_numbers: 100_000,
            },
            pepper: crate::secret::Secret::default(),
        }
    }
}

impl PinConfig {
    /// The rules on values that parsed; each broken one adds a line to `errors`.
    pub fn validate(&self, errors: &mut Vec<String>) {
        let settings = &self.settings;
        if let Err(problem) = settings.cost.validate() {
            errors.push(format!("pin: {problem}"));
        }
        let max_failures = settings.limits.lock_after.unwrap_or(u32::MAX);
        if max_failures > 10 {
            errors.push("pin.max_failures: must be at most 10 (NIST SP 800-63B: at most 10 consecutive failed attempts)".to_owned());
        }
        if settings.limits.free_attempts > max_failures {
            errors.push("pin.free_attempts: must be at most pin.max_failures".to_owned());
        }
        if settings.link_ttl > Duration::from_secs(7 * 24 * 3600) {
            errors.push("pin.link_ttl_seconds: must be at most 604800 (7 days)".to_owned());
        }
    }
}

/// What a link sent by e-mail does once opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkPurpose {
    /// Turns two-step verification off.
    Disable,
    /// Lets the owner set a new PIN without the old one (a forgotten PIN, a locked number).
    Reset,
}

impl LinkPurpose {
    pub fn code(self) -> &'static str {
        match self {
            LinkPurpose::Disable => "d",
            LinkPurpose::Reset => "r",
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        match code {
            "d" => Some(LinkPurpose::Disable),
            "r" => Some(LinkPurpose::Reset),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LinkPurpose::Disable => "disable",
            LinkPurpose::Reset => "reset",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_are_exactly_six_digits() {
        assert!(Pin::parse("482915").is_ok());
        for bad in ["", "48291", "4829150", "48291a", " 482915", "48 915"] {
            assert_eq!(Pin::parse(bad), Err(PinRefusal::Format), "{bad:?}");
        }
        // Full-width digits are digits to Unicode, not to a PIN.
        assert_eq!(Pin::parse("４８２９１５"), Err(PinRefusal::Format));
    }

    #[test]
    fn common_pins_are_refused_with_a_reason() {
        for common in [
            "000000", "123456", "111111", "121212", "654321", "123123", "112233", "696969",
            "159753", "000001", "999999", "234567", "876543", "898989", "520520",
        ] {
            assert!(
                matches!(Pin::parse(common), Err(PinRefusal::Common(_))),
                "{common}"
            );
        }
    }

    #[test]
    fn a_pin_never_appears_in_debug_output() {
        let pin = Pin::parse("482915").unwrap();
        assert!(!format!("{pin:?}").contains("482915"));
    }

    #[test]
    fn the_numbers_own_digits_are_refused() {
        let pin = Pin::parse("482915").unwrap();
        assert!(pin.check_against_number("+4915100482915").is_err());
        assert!(pin.check_against_number("+4915100482916").is_ok());
    }

    #[test]
    fn ids_are_fifteen_digits_and_round_trip() {
        let rng = SystemRandom::new();
        for _ in 0..100 {
            let id = PhoneNumberId::random(&rng).unwrap();
            assert_eq!(PhoneNumberId::parse(id.as_str()), Some(id.clone()));
        }
        assert!(PhoneNumberId::parse("106540352242922").is_some());
        let refused = |text: &str| PhoneNumberId::parse(text).is_none();
        // Empty, 14 digits, a leading zero, a letter, 16 digits.
        assert!(refused("") && refused("06540352242922") && refused("016540352242922"));
        assert!(refused("10654035224292a") && refused("1065403522429221"));
    }

    #[test]
    fn graph_versions_look_like_v24_0() {
        for good in ["v24.0", "v1.0", "v25.12"] {
            assert!(is_graph_version(good), "{good}");
        }
        for bad in [
            "v1", "24.0", "v24.", "v.0", "V24.0", "v24.0.1", "healthz", "v24.0a",
        ] {
            assert!(!is_graph_version(bad), "{bad}");
        }
    }
}
