//! Values parsed once at the edge, for the v1 API and the Twilio facade alike: an account's
//! name, a locale, an e-mail address, a code length. Each API words its own 400 around the
//! parse.

use super::error::ApiError;
use crate::verify::code::MAX_CODE_LENGTH;

/// An optional field parsed by `parse`; a value it refuses is a 400 saying `expected`.
pub fn optional<T>(
    input: Option<&str>,
    parse: impl FnOnce(&str) -> Option<T>,
    expected: &'static str,
) -> Result<Option<T>, ApiError> {
    input
        .map(|text| parse(text).ok_or_else(|| ApiError::invalid(expected)))
        .transpose()
}

/// An account's display name: 1 to 100 printable characters, trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountName(String);

impl AccountName {
    pub const RULE: &'static str = "1 to 100 printable characters";

    pub fn parse(input: &str) -> Option<Self> {
        let name = input.trim();
        let valid =
            !name.is_empty() && name.chars().count() <= 100 && !name.chars().any(char::is_control);
        valid.then(|| Self(name.to_owned()))
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// A locale such as `en`, `de-DE` or `pt-BR`; templates per locale come with dispatch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locale(String);

impl Locale {
    pub fn parse(input: &str) -> Option<Self> {
        let mut parts = input.split('-');
        let language = parts.next().unwrap_or_default();
        let valid = (2..=3).contains(&language.len())
            && language.bytes().all(|b| b.is_ascii_lowercase())
            && parts.all(|part| {
                (2..=8).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_alphanumeric())
            });
        valid.then(|| Self(input.to_owned()))
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// An e-mail address (trimmed) two-step links may be sent to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailAddress(String);

impl EmailAddress {
    pub const EXPECTED: &'static str = "email must be an address such as owner@example.com";

    pub fn parse(input: &str) -> Option<Self> {
        let address = input.trim();
        crate::mail::valid_address(address).then(|| Self(address.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether `length` digits per code are allowed: `floor` (the operator's, or the API's) to 10.
pub fn code_length_allowed(length: u8, floor: u8) -> bool {
    (floor..=MAX_CODE_LENGTH).contains(&length)
}

/// The v1 API's 400 for a code length out of `floor..=10`.
pub fn check_code_length(length: u8, floor: u8) -> Result<(), ApiError> {
    if code_length_allowed(length, floor) {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "code_length must be between {floor} and {MAX_CODE_LENGTH}"
        )))
    }
}

/// A workflow's channels and timeout as a request gives them (`POST /v1/verifications`
/// `channels`, `PUT /v1/policy` `default_workflow`): 1 to `MAX_STEPS` names, each read by the
/// one channel enum and none twice (400), `fallback_after_seconds` in range (400). A name the
/// gateway has no channel for is refused by policy (422): it may be a channel another
/// deployment carries.
pub fn workflow(
    names: &[String],
    fallback_after_seconds: Option<u32>,
) -> Result<Vec<crate::dispatch::model::Channel>, ApiError> {
    use crate::verify::workflow::{FALLBACK_AFTER_SECONDS, MAX_STEPS};
    if names.is_empty() || names.len() > MAX_STEPS {
        return Err(ApiError::invalid(format!(
            "channels must name 1 to {MAX_STEPS} channels, in the order to try them"
        )));
    }
    let mut channels = Vec::with_capacity(names.len());
    for name in names {
        let channel =
            crate::dispatch::model::Channel::parse(name).ok_or_else(|| ApiError::Refused {
                rule: "workflow-channels-known",
                detail: format!("channels names {name:?}, which this gateway does not send by"),
                users: Vec::new(),
            })?;
        if channels.contains(&channel) {
            return Err(ApiError::invalid(format!(
                "channels names {name} twice: a workflow tries each channel once"
            )));
        }
        channels.push(channel);
    }
    if let Some(seconds) = fallback_after_seconds {
        if !FALLBACK_AFTER_SECONDS.contains(&seconds) {
            return Err(ApiError::invalid(format!(
                "fallback_after_seconds must be {} to {}",
                FALLBACK_AFTER_SECONDS.start(),
                FALLBACK_AFTER_SECONDS.end()
            )));
        }
    }
    Ok(channels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locales_are_language_tags() {
        for good in ["en", "de", "pt-BR", "zh-Hant-TW", "fil"] {
            assert!(Locale::parse(good).is_some(), "{good}");
        }
        for bad in ["", "EN", "e", "english", "de_DE", "de-", "de-D"] {
            assert!(Locale::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn account_names_are_trimmed_printable_and_at_most_100_characters() {
        assert_eq!(
            AccountName::parse("  Acme  ").map(AccountName::into_string),
            Some("Acme".to_owned())
        );
        assert!(AccountName::parse(&"é".repeat(100)).is_some());
        for bad in ["", "   ", "a\nb", &"x".repeat(101)] {
            assert!(AccountName::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn email_addresses_are_trimmed() {
        assert_eq!(
            EmailAddress::parse(" owner@example.com ").map(|email| email.as_str().to_owned()),
            Some("owner@example.com".to_owned())
        );
        assert!(EmailAddress::parse("owner").is_none());
    }
}
