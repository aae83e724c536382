//! Where a code goes: a phone number (SMS, WhatsApp, calls) or an e-mail address (e-mail),
//! parsed once at the edge and masked whenever it is shown. A leaf: it knows `phone.rs` only.

use std::fmt;

use crate::phone::{self, PhoneNumber, PhoneNumberError};

/// An e-mail address a code may be sent to, validated by the `email_address` crate (RFC 5322
/// `addr-spec`, no display name, no domain literal, a dotted domain) and normalised: the domain
/// in lower-case ASCII (IDNA: `bücher.example` becomes `xn--bcher-kva.example`), and the local
/// part lower-cased too. RFC 5321 lets a server tell `Jane` from `jane`, but practically none
/// does, and a quota keyed on the typed case could be dodged by changing it: one inbox, one
/// key. At most 254 characters in all.
///
/// `Debug` and `Display` print the masked form (`a***@example.com`); the address appears in full
/// only where a mail is sent or a record is keyed.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct EmailAddress(String);

/// Why a text is not an e-mail address a code can be sent to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EmailAddressError {
    #[error("must be an e-mail address such as owner@example.com")]
    Invalid,
    #[error("must be at most 254 characters")]
    TooLong,
    #[error("its local part (before '@') must be ASCII")]
    NonAsciiLocalPart,
}

impl EmailAddress {
    /// The longest address SMTP carries (RFC 5321's path limit, less the brackets).
    pub const MAX_LEN: usize = 254;

    /// Parses and normalises an address typed by a person (surrounding spaces are trimmed).
    pub fn parse(input: &str) -> Result<Self, EmailAddressError> {
        let input = input.trim();
        if input.len() > 4 * Self::MAX_LEN {
            return Err(EmailAddressError::TooLong);
        }
        let options = email_address::Options::default()
            .without_display_text()
            .without_domain_literal()
            .with_required_tld();
        let parsed = email_address::EmailAddress::parse_with_options(input, options)
            .map_err(|_| EmailAddressError::Invalid)?;
        let local = parsed.local_part();
        // Quoted local parts and SMTPUTF8 are legal but rare, and not every relay takes them:
        // refused here rather than lost later at a mail server.
        if !local.is_ascii() {
            return Err(EmailAddressError::NonAsciiLocalPart);
        }
        if local.starts_with('"') || local.bytes().any(|b| !b.is_ascii_graphic()) {
            return Err(EmailAddressError::Invalid);
        }
        let domain =
            idna::domain_to_ascii(parsed.domain()).map_err(|_| EmailAddressError::Invalid)?;
        if domain.is_empty() || !domain.contains('.') {
            return Err(EmailAddressError::Invalid);
        }
        let address = format!("{}@{domain}", local.to_ascii_lowercase());
        if address.len() > Self::MAX_LEN {
            return Err(EmailAddressError::TooLong);
        }
        Ok(Self(address))
    }

    /// An address this gateway normalised earlier and sealed into its own queue.
    pub(crate) fn trusted(address: String) -> Self {
        Self(address)
    }

    /// The address in full. Call it only to deliver a mail or to key a record.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `a***@example.com`: the first character of the local part and the whole domain, enough
    /// to tell addresses apart in an incident without putting them in the logs.
    pub fn masked(&self) -> String {
        mask_email(&self.0)
    }
}

/// Masks any address-looking string; used for addresses read back from the store as well.
pub fn mask_email(address: &str) -> String {
    match address.rsplit_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "***".to_owned(),
    }
}

impl fmt::Debug for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

/// A verification's destination: what `to` names.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Destination {
    Phone(PhoneNumber),
    Email(EmailAddress),
}

/// Why a `to` is neither a phone number nor an e-mail address.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DestinationError {
    #[error("to {0}")]
    Phone(PhoneNumberError),
    #[error("to {0}")]
    Email(EmailAddressError),
}

impl Destination {
    /// A text with an `@` is an e-mail address, anything else a phone number in E.164.
    pub fn parse(input: &str) -> Result<Self, DestinationError> {
        if input.contains('@') {
            EmailAddress::parse(input)
                .map(Destination::Email)
                .map_err(DestinationError::Email)
        } else {
            PhoneNumber::parse(input)
                .map(Destination::Phone)
                .map_err(DestinationError::Phone)
        }
    }

    /// A destination this gateway validated and sealed into its own queue: a phone number with
    /// its calling code, or an address (which has none: `country_code` 0).
    pub(crate) fn trusted(to: String, country_code: u16) -> Self {
        if to.contains('@') {
            Destination::Email(EmailAddress::trusted(to))
        } else {
            Destination::Phone(PhoneNumber::trusted(to, country_code))
        }
    }

    /// The destination in full (E.164 or the normalised address): to deliver or to key a record.
    pub fn as_str(&self) -> &str {
        match self {
            Destination::Phone(number) => number.e164(),
            Destination::Email(address) => address.as_str(),
        }
    }

    /// The shard this destination's records live in (see [`PhoneNumber::shard`]); an address
    /// hashes the same way, so its verification, quota and outbox entry share one slot too.
    pub fn shard(&self) -> u8 {
        phone::shard_of(self.as_str())
    }

    /// The calling code of a number; 0 for an address.
    pub fn country_code(&self) -> u16 {
        match self {
            Destination::Phone(number) => number.country_code(),
            Destination::Email(_) => 0,
        }
    }

    pub fn phone(&self) -> Option<&PhoneNumber> {
        match self {
            Destination::Phone(number) => Some(number),
            Destination::Email(_) => None,
        }
    }

    pub fn email(&self) -> Option<&EmailAddress> {
        match self {
            Destination::Phone(_) => None,
            Destination::Email(address) => Some(address),
        }
    }

    pub fn masked(&self) -> String {
        match self {
            Destination::Phone(number) => number.masked(),
            Destination::Email(address) => address.masked(),
        }
    }
}

impl From<PhoneNumber> for Destination {
    fn from(number: PhoneNumber) -> Self {
        Destination::Phone(number)
    }
}

/// Masks a stored destination of either kind.
pub fn mask(to: &str) -> String {
    if to.contains('@') {
        mask_email(to)
    } else {
        phone::mask(to)
    }
}

impl fmt::Debug for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_trimmed_and_lower_cased() {
        let address = EmailAddress::parse("  Jane.Doe+otp@Example.COM ").unwrap();
        assert_eq!(address.as_str(), "jane.doe+otp@example.com");
    }

    #[test]
    fn international_domains_are_stored_in_their_ascii_form() {
        let address = EmailAddress::parse("anna@Bücher.example").unwrap();
        assert_eq!(address.as_str(), "anna@xn--bcher-kva.example");
    }

    #[test]
    fn malformed_addresses_are_refused() {
        for bad in [
            "",
            "owner",
            "@example.com",
            "owner@",
            "owner@example",
            "a b@example.com",
            "a@b@example.com",
            "<a@example.com>",
            "Jane <a@example.com>",
            "a@[127.0.0.1]",
            "\"a b\"@example.com",
            "ü@example.com",
        ] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad:?}");
        }
        let long = format!("{}@{}.com", "a".repeat(64), "b".repeat(200));
        assert!(EmailAddress::parse(&long).is_err());
    }

    #[test]
    fn addresses_are_masked_in_debug_and_display() {
        let address = EmailAddress::parse("jane@example.com").unwrap();
        assert_eq!(format!("{address}"), "j***@example.com");
        assert_eq!(format!("{address:?}"), "j***@example.com");
        let to = Destination::Email(address);
        assert!(!format!("{to:?} {to}").contains("jane"));
    }

    #[test]
    fn a_destination_is_an_address_when_it_has_an_at_sign() {
        assert!(matches!(
            Destination::parse("jane@example.com"),
            Ok(Destination::Email(_))
        ));
        assert!(matches!(
            Destination::parse("+4915112345678"),
            Ok(Destination::Phone(_))
        ));
        assert!(matches!(
            Destination::parse("jane@"),
            Err(DestinationError::Email(_))
        ));
        assert!(matches!(
            Destination::parse("12345"),
            Err(DestinationError::Phone(_))
        ));
    }

    #[test]
    fn a_sealed_destination_comes_back_as_the_same_kind() {
        let to = Destination::parse("jane@example.com").unwrap();
        let back = Destination::trusted(to.as_str().to_owned(), to.country_code());
        assert_eq!(back, to);
        assert_eq!(back.shard(), to.shard());
        let number = Destination::parse("+4915112345678").unwrap();
        let back = Destination::trusted(number.as_str().to_owned(), number.country_code());
        assert_eq!(back, number);
    }
}
