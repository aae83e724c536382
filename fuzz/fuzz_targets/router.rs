//! The route table: any path either matches a route with well-formed parameters or is not found.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otpgate::http::routes::{find, Route};

fuzz_target!(|path: &str| {
    let matched = find(path);
    if matched.route == Route::NotFound {
        assert!(matched.param.is_none() && matched.second.is_none());
        return;
    }
    for param in [matched.param, matched.second].into_iter().flatten() {
        // A parameter is one non-empty path segment.
        assert!(!param.is_empty() && !param.contains('/'), "{path:?}");
    }
    assert!(matched.route.accepts(matched.route.method()));
    assert!(!matched.route.name().is_empty());
});
