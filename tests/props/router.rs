//! The route table: any path matches one route with single-segment parameters, or none.

use otpgate::http::routes::{find, table, Route};
use proptest::prelude::*;

proptest! {
    #[test]
    fn any_path_matches_a_route_with_single_segment_parameters_or_is_not_found(
        path in prop_oneof![".{0,40}", "(/[a-zA-Z0-9._%-]{0,8}){0,6}", "/v[0-9]{1,3}\\.[0-9]{1,2}/[0-9]{0,16}"]
    ) {
        let matched = find(&path);
        if matched.route == Route::NotFound {
            prop_assert!(matched.param.is_none() && matched.second.is_none());
        }
        for param in [matched.param, matched.second].into_iter().flatten() {
            prop_assert!(!param.is_empty() && !param.contains('/'), "{:?}", path);
            prop_assert!(path.contains(param));
        }
    }

    #[test]
    fn every_route_template_filled_in_finds_its_route_and_its_parameters(
        index in any::<prop::sample::Index>(),
        param in "x0[a-zA-Z0-9._@+-]{0,20}",
        second in "x0[a-zA-Z0-9._-]{0,20}",
    ) {
        let (template, route) = *index.get(table());
        // The Graph route exists only for `v<major>.<minor>` versions.
        let param = if route == Route::GraphPhoneNumber { "v24.0".to_owned() } else { param };
        let path = template.replace("{param}", &param).replace("{second}", &second);
        let matched = find(&path);
        prop_assert_eq!(matched.route, route, "{}", path);
        prop_assert_eq!(matched.param, template.contains("{param}").then_some(param.as_str()));
        prop_assert_eq!(matched.second, template.contains("{second}").then_some(second.as_str()));
    }
}
