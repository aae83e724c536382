//! SMPP 3.4: a direct route to an SMSC (an aggregator's or carrier's, Kannel's, Jasmin's).
//! The provider keeps a bound transceiver (or a transmitter and a receiver) per configured
//! SMSC, submits each message as one submit_sm per part within a window of outstanding
//! requests, and takes delivery receipts from deliver_sm (see `session` and `receipt`).

mod message;
mod receipt;
mod session;
pub mod settings;

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rusmppc::Client;
use tokio::sync::{watch, Semaphore};
use tokio_util::sync::{CancellationToken, DropGuard};

use super::inbound::ReceiptSink;
use super::{Accepted, Adapter, ProviderError, ProviderSettings};
use crate::dispatch::OutgoingMessage;
pub use receipt::{from_stat, parse_text, ReceiptText};
use session::{keep_bound, Role, SessionSettings};
use settings::{Smpp, SmppBind};

pub struct SmppProvider {
    source: String,
    /// The submitting session's client while it is bound.
    link: watch::Receiver<Option<Client>>,
    /// Outstanding submit_sm on the session at once: SMSCs refuse (or throttle) more than the
    /// window they granted.
    window: Arc<Semaphore>,
    window_size: u32,
    /// How long a send waits for a bound session and a place in the window.
    timeout: Duration,
    /// The concatenation reference of the next long message.
    reference: AtomicU8,
    /// Stops the sessions when the provider goes (the gateway stops).
    _sessions: DropGuard,
}

impl SmppProvider {
    /// Starts the sessions (in the background, on the current tokio runtime) and answers at
    /// once: a bind that fails now is tried again, and sends wait for it.
    pub(crate) fn new(
        settings: &ProviderSettings,
        vendor: Smpp<'_>,
        receipts: Option<ReceiptSink>,
    ) -> Result<Self, String> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            format!(
                "provider '{}': SMPP sessions need a tokio runtime",
                settings.name
            )
        })?;
        let shared = Arc::new(SessionSettings {
            provider: super::leak_name(&settings.name),
            address: vendor.address.to_owned(),
            system_id: vendor.system_id.to_owned(),
            password: vendor
                .password
                .map(|password| password.expose_str().into_owned())
                .unwrap_or_default(),
            system_type: vendor.system_type.to_owned(),
            enquire_link: vendor.enquire_link,
            response_timeout: settings.timeout(),
            reconnect_max: vendor.reconnect_max,
            receipts: receipts.clone(),
        });
        // Ends with the gateway, or when the provider is dropped (a router built alone).
        let stop = receipts
            .as_ref()
            .map_or_else(CancellationToken::new, |sink| sink.stopping().child_token());
        let (link, watched) = watch::channel(None);
        match vendor.bind {
            SmppBind::Transceiver => {
                runtime.spawn(keep_bound(shared, Role::Transceiver, link, stop.clone()));
            }
            SmppBind::TransmitterReceiver => {
                // The receiver publishes nothing: its link has no readers.
                let (unused, _) = watch::channel(None);
                runtime.spawn(keep_bound(
                    shared.clone(),
                    Role::Receiver,
                    unused,
                    stop.clone(),
                ));
                runtime.spawn(keep_bound(shared, Role::Transmitter, link, stop.clone()));
            }
        }
        Ok(Self {
            source: vendor.source.to_owned(),
            link: watched,
            window: Arc::new(Semaphore::new(vendor.window as usize)),
            window_size: vendor.window,
            timeout: settings.timeout(),
            reference: AtomicU8::new(0),
            _sessions: stop.drop_guard(),
        })
    }

    async fn bound_client(&self) -> Result<Client, ProviderError> {
        let mut link = self.link.clone();
        let bound = tokio::time::timeout(
            self.timeout,
            link.wait_for(|client| client.as_ref().is_some_and(|client| !client.is_closed())),
        )
        .await;
        let not_bound = || ProviderError::Retryable("no session is bound to the SMSC".into());
        match bound {
            Ok(Ok(client)) => client.clone().ok_or_else(not_bound),
            _ => Err(not_bound()),
        }
    }
}

#[async_trait]
impl Adapter for SmppProvider {
    async fn send(&self, message: &OutgoingMessage) -> Result<Accepted, ProviderError> {
        let reference = self.reference.fetch_add(1, Ordering::Relaxed);
        let parts = message::parts(message, &self.source, reference)?;
        let client = self.bound_client().await?;
        // A message takes as many places as it has parts, at most the whole window, so that a
        // long one cannot wait for more places than exist.
        let places = (parts.len() as u32).min(self.window_size);
        let _places = tokio::time::timeout(self.timeout, self.window.acquire_many(places))
            .await
            .map_err(|_| ProviderError::Retryable("the SMPP window stayed full".into()))?
            .map_err(|_| ProviderError::Retryable("the SMPP provider is stopping".into()))?;
        let mut last_id = None;
        for part in parts {
            let answer = client.submit_sm(part).await.map_err(session_error)?;
            last_id = Some(answer.message_id().as_str().to_owned());
        }
        // The router judges the id (`valid_vendor_id`) as it does every vendor's.
        Ok(Accepted {
            provider_message_id: last_id,
        })
    }
}

/// A submit_sm that got no ESME_ROK: the SMSC's refusal by its command_status, anything else
/// (a timeout, a dropped link) retryable.
fn session_error(error: rusmppc::error::Error) -> ProviderError {
    match error {
        rusmppc::error::Error::UnexpectedResponse { response } => {
            message::refusal(response.status())
        }
        other => ProviderError::Retryable(format!("SMPP request failed: {other}")),
    }
}
