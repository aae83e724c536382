//! The HTTP edge: the accept loop, routing, authentication, JSON in and out.
//!
//! Nothing here decides business rules; handlers parse into domain types, call the domain, and
//! turn its answer into JSON. Status codes are chosen in `error.rs`.

mod accounts;
pub mod error;
mod factors;
mod handlers;
pub mod openapi;
mod pins;
pub mod routes;
mod twilio;
mod webhooks;

use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use serde::Serialize;
use tokio::net::TcpListener;

use crate::App;
use error::ApiError;
pub use routes::Route;

/// Serves `app` on `listener` until `shutdown` resolves, then lets requests in flight finish
/// within the configured grace period. Tests pass a listener bound to port 0.
pub async fn run(
    listener: TcpListener,
    app: App,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let server = &app.settings().server;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        // Without a timer hyper silently ignores the header-read timeout.
        .timer(TokioTimer::new())
        .header_read_timeout(server.header_read_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256);
    let grace = server.shutdown_grace;
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = service_fn(move |request| {
            let app = app.clone();
            async move { Ok::<_, Infallible>(handle(&app, peer.ip(), request).await) }
        });
        let connection = graceful.watch(
            builder
                .serve_connection(TokioIo::new(stream), service)
                .into_owned(),
        );
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!("stopped accepting; waiting for requests in flight");
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(grace) => tracing::warn!(?grace, "requests still in flight after the grace period"),
    }
    Ok(())
}

/// One request: route, limit, authenticate, handle, and count it.
async fn handle(app: &App, ip: IpAddr, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let started = Instant::now();
    // The Uri shares its bytes; cloning it lets the route borrow the path while the request moves.
    let uri = request.uri().clone();
    let route = routes::find(uri.path());
    let response = match handlers::dispatch(app, ip, route, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    };
    app.metrics().http_request(
        route.route.name(),
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

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
    Ok(Limited::new(request.into_body(), limit)
        .collect()
        .await
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
    let body = Limited::new(request.into_body(), limit)
        .collect()
        .await
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
        .to_bytes();
    serde_json::from_slice(&body)
        .map_err(|error| ApiError::invalid(format!("invalid JSON body: {error}")))
}
