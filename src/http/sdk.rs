//! `GET /sdk/webauthn.js`: the browser helper for WebAuthn (an ES module embedded in the
//! binary), for login services' own pages and the console.

use hyper::header::{HeaderValue, ACCESS_CONTROL_ALLOW_ORIGIN, CACHE_CONTROL};
use hyper::StatusCode;

use super::body::text;
use super::routes::{Call, Reply};

/// The module's source, compiled in.
pub const WEBAUTHN_JS: &str = include_str!("assets/webauthn.js");

pub(super) async fn webauthn_js(_call: Call<'_>) -> Reply {
    let mut response = text(
        StatusCode::OK,
        "text/javascript; charset=utf-8",
        WEBAUTHN_JS.to_owned(),
    );
    let headers = response.headers_mut();
    // A module script from another origin loads only with CORS; the file is public and holds
    // nothing of anyone's.
    headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    Ok(response)
}
