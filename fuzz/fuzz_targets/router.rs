//! The route table and its path parameters: any path either matches a route whose parameters,
//! percent-decoded once, are well-formed ids (or the request is refused with a reason), or it is
//! not found. Decoded parameters encoded again decode to themselves.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otpgate::http::table::find;

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

fuzz_target!(|path: &str| {
    let found = find(path);
    let matched = found.matched();
    if matched.route.is_not_found() {
        assert!(matched.param.is_none() && matched.second.is_none() && found.refused.is_none());
        return;
    }
    assert!(!matched.route.name.is_empty());
    assert!(matched.route.methods().next().is_some(), "{path:?}");
    assert!(matched
        .route
        .methods()
        .all(|method| matched.route.accepts(method)));
    for param in [matched.param, matched.second].into_iter().flatten() {
        assert!(!param.is_empty(), "{path:?}");
        assert!(param != "." && param != "..", "{path:?}");
        assert!(
            !param.contains('/') && !param.contains(char::is_control),
            "{path:?}"
        );
        if !matched.route.is_graph() {
            let again = format!("/v1/users/{}", encode(param));
            assert_eq!(find(&again).matched().param, Some(param), "{path:?}");
        }
    }
});
