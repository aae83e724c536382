//! Phone numbers, parsed once at the edge into E.164 and masked whenever they are shown; what
//! kind of line a number is (`NumberType`) and which region it belongs to (`Region`), read from
//! libphonenumber's metadata with patterns compiled once.

use std::borrow::Cow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::{LazyLock, OnceLock};

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
/// Two numbers are equal when their E.164 forms are.
#[derive(Clone)]
pub struct PhoneNumber {
    e164: String,
    country_code: u16,
    /// Found while parsing (the same metadata lookup that validates the number); a number the
    /// gateway trusted from its own queue finds it on first use.
    class: OnceLock<Class>,
}

/// What kind of line a number is: libphonenumber's number types, less the kinds that are never
/// a whole subscriber number (emergency, short codes, carrier codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NumberType {
    Mobile,
    FixedLine,
    /// A number of a plan where fixed and mobile ranges cannot be told apart (NANP, +1).
    FixedLineOrMobile,
    TollFree,
    PremiumRate,
    SharedCost,
    Voip,
    Personal,
    Pager,
    /// Universal access ("company") numbers.
    Uan,
    Voicemail,
    Unknown,
}

impl NumberType {
    pub const ALL: [NumberType; 12] = [
        NumberType::Mobile,
        NumberType::FixedLine,
        NumberType::FixedLineOrMobile,
        NumberType::TollFree,
        NumberType::PremiumRate,
        NumberType::SharedCost,
        NumberType::Voip,
        NumberType::Personal,
        NumberType::Pager,
        NumberType::Uan,
        NumberType::Voicemail,
        NumberType::Unknown,
    ];

    /// The name in policies and problem bodies (libphonenumber's, in snake case).
    pub fn as_str(self) -> &'static str {
        match self {
            NumberType::Mobile => "mobile",
            NumberType::FixedLine => "fixed_line",
            NumberType::FixedLineOrMobile => "fixed_line_or_mobile",
            NumberType::TollFree => "toll_free",
            NumberType::PremiumRate => "premium_rate",
            NumberType::SharedCost => "shared_cost",
            NumberType::Voip => "voip",
            NumberType::Personal => "personal",
            NumberType::Pager => "pager",
            NumberType::Uan => "uan",
            NumberType::Voicemail => "voicemail",
            NumberType::Unknown => "unknown",
        }
    }

    pub fn parse(input: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == input)
    }
}

impl fmt::Display for NumberType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The region a number belongs to: an ISO 3166-1 alpha-2 code as libphonenumber's metadata
/// names it (`DE`, and the few territories it lists: `AC`, `TA`, `XK`), `001` for the
/// non-geographic calling codes (+800 freephone, +808 shared cost, +870 Inmarsat, +881 satellite,
/// +882/+883 international networks, +979 international premium rate), or `ZZ` (unknown).
///
/// `Copy`, and free to compare: it points at the region's name in the static metadata.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Region(&'static str);

impl Region {
    /// The non-geographic calling codes (UN M.49 "World", as libphonenumber names them).
    pub const NON_GEOGRAPHIC: Region = Region("001");
    /// A number whose region cannot be told (libphonenumber's "unknown region").
    pub const UNKNOWN: Region = Region("ZZ");

    /// An upper-case region name the metadata knows (`DE`, `001`); anything else is `None`.
    pub fn parse(input: &str) -> Option<Self> {
        if input == Self::NON_GEOGRAPHIC.0 {
            return Some(Self::NON_GEOGRAPHIC);
        }
        REGIONS.iter().find(|region| region.0 == input).copied()
    }

    /// Every region of the metadata (not `001` or `ZZ`), sorted.
    pub fn all() -> &'static [Region] {
        &REGIONS
    }

    pub fn as_str(self) -> &'static str {
        self.0
    }
}

impl fmt::Debug for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// The metadata's regions with a country id the crate knows, sorted, found once.
static REGIONS: LazyLock<Vec<Region>> = LazyLock::new(|| {
    let database: &'static Database = &DATABASE;
    let mut regions: Vec<Region> = database
        .iter()
        .map(Metadata::id)
        .filter(|id| id.parse::<phonenumber::country::Id>().is_ok())
        .map(Region)
        .collect();
    regions.sort_unstable();
    regions.dedup();
    regions
});

/// A number's type and region, found together from the metadata entry of its region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Class {
    number_type: NumberType,
    region: Region,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PhoneNumberError {
    #[error("must be in E.164 form: '+', a country code and the number, 8 to 15 digits in all, no spaces")]
    NotE164,
    #[error("is not a valid phone number for its country")]
    Invalid,
}

impl PhoneNumber {
    /// Accepts only strict E.164 (no spaces, dashes or national prefixes), then checks the number
    /// against libphonenumber's metadata so that a typo is refused before any message is paid for.
    ///
    /// The input is already in E.164 form, so the crate's general parser (free text, RFC 3966,
    /// IDD prefixes, extensions, letters) has nothing to do but cost: ~23 000 instructions of a
    /// send's ~146 000 (callgrind, `loadtest/instructions --scenarios send`). `national_of` does
    /// the steps of `phonenumber::parse` that apply to E.164 text, with the patterns compiled
    /// once; `parse_with_phonenumber` is the crate's way, kept for the property tests that hold
    /// the two to the same answers (`tests/props/phone.rs`, and the tests below).
    pub fn parse(input: &str) -> Result<Self, PhoneNumberError> {
        let digits = well_formed(input)?;
        let (code, national) = national_of(digits).ok_or(PhoneNumberError::Invalid)?;
        let class = classify(code, &national).ok_or(PhoneNumberError::Invalid)?;
        Ok(Self {
            e164: input.to_owned(),
            country_code: code,
            class: OnceLock::from(class),
        })
    }

    /// [`Self::parse`] the crate's way (`phonenumber::parse`, then the same classification):
    /// the reference the fast path is tested against, not for the request path.
    #[doc(hidden)]
    pub fn parse_with_phonenumber(input: &str) -> Result<Self, PhoneNumberError> {
        well_formed(input)?;
        let parsed = phonenumber::parse(None, input).map_err(|_| PhoneNumberError::Invalid)?;
        let national = parsed.national().to_string();
        let class = classify(parsed.code().value(), &national).ok_or(PhoneNumberError::Invalid)?;
        Ok(Self {
            e164: input.to_owned(),
            country_code: parsed.code().value(),
            class: OnceLock::from(class),
        })
    }

    /// A number this gateway validated earlier and sealed into its own queue: no second
    /// metadata lookup (it costs microseconds per message on the dispatch path) unless its type
    /// or region is asked for.
    pub(crate) fn trusted(e164: String, country_code: u16) -> Self {
        Self {
            e164,
            country_code,
            class: OnceLock::new(),
        }
    }

    /// What kind of line this is (mobile, fixed line, premium rate, …), from the metadata.
    pub fn number_type(&self) -> NumberType {
        self.class().number_type
    }

    /// The region the number belongs to (`DE`; `001` for non-geographic codes).
    pub fn region(&self) -> Region {
        self.class().region
    }

    fn class(&self) -> &Class {
        self.class.get_or_init(|| {
            well_formed(&self.e164)
                .ok()
                .and_then(|digits| national_of(digits))
                .and_then(|(code, national)| classify(code, &national))
                .unwrap_or(Class {
                    number_type: NumberType::Unknown,
                    region: Region::UNKNOWN,
                })
        })
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

/// The digits of a strict E.164 text: `+`, 8 to 15 digits, no leading zero.
fn well_formed(input: &str) -> Result<&str, PhoneNumberError> {
    let digits = input.strip_prefix('+').ok_or(PhoneNumberError::NotE164)?;
    let well_formed = (8..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0');
    well_formed
        .then_some(digits)
        .ok_or(PhoneNumberError::NotE164)
}

/// `phonenumber::parse` of `+<digits>` (strict E.164: no letters, punctuation, IDD or
/// extension, so the crate's text parsers take it as it is): the calling code (the first of
/// its one to three leading digits the metadata knows), then the national number with a national
/// prefix stripped where the region's rules strip one (`national_prefix_for_parsing` and its
/// transform rule, then `national_prefix`), kept when stripping would make it too short. `None`
/// where the crate answers an error. Each step is the crate's, in its order, quirks included
/// (`tests::the_fast_parse_agrees_with_phonenumber` and `tests/props/phone.rs` compare them).
fn national_of(digits: &str) -> Option<(u16, Cow<'_, str>)> {
    let (code, national) = (1..=3).find_map(|len| {
        let code: u16 = digits.get(..len)?.parse().ok()?;
        calling_code(code).map(|_| (code, Cow::Borrowed(&digits[len..])))
    })?;
    // `phonenumber::validator::source_for`, on the number without its leading zeros.
    let meta = region_metadata(code, national.trim_start_matches('0'));
    let national = match meta {
        Some(meta) => {
            let mut potential = strip_national_prefix(meta, national.clone());
            if let Some(prefix) = meta.national_prefix() {
                if potential.starts_with(prefix) {
                    potential = trimmed(potential, prefix.len());
                }
            }
            if too_short(meta, potential.len()) {
                national
            } else {
                potential
            }
        }
        None => national,
    };
    // The crate's length bounds, and its `NationalNumber` (leading zeros and a `u64`): all
    // zeros does not parse.
    let nsn = (2..=17).contains(&national.len())
        && national.bytes().any(|b| b != b'0')
        && national
            .trim_start_matches('0')
            .parse::<u64>()
            .is_ok_and(|value| value < 1 << 56);
    nsn.then_some((code, national))
}

fn trimmed(text: Cow<'_, str>, start: usize) -> Cow<'_, str> {
    match text {
        Cow::Borrowed(text) => Cow::Borrowed(&text[start..]),
        Cow::Owned(mut text) => {
            text.drain(..start);
            Cow::Owned(text)
        }
    }
}

/// `phonenumber::parser::helper::national_number`: strips what `national_prefix_for_parsing`
/// matches at the start (or rewrites it with the transform rule), unless the number was a whole
/// national number before and would not be after the transform.
fn strip_national_prefix<'a>(meta: &'static Metadata, national: Cow<'a, str>) -> Cow<'a, str> {
    let Some(parsing) = meta.national_prefix_for_parsing() else {
        if let Some(prefix) = meta.national_prefix() {
            if national.starts_with(prefix) {
                return trimmed(national, prefix.len());
            }
        }
        return national;
    };
    let Some(regex) = anchored(parsing.as_str()) else {
        return national;
    };
    let Some(captures) = regex.captures(&national) else {
        return national;
    };
    let end = captures.get(0).map_or(0, |found| found.end());
    let last = captures.get(captures.len() - 1);
    let general = meta.descriptors().general();
    match meta.national_prefix_transform_rule() {
        Some(transform) if last.is_some() => {
            let viable = descriptor_matches(general, &national);
            let transformed = regex.replace(&national, transform).into_owned();
            if viable && !descriptor_matches(general, &transformed) {
                return national;
            }
            Cow::Owned(transformed)
        }
        // The crate checks the general pattern against the number from the match's start,
        // which is 0 here: a number that matched still matches, so it always strips.
        _ => trimmed(national, end),
    }
}

/// `phonenumber::validator::length(meta, number, Unknown) == TooShort`: shorter than the
/// general descriptor's shortest possible length, and not a possible local length.
fn too_short(meta: &Metadata, length: usize) -> bool {
    let general = meta.descriptors().general();
    let length = length as u16;
    let possible = general.possible_length();
    match possible.first() {
        None => false,
        Some(&minimum) => !general.possible_local_length().contains(&length) && length < minimum,
    }
}

/// A number's type and region from its calling code and national number (as
/// `NationalNumber` prints it: leading zeros kept), with `phonenumber::is_valid`'s rules: the
/// number's region (by leading digits where a calling code has several), then its national
/// number must match the general pattern and the pattern of at least one number type. `Some`
/// exactly when the number is valid.
///
/// The crate looks each pattern up by its text in a global, mutex-guarded LRU of 100 compiled
/// patterns on every match, and recompiles what the LRU dropped; that was three quarters of a
/// number's validation and a sixth of a send's instructions (callgrind). Here each pattern is
/// compiled once and found by the address of its text in the static metadata.
/// `the_validation_agrees_with_phonenumber` holds the two to the same answers.
fn classify(code: u16, national: &str) -> Option<Class> {
    let meta = region_metadata(code, national)?;
    let number_type = type_of(meta, national);
    let region = match meta.id() {
        "001" => Region::NON_GEOGRAPHIC,
        id => Region(id),
    };
    (number_type != NumberType::Unknown).then_some(Class {
        number_type,
        region,
    })
}

#[cfg(test)]
fn is_valid(number: &phonenumber::PhoneNumber) -> bool {
    classify(number.code().value(), &number.national().to_string()).is_some()
}

/// What the metadata holds for one calling code, found once: the crate's `by_code` and `region`
/// collect a new vector on every call, and a number's parse asked for them up to five times.
struct CallingCode {
    /// The code's first entry (`by_code`), the entry of a non-geographic code.
    first: Option<&'static Metadata>,
    /// `region`: each region's name, its entry (`by_id`) and whether the crate knows the name
    /// as a country id; `None` where the crate has no regions for the code.
    regions: Option<Vec<(&'static str, Option<&'static Metadata>, bool)>>,
}

/// Calling codes (1 to 3 digits) by value; `None` where the metadata has no entry (`by_code`).
static CALLING_CODES: LazyLock<Vec<Option<CallingCode>>> = LazyLock::new(|| {
    let database: &'static Database = &DATABASE;
    (0..1000u16)
        .map(|code| {
            let entries = database.by_code(&code)?;
            let regions = database.region(&code).map(|regions| {
                regions
                    .into_iter()
                    .map(|region| {
                        let known = region.parse::<phonenumber::country::Id>().is_ok();
                        (region, database.by_id(region), known)
                    })
                    .collect()
            });
            Some(CallingCode {
                first: entries.into_iter().next(),
                regions,
            })
        })
        .collect()
});

fn calling_code(code: u16) -> Option<&'static CallingCode> {
    CALLING_CODES.get(usize::from(code))?.as_ref()
}

/// phonenumber's `source_for` and the lookup that follows it in `is_valid_with`: a region
/// counts only when its name is a country id the crate knows.
fn region_metadata(code: u16, national: &str) -> Option<&'static Metadata> {
    let regions = calling_code(code)?.regions.as_ref()?;
    if let [(region, meta, known)] = regions[..] {
        if region == "001" {
            return calling_code(code)?.first;
        }
        return meta.filter(|_| known);
    }
    for &(_, meta, known) in regions {
        let meta = meta?;
        let selected = match meta.leading_digits() {
            Some(pattern) => matches_at_start(pattern.as_str(), national),
            None => type_of(meta, national) != NumberType::Unknown,
        };
        if selected {
            return known.then_some(meta);
        }
    }
    None
}

/// `phonenumber::validator::number_type`: the same descriptors in the same order (the first
/// that matches wins, so a premium-rate range inside a fixed-line plan is premium rate), with
/// the patterns compiled once.
fn type_of(meta: &'static Metadata, national: &str) -> NumberType {
    let descriptors = meta.descriptors();
    if !descriptor_matches(descriptors.general(), national) {
        return NumberType::Unknown;
    }
    let matches = |descriptor: Option<&'static Descriptor>| {
        descriptor.is_some_and(|descriptor| descriptor_matches(descriptor, national))
    };
    let ordered = [
        (descriptors.premium_rate(), NumberType::PremiumRate),
        (descriptors.toll_free(), NumberType::TollFree),
        (descriptors.shared_cost(), NumberType::SharedCost),
        (descriptors.voip(), NumberType::Voip),
        (descriptors.personal_number(), NumberType::Personal),
        (descriptors.pager(), NumberType::Pager),
        (descriptors.uan(), NumberType::Uan),
        (descriptors.voicemail(), NumberType::Voicemail),
    ];
    if let Some((_, kind)) = ordered
        .into_iter()
        .find(|(descriptor, _)| matches(*descriptor))
    {
        return kind;
    }
    if matches(descriptors.fixed_line()) {
        let same_patterns = descriptors
            .fixed_line()
            .map(|d| d.national_number().as_str())
            == descriptors.mobile().map(|d| d.national_number().as_str());
        return if same_patterns || matches(descriptors.mobile()) {
            NumberType::FixedLineOrMobile
        } else {
            NumberType::FixedLine
        };
    }
    if matches(descriptors.mobile()) {
        return NumberType::Mobile;
    }
    NumberType::Unknown
}

/// `Descriptor::is_match`: a possible length, and the pattern matching from the first digit.
fn descriptor_matches(descriptor: &'static Descriptor, national: &str) -> bool {
    let lengths = descriptor.possible_length();
    if !lengths.is_empty() && !lengths.contains(&(national.len() as u16)) {
        return false;
    }
    matches_at_start(descriptor.national_number().as_str(), national)
}

/// Compiled patterns by the address of their text in the static metadata, built as phonenumber
/// builds them (whitespace in a pattern ignored) and anchored at the start: the crate asks
/// whether the leftmost match starts at the first character, which is whether a match starts
/// there, and an anchored regex answers that without searching the rest of the text (the
/// leftmost-first match at 0 is the same match, captures included). Leaked once each: the
/// metadata is static and holds a few thousand patterns. `None`: the pattern does not compile,
/// which the crate would have refused when it loaded the metadata.
static PATTERNS: LazyLock<DashMap<usize, Option<&'static Regex>, RandomState>> =
    LazyLock::new(|| DashMap::with_hasher(RandomState::default()));

/// `source` (a pattern's text in the static metadata), compiled once, anchored at the start.
fn anchored(source: &'static str) -> Option<&'static Regex> {
    let address = source.as_ptr() as usize;
    if let Some(regex) = PATTERNS.get(&address) {
        return *regex;
    }
    *PATTERNS.entry(address).or_insert_with(|| {
        // A newline before the closing parenthesis ends a `#` comment the pattern might end in.
        RegexBuilder::new(&format!("^(?:{source}\n)"))
            .ignore_whitespace(true)
            .build()
            .ok()
            .map(|regex| &*Box::leak(Box::new(regex)))
    })
}

/// Whether `source` (a pattern's text in the static metadata) finds a match in `text` that
/// starts at the first character, as the crate checks it.
fn matches_at_start(source: &'static str, text: &str) -> bool {
    anchored(source).is_some_and(|regex| regex.is_match(text))
}

impl PartialEq for PhoneNumber {
    fn eq(&self, other: &Self) -> bool {
        self.e164 == other.e164
    }
}

impl Eq for PhoneNumber {}

impl Hash for PhoneNumber {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.e164.hash(state);
    }
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

    /// A region's example numbers (national significant numbers), one per type it lists.
    fn examples(meta: &Metadata) -> impl Iterator<Item = &str> {
        let descriptors = meta.descriptors();
        [
            descriptors.fixed_line(),
            descriptors.mobile(),
            descriptors.toll_free(),
            descriptors.premium_rate(),
            descriptors.shared_cost(),
            descriptors.voip(),
            descriptors.personal_number(),
            descriptors.pager(),
            descriptors.uan(),
            descriptors.voicemail(),
        ]
        .into_iter()
        .flatten()
        .filter_map(Descriptor::example)
    }

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

    /// A repeatable pseudo-random sequence (xorshift64) for the tests' generated digits.
    fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
        move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        }
    }

    /// Every calling code's example numbers, each with its last digit changed, one digit more and
    /// one less, and pseudo-random digit strings of 4 to 12 digits: the same answer as the crate.
    #[test]
    fn the_validation_agrees_with_phonenumber() {
        let mut inputs = Vec::new();
        let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
        for meta in DATABASE.iter() {
            let code = meta.country_code();
            for example in examples(meta) {
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
            assert_eq!(is_valid(&parsed), expected, "{input}");
            valid += usize::from(expected);
        }
        assert!(inputs.len() > 3000, "{} inputs", inputs.len());
        assert!(valid > 1000, "only {valid} of {} valid", inputs.len());
    }

    /// The inputs of the fast path's tests: for every calling code, its regions' example numbers
    /// of every type, each with its last digit changed, a digit more and one less, behind a
    /// national prefix (`0`, `1`, `8`, the region's own) and with a `0` or `9` in front; and
    /// pseudo-random national numbers of 4 to 13 digits, `per_code` of each length. Only
    /// well-formed E.164 (what `parse` lets through to the metadata).
    fn fast_path_inputs(per_code: usize) -> Vec<String> {
        let mut inputs = Vec::new();
        let mut next = xorshift(0x2545_f491_4f6c_dd1d);
        for meta in DATABASE.iter() {
            let code = meta.country_code();
            let own_prefix = meta.national_prefix().unwrap_or("0").to_owned();
            for example in examples(meta) {
                let last = example.as_bytes()[example.len() - 1];
                let changed = char::from(b'0' + (last - b'0' + 1) % 10);
                let short = &example[..example.len() - 1];
                for national in [
                    example.to_owned(),
                    format!("{short}{changed}"),
                    format!("{example}7"),
                    short.to_owned(),
                    format!("0{example}"),
                    format!("1{example}"),
                    format!("8{example}"),
                    format!("9{example}"),
                    format!("{own_prefix}{example}"),
                    format!("{own_prefix}{short}"),
                ] {
                    inputs.push(format!("+{code}{national}"));
                }
            }
            for length in 4..=13 {
                for _ in 0..per_code {
                    let digits: String = (0..length)
                        .map(|_| char::from(b'0' + (next() % 10) as u8))
                        .collect();
                    inputs.push(format!("+{code}{digits}"));
                }
            }
        }
        inputs.retain(|input| well_formed(input).is_ok());
        inputs.sort();
        inputs.dedup();
        inputs
    }

    /// The fast path against the crate's parse, step for step: the same calling code and
    /// national number (or both none), and the same number, type and region out of `parse`.
    #[test]
    fn the_fast_parse_agrees_with_phonenumber() {
        let inputs = fast_path_inputs(40);
        let (mut valid, mut stripped) = (0, 0);
        for input in &inputs {
            let theirs = phonenumber::parse(None, input)
                .ok()
                .map(|parsed| (parsed.code().value(), parsed.national().to_string()));
            let ours =
                national_of(&input[1..]).map(|(code, national)| (code, national.into_owned()));
            assert_eq!(ours, theirs, "{input}");
            let fast = PhoneNumber::parse(input);
            let slow = PhoneNumber::parse_with_phonenumber(input);
            let seen = |result: &Result<PhoneNumber, PhoneNumberError>| {
                result
                    .as_ref()
                    .map(|number| {
                        (
                            number.e164().to_owned(),
                            number.country_code(),
                            number.number_type(),
                            number.region(),
                        )
                    })
                    .map_err(Clone::clone)
            };
            assert_eq!(seen(&fast), seen(&slow), "{input}");
            valid += usize::from(fast.is_ok());
            if let Some((code, national)) = &ours {
                stripped += usize::from(input.len() != 1 + code.to_string().len() + national.len());
            }
        }
        assert!(inputs.len() > 50_000, "{} inputs", inputs.len());
        assert!(valid > 5_000, "only {valid} of {} valid", inputs.len());
        assert!(
            stripped > 500,
            "only {stripped} with a national prefix stripped"
        );
    }

    #[test]
    fn shard_is_stable_and_in_range() {
        assert_eq!(shard_of("+4915112345678"), shard_of("+4915112345678"));
        for n in 0..1000 {
            assert!(shard_of(&format!("+49151{n:08}")) < SHARD_COUNT);
        }
    }

    /// libphonenumber's own example numbers (the metadata's `exampleNumber`), per type, for
    /// several plans: each classified as that type and region.
    #[test]
    fn example_numbers_are_classified_by_type_and_region() {
        use NumberType::*;
        let table = [
            ("+4915123456789", Mobile, "DE"),
            ("+4930123456", FixedLine, "DE"),
            ("+498001234567890", TollFree, "DE"),
            ("+499001234567", PremiumRate, "DE"),
            ("+4918012345", SharedCost, "DE"),
            ("+4970012345678", Personal, "DE"),
            ("+4916412345", Pager, "DE"),
            ("+4918500123456", Uan, "DE"),
            ("+49177991234567", Voicemail, "DE"),
            ("+447400123456", Mobile, "GB"),
            ("+441212345678", FixedLine, "GB"),
            ("+448001234567", TollFree, "GB"),
            ("+449012345678", PremiumRate, "GB"),
            ("+445612345678", Voip, "GB"),
            ("+447012345678", Personal, "GB"),
            ("+447640123456", Pager, "GB"),
            ("+445512345678", Uan, "GB"),
            ("+12015550123", FixedLineOrMobile, "US"),
            ("+18002345678", TollFree, "US"),
            ("+19002345678", PremiumRate, "US"),
            ("+15002345678", Personal, "US"),
            ("+33612345678", Mobile, "FR"),
            ("+33123456789", FixedLine, "FR"),
            ("+33891123456", PremiumRate, "FR"),
            ("+33884012345", SharedCost, "FR"),
            ("+33912345678", Voip, "FR"),
            ("+393123456789", Mobile, "IT"),
            ("+390212345678", FixedLine, "IT"),
            ("+39899123456", PremiumRate, "IT"),
            ("+39848123456", SharedCost, "IT"),
            ("+3933101234501", Voicemail, "IT"),
            ("+819012345678", Mobile, "JP"),
            ("+81570123456", Uan, "JP"),
            ("+812012345678", Pager, "JP"),
            ("+61412345678", Mobile, "AU"),
            ("+611900123456", PremiumRate, "AU"),
            ("+61147101234", Voip, "AU"),
            ("+917410410123", FixedLineOrMobile, "IN"),
            ("+911861123456789", PremiumRate, "IN"),
            ("+41860123456789", Voicemail, "CH"),
            ("+43780123456", Voip, "AT"),
            ("+5511961234567", Mobile, "BR"),
            ("+5540041234", SharedCost, "BR"),
            ("+688901234", Mobile, "TV"),
            ("+68820123", FixedLine, "TV"),
            ("+80012345678", TollFree, "001"),
            ("+80812345678", SharedCost, "001"),
            ("+881612345678", Mobile, "001"),
            ("+883510012345", Voip, "001"),
            ("+979123456789", PremiumRate, "001"),
        ];
        for (e164, number_type, region) in table {
            let number = PhoneNumber::parse(e164).unwrap();
            assert_eq!(number.number_type(), number_type, "{e164}");
            assert_eq!(number.region().as_str(), region, "{e164}");
            let trusted = PhoneNumber::trusted(e164.to_owned(), number.country_code());
            assert_eq!(trusted.number_type(), number_type, "{e164} read back");
            assert_eq!(trusted.region(), number.region(), "{e164} read back");
        }
    }

    /// Every region's example numbers: the same type and region as phonenumber finds, except
    /// for national numbers with leading zeros (Italy's fixed lines, Tonga's 0800): the crate's
    /// `number_type` drops the zeros before matching (its `is_valid` keeps them, and so do we).
    #[test]
    fn the_classification_agrees_with_phonenumber() {
        let mut checked = 0;
        for meta in DATABASE.iter() {
            for example in examples(meta) {
                let input = format!("+{}{example}", meta.country_code());
                let (Ok(ours), Ok(theirs)) =
                    (PhoneNumber::parse(&input), phonenumber::parse(None, &input))
                else {
                    continue;
                };
                if theirs.national().to_string() != theirs.national().value().to_string() {
                    continue;
                }
                let expected = theirs.number_type(&DATABASE);
                assert_eq!(
                    format!("{:?}", ours.number_type()).replace("Personal", "PersonalNumber"),
                    format!("{expected:?}"),
                    "{input}"
                );
                let region = theirs.country().id().map(|id| format!("{id:?}"));
                if ours.region() != Region::NON_GEOGRAPHIC {
                    assert_eq!(Some(ours.region().as_str().to_owned()), region, "{input}");
                }
                checked += 1;
            }
        }
        assert!(checked > 1000, "only {checked} examples");
    }

    #[test]
    fn regions_parse_from_the_metadata_names_only() {
        assert_eq!(Region::parse("DE").unwrap().as_str(), "DE");
        assert_eq!(Region::parse("001"), Some(Region::NON_GEOGRAPHIC));
        for unknown in ["de", "XX", "ZZ", "DEU", ""] {
            assert_eq!(Region::parse(unknown), None, "{unknown}");
        }
        assert!(Region::all().len() > 200);
    }
}
