//! `[abuse]`: the operator's defaults for every account (`AbuseSettings`), and an account's own
//! overrides (`AbusePolicy`), which its policy carries.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::geo::GeoPermission;
use super::guard::Thresholds;
use super::prefix::Prefix;
use super::types::TypeSet;
use super::Channel;
use crate::phone::{NumberType, PhoneNumber};

/// Tracked prefixes and countries per account, by default (the stores' bound).
pub const DEFAULT_MAX_TRACKED: usize = 1_000;
/// Tracked prefixes and countries of all accounts together in the embedded store, by default.
pub const DEFAULT_MEMORY_MAX_TRACKED: usize = 100_000;
/// Entries of one account's safe list, by default.
pub const DEFAULT_MAX_SAFE_LIST: usize = 100;
/// Sends an admission may count ahead for a busy prefix, and for how long (docs/abuse.md, "Sends
/// admitted ahead").
pub const DEFAULT_RESERVE_AHEAD: u32 = 64;
pub const DEFAULT_RESERVE_MS: u64 = 1_000;

/// The operator's settings (`[abuse]`): defaults of every account, and the stores' bounds.
#[derive(Debug, Clone)]
pub struct AbuseSettings {
    /// Destination regions per channel (shipped: all but `geo::HIGH_RISK`).
    pub geo: PerChannel<GeoPermission>,
    /// Number types per channel (shipped: mobile and fixed-or-mobile; calls add fixed line).
    pub number_types: PerChannel<TypeSet>,
    /// The guard's rules per number prefix.
    pub prefix_rules: Thresholds,
    /// The guard's rules per country.
    pub country_rules: Thresholds,
    /// Messages per account per day (shipped: unlimited).
    pub caps: DailyCaps,
    /// Prefixes and countries tracked per account; beyond it the stalest is forgotten.
    pub max_tracked: usize,
    /// Prefixes and countries the embedded store tracks in all (all accounts together).
    pub memory_max_tracked: usize,
    /// Entries an account's safe list may hold.
    pub max_safe_list: usize,
    /// Sends one admission in Redis may count ahead for a busy prefix (0: none; `reserve.rs`).
    pub reserve_ahead: u32,
    /// How long sends counted ahead may be used (ms).
    pub reserve_ms: u64,
}

impl Default for AbuseSettings {
    fn default() -> Self {
        let texting = TypeSet::of(&[NumberType::Mobile, NumberType::FixedLineOrMobile]);
        Self {
            geo: PerChannel::all(GeoPermission::default_for_operator()),
            number_types: PerChannel {
                sms: texting,
                whatsapp: texting,
                call: TypeSet::of(&[
                    NumberType::Mobile,
                    NumberType::FixedLineOrMobile,
                    NumberType::FixedLine,
                ]),
            },
            prefix_rules: Thresholds::default(),
            country_rules: Thresholds::country_default(),
            caps: DailyCaps::default(),
            max_tracked: DEFAULT_MAX_TRACKED,
            memory_max_tracked: DEFAULT_MEMORY_MAX_TRACKED,
            max_safe_list: DEFAULT_MAX_SAFE_LIST,
            reserve_ahead: DEFAULT_RESERVE_AHEAD,
            reserve_ms: DEFAULT_RESERVE_MS,
        }
    }
}

impl AbuseSettings {
    /// The rules on values that parsed; each broken one adds a line to `errors`.
    pub fn validate(&self, errors: &mut Vec<String>) {
        self.prefix_rules.validate("abuse.prefix", errors);
        self.country_rules.validate("abuse.country", errors);
        self.caps.validate("abuse.caps", errors);
        if !(10..=100_000).contains(&self.max_tracked) {
            errors.push("abuse.max_tracked: must be between 10 and 100000".to_owned());
        }
        if self.memory_max_tracked < self.max_tracked {
            errors.push(
                "abuse.memory_max_tracked: must be at least abuse.max_tracked (default 1000)"
                    .to_owned(),
            );
        }
        if self.max_safe_list > 10_000 {
            errors.push("abuse.max_safe_list: must be at most 10000".to_owned());
        }
        if self.reserve_ahead > 1_000 {
            errors.push("abuse.reserve_ahead: must be between 0 and 1000".to_owned());
        }
        if !(10..=10_000).contains(&self.reserve_ms) {
            errors.push("abuse.reserve_ms: must be between 10 and 10000".to_owned());
        }
    }

    /// The geo permission for `channel`: the account's own, else the operator's.
    pub fn geo<'a>(&'a self, policy: &'a AbusePolicy, channel: Channel) -> &'a GeoPermission {
        policy
            .geo
            .get(&channel)
            .unwrap_or_else(|| self.geo.get(channel))
    }

    /// The number types `channel` may send to: the account's own, else the operator's.
    pub fn number_types(&self, policy: &AbusePolicy, channel: Channel) -> TypeSet {
        policy
            .number_types
            .get(&channel)
            .copied()
            .unwrap_or(*self.number_types.get(channel))
    }

    pub fn prefix_rules(&self, policy: &AbusePolicy) -> Thresholds {
        policy.guard.prefix.unwrap_or(self.prefix_rules)
    }

    pub fn country_rules(&self, policy: &AbusePolicy) -> Thresholds {
        policy.guard.country.unwrap_or(self.country_rules)
    }

    pub fn caps(&self, policy: &AbusePolicy) -> DailyCaps {
        policy.caps.unwrap_or(self.caps)
    }
}

/// `[abuse]` as the config writes it (config/default.toml documents each key): `geo` and
/// `number_types` name only the channels whose shipped default they replace.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsWire {
    #[serde(default)]
    geo: BTreeMap<Channel, GeoPermission>,
    #[serde(default)]
    number_types: BTreeMap<Channel, TypeSet>,
    prefix: Thresholds,
    country: Thresholds,
    #[serde(default)]
    caps: DailyCaps,
    max_tracked: usize,
    memory_max_tracked: usize,
    max_safe_list: usize,
    #[serde(default = "default_reserve_ahead")]
    reserve_ahead: u32,
    #[serde(default = "default_reserve_ms")]
    reserve_ms: u64,
}

fn default_reserve_ahead() -> u32 {
    DEFAULT_RESERVE_AHEAD
}

fn default_reserve_ms() -> u64 {
    DEFAULT_RESERVE_MS
}

impl<'de> Deserialize<'de> for AbuseSettings {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = SettingsWire::deserialize(deserializer)?;
        let mut settings = AbuseSettings {
            prefix_rules: wire.prefix,
            country_rules: wire.country,
            caps: wire.caps,
            max_tracked: wire.max_tracked,
            memory_max_tracked: wire.memory_max_tracked,
            max_safe_list: wire.max_safe_list,
            reserve_ahead: wire.reserve_ahead,
            reserve_ms: wire.reserve_ms,
            ..AbuseSettings::default()
        };
        for (channel, geo) in wire.geo {
            *settings.geo.get_mut(channel) = geo;
        }
        for (channel, types) in wire.number_types {
            *settings.number_types.get_mut(channel) = types;
        }
        Ok(settings)
    }
}

/// One value per channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PerChannel<T> {
    pub sms: T,
    pub whatsapp: T,
    pub call: T,
}

impl<T: Clone> PerChannel<T> {
    pub fn all(value: T) -> Self {
        Self {
            sms: value.clone(),
            whatsapp: value.clone(),
            call: value,
        }
    }
}

impl<T> PerChannel<T> {
    pub fn get(&self, channel: Channel) -> &T {
        match channel {
            Channel::Sms => &self.sms,
            Channel::Whatsapp => &self.whatsapp,
            Channel::Call => &self.call,
        }
    }

    pub fn get_mut(&mut self, channel: Channel) -> &mut T {
        match channel {
            Channel::Sms => &mut self.sms,
            Channel::Whatsapp => &mut self.whatsapp,
            Channel::Call => &mut self.call,
        }
    }
}

/// Messages per account per UTC day; `None`: unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DailyCaps {
    /// All destinations together.
    #[serde(default)]
    pub total: Option<u64>,
    /// Each destination country.
    #[serde(default)]
    pub per_country: Option<u64>,
}

impl DailyCaps {
    pub fn validate(&self, path: &str, errors: &mut Vec<String>) {
        if self.total == Some(0) {
            errors.push(format!(
                "{path}.total: must be at least 1 (leave it out for no cap)"
            ));
        }
        if self.per_country == Some(0) {
            errors.push(format!(
                "{path}.per_country: must be at least 1 (leave it out for no cap)"
            ));
        }
    }
}

/// An account's overrides of the operator's defaults, carried by its policy. Each member left
/// out takes the operator's value; a member given replaces it whole (a geo permission of
/// `{"countries": ["*"]}` re-enables every high-risk region for that channel).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AbusePolicy {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub geo: BTreeMap<Channel, GeoPermission>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub number_types: BTreeMap<Channel, TypeSet>,
    #[serde(default, skip_serializing_if = "GuardPolicy::is_default")]
    pub guard: GuardPolicy,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caps: Option<DailyCaps>,
    #[serde(default, skip_serializing_if = "SafeList::is_empty")]
    pub safe_list: SafeList,
}

impl AbusePolicy {
    /// The rules serde cannot check (geo codes, number types and safe-list entries were checked
    /// while parsing); each broken one adds a line to `errors`.
    pub fn validate(&self, settings: &AbuseSettings, errors: &mut Vec<String>) {
        if let Some(prefix) = &self.guard.prefix {
            prefix.validate("abuse.guard.prefix", errors);
        }
        if let Some(country) = &self.guard.country {
            country.validate("abuse.guard.country", errors);
        }
        if let Some(caps) = &self.caps {
            caps.validate("abuse.caps", errors);
        }
        if self.safe_list.0.len() > settings.max_safe_list {
            errors.push(format!(
                "abuse.safe_list: at most {} entries",
                settings.max_safe_list
            ));
        }
    }
}

/// The guard's rules an account sets for itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<Thresholds>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<Thresholds>,
}

impl GuardPolicy {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// Numbers and prefixes the pumping guard lets through (a test team's phones, a partner's
/// range): `+4915112345678` is one number, `+49151*` every number starting so.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SafeList(Vec<SafeEntry>);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SafeEntry {
    Number(String),
    Prefix(Prefix),
}

impl SafeList {
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        let mut list = Vec::with_capacity(entries.len());
        for entry in entries {
            let parsed = match entry.strip_suffix('*') {
                Some(prefix) => Prefix::parse(prefix).map(SafeEntry::Prefix),
                None => PhoneNumber::parse(entry)
                    .ok()
                    .map(|number| SafeEntry::Number(number.e164().to_owned())),
            };
            let parsed = parsed.ok_or_else(|| {
                format!(
                    "'{entry}': a number in E.164 form, or a prefix ('+' and digits) ending in '*'"
                )
            })?;
            if list.contains(&parsed) {
                return Err(format!("'{entry}' is listed twice"));
            }
            list.push(parsed);
        }
        Ok(Self(list))
    }

    pub fn covers(&self, number: &PhoneNumber) -> bool {
        self.0.iter().any(|entry| match entry {
            SafeEntry::Number(e164) => e164 == number.e164(),
            SafeEntry::Prefix(prefix) => number.e164().starts_with(prefix.as_str()),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn entries(&self) -> &[SafeEntry] {
        &self.0
    }
}

impl Serialize for SafeList {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(|entry| match entry {
            SafeEntry::Number(e164) => e164.clone(),
            SafeEntry::Prefix(prefix) => format!("{prefix}*"),
        }))
    }
}

impl<'de> Deserialize<'de> for SafeList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        super::types::parsed_list(deserializer, SafeList::parse)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::phone::Region;

    fn number(e164: &str) -> PhoneNumber {
        PhoneNumber::parse(e164).unwrap()
    }

    fn problems(settings: &AbuseSettings) -> Vec<String> {
        let mut errors = Vec::new();
        settings.validate(&mut errors);
        errors
    }

    /// The shipped defaults are valid, and every broken setting is reported in one run.
    #[test]
    fn settings_are_checked_whole() {
        assert_eq!(problems(&AbuseSettings::default()), Vec::<String>::new());
        let mut settings = AbuseSettings::default();
        settings.prefix_rules.min_sends = 0;
        settings.country_rules.cooldown = Duration::ZERO;
        settings.caps.total = Some(0);
        settings.max_tracked = 1;
        settings.max_safe_list = 1_000_000;
        assert_eq!(problems(&settings).len(), 5, "{:?}", problems(&settings));
    }

    #[test]
    fn the_config_form_overrides_only_the_channels_it_names() {
        let settings: AbuseSettings = serde_json::from_str(
            r#"{"geo": {"sms": {"countries": ["DE"]}},
                "prefix": {"min_sends": 50, "min_conversion_percent": 20, "surge_factor": 10,
                    "surge_min_sends": 100, "cooldown_seconds": 3600},
                "country": {"min_sends": 200, "min_conversion_percent": 20, "surge_factor": 10,
                    "surge_min_sends": 1000, "cooldown_seconds": 3600},
                "max_tracked": 1000, "memory_max_tracked": 100000, "max_safe_list": 100}"#,
        )
        .unwrap();
        let none = AbusePolicy::default();
        let us = Region::parse("US").unwrap();
        assert!(!settings.geo(&none, Channel::Sms).allows(us));
        assert!(settings.geo(&none, Channel::Whatsapp).allows(us));
        assert_eq!(settings.country_rules, Thresholds::country_default());
    }

    #[test]
    fn texting_defaults_to_mobile_numbers_and_calls_add_fixed_lines() {
        let settings = AbuseSettings::default();
        let none = AbusePolicy::default();
        for channel in [Channel::Sms, Channel::Whatsapp] {
            let types = settings.number_types(&none, channel);
            assert!(types.contains(NumberType::Mobile));
            assert!(types.contains(NumberType::FixedLineOrMobile));
            assert!(!types.contains(NumberType::FixedLine));
        }
        assert!(settings
            .number_types(&none, Channel::Call)
            .contains(NumberType::FixedLine));
    }

    #[test]
    fn an_accounts_policy_overrides_only_what_it_names() {
        let settings = AbuseSettings::default();
        let policy: AbusePolicy = serde_json::from_str(
            r#"{
                "geo": {"sms": {"countries": ["*"]}},
                "number_types": {"whatsapp": ["mobile", "voip"]},
                "guard": {"prefix": {"min_sends": 10, "min_conversion_percent": 50,
                    "surge_factor": 5, "surge_min_sends": 20, "cooldown_seconds": 600}},
                "caps": {"total": 1000},
                "safe_list": ["+4915112345678", "+1415555*"]
            }"#,
        )
        .unwrap();
        let mut errors = Vec::new();
        policy.validate(&settings, &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        let cuba = Region::parse("CU").unwrap();
        assert!(settings.geo(&policy, Channel::Sms).allows(cuba));
        assert!(!settings.geo(&policy, Channel::Whatsapp).allows(cuba));
        assert!(settings
            .number_types(&policy, Channel::Whatsapp)
            .contains(NumberType::Voip));
        assert!(!settings
            .number_types(&policy, Channel::Sms)
            .contains(NumberType::Voip));
        assert_eq!(settings.prefix_rules(&policy).min_sends, 10);
        assert_eq!(
            settings.country_rules(&policy),
            Thresholds::country_default()
        );
        assert_eq!(settings.caps(&policy).total, Some(1000));
        assert!(policy.safe_list.covers(&number("+4915112345678")));
        assert!(policy.safe_list.covers(&number("+14155552671")));
        assert!(!policy.safe_list.covers(&number("+4915112345679")));
        let back: AbusePolicy =
            serde_json::from_str(&serde_json::to_string(&policy).unwrap()).unwrap();
        assert_eq!(back, policy);
    }

    #[test]
    fn a_policy_with_bad_members_is_refused() {
        for bad in [
            r#"{"geo": {"sms": {"countries": ["ZX"]}}}"#,
            r#"{"geo": {"fax": {"countries": ["*"]}}}"#,
            r#"{"number_types": {"sms": ["premium_rate"]}}"#,
            r#"{"safe_list": ["+49151"]}"#,
            r#"{"safe_list": ["0151*"]}"#,
            r#"{"caps": {"daily": 5}}"#,
            r#"{"colour": "red"}"#,
        ] {
            assert!(serde_json::from_str::<AbusePolicy>(bad).is_err(), "{bad}");
        }
        let policy: AbusePolicy =
            serde_json::from_str(r#"{"caps": {"per_country": 0}, "guard": {"country": {"min_sends": 50, "min_conversion_percent": 20, "surge_factor": 0, "surge_min_sends": 100, "cooldown_seconds": 3600}}}"#)
                .unwrap();
        let mut errors = Vec::new();
        policy.validate(&AbuseSettings::default(), &mut errors);
        assert_eq!(errors.len(), 2, "{errors:?}");
    }

    #[test]
    fn a_safe_list_longer_than_the_operator_allows_is_refused() {
        let settings = AbuseSettings {
            max_safe_list: 1,
            ..AbuseSettings::default()
        };
        let policy: AbusePolicy =
            serde_json::from_str(r#"{"safe_list": ["+49151*", "+49152*"]}"#).unwrap();
        let mut errors = Vec::new();
        policy.validate(&settings, &mut errors);
        assert_eq!(errors, ["abuse.safe_list: at most 1 entries"]);
    }
}
