//! Phone numbers, parsed once at the edge into E.164 and masked whenever they are shown.

use std::fmt;
use std::sync::LazyLock;

use dashmap::DashMap;
use foldhash::fast::RandomState;
use phonenumber::metadata::{Database, Descriptor, Metadata, DATABASE};
use regex::{Regex, RegexBuilder};

/// Number of shards a phone number hashes into. Every key of one number's verification lives in
/// one shard, which is also its Redis Cluster hash tag, so each hot step is one script on one node.
pub const SHARD_COUNT: u8 = 64;

/// A validated phone number in E.164 form (`+4915112345678`).
///
/// `Debug` and `Display` print the masked form: a number only appears in full where it is sent.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PhoneNumber {
    e164: String,
    country_code: u16,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PhoneNumberError {
    #[error("must be in E.164 form: '+', a country code and the number, 8 to 15 digits in all, no spaces")]
    NotE164,
    #[error("is not a valid phone number for its country")]
    Invalid,
}

impl PhoneNumber {
    /// Accepts only strict E.164 (no spaces, dashes or national prefixes), then checks the number
    /// against libphonenumber's metadata so that a typo is refused before any message is paid for.
    pub fn parse(input: &str) -> Result<Self, PhoneNumberError> {
        let digits = input.strip_prefix('+').ok_or(PhoneNumberError::NotE164)?;
        let well_formed = (8..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0');
        if !well_formed {
            return Err(PhoneNumberError::NotE164);
        }
        let parsed = phonenumber::parse(None, input).map_err(|_| PhoneNumberError::Invalid)?;
        if !is_valid(&DATABASE, &parsed) {
            return Err(PhoneNumberError::Invalid);
        }
        Ok(Self {
            e164: input.to_owned(),
            country_code: parsed.code().value(),
        })
    }

    /// A number this gateway validated earlier and sealed into its own queue: no second
    /// metadata lookup (it costs microseconds per message on the dispatch path).
    pub(crate) fn trusted(e164: String, country_code: u16) -> Self {
        Self { e164, country_code }
    }

    /// The number in full. Call it only to deliver a message or to key a record.
    pub fn e164(&self) -> &str {
        &self.e164
    }

    pub fn country_code(&self) -> u16 {
        self.country_code
    }

    /// The shard this number's records live in: FNV-1a of the E.164 string, stable across
    /// instances and releases because it is written into verification ids.
    pub fn shard(&self) -> u8 {
        shard_of(&self.e164)
    }

    /// `+49151*****678`: the country code and the last three digits, enough to tell numbers apart
    /// in an incident without putting them in the logs.
    pub fn masked(&self) -> String {
        mask(&self.e164)
    }
}

/// Masks any E.164-looking string; used for numbers read back from the store as well.
pub fn mask(e164: &str) -> String {
    let visible_head = 4.min(e164.len());
    let visible_tail = 3.min(e164.len().saturating_sub(visible_head));
    let hidden = e164.len() - visible_head - visible_tail;
    format!(
        "{}{}{}",
        &e164[..visible_head],
        "*".repeat(hidden),
        &e164[e164.len() - visible_tail..]
    )
}

pub(crate) fn shard_of(e164: &str) -> u8 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in e164.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    (hash % u32::from(SHARD_COUNT)) as u8
}

/// `phonenumber::is_valid`, with the same metadata and the same rules: the number's region
/// (by leading digits where a calling code has several), then its national number must match the
/// general pattern and the pattern of at least one number type.
///
/// The crate looks each pattern up by its text in a global, mutex-guarded LRU of 100 compiled
/// patterns on every match, and recompiles what the LRU dropped; that was three quarters of a
/// number's validation and a sixth of a send's instructions (callgrind). Here each pattern is
/// compiled once and found by the address of its text in the static metadata.
/// `the_validation_agrees_with_phonenumber` holds the two to the same answers.
fn is_valid(database: &Database, number: &phonenumber::PhoneNumber) -> bool {
    let national = number.national().to_string();
    region_metadata(database, number.code().value(), &national)
        .is_some_and(|meta| has_a_type(meta, &national))
}

/// phonenumber's `source_for` and the lookup that follows it in `is_valid_with`: a region
/// counts only when its name is a country id the crate knows.
fn region_metadata<'a>(database: &'a Database, code: u16, national: &str) -> Option<&'a Metadata> {
    let known = |region: &str| region.parse::<phonenumber::country::Id>().is_ok();
    let regions = database.region(&code)?;
    if let [region] = regions[..] {
        if region == "001" {
            return database.by_code(&code)?.into_iter().next();
        }
        return database.by_id(region).filter(|_| known(region));
    }
    for region in regions {
        let meta = database.by_id(region)?;
        let selected = match meta.leading_digits() {
            Some(pattern) => matches_at_start(pattern.as_str(), national),
            None => has_a_type(meta, national),
        };
        if selected {
            return known(region).then_some(meta);
        }
    }
    None
}

/// `number_type(meta, national) != Type::Unknown`.
fn has_a_type(meta: &Metadata, national: &str) -> bool {
    let descriptors = meta.descriptors();
    if !descriptor_matches(descriptors.general(), national) {
        return false;
    }
    [
        descriptors.premium_rate(),
        descriptors.toll_free(),
        descriptors.shared_cost(),
        descriptors.voip(),
        descriptors.personal_number(),
        descriptors.pager(),
        descriptors.uan(),
        descriptors.voicemail(),
        descriptors.fixed_line(),
        descriptors.mobile(),
    ]
    .into_iter()
    .flatten()
    .any(|descriptor| descriptor_matches(descriptor, national))
}

/// `Descriptor::is_match`: a possible length, and the pattern matching from the first digit.
fn descriptor_matches(descriptor: &Descriptor, national: &str) -> bool {
    let lengths = descriptor.possible_length();
    if !lengths.is_empty() && !lengths.contains(&(national.len() as u16)) {
        return false;
    }
    matches_at_start(descriptor.national_number().as_str(), national)
}

/// Compiled patterns by the address of their text in the static metadata, built as phonenumber
/// builds them (whitespace in a pattern ignored). `None`: the pattern does not compile, which
/// the crate would have refused when it loaded the metadata.
static PATTERNS: LazyLock<DashMap<usize, Option<Regex>, RandomState>> =
    LazyLock::new(|| DashMap::with_hasher(RandomState::default()));

/// Whether `source` (a pattern's text in the static metadata) finds a match in `text` that
/// starts at the first character, as the crate checks it.
fn matches_at_start(source: &str, text: &str) -> bool {
    let found = |regex: &Option<Regex>| {
        regex
            .as_ref()
            .and_then(|regex| regex.find(text))
            .is_some_and(|found| found.start() == 0)
    };
    let address = source.as_ptr() as usize;
    if let Some(regex) = PATTERNS.get(&address) {
        return found(&regex);
    }
    let regex = PATTERNS
        .entry(address)
        .or_insert_with(|| {
            RegexBuilder::new(source)
                .ignore_whitespace(true)
                .build()
                .ok()
        })
        .downgrade();
    found(&regex)
}

impl fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_a_valid_german_mobile_number() {
        let number = PhoneNumber::parse("+4915112345678").unwrap();
        assert_eq!(number.e164(), "+4915112345678");
        assert_eq!(number.country_code(), 49);
    }

    #[test]
    fn refuses_numbers_that_are_not_strict_e164() {
        for input in [
            "4915112345678",
            "+49 151 12345678",
            "+0151123456",
            "+49151",
            "",
            "+",
            "+4915112345678901",
        ] {
            assert_eq!(
                PhoneNumber::parse(input),
                Err(PhoneNumberError::NotE164),
                "{input}"
            );
        }
    }

    #[test]
    fn refuses_well_formed_numbers_that_do_not_exist() {
        assert_eq!(
            PhoneNumber::parse("+99912345678"),
            Err(PhoneNumberError::Invalid)
        );
    }

    #[test]
    fn masks_all_but_the_country_code_and_the_last_three_digits() {
        let number = PhoneNumber::parse("+4915112345678").unwrap();
        assert_eq!(number.masked(), "+491*******678");
        assert_eq!(format!("{number:?}"), "+491*******678");
        assert!(!format!("{number}").contains("12345"));
    }

    /// Every calling code's example numbers, each with its last digit changed, one digit more and
    /// one less, and pseudo-random digit strings of 4 to 12 digits: the same answer as the crate.
    #[test]
    fn the_validation_agrees_with_phonenumber() {
        let mut inputs = Vec::new();
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for meta in DATABASE.iter() {
            let code = meta.country_code();
            let descriptors = meta.descriptors();
            let examples = [
                descriptors.fixed_line(),
                descriptors.mobile(),
                descriptors.toll_free(),
                descriptors.premium_rate(),
                descriptors.voip(),
            ]
            .into_iter()
            .flatten()
            .filter_map(Descriptor::example);
            for example in examples {
                let last = example.as_bytes()[example.len() - 1];
                let changed = char::from(b'0' + (last - b'0' + 1) % 10);
                inputs.push(format!("+{code}{example}"));
                inputs.push(format!("+{code}{}{changed}", &example[..example.len() - 1]));
                inputs.push(format!("+{code}{example}7"));
                inputs.push(format!("+{code}{}", &example[..example.len() - 1]));
            }
            for length in 4..=12 {
                let digits: String = (0..length)
                    .map(|_| char::from(b'0' + (next() % 10) as u8))
                    .collect();
                inputs.push(format!("+{code}{digits}"));
            }
        }
        let mut valid = 0;
        for input in &inputs {
            let Ok(parsed) = phonenumber::parse(None, input) else {
                continue;
            };
            let expected = phonenumber::is_valid(&parsed);
            assert_eq!(is_valid(&DATABASE, &parsed), expected, "{input}");
            valid += usize::from(expected);
        }
        assert!(inputs.len() > 3000, "{} inputs", inputs.len());
        assert!(valid > 1000, "only {valid} of {} valid", inputs.len());
    }

    #[test]
    fn shard_is_stable_and_in_range() {
        assert_eq!(shard_of("+4915112345678"), shard_of("+4915112345678"));
        for n in 0..1000 {
            assert!(shard_of(&format!("+49151{n:08}")) < SHARD_COUNT);
        }
    }
}
