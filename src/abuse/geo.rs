//! Geo permissions: which destination regions a channel may send to, and the shipped list of
//! high-risk regions excluded by default (docs/abuse.md gives the reasons).

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::phone::Region;

/// The regions excluded from the operator's default (`*` minus these), each with the reason it
/// is on the list. An operator (`[abuse]` in config) or an account owner (its policy) re-enables
/// one by naming a permission without it.
pub const HIGH_RISK: &[(&str, &str)] = &[
    (
        "001",
        "non-geographic codes: satellite (+870, +881), international networks (+882, +883), international premium rate (+979)",
    ),
    ("AC", "Ascension Island: remote network, very high termination rates"),
    ("CK", "Cook Islands: small Pacific network, very high termination rates"),
    ("CU", "Cuba: very high termination rates, a long-standing revenue-share fraud destination"),
    ("ER", "Eritrea: one state operator, very high termination rates"),
    ("FK", "Falkland Islands: remote network, very high termination rates"),
    ("FM", "Micronesia: small Pacific network, very high termination rates"),
    ("GW", "Guinea-Bissau: high termination rates, frequent traffic-pumping destination"),
    ("IO", "Diego Garcia: no public subscribers"),
    ("KI", "Kiribati: small Pacific network, very high termination rates"),
    ("KM", "Comoros: high termination rates, frequent traffic-pumping destination"),
    ("MH", "Marshall Islands: small Pacific network, very high termination rates"),
    ("NR", "Nauru: small Pacific network, very high termination rates"),
    ("NU", "Niue: small Pacific network, very high termination rates"),
    ("PG", "Papua New Guinea: high termination rates, frequent traffic-pumping destination"),
    ("PW", "Palau: small Pacific network, very high termination rates"),
    ("SB", "Solomon Islands: small Pacific network, very high termination rates"),
    ("SH", "Saint Helena: remote network, very high termination rates"),
    ("SO", "Somalia: high termination rates, frequent traffic-pumping destination"),
    ("ST", "São Tomé and Príncipe: high termination rates, frequent traffic-pumping destination"),
    ("TA", "Tristan da Cunha: remote network, very high termination rates"),
    ("TK", "Tokelau: small Pacific network, very high termination rates"),
    ("TV", "Tuvalu: small Pacific network, very high termination rates"),
    ("VU", "Vanuatu: small Pacific network, very high termination rates"),
    ("WF", "Wallis and Futuna: small Pacific network, very high termination rates"),
];

/// The destination regions one channel may send to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GeoPermission {
    /// Only these regions.
    Only(BTreeSet<Region>),
    /// Every region (`*`), including numbers of no known region, except these.
    AllExcept(BTreeSet<Region>),
}

impl GeoPermission {
    /// The shipped default: every region except [`HIGH_RISK`].
    pub fn default_for_operator() -> Self {
        GeoPermission::AllExcept(
            HIGH_RISK
                .iter()
                .filter_map(|(code, _)| Region::parse(code))
                .collect(),
        )
    }

    pub fn allows(&self, region: Region) -> bool {
        match self {
            GeoPermission::Only(regions) => regions.contains(&region),
            GeoPermission::AllExcept(excluded) => !excluded.contains(&region),
        }
    }

    /// `countries`: region codes, or `["*"]` for all; `except`: codes taken out of `*` (only
    /// with `*`). Unknown codes, duplicates and an empty list are refused.
    pub fn parse(countries: &[String], except: &[String]) -> Result<Self, String> {
        let codes = |list: &[String]| -> Result<BTreeSet<Region>, String> {
            let mut set = BTreeSet::new();
            for code in list {
                let region = Region::parse(code).ok_or_else(|| {
                    format!(
                        "'{code}' is not a region code (ISO 3166-1 alpha-2, upper case, or 001)"
                    )
                })?;
                if !set.insert(region) {
                    return Err(format!("'{code}' is listed twice"));
                }
            }
            Ok(set)
        };
        match countries {
            [all] if all == "*" => Ok(GeoPermission::AllExcept(codes(except)?)),
            [] => Err("countries: name at least one region, or \"*\" for all".to_owned()),
            _ if !except.is_empty() => Err("except: only with countries [\"*\"]".to_owned()),
            _ if countries.iter().any(|code| code == "*") => {
                Err("countries: \"*\" stands alone (take regions out with except)".to_owned())
            }
            _ => Ok(GeoPermission::Only(codes(countries)?)),
        }
    }
}

/// The policy's and the config's form: `{"countries": ["*"], "except": ["CU"]}` or
/// `{"countries": ["DE", "AT"]}`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct GeoWire {
    countries: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    except: Vec<String>,
}

impl Serialize for GeoPermission {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let names = |set: &BTreeSet<Region>| set.iter().map(|r| r.as_str().to_owned()).collect();
        let wire = match self {
            GeoPermission::Only(regions) => GeoWire {
                countries: names(regions),
                except: Vec::new(),
            },
            GeoPermission::AllExcept(excluded) => GeoWire {
                countries: vec!["*".to_owned()],
                except: names(excluded),
            },
        };
        wire.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for GeoPermission {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = GeoWire::deserialize(deserializer)?;
        GeoPermission::parse(&wire.countries, &wire.except).map_err(serde::de::Error::custom)
    }
}

impl Serialize for Region {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Region {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Region;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a region code (ISO 3166-1 alpha-2, upper case, or 001)")
            }
            fn visit_str<E: serde::de::Error>(self, code: &str) -> Result<Region, E> {
                Region::parse(code).ok_or_else(|| E::custom(format!("unknown region '{code}'")))
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(code: &str) -> Region {
        Region::parse(code).unwrap()
    }

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn every_high_risk_code_is_a_region_the_metadata_knows() {
        for (code, reason) in HIGH_RISK {
            assert!(Region::parse(code).is_some(), "{code}");
            assert!(!reason.is_empty());
        }
        let GeoPermission::AllExcept(excluded) = GeoPermission::default_for_operator() else {
            panic!("the default is all but the high-risk list");
        };
        assert_eq!(excluded.len(), HIGH_RISK.len());
    }

    #[test]
    fn the_operator_default_allows_big_markets_and_refuses_the_high_risk_list() {
        let default = GeoPermission::default_for_operator();
        for allowed in ["DE", "US", "GB", "IN", "BR", "NG"] {
            assert!(default.allows(region(allowed)), "{allowed}");
        }
        for refused in ["CU", "TV", "001"] {
            assert!(!default.allows(region(refused)), "{refused}");
        }
    }

    #[test]
    fn only_listed_regions_pass_an_explicit_list() {
        let geo = GeoPermission::parse(&strings(&["DE", "AT"]), &[]).unwrap();
        assert!(geo.allows(region("DE")));
        assert!(geo.allows(region("AT")));
        assert!(!geo.allows(region("US")));
        assert!(!geo.allows(Region::UNKNOWN));
    }

    #[test]
    fn unknown_codes_and_malformed_lists_are_refused() {
        for (countries, except) in [
            (vec!["DE", "QQ"], vec![]),
            (vec!["de"], vec![]),
            (vec!["DEU"], vec![]),
            (vec![], vec![]),
            (vec!["DE"], vec!["AT"]),
            (vec!["*", "DE"], vec![]),
            (vec!["*"], vec!["XX"]),
            (vec!["DE", "DE"], vec![]),
        ] {
            assert!(
                GeoPermission::parse(&strings(&countries), &strings(&except)).is_err(),
                "{countries:?} except {except:?}"
            );
        }
    }

    #[test]
    fn the_wire_form_round_trips_and_refuses_unknown_codes() {
        let geo: GeoPermission =
            serde_json::from_str(r#"{"countries":["*"],"except":["CU","001"]}"#).unwrap();
        assert!(!geo.allows(region("CU")));
        assert!(geo.allows(region("DE")));
        assert_eq!(
            serde_json::to_string(&geo).unwrap(),
            r#"{"countries":["*"],"except":["001","CU"]}"#
        );
        let error = serde_json::from_str::<GeoPermission>(r#"{"countries":["XY"]}"#).unwrap_err();
        assert!(error.to_string().contains("'XY'"), "{error}");
    }
}
