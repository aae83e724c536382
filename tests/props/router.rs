//! The route table: any path matches one route with single-segment parameters, or none; path
//! parameters are percent-decoded exactly once.

use otpgate::http::table::{find, table};
use proptest::prelude::*;

/// Percent-encodes every byte but RFC 3986's unreserved characters, as a client encodes an id.
fn encode(segment: &str) -> String {
    let mut out = String::new();
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

proptest! {
    #[test]
    fn any_path_matches_a_route_with_single_segment_parameters_or_is_not_found(
        path in prop_oneof![".{0,40}", "(/[a-zA-Z0-9._%-]{0,8}){0,6}", "/v[0-9]{1,3}\\.[0-9]{1,2}/[0-9]{0,16}"]
    ) {
        let found = find(&path);
        let matched = found.matched();
        if matched.route.name == "not_found" {
            prop_assert!(matched.param.is_none() && matched.second.is_none());
        }
        for param in [matched.param, matched.second].into_iter().flatten() {
            prop_assert!(!param.is_empty() && !param.contains('/'), "{:?}", path);
            prop_assert!(param != "." && param != "..", "{:?}", path);
            prop_assert!(!param.contains(char::is_control), "{:?}", path);
        }
    }

    #[test]
    fn every_route_template_filled_in_finds_its_route_and_its_parameters(
        index in any::<prop::sample::Index>(),
        param in "x0[a-zA-Z0-9._@+-]{0,20}",
        second in "x0[a-zA-Z0-9._-]{0,20}",
    ) {
        let (template, route) = *index.get(table());
        // The Graph routes exist only for `v<major>.<minor>` versions.
        let graph = matches!(route.name, "graph_phone_number" | "graph_register");
        let param = if graph { "v24.0".to_owned() } else { param };
        let path = template.replace("{param}", &param).replace("{second}", &second);
        let found = find(&path);
        let matched = found.matched();
        prop_assert_eq!(matched.route.name, route.name, "{}", path);
        prop_assert_eq!(matched.param, template.contains("{param}").then_some(param.as_str()));
        prop_assert_eq!(matched.second, template.contains("{second}").then_some(second.as_str()));
    }

    #[test]
    fn path_parameters_encoded_by_a_client_decode_back_exactly_once(id in ".{1,30}") {
        let path = format!("/v1/users/{}/factors/{}", encode(&id), encode(&id));
        let found = find(&path);
        let refusable = id == "." || id == ".." || id.contains('/') || id.contains(char::is_control);
        if refusable {
            prop_assert!(found.refused.is_some(), "{:?}", id);
        } else {
            prop_assert_eq!(found.refused, None);
            let matched = found.matched();
            prop_assert_eq!(matched.route.name, "user_factor");
            prop_assert_eq!(matched.param, Some(id.as_str()));
            prop_assert_eq!(matched.second, Some(id.as_str()));
            // Encoded twice, it decodes once: `%2541` stays `%41`.
            let twice = format!("/v1/users/{}", encode(&encode(&id)));
            let once = encode(&id);
            let found_twice = find(&twice);
            prop_assert_eq!(found_twice.matched().param, Some(once.as_str()));
        }
    }

    #[test]
    fn any_percent_escape_decodes_to_a_checked_parameter_or_a_refusal(
        escapes in prop::collection::vec((any::<u8>(), any::<bool>()), 1..12)
    ) {
        let raw: String = escapes
            .iter()
            .map(|(byte, escaped)| if *escaped || !byte.is_ascii_alphanumeric() {
                format!("%{byte:02x}")
            } else {
                char::from(*byte).to_string()
            })
            .collect();
        let path = format!("/v1/users/{raw}");
        let found = find(&path);
        let bytes: Vec<u8> = escapes.iter().map(|(byte, _)| *byte).collect();
        match std::str::from_utf8(&bytes) {
            Ok(text) if text != "." && text != ".." && !text.contains('/') && !text.contains(char::is_control) => {
                prop_assert_eq!(found.matched().param, Some(text));
            }
            _ => prop_assert!(found.refused.is_some(), "{:?}", raw),
        }
    }
}
