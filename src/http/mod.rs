//! The HTTP edge: the accept loop, routing, authentication, JSON in and out.
//!
//! Nothing here decides business rules; handlers parse into domain types, call the domain, and
//! turn its answer into JSON. Status codes are chosen in `error.rs`.

mod accounts;
mod auth;
mod body;
mod console_invitations;
pub mod doc;
pub mod error;
mod events;
mod factors;
mod fields;
mod graph;
mod keys;
mod lists;
pub mod openapi;
mod operations;
mod paging;
mod passkeys;
mod pins;
mod router;
pub mod routes;
pub mod sdk;
pub mod settings;
pub mod table;
mod table_parts;
mod twilio;
mod twilio_error;
mod twilio_passkeys;
mod usage;
mod verifications;
mod webhooks;
pub mod wire;
pub mod wire_events;
pub mod wire_factors;
pub mod wire_lists;
pub mod wire_pins;
pub mod wire_workflows;

use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, Version};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::limits::{connection_cap, ConnectionLimits, ConnectionSlot};
use crate::App;
use body::BodyDeadline;
use error::ApiError;
use settings::ServerSettings;

/// HTTP/2 PING keep-alive: a peer that stops answering while a request is in flight is found
/// within interval + timeout, instead of holding its streams until the body deadline.
const H2_PING_INTERVAL: Duration = Duration::from_secs(20);
const H2_PING_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection closed by a deadline or after a 408 gets this long to say goodbye (HTTP/2
/// GOAWAY) before its socket is dropped regardless.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// Accept errors (EMFILE, ENFILE, ENOBUFS) back off from the first to the last, doubling.
const ACCEPT_BACKOFF_FIRST: Duration = Duration::from_millis(5);
const ACCEPT_BACKOFF_LAST: Duration = Duration::from_secs(1);

/// Serves `app` on `listener` until `shutdown` resolves, then lets requests in flight finish
/// within the configured grace period. Tests pass a listener bound to port 0.
pub async fn run(
    listener: TcpListener,
    app: App,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let server = app.settings().server.clone();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        // Without a timer hyper silently ignores the header-read timeout. hyper starts it when
        // it waits for a request's head, also on an idle keep-alive connection: it is the idle
        // timeout of HTTP/1 (the watchdog in `serve_connection` is that of HTTP/2, and the first
        // request's deadline for both).
        .timer(TokioTimer::new())
        .header_read_timeout(server.idle_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .keep_alive_interval(H2_PING_INTERVAL)
        .keep_alive_timeout(H2_PING_TIMEOUT);
    let builder = Arc::new(builder);
    let caps = ConnectionLimits::new(
        connection_cap(server.max_connections),
        server.max_connections_per_ip,
    );
    tracing::info!(
        max_connections = caps.max_total(),
        max_connections_per_ip = server.max_connections_per_ip,
        "connection caps"
    );
    let stopping = CancellationToken::new();
    let connections = TaskTracker::new();
    let mut backoff = ACCEPT_BACKOFF_FIRST;
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => {
                    backoff = ACCEPT_BACKOFF_FIRST;
                    accepted
                }
                Err(error) => {
                    // Out of file descriptors and the like: the next accept would fail the same
                    // way at once, so wait, longer each time, instead of spinning a core.
                    app.metrics().accept_error();
                    tracing::warn!(%error, ?backoff, "accept failed; backing off");
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = &mut shutdown => break,
                    }
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF_LAST);
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let slot = match caps.admit(peer.ip()) {
            Ok(slot) => slot,
            Err(refused) => {
                // Closed before a byte is read: a host over its share costs one accept.
                app.metrics().connection_refused(refused.as_str());
                drop(stream);
                continue;
            }
        };
        app.metrics().connections_open(caps.open());
        let _ = stream.set_nodelay(true);
        connections.spawn(serve_connection(
            app.clone(),
            Arc::clone(&builder),
            stream,
            peer.ip(),
            slot,
            stopping.clone(),
        ));
    }
    drop(listener);
    tracing::info!("stopped accepting; waiting for requests in flight");
    stopping.cancel();
    connections.close();
    let grace = server.shutdown_grace;
    tokio::select! {
        () = connections.wait() => {}
        () = tokio::time::sleep(grace) => tracing::warn!(?grace, "requests still in flight after the grace period"),
    }
    Ok(())
}

/// What one connection's requests tell its watchdog: whether any request has come, how many are
/// in flight, when the last one ended, and whether one asked for the connection to close.
///
/// The watchdog sleeps until the deadline it last computed and is not woken by requests that
/// come and go in between: when it wakes, it computes the deadline again from `last_active` and
/// sleeps on if that moved. Only a watchdog that went to sleep while a request was in flight (and
/// so had no deadline to sleep to), or before the first request (whose end may bring the
/// deadline forward: an idle timeout shorter than the first-request one), is woken when the
/// last request in flight ends (`waiting_for_idle`).
/// Waking it on every request instead cost each request a task wake-up, a poll of the
/// connection, a timer and three waiter registrations (two `Notify`, a `CancellationToken`);
/// docs/performance.md has what it saved (`loadtest/instructions --scenarios trusted`).
struct Activity {
    state: Mutex<ActivityState>,
    /// Woken when the last request in flight ends, if the watchdog asked for it.
    idle_again: Notify,
    /// Woken by a request whose answer closes the connection (a 408).
    close: Notify,
}

struct ActivityState {
    seen_request: bool,
    in_flight: usize,
    last_active: Instant,
    /// The watchdog waits for `idle_again` to set its deadline: it found a request in flight, or
    /// no request has come yet.
    waiting_for_idle: bool,
}

/// Why the server closed a connection on its own (the metric's `reason` label).
#[derive(Clone, Copy)]
enum Deadline {
    FirstRequest,
    Idle,
}

impl Deadline {
    /// The `reason` label of `otpgate_connections_timed_out_total`.
    fn label(self) -> &'static str {
        match self {
            Deadline::FirstRequest => "first_request",
            Deadline::Idle => "idle",
        }
    }
}

impl Activity {
    fn new() -> Self {
        Self {
            state: Mutex::new(ActivityState {
                seen_request: false,
                in_flight: 0,
                last_active: Instant::now(),
                waiting_for_idle: false,
            }),
            idle_again: Notify::new(),
            close: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ActivityState> {
        // The state is three plain fields; a panic mid-update cannot leave them inconsistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        let mut state = self.lock();
        if !state.seen_request {
            // The watchdog sleeps to the first-request deadline, which may be later than the
            // idle deadline this request's end starts: it must hear of that end. After it, the
            // idle deadline only moves later, which the watchdog finds when it wakes.
            state.waiting_for_idle = true;
        }
        state.seen_request = true;
        state.in_flight += 1;
        InFlight(Arc::clone(self))
    }

    /// When the connection is to be closed if nothing happens first, and why; `None` while a
    /// request is in flight (its body has its own deadline).
    fn deadline(&self, server: &ServerSettings) -> Option<(Instant, Deadline)> {
        let mut state = self.lock();
        if state.in_flight > 0 {
            state.waiting_for_idle = true;
            None
        } else if state.seen_request {
            Some((state.last_active + server.idle_timeout, Deadline::Idle))
        } else {
            Some((
                state.last_active + server.first_request_timeout,
                Deadline::FirstRequest,
            ))
        }
    }
}

/// A request in flight on its connection; dropping it (answered, or abandoned by the client)
/// starts the idle clock again.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.in_flight -= 1;
        state.last_active = Instant::now();
        if state.in_flight == 0 && state.waiting_for_idle {
            state.waiting_for_idle = false;
            self.0.idle_again.notify_one();
        }
    }
}

/// One connection, HTTP/1 or HTTP/2, from accept to close: hyper serves it while a watchdog
/// closes it when its first request or its next one does not come in time, when a request asks
/// for it (408), or when the server stops. `slot` holds its place under the connection caps.
async fn serve_connection(
    app: App,
    builder: Arc<auto::Builder<TokioExecutor>>,
    stream: TcpStream,
    ip: IpAddr,
    slot: ConnectionSlot,
    stopping: CancellationToken,
) {
    let activity = Arc::new(Activity::new());
    let service = {
        let (app, activity) = (app.clone(), Arc::clone(&activity));
        service_fn(move |request| {
            let (app, activity) = (app.clone(), Arc::clone(&activity));
            async move {
                let _in_flight = activity.begin();
                Ok::<_, Infallible>(handle(&app, ip, &activity, request).await)
            }
        })
    };
    let server = &app.settings().server;
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    // Once set, the connection is closing: hyper finishes what is in flight within this time.
    let mut closing_until: Option<tokio::time::Instant> = None;
    loop {
        let deadline = activity.deadline(server);
        let wake = match (closing_until, deadline) {
            (Some(until), _) => until,
            (None, Some((at, _))) => tokio::time::Instant::from_std(at),
            // A request is in flight: `idle_again` wakes us when it ends.
            (None, None) => tokio::time::Instant::now() + server.idle_timeout,
        };
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    // HTTP/1's idle deadline is hyper's header-read timeout, which can fire just
                    // before the watchdog's: it is the same deadline, counted the same way.
                    let timed_out = error
                        .downcast_ref::<hyper::Error>()
                        .is_some_and(hyper::Error::is_timeout);
                    match activity.deadline(server) {
                        Some((_, why)) if timed_out && closing_until.is_none() => {
                            app.metrics().connection_timed_out(why.label());
                        }
                        _ => tracing::debug!(%error, "connection ended with an error"),
                    }
                }
                break;
            }
            () = stopping.cancelled(), if closing_until.is_none() => {
                connection.as_mut().graceful_shutdown();
                // The server's own grace period bounds this close.
                closing_until = Some(tokio::time::Instant::now() + server.shutdown_grace);
            }
            () = activity.close.notified(), if closing_until.is_none() => {
                connection.as_mut().graceful_shutdown();
                closing_until = Some(tokio::time::Instant::now() + CLOSE_GRACE);
            }
            () = activity.idle_again.notified() => {}
            () = tokio::time::sleep_until(wake) => {
                if closing_until.is_some() {
                    tracing::debug!("connection did not close in time; dropped");
                    break;
                }
                if let Some((at, why)) = activity.deadline(server) {
                    if Instant::now() >= at {
                        app.metrics().connection_timed_out(why.label());
                        connection.as_mut().graceful_shutdown();
                        closing_until = Some(tokio::time::Instant::now() + CLOSE_GRACE);
                    }
                }
            }
        }
    }
    app.metrics().connections_open(slot.release());
}

/// One request: route, limit, authenticate, handle, and count it.
async fn handle(
    app: &App,
    ip: IpAddr,
    activity: &Activity,
    mut request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let started = Instant::now();
    let server = &app.settings().server;
    request.extensions_mut().insert(BodyDeadline(
        tokio::time::Instant::from_std(started) + server.body_read_timeout,
    ));
    let version = request.version();
    // The Uri shares its bytes; cloning it lets the route borrow the path while the request moves.
    let uri = request.uri().clone();
    if uri.path() == "/console" || uri.path().starts_with("/console/") {
        // The console has its own pages, sessions and errors (HTML, not problem+json).
        let response = crate::console::handle(app, ip, request).await;
        app.metrics()
            .http_request("console", response.status().as_u16(), started.elapsed());
        return response;
    }
    let found = table::find(uri.path());
    let result = match found.refused {
        Some(reason) if !found.route.is_not_found() => Err(ApiError::invalid(reason)),
        _ => router::dispatch(app, ip, found.matched(), request).await,
    };
    let mut response = match result {
        Ok(response) => response,
        Err(error) => error.into_response(),
    };
    if response.status() == StatusCode::REQUEST_TIMEOUT {
        // The rest of a late body may still come: the connection cannot carry another request.
        app.metrics().connection_timed_out("body_timeout");
        if version <= Version::HTTP_11 {
            response
                .headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
        activity.close.notify_one();
    }
    app.metrics().http_request(
        found.route.name,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}
