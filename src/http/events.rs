//! Handlers of webhooks out (owner and admin keys): parse, call `WebhookService`, shape JSON.
//!
//! - `POST /v1/webhooks` `{url, events[]}`: registers one; the 201 holds its secret, once.
//! - `GET /v1/webhooks`, `GET /v1/webhooks/{id}`, `DELETE /v1/webhooks/{id}`.
//! - `POST /v1/webhooks/{id}/test`: queues the test event for that webhook (202).
//! - `GET /v1/webhooks/{id}/deliveries`: its latest attempts and dead letters.

use hyper::StatusCode;

use super::body::json_response;
use super::error::ApiError;
use super::routes::{Call, Reply};
use super::wire_events::{
    CreateWebhookBody, DeliveriesBody, WebhookBody, WebhookDeletedBody, WebhookListBody,
    WebhookTestBody,
};
use crate::events::WebhookId;

/// `POST /v1/webhooks`.
pub(super) async fn create(call: Call<'_>) -> Reply {
    let (app, _, grant, body) = call.keyed_json::<CreateWebhookBody>().await?;
    let webhook = app
        .webhooks()
        .register(&grant.account.id, grant.who(), &body.url, &body.events)
        .await?;
    Ok(json_response(
        StatusCode::CREATED,
        &WebhookBody::created(&webhook),
    ))
}

/// `GET /v1/webhooks`.
pub(super) async fn list(call: Call<'_>) -> Reply {
    let (app, _, _, grant) = call.keyed()?;
    let webhooks = app.webhooks().list(&grant.account.id).await?;
    Ok(json_response(
        StatusCode::OK,
        &WebhookListBody {
            webhooks: webhooks.iter().map(WebhookBody::new).collect(),
        },
    ))
}

/// `GET /v1/webhooks/{id}`.
pub(super) async fn get(call: Call<'_>) -> Reply {
    let (app, matched, _, grant) = call.keyed()?;
    let id = webhook_param(matched.param)?;
    let webhook = app.webhooks().get(&grant.account.id, &id).await?;
    Ok(json_response(StatusCode::OK, &WebhookBody::new(&webhook)))
}

/// `DELETE /v1/webhooks/{id}`: the webhook goes with its queue and log.
pub(super) async fn delete(call: Call<'_>) -> Reply {
    let (app, matched, _, grant) = call.keyed()?;
    let id = webhook_param(matched.param)?;
    app.webhooks()
        .remove(&grant.account.id, grant.who(), &id)
        .await?;
    let id = id.as_str();
    Ok(json_response(
        StatusCode::OK,
        &WebhookDeletedBody { id, deleted: true },
    ))
}

/// `POST /v1/webhooks/{id}/test`: 202.
pub(super) async fn test(call: Call<'_>) -> Reply {
    let (app, matched, _, grant) = call.keyed()?;
    let id = webhook_param(matched.param)?;
    let event = app.webhooks().test(&grant.account.id, &id).await?;
    Ok(json_response(
        StatusCode::ACCEPTED,
        &WebhookTestBody {
            event_id: event.as_str(),
        },
    ))
}

/// `GET /v1/webhooks/{id}/deliveries`.
pub(super) async fn deliveries(call: Call<'_>) -> Reply {
    let (app, matched, _, grant) = call.keyed()?;
    let id = webhook_param(matched.param)?;
    let deliveries = app.webhooks().deliveries(&grant.account.id, &id).await?;
    Ok(json_response(
        StatusCode::OK,
        &DeliveriesBody::new(&deliveries),
    ))
}

/// A webhook id from the path: an unknown shape is an unknown webhook.
fn webhook_param(param: Option<&str>) -> Result<WebhookId, ApiError> {
    param
        .and_then(WebhookId::parse)
        .ok_or(ApiError::NotFound("no such webhook"))
}
