//! Delivery-receipt webhooks: `POST /v1/receipts/{provider}` for each configured provider,
//! checked by the vendor's signature (Twilio, WhatsApp) or by the shared receipt token in the
//! query (`?token=`) for vendors whose callbacks are unsigned (Vonage, Infobip, MessageBird).
//! `GET` answers Meta's subscription challenge for WhatsApp.

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE, HOST};
use hyper::{Method, Request, Response, StatusCode};
use subtle::ConstantTimeEq;

use super::body::{json_response, read_bytes};
use super::error::ApiError;
use super::routes::{Call, Reply};
use super::wire_pins::ReceiptsAppliedBody;
use crate::dispatch::providers::{AdapterKind, ProviderSettings};
use crate::dispatch::receipts::{self, parse_form, Receipt};
use crate::App;

pub(super) async fn receipt(call: Call<'_>) -> Reply {
    let (app, request) = (call.app, call.request);
    let provider_name = call.matched.param.unwrap_or_default();
    let provider = app
        .settings()
        .dispatch
        .providers
        .iter()
        .find(|provider| provider.name == provider_name)
        .ok_or(ApiError::NotFound(
            "no provider of that name takes receipts here",
        ))?
        .clone();
    let query = request.uri().query().unwrap_or_default().to_owned();
    if request.method() == Method::GET {
        return subscription_challenge(app, &provider, &query);
    }
    let url = public_url(app, &request);
    let twilio_signature = header(&request, "x-twilio-signature");
    let meta_signature = header(&request, "x-hub-signature-256");
    // Receipts may batch many messages (Infobip, WhatsApp): the providers' limit, not the API's.
    let body = read_bytes(request, app.settings().dispatch.provider_body_limit).await?;

    let parsed = match provider.kind {
        AdapterKind::Twilio => {
            let token = provider
                .auth_token
                .as_ref()
                .map(|t| t.expose_str().into_owned())
                .unwrap_or_default();
            let params = parse_form(&body);
            let signed = twilio_signature.is_some_and(|signature| {
                receipts::verify_twilio_signature(&url, &params, &signature, &token)
            });
            if !signed {
                return Err(ApiError::Forbidden(
                    "the X-Twilio-Signature does not match this request",
                ));
            }
            receipts::parse_twilio(&body)
        }
        AdapterKind::Whatsapp => {
            let secret = provider
                .app_secret
                .as_ref()
                .map(|s| s.expose_str().into_owned());
            let signed = matches!((secret, meta_signature), (Some(secret), Some(signature))
                if receipts::verify_meta_signature(&body, &signature, &secret));
            if !signed {
                return Err(ApiError::Forbidden(
                    "the X-Hub-Signature-256 does not match this request",
                ));
            }
            receipts::parse_whatsapp(&body)
        }
        AdapterKind::Vonage | AdapterKind::Infobip | AdapterKind::Messagebird => {
            check_token(app, &query)?;
            let payload = if body.is_empty() {
                Bytes::from(query.clone().into_bytes())
            } else {
                body
            };
            match provider.kind {
                AdapterKind::Vonage => receipts::parse_vonage(&payload),
                AdapterKind::Infobip => receipts::parse_infobip(&payload),
                _ => receipts::parse_messagebird(&payload),
            }
        }
        AdapterKind::Http | AdapterKind::Log => {
            return Err(ApiError::NotFound("this provider sends no receipts"));
        }
        AdapterKind::Smpp => {
            return Err(ApiError::NotFound(
                "this provider's receipts arrive over its SMPP session",
            ));
        }
    };
    let receipts =
        parsed.map_err(|reason| ApiError::invalid(format!("unreadable receipt: {reason}")))?;
    let applied = apply(app, &provider, &receipts).await?;
    Ok(json_response(
        StatusCode::OK,
        &ReceiptsAppliedBody {
            received: receipts.len(),
            applied,
        },
    ))
}

async fn apply(
    app: &App,
    provider: &ProviderSettings,
    receipts: &[Receipt],
) -> Result<usize, ApiError> {
    let mut applied = 0;
    for receipt in receipts {
        app.metrics()
            .receipt(provider.kind.as_str(), receipt.status.as_str());
        let found = app
            .verifier()
            .apply_receipt(&provider.name, receipt)
            .await?;
        applied += usize::from(found);
    }
    Ok(applied)
}

fn header(request: &Request<Incoming>, name: &str) -> Option<String> {
    request
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

/// The URL the vendor called, as it signed it: the configured public URL, or the Host header.
fn public_url(app: &App, request: &Request<Incoming>) -> String {
    let path_and_query = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let base = &app.settings().dispatch.public_url;
    if base.is_empty() {
        let host = request
            .headers()
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost");
        format!("http://{host}{path_and_query}")
    } else {
        format!("{}{path_and_query}", base.trim_end_matches('/'))
    }
}

fn query_value(query: &str, name: &str) -> Option<String> {
    parse_form(query.as_bytes())
        .into_iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value)
}

/// Unsigned vendors must present the configured receipt token; without one configured, their
/// receipts are refused rather than trusted.
fn check_token(app: &App, query: &str) -> Result<(), ApiError> {
    let expected = app.settings().dispatch.receipt_token.as_bytes();
    let given = query_value(query, "token").unwrap_or_default();
    if expected.is_empty() || !bool::from(given.as_bytes().ct_eq(expected)) {
        return Err(ApiError::Forbidden(
            "receipts from this provider need ?token=<dispatch.receipt_token>",
        ));
    }
    Ok(())
}

/// Meta's webhook subscription check: echo `hub.challenge` when `hub.verify_token` matches.
fn subscription_challenge(
    app: &App,
    provider: &ProviderSettings,
    query: &str,
) -> Result<Response<Full<Bytes>>, ApiError> {
    if provider.kind != AdapterKind::Whatsapp {
        return Err(ApiError::MethodNotAllowed("POST"));
    }
    let expected = app.settings().dispatch.receipt_token.as_bytes();
    let given = query_value(query, "hub.verify_token").unwrap_or_default();
    let mode_ok = query_value(query, "hub.mode").as_deref() == Some("subscribe");
    if !mode_ok || expected.is_empty() || !bool::from(given.as_bytes().ct_eq(expected)) {
        return Err(ApiError::Forbidden(
            "the verify token does not match dispatch.receipt_token",
        ));
    }
    let challenge = query_value(query, "hub.challenge").unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(challenge)));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Ok(response)
}
