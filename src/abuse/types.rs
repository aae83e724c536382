//! Which number types a channel may send to. Premium-rate and shared-cost numbers are never
//! allowed: the sender pays the recipient's operator a share, which is what pumping harvests.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::phone::NumberType;

/// The types no policy may allow.
pub const NEVER_ALLOWED: [NumberType; 2] = [NumberType::PremiumRate, NumberType::SharedCost];

/// A set of number types, as a bit set (small, `Copy`, listed in `NumberType::ALL`'s order).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TypeSet(u16);

impl TypeSet {
    pub fn of(types: &[NumberType]) -> Self {
        Self(types.iter().fold(0, |bits, kind| bits | bit(*kind)))
    }

    pub fn contains(self, kind: NumberType) -> bool {
        self.0 & bit(kind) != 0
    }

    pub fn iter(self) -> impl Iterator<Item = NumberType> {
        NumberType::ALL
            .into_iter()
            .filter(move |kind| self.contains(*kind))
    }

    /// Names of the types (`["mobile", "fixed_line_or_mobile"]`), refusing unknown names,
    /// duplicates, an empty list and the types that are never allowed.
    pub fn parse(names: &[String]) -> Result<Self, String> {
        if names.is_empty() {
            return Err("name at least one number type".to_owned());
        }
        let mut set = TypeSet::default();
        for name in names {
            let kind = NumberType::parse(name).ok_or_else(|| {
                format!(
                    "'{name}' is not a number type (one of {})",
                    NumberType::ALL.map(NumberType::as_str).join(", ")
                )
            })?;
            if NEVER_ALLOWED.contains(&kind) {
                return Err(format!("'{name}' numbers are never sent to"));
            }
            if set.contains(kind) {
                return Err(format!("'{name}' is listed twice"));
            }
            set.0 |= bit(kind);
        }
        Ok(set)
    }
}

fn bit(kind: NumberType) -> u16 {
    1 << (kind as u16)
}

impl fmt::Debug for TypeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(self.iter().map(NumberType::as_str))
            .finish()
    }
}

impl Serialize for TypeSet {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter().map(NumberType::as_str))
    }
}

impl<'de> Deserialize<'de> for TypeSet {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        parsed_list(deserializer, TypeSet::parse)
    }
}

/// A value whose wire form is a list of strings, read with `parse` (which names what is wrong).
pub(super) fn parsed_list<'de, D: Deserializer<'de>, T>(
    deserializer: D,
    parse: impl FnOnce(&[String]) -> Result<T, String>,
) -> Result<T, D::Error> {
    parse(&Vec::<String>::deserialize(deserializer)?).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_set_holds_exactly_what_it_was_given() {
        let set = TypeSet::of(&[NumberType::Mobile, NumberType::Unknown]);
        assert!(set.contains(NumberType::Mobile));
        assert!(set.contains(NumberType::Unknown));
        assert!(!set.contains(NumberType::FixedLine));
        assert_eq!(
            set.iter().collect::<Vec<_>>(),
            [NumberType::Mobile, NumberType::Unknown]
        );
    }

    #[test]
    fn premium_rate_and_shared_cost_can_never_be_allowed() {
        for never in ["premium_rate", "shared_cost"] {
            let error = TypeSet::parse(&names(&["mobile", never])).unwrap_err();
            assert!(error.contains("never"), "{error}");
        }
    }

    #[test]
    fn unknown_names_duplicates_and_empty_lists_are_refused() {
        assert!(TypeSet::parse(&names(&["cellphone"])).is_err());
        assert!(TypeSet::parse(&names(&["mobile", "mobile"])).is_err());
        assert!(TypeSet::parse(&[]).is_err());
    }

    #[test]
    fn the_wire_form_is_a_list_of_names() {
        let set: TypeSet = serde_json::from_str(r#"["fixed_line","mobile"]"#).unwrap();
        assert_eq!(
            serde_json::to_string(&set).unwrap(),
            r#"["mobile","fixed_line"]"#
        );
    }
}
