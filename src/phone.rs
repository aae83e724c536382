//! Phone numbers, parsed once at the edge into E.164 and masked whenever they are shown; what
//! kind of line a number is (`NumberType`) and which region it belongs to (`Region`), read from
//! libphonenumber's metadata with patterns compiled once.

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
        let class = classify(&DATABASE, &parsed).ok_or(PhoneNumberError::Invalid)?;
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
            phonenumber::parse(None, &self.e164)
                .ok()
                .and_then(|parsed| classify(&DATABASE, &parsed))
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

/// `phonenumber::is_valid`, with the same metadata and the same rules: the number's region
/// (by leading digits where a calling code has several), then its national number must match the
/// general pattern and the pattern of at least one number type. `Some` (the type and the region)
/// exactly when the number is valid.
///
/// The crate looks each pattern up by its text in a global, mutex-guarded LRU of 100 compiled
/// patterns on every match, and recompiles what the LRU dropped; that was three quarters of a
/// number's validation and a sixth of a send's instructions (callgrind). Here each pattern is
/// compiled once and found by the address of its text in the static metadata.
/// `the_validation_agrees_with_phonenumber` holds the two to the same answers.
fn classify(database: &'static Database, number: &phonenumber::PhoneNumber) -> Option<Class> {
    let national = number.national().to_string();
    let meta = region_metadata(database, number.code().value(), &national)?;
    let number_type = type_of(meta, &national);
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
fn is_valid(database: &'static Database, number: &phonenumber::PhoneNumber) -> bool {
    classify(database, number).is_some()
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
            None => type_of(meta, national) != NumberType::Unknown,
        };
        if selected {
            return known(region).then_some(meta);
        }
    }
    None
}

/// `phonenumber::validator::number_type`: the same descriptors in the same order (the first
/// that matches wins, so a premium-rate range inside a fixed-line plan is premium rate), with
/// the patterns compiled once.
fn type_of(meta: &Metadata, national: &str) -> NumberType {
    let descriptors = meta.descriptors();
    if !descriptor_matches(descriptors.general(), national) {
        return NumberType::Unknown;
    }
    let matches = |descriptor: Option<&Descriptor>| {
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
