//! Leaf helpers of every handler: reading bodies (JSON, form, bytes) by the request's deadline,
//! writing JSON and text answers, query strings. Imports no sibling but `error.rs`.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use serde::Serialize;

use super::error::ApiError;

/// Read by `read_bytes` and `read_json`: the instant by which the body must have arrived.
#[derive(Clone, Copy)]
pub(super) struct BodyDeadline(pub(super) tokio::time::Instant);

pub(crate) fn json_response<T: Serialize>(status: StatusCode, body: &T) -> Response<Full<Bytes>> {
    // Room for a verification's body at once (serde_json starts at 128 bytes and regrows).
    let mut bytes = Vec::with_capacity(512);
    match serde_json::to_writer(&mut bytes, body) {
        Ok(()) => {
            let mut response = Response::new(Full::new(Bytes::from(bytes)));
            *response.status_mut() = status;
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
        Err(error) => {
            tracing::error!(%error, "response encoding failed");
            ApiError::Internal.into_response()
        }
    }
}

/// Reads a body of any type up to `limit` bytes.
pub(crate) async fn read_bytes(
    request: Request<Incoming>,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let announced = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    if announced.is_some_and(|length| length > limit) {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    collect_body(request, limit).await
}

/// The body, up to `limit` bytes, by the request's body deadline (set in `handle`; a request
/// built elsewhere gets the default's ten seconds).
async fn collect_body(request: Request<Incoming>, limit: usize) -> Result<Bytes, ApiError> {
    let deadline = request.extensions().get::<BodyDeadline>().map_or_else(
        || tokio::time::Instant::now() + Duration::from_secs(10),
        |at| at.0,
    );
    let collected =
        tokio::time::timeout_at(deadline, Limited::new(request.into_body(), limit).collect())
            .await
            .map_err(|_| ApiError::BodyTimeout)?;
    Ok(collected
        .map_err(|error| {
            if error
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                ApiError::PayloadTooLarge(limit)
            } else {
                ApiError::invalid("the body could not be read")
            }
        })?
        .to_bytes())
}

/// The request's JSON body, within the server's `request_body_limit` (see [`read_json`]).
pub(crate) async fn json_body<T: serde::de::DeserializeOwned>(
    app: &crate::App,
    request: Request<Incoming>,
) -> Result<T, ApiError> {
    read_json(request, app.settings().server.request_body_limit).await
}

/// Reads a JSON body: refuses non-JSON content types, bodies over the limit (before reading
/// them when the length is announced), and anything serde cannot map onto `T`.
pub(crate) async fn read_json<T: serde::de::DeserializeOwned>(
    request: Request<Incoming>,
    limit: usize,
) -> Result<T, ApiError> {
    let headers = request.headers();
    let is_json = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(ApiError::UnsupportedMediaType);
    }
    let announced = headers
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    if announced.is_some_and(|length| length > limit) {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    let body = collect_body(request, limit).await?;
    serde_json::from_slice(&body)
        .map_err(|error| ApiError::invalid(format!("invalid JSON body: {error}")))
}

pub(crate) fn text(
    status: StatusCode,
    content_type: &'static str,
    body: String,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// The Graph API's answer to a PIN set or a registration, byte for byte.
const SUCCESS: &[u8] = br#"{"success":true}"#;

/// `{"success":true}`, as Graph answers (and the v1 PIN routes too).
pub(super) fn success() -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(SUCCESS)));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// The media type of the request's `Content-Type`, lowercased, without parameters.
pub(super) fn media_type(request: &Request<Incoming>) -> Option<String> {
    request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .map(|media| media.trim().to_ascii_lowercase())
}

/// The pairs of a query string, percent-decoded (`+` stays literal).
pub(super) fn query_pairs(query: Option<&str>) -> Result<Vec<(String, String)>, ApiError> {
    let Some(query) = query.filter(|query| !query.is_empty()) else {
        return Ok(Vec::new());
    };
    query
        .split('&')
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((percent_decode(name)?, percent_decode(value)?))
        })
        .collect()
}

fn percent_decode(input: &str) -> Result<String, ApiError> {
    let bad = || ApiError::invalid("the query string is not percent-encoded UTF-8");
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = input.get(i + 1..i + 3).ok_or_else(bad)?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_are_percent_decoded_and_plus_is_literal() {
        let pairs = query_pairs(Some("acting_user=a%40b.c&x=1+2")).unwrap();
        assert_eq!(pairs[0], ("acting_user".into(), "a@b.c".into()));
        assert_eq!(pairs[1], ("x".into(), "1+2".into()));
        assert!(query_pairs(Some("a=%zz")).is_err());
        assert!(query_pairs(None).unwrap().is_empty());
    }
}
