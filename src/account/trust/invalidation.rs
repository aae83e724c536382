//! The invalidation link: a dedicated Redis pub/sub connection that applies every instance's
//! invalidations to this instance's cache.
//!
//! While the link is up the cache serves; when it drops (the connection closes, or a PING gets
//! no answer within the ping interval) the cache is flushed and bypassed until a new
//! subscription is confirmed, and then flushed once more, because whatever was published in
//! between is lost. On a Redis Cluster, PUBLISH reaches every node, so one subscription on any
//! node hears all; the link moves to the next seed node when one fails.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::account::trust::cache::{HotCache, Invalidation};
use crate::account::trust::metrics::HotPathMetrics;

#[derive(Debug, Clone)]
pub struct LinkSettings {
    pub urls: Vec<String>,
    pub channel: String,
    pub connect_timeout: Duration,
    /// How often the link proves it is alive; also how long a PING may take.
    pub ping_interval: Duration,
}

/// Runs until `stop`; never returns an error: a failure is a dropped link, retried with backoff.
pub async fn run(
    settings: LinkSettings,
    cache: Arc<HotCache>,
    metrics: Arc<HotPathMetrics>,
    stop: CancellationToken,
) {
    const FIRST_BACKOFF: Duration = Duration::from_millis(20);
    const MAX_BACKOFF: Duration = Duration::from_secs(1);
    let mut backoff = FIRST_BACKOFF;
    let mut next_url = 0usize;
    metrics.link(false);
    loop {
        if stop.is_cancelled() || settings.urls.is_empty() {
            break;
        }
        let url = &settings.urls[next_url % settings.urls.len()];
        match subscribe(url, &settings).await {
            Ok(pubsub) => {
                cache.set_link(true);
                metrics.link(true);
                metrics.flushed();
                tracing::info!(channel = %settings.channel, "invalidation link up");
                backoff = FIRST_BACKOFF;
                let reason = serve(pubsub, &settings, &cache, &stop).await;
                cache.set_link(false);
                metrics.link(false);
                metrics.flushed();
                if stop.is_cancelled() {
                    break;
                }
                tracing::warn!(%reason, "invalidation link down: cache flushed and bypassed until it is back");
            }
            Err(error) => {
                tracing::debug!(%error, "invalidation link: cannot subscribe");
                next_url = next_url.wrapping_add(1);
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = stop.cancelled() => break,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    cache.set_link(false);
}

async fn subscribe(url: &str, settings: &LinkSettings) -> Result<redis::aio::PubSub, String> {
    let client = redis::Client::open(url).map_err(|error| error.to_string())?;
    let connect = async {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(&settings.channel).await?;
        Ok::<_, redis::RedisError>(pubsub)
    };
    match tokio::time::timeout(settings.connect_timeout, connect).await {
        Ok(Ok(pubsub)) => Ok(pubsub),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err("timed out".to_owned()),
    }
}

/// Applies messages until the link fails; returns why.
async fn serve(
    pubsub: redis::aio::PubSub,
    settings: &LinkSettings,
    cache: &HotCache,
    stop: &CancellationToken,
) -> String {
    let (mut sink, mut stream) = pubsub.split();
    let mut ping = tokio::time::interval(settings.ping_interval);
    ping.tick().await;
    loop {
        tokio::select! {
            message = stream.next() => {
                let Some(message) = message else {
                    return "the connection closed".to_owned();
                };
                match message.get_payload::<String>().ok().as_deref().and_then(Invalidation::decode) {
                    Some(what) => cache.invalidate(&what),
                    None => {
                        // Not understood: the safe reading of an unknown invalidation is "all".
                        tracing::warn!("unreadable invalidation message; flushing the cache");
                        cache.flush();
                    }
                }
            }
            _ = ping.tick() => {
                match tokio::time::timeout(settings.ping_interval, sink.ping::<redis::Value>()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(error)) => return format!("ping failed: {error}"),
                    Err(_) => return "ping timed out".to_owned(),
                }
            }
            () = stop.cancelled() => return "stopping".to_owned(),
        }
    }
}
