//! Health, readiness, metrics and the OpenAPI document: open to anyone, before any limit.

use hyper::StatusCode;

use super::body::text;
use super::error::ApiError;
use super::routes::{Call, Reply};

/// `GET /healthz`. Liveness: the process is up, and its store client has not been stuck while
/// Redis answers (then only a restart helps).
pub(super) async fn healthz(call: Call<'_>) -> Reply {
    call.app.store().liveness()?;
    Ok(text(
        StatusCode::OK,
        "text/plain; charset=utf-8",
        "ok\n".into(),
    ))
}

/// `GET /readyz`: the store answers, and the outbox's reads have not been failing for longer
/// than the configured window.
pub(super) async fn readyz(call: Call<'_>) -> Reply {
    call.app.store().ping().await?;
    call.app
        .verifier()
        .dispatcher()
        .readiness()
        .map_err(ApiError::Unavailable)?;
    Ok(text(
        StatusCode::OK,
        "text/plain; charset=utf-8",
        "ready\n".into(),
    ))
}

/// `GET /metrics`, in Prometheus' text format.
pub(super) async fn metrics(call: Call<'_>) -> Reply {
    Ok(text(
        StatusCode::OK,
        "text/plain; version=0.0.4; charset=utf-8",
        call.app.metrics().render(),
    ))
}
