//! The Graph API facade for WhatsApp Business clients (issue 14), so that Meta's
//! `facebook-business` SDK talks to otpgate unchanged:
//!
//! - `POST /{version}/{id}` `{pin}`: sets or changes the two-step PIN; answers `{"success":true}`.
//! - `GET /{version}/{id}`: the number's fields (`id`, `display_phone_number`).
//! - `POST /{version}/{id}/register` `{messaging_product: "whatsapp", pin}`: registration.
//!
//! As Graph does: the token comes as a Bearer header, an `access_token` query parameter or an
//! `access_token` form field; parameters come in the query, a JSON body or a form body; errors
//! are `{"error": {"message", "type", "code", "error_subcode", "fbtrace_id"}}` with Graph's
//! codes, never problem+json (the SDK reads any body without `"error"` as a success). The v1
//! API keeps problem+json.

use std::net::IpAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, RETRY_AFTER};
use hyper::{Request, Response, StatusCode};
use ring::rand::SystemRandom;
use serde_json::{json, Value};

use super::auth::{credentials, identify, key_rate, AuthFailure, Caller, Grant};
use super::body::{json_response, media_type, read_bytes, success};
use super::error::ApiError;
use super::routes::{Call, Reply};
use super::wire_pins::GraphNumberBody;
use crate::account::permission::Permission;
use crate::pin::service::PinError;
use crate::pin::{PhoneNumberId, Pin, PinRefusal};
use crate::App;

/// The Graph versions answered (the ones Meta serves for the WhatsApp Business Platform as of
/// this release, including the `facebook-business` SDK 26.x default); any other version gets
/// Graph's unknown-version error. Documented in README.md.
pub const SUPPORTED_VERSIONS: &[&str] = &["v22.0", "v23.0", "v24.0", "v25.0", "v26.0"];

/// A Graph error object.
#[derive(Debug)]
struct GraphError {
    status: StatusCode,
    code: u32,
    subcode: Option<u32>,
    kind: &'static str,
    message: String,
    retry_after_secs: Option<u64>,
}

impl GraphError {
    fn new(status: StatusCode, code: u32, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            subcode: None,
            kind,
            message: message.into(),
            retry_after_secs: None,
        }
    }

    /// Graph's code 100: an invalid or missing parameter.
    fn invalid(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            100,
            "OAuthException",
            format!("(#100) {}", message.into()),
        )
    }

    /// Graph's code 190: no token, or not a valid one.
    fn invalid_token() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            190,
            "OAuthException",
            "Invalid OAuth access token - Cannot parse access token",
        )
    }

    fn limited(message: &str, retry_after_secs: u64) -> Self {
        Self {
            retry_after_secs: Some(retry_after_secs),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, 4, "OAuthException", message)
        }
    }

    fn into_response(self) -> Response<Full<Bytes>> {
        let mut error = json!({
            "message": self.message,
            "type": self.kind,
            "code": self.code,
            "fbtrace_id": fbtrace_id(),
        });
        if let Some(subcode) = self.subcode {
            error["error_subcode"] = json!(subcode);
        }
        let mut response = json_response(self.status, &json!({ "error": error }));
        if let Some(seconds) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// A random trace id, as Graph gives each error (nothing is traced by it here).
fn fbtrace_id() -> String {
    crate::random::random_bytes::<8>(&SystemRandom::new())
        .map(|bytes| data_encoding::BASE64URL_NOPAD.encode(&bytes))
        .unwrap_or_default()
}

impl From<PinError> for GraphError {
    fn from(error: PinError) -> Self {
        let seconds = |ms: u64| ms.div_ceil(1000).max(1);
        match error {
            PinError::BadPin(PinRefusal::Format) => {
                Self::invalid("Invalid parameter: pin must be exactly 6 digits")
            }
            PinError::BadPin(PinRefusal::Common(reason)) => Self::invalid(format!(
                "Invalid parameter: choose another pin: {reason}"
            )),
            PinError::Mismatch { retry_after_ms, .. } => Self {
                retry_after_secs: (retry_after_ms > 0).then(|| seconds(retry_after_ms)),
                ..Self::new(
                    StatusCode::BAD_REQUEST,
                    133005,
                    "OAuthException",
                    "Two step verification PIN Mismatch",
                )
            },
            // Meta's "10 tries per number per 72 hours" is otpgate's wait after wrong PINs and
            // its lock after 10 in a row: both answer Graph's registration rate limit.
            PinError::Wait { retry_after_ms } => Self {
                retry_after_secs: Some(seconds(retry_after_ms)),
                ..Self::new(
                    StatusCode::BAD_REQUEST,
                    133016,
                    "OAuthException",
                    "Account register deregister rate limit exceeded: wait before the next PIN",
                )
            },
            PinError::Locked => Self::new(
                StatusCode::BAD_REQUEST,
                133016,
                "OAuthException",
                "Account register deregister rate limit exceeded: locked after 10 wrong PINs; the number's owner or an admin unlocks it",
            ),
            PinError::NotFound => Self {
                subcode: Some(33),
                ..Self::invalid("Unsupported request: the object does not exist or the token cannot reach it")
            },
            PinError::Forbidden(detail) => {
                Self::new(StatusCode::FORBIDDEN, 10, "OAuthException", format!("(#10) {detail}"))
            }
            other => ApiError::from(other).into(),
        }
    }
}

impl From<ApiError> for GraphError {
    fn from(error: ApiError) -> Self {
        let status = error.status();
        match error {
            ApiError::Unauthorized => Self::invalid_token(),
            ApiError::InvalidRequest(detail) => Self::invalid(detail),
            ApiError::PayloadTooLarge(limit) => {
                Self::invalid(format!("the body must be at most {limit} bytes"))
            }
            ApiError::Forbidden(detail) => Self::new(
                StatusCode::FORBIDDEN,
                10,
                "OAuthException",
                format!("(#10) {detail}"),
            ),
            ApiError::Limited {
                retry_after_secs, ..
            } => Self::limited("(#4) Application request limit reached", retry_after_secs),
            ApiError::Unavailable(_) | ApiError::OutcomeUnknown => Self {
                retry_after_secs: Some(1),
                ..Self::new(
                    status,
                    2,
                    "OAuthException",
                    "Service temporarily unavailable",
                )
            },
            _ if status.is_client_error() => Self::new(
                status,
                100,
                "OAuthException",
                status.canonical_reason().unwrap_or("Invalid request"),
            ),
            _ => Self::new(status, 1, "OAuthException", "An unknown error occurred"),
        }
    }
}

/// A Graph answer: its error object on failure.
fn answer(result: Result<Response<Full<Bytes>>, GraphError>) -> Reply {
    Ok(result.unwrap_or_else(|error| error.into_response()))
}

/// The request's parameters: the query's, then the body's (JSON object or form).
struct Params(Vec<(String, String)>);

impl Params {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

async fn params(app: &App, request: Request<Incoming>) -> Result<Params, GraphError> {
    let mut params: Vec<(String, String)> = request
        .uri()
        .query()
        .map(|query| {
            form_urlencoded::parse(query.as_bytes())
                .map(|(key, value)| (key.into_owned(), value.into_owned()))
                .collect()
        })
        .unwrap_or_default();
    let media = media_type(&request);
    let body = read_bytes(request, app.settings().server.request_body_limit)
        .await
        .map_err(GraphError::from)?;
    match media.as_deref() {
        _ if body.is_empty() => {}
        Some("application/json") => {
            let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(&body) else {
                return Err(GraphError::invalid("the JSON body must be an object"));
            };
            for (key, value) in object {
                let value = match value {
                    Value::String(text) => text,
                    Value::Number(number) => number.to_string(),
                    Value::Bool(flag) => flag.to_string(),
                    _ => return Err(GraphError::invalid(format!("Invalid parameter {key}"))),
                };
                params.push((key, value));
            }
        }
        Some("application/x-www-form-urlencoded") | None => params.extend(
            form_urlencoded::parse(&body)
                .map(|(key, value)| (key.into_owned(), value.into_owned())),
        ),
        Some(_) => {
            return Err(GraphError::invalid(
                "send parameters as JSON or application/x-www-form-urlencoded",
            ))
        }
    }
    Ok(Params(params))
}

/// What every Graph route does first: the version checked, the token found (header, query or
/// body) and its key authenticated for `permission`, the phone number id of the path parsed.
async fn prelude(
    Call {
        app,
        ip,
        matched,
        request,
        ..
    }: Call<'_>,
    permission: Permission,
) -> Result<(Grant, PhoneNumberId, Params), GraphError> {
    let version = matched.param.unwrap_or_default();
    if !SUPPORTED_VERSIONS.contains(&version) {
        return Err(GraphError::new(
            StatusCode::BAD_REQUEST,
            2500,
            "OAuthException",
            format!(
                "Unknown path components: /{version}: unsupported Graph version; supported: {}",
                SUPPORTED_VERSIONS.join(", ")
            ),
        ));
    }
    let header_token = credentials(&request, "Bearer").map(str::to_owned);
    let params = params(app, request).await?;
    let token = header_token.or_else(|| params.get("access_token").map(str::to_owned));
    let grant = authenticate(app, ip, token.as_deref(), permission).await?;
    let id = matched
        .second
        .and_then(PhoneNumberId::parse)
        .ok_or_else(|| GraphError::from(PinError::NotFound))?;
    Ok((grant, id, params))
}

/// `GET /{version}/{phone_number_id}`: the number's fields.
pub(super) async fn get_number(call: Call<'_>) -> Reply {
    let app = call.app;
    answer(
        async {
            let (grant, id, _) = prelude(call, Permission::ManagePhoneNumbers).await?;
            let key = grant.key;
            let record = app.pins().number(&key.account, key.role, &id).await?;
            Ok(json_response(
                StatusCode::OK,
                &GraphNumberBody {
                    id: record.id.as_str(),
                    display_phone_number: &record.e164,
                },
            ))
        }
        .await,
    )
}

/// `POST /{version}/{phone_number_id}` `{pin}`: Graph's PIN call.
pub(super) async fn set_pin(call: Call<'_>) -> Reply {
    let app = call.app;
    answer(
        async {
            let (grant, id, params) = prelude(call, Permission::SetPins).await?;
            let who = grant.who();
            let key = grant.key;
            let pin = pin(&params)?;
            app.pins()
                .set_pin(&key.account, who, key.role, &id, &pin, "graph-api")
                .await?;
            Ok(success())
        }
        .await,
    )
}

/// `POST /{version}/{phone_number_id}/register` `{messaging_product, pin}`.
pub(super) async fn register(call: Call<'_>) -> Reply {
    let app = call.app;
    answer(
        async {
            let (grant, id, params) = prelude(call, Permission::RegisterNumbers).await?;
            let who = grant.who();
            let key = grant.key;
            match params.get("messaging_product") {
                Some("whatsapp") => {}
                Some(_) => {
                    return Err(GraphError::invalid(
                        "Invalid parameter messaging_product: must be whatsapp",
                    ))
                }
                None => {
                    return Err(GraphError::invalid(
                        "The parameter messaging_product is required",
                    ))
                }
            }
            let pin = pin(&params)?;
            app.pins()
                .register(&key.account, who, key.role, &id, &pin)
                .await?;
            Ok(success())
        }
        .await,
    )
}

fn pin(params: &Params) -> Result<Pin, GraphError> {
    let given = params
        .get("pin")
        .ok_or_else(|| GraphError::invalid("The parameter pin is required"))?;
    Pin::parse(given).map_err(|refusal| GraphError::from(PinError::BadPin(refusal)))
}

/// The key behind a Graph token, with the same failed-authentication limits as the v1 API.
async fn authenticate(
    app: &App,
    ip: IpAddr,
    token: Option<&str>,
    permission: Permission,
) -> Result<Grant, GraphError> {
    let key = match identify(app, ip, token, None).await {
        Ok(Caller::Key(key)) => key,
        Ok(Caller::Root) => {
            return Err(GraphError::from(ApiError::Forbidden(
                "the root key only manages accounts and their keys",
            )))
        }
        Err(AuthFailure::Limited(seconds)) => {
            return Err(GraphError::limited(
                "(#4) Too many failed authentications",
                seconds,
            ))
        }
        Err(AuthFailure::Unauthorized) => return Err(GraphError::invalid_token()),
        Err(AuthFailure::Failed(error)) => return Err(error.into()),
    };
    key_rate(app, &key).map_err(|seconds| {
        GraphError::limited("(#4) Application request limit reached", seconds)
    })?;
    Ok(Caller::Key(key).require(app, permission).await?)
}
