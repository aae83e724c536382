//! One bound SMPP session, kept up: connect, bind, keep alive with enquire_link (rusmppc sends
//! it when the link is idle, answers the SMSC's own, and closes a link that stops answering),
//! take deliver_sm receipts, and when the link drops (closed by the SMSC, unbound, silent),
//! bind again after a back-off that doubles from 250 ms up to the configured most. While no
//! session is bound the provider's sends wait for one up to their timeout, then fail as
//! retryable: the outbox keeps the message and the breaker hears of it.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use rusmpp::pdus::{BindReceiver, BindTransceiver, BindTransmitter, DeliverSmResp};
use rusmpp::types::COctetString;
use rusmpp::values::{InterfaceVersion, Npi, Ton};
use rusmpp::{CommandStatus, Pdu};
use rusmppc::{Client, ConnectionBuilder, Event};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::receipt;
use crate::dispatch::providers::inbound::{ReceiptFate, ReceiptSink};

/// The first wait before binding again; doubled after each failed attempt.
const FIRST_RECONNECT_WAIT: Duration = Duration::from_millis(250);
/// The largest PDU read from the SMSC: a deliver_sm with a full short message and its TLVs
/// fits with room to spare.
const MAX_COMMAND_LENGTH: usize = 4096;
/// How long an unbind at shutdown may take before the socket is simply closed.
const UNBIND_GRACE: Duration = Duration::from_secs(1);

/// What every session of one provider shares.
pub struct SessionSettings {
    pub provider: &'static str,
    pub address: String,
    pub system_id: String,
    pub password: String,
    pub system_type: String,
    pub enquire_link: Duration,
    /// How long a request waits for its response (the provider's `timeout_ms`).
    pub response_timeout: Duration,
    pub reconnect_max: Duration,
    /// Where receipts go; without it receipts are acknowledged and dropped.
    pub receipts: Option<ReceiptSink>,
}

/// How a session binds, and so what it is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Transceiver,
    Transmitter,
    Receiver,
}

impl Role {
    fn submits(self) -> bool {
        matches!(self, Role::Transceiver | Role::Transmitter)
    }

    fn as_str(self) -> &'static str {
        match self {
            Role::Transceiver => "transceiver",
            Role::Transmitter => "transmitter",
            Role::Receiver => "receiver",
        }
    }
}

/// Keeps one session of `role` bound until `stop`. A submitting session publishes its client
/// on `link` while it is bound, and `None` while it is not.
pub async fn keep_bound(
    settings: Arc<SessionSettings>,
    role: Role,
    link: watch::Sender<Option<Client>>,
    stop: CancellationToken,
) {
    let mut wait = FIRST_RECONNECT_WAIT;
    while !stop.is_cancelled() {
        match bind(&settings, role).await {
            Ok((client, events)) => {
                tracing::info!(
                    provider = settings.provider,
                    role = role.as_str(),
                    "SMPP session bound"
                );
                wait = FIRST_RECONNECT_WAIT;
                if role.submits() {
                    link.send_replace(Some(client.clone()));
                }
                serve(&settings, &client, events, &stop).await;
                if role.submits() {
                    link.send_replace(None);
                }
                if stop.is_cancelled() {
                    let _ = tokio::time::timeout(UNBIND_GRACE, client.unbind()).await;
                    let _ = client.close().await;
                    return;
                }
                let _ = client.close().await;
                tracing::warn!(
                    provider = settings.provider,
                    role = role.as_str(),
                    "SMPP session lost; binding again"
                );
            }
            Err(reason) => {
                tracing::warn!(
                    provider = settings.provider,
                    role = role.as_str(),
                    retry_in_ms = wait.as_millis() as u64,
                    "SMPP bind failed: {reason}"
                );
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = (wait * 2).min(settings.reconnect_max);
    }
}

type Events = Box<dyn futures_util::Stream<Item = Event> + Send + Unpin>;

async fn bind(settings: &SessionSettings, role: Role) -> Result<(Client, Events), String> {
    let stream = tokio::time::timeout(
        settings.response_timeout,
        TcpStream::connect(&settings.address),
    )
    .await
    .map_err(|_| "connecting timed out".to_owned())?
    .map_err(|error| format!("could not connect: {error}"))?;
    let _ = stream.set_nodelay(true);
    let (client, events) = ConnectionBuilder::new()
        .max_command_length(MAX_COMMAND_LENGTH)
        .enquire_link_interval(settings.enquire_link)
        .enquire_link_response_timeout(settings.response_timeout)
        .response_timeout(settings.response_timeout)
        // rusmppc checks for SMPP 5.0; the SMSCs this talks to speak 3.4, whose PDUs these are.
        .disable_interface_version_check()
        .connected(stream);
    let (system_id, password, system_type) = (
        field("system_id", &settings.system_id)?,
        field("password", &settings.password)?,
        field("system_type", &settings.system_type)?,
    );
    macro_rules! bind_as {
        ($pdu:ident, $call:ident) => {
            client
                .$call(
                    $pdu::builder()
                        .system_id(system_id)
                        .password(password)
                        .system_type(system_type)
                        .interface_version(InterfaceVersion::Smpp3_4)
                        .addr_ton(Ton::Unknown)
                        .addr_npi(Npi::Unknown)
                        .address_range(COctetString::empty())
                        .build(),
                )
                .await
                .map(|_| ())
        };
    }
    let bound = match role {
        Role::Transceiver => bind_as!(BindTransceiver, bind_transceiver),
        Role::Transmitter => bind_as!(BindTransmitter, bind_transmitter),
        Role::Receiver => bind_as!(BindReceiver, bind_receiver),
    };
    if let Err(error) = bound {
        let _ = client.close().await;
        return Err(format!("the SMSC refused the bind: {error}"));
    }
    Ok((client, Box::new(events)))
}

/// A configured text as an SMPP C-octet string of its field's size.
fn field<const MIN: usize, const MAX: usize>(
    name: &str,
    value: &str,
) -> Result<COctetString<MIN, MAX>, String> {
    value
        .parse()
        .map_err(|error| format!("'{name}' does not fit SMPP: {error}"))
}

/// Serves a bound session until it ends (closed, unbound by the SMSC, or an error that closed
/// it) or `stop`.
async fn serve(
    settings: &Arc<SessionSettings>,
    client: &Client,
    mut events: Events,
    stop: &CancellationToken,
) {
    loop {
        let event = tokio::select! {
            _ = stop.cancelled() => return,
            event = events.next() => event,
        };
        match event {
            None => return,
            Some(Event::Incoming(command)) => {
                let sequence = command.sequence_number();
                match command.pdu() {
                    Some(Pdu::DeliverSm(deliver)) => {
                        let found = receipt::from_deliver_sm(deliver);
                        tokio::spawn(acknowledge(
                            settings.clone(),
                            client.clone(),
                            sequence,
                            found,
                        ));
                    }
                    Some(Pdu::Unbind) => {
                        let _ = client.unbind_resp(sequence).await;
                        return;
                    }
                    _ => {}
                }
            }
            Some(Event::Error(error)) => {
                tracing::warn!(provider = settings.provider, "SMPP session error: {error}");
                if client.is_closed() {
                    return;
                }
            }
        }
    }
}

/// Hands a receipt over and answers its deliver_sm by its fate: ESME_ROK once it is kept (or
/// when it is no receipt), ESME_RX_T_APPN ("temporary application error", SMPP 3.4 section
/// 5.1.3) when it could not be kept or names no message yet, so that the SMSC delivers it again
/// later: a receipt may overtake the record of its own send, and the store may be down.
async fn acknowledge(
    settings: Arc<SessionSettings>,
    client: Client,
    sequence: u32,
    found: Option<crate::dispatch::receipts::Receipt>,
) {
    let fate = match (found, &settings.receipts) {
        (Some(found), Some(sink)) => sink.hand_over(settings.provider, found).await,
        _ => ReceiptFate::Applied,
    };
    let status = match fate {
        ReceiptFate::Applied => CommandStatus::EsmeRok,
        ReceiptFate::Unknown | ReceiptFate::Failed => CommandStatus::EsmeRxTAppn,
    };
    let response = DeliverSmResp::builder()
        .message_id(COctetString::empty())
        .build();
    if let Err(error) = client
        .status(status)
        .deliver_sm_resp(sequence, response)
        .await
    {
        tracing::warn!(
            provider = settings.provider,
            "could not answer a deliver_sm: {error}"
        );
    }
}
