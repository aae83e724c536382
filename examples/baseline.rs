//! Baselines for the load test: the ceilings otpgate's figures are divided by, and the sink its
//! `http` provider delivers to. One hyper 1 server with the same accept loop as `src/http/mod.rs`.
//!
//! ```text
//! baseline --mode bare    --listen 127.0.0.1:PORT                          # no work at all
//! baseline --mode evalsha --listen 127.0.0.1:PORT --redis redis://127.0.0.1:P  # one EVALSHA
//! baseline --mode sink    --listen 127.0.0.1:PORT                          # message sink
//! ```
//!
//! `bare` answers a small JSON body and does nothing else: the most this machine's hyper can
//! serve. `evalsha` runs one small OTP-check-like Lua script (HINCRBY, HGET, compare, reply) per
//! request on one multiplexed connection: the most a check that needs one Redis round trip can
//! serve. `sink` accepts the `http` provider's `POST {to, body, channel, message_id}`, answers
//! 200, and remembers the last code per number for `GET /codes/{e164}` (the digits after "code
//! is", else the first run of 4 to 10 digits), so a load script can read back the code a send
//! delivered.
//!
//! Built with `cargo build --release --example baseline`; `loadtest/run` drives it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dashmap::DashMap;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use redis::aio::MultiplexedConnection;
use redis::Script;
use tokio::net::TcpListener;

const USAGE: &str = "usage: baseline --mode bare|evalsha|sink [--listen 127.0.0.1:PORT] \
[--redis redis://127.0.0.1:PORT] [--keys N]";

/// The answer of the bare server: about the size of a check answer's head.
const BARE_BODY: &[u8] = br#"{"status":"pending","valid":false,"attempts_left":4}"#;

/// Largest body the sink reads; the provider's messages are a few hundred bytes.
const SINK_BODY_LIMIT: usize = 16 * 1024;

/// A check reduced to its store work: count the attempt, read the stored tag, compare, answer.
/// The same shape (one hash, one HINCRBY, one HGET, a small array reply) as otpgate's check.
const CHECK_SCRIPT: &str = r#"
local attempts = redis.call('HINCRBY', KEYS[1], 'n', 1)
local stored = redis.call('HGET', KEYS[1], 'm')
if stored == ARGV[1] then return {'valid', tostring(attempts)} end
return {'checked', tostring(attempts)}
"#;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Bare,
    Evalsha,
    Sink,
}

struct Args {
    mode: Mode,
    listen: SocketAddr,
    redis: Option<String>,
    keys: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut mode = None;
    let mut listen = SocketAddr::from(([127, 0, 0, 1], 8090));
    let mut redis = None;
    let mut keys = 10_000;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--mode" => {
                mode = Some(match value("--mode")?.as_str() {
                    "bare" => Mode::Bare,
                    "evalsha" => Mode::Evalsha,
                    "sink" => Mode::Sink,
                    other => return Err(format!("unknown mode '{other}'")),
                })
            }
            "--listen" => {
                listen = value("--listen")?
                    .parse()
                    .map_err(|_| "--listen needs an address:port".to_owned())?
            }
            "--redis" => redis = Some(value("--redis")?),
            "--keys" => {
                keys = value("--keys")?
                    .parse()
                    .ok()
                    .filter(|&n: &u64| n > 0)
                    .ok_or("--keys needs a positive number")?
            }
            "--help" | "-h" => return Err("baseline: load-test ceilings and sink".into()),
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    let mode = mode.ok_or("--mode is required")?;
    if mode == Mode::Evalsha && redis.is_none() {
        return Err("--mode evalsha needs --redis redis://127.0.0.1:PORT".into());
    }
    Ok(Args {
        mode,
        listen,
        redis,
        keys,
    })
}

/// What every request handler shares.
struct State {
    mode: Mode,
    evalsha: Option<Evalsha>,
    /// Last code delivered per E.164 number (sink mode).
    codes: DashMap<String, String>,
    /// Messages the sink accepted, for the load script's report.
    received: AtomicU64,
}

struct Evalsha {
    connection: MultiplexedConnection,
    script: Script,
    /// Keys rotated through, so the script touches many hashes as checks on many ids do.
    keys: Vec<String>,
    next: AtomicU64,
    /// A 16-byte value that never matches the stored tag: every call is a wrong code.
    wrong_tag: Vec<u8>,
}

fn main() -> std::process::ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}\n\n{USAGE}");
            return std::process::ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("baseline: cannot start the runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("baseline: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(args: Args) -> Result<(), String> {
    let evalsha = match (&args.redis, args.mode) {
        (Some(url), Mode::Evalsha) => Some(connect_and_seed(url, args.keys).await?),
        _ => None,
    };
    let state = Arc::new(State {
        mode: args.mode,
        evalsha,
        codes: DashMap::new(),
        received: AtomicU64::new(0),
    });
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|error| format!("cannot listen on {}: {error}", args.listen))?;
    eprintln!(
        "baseline: {} listening on {}",
        match args.mode {
            Mode::Bare => "bare",
            Mode::Evalsha => "evalsha",
            Mode::Sink => "sink",
        },
        args.listen
    );

    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(5))
        .keep_alive(true);
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    eprintln!("baseline: accept failed: {error}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let service = service_fn(move |request| {
            let state = state.clone();
            async move { Ok::<_, Infallible>(handle(&state, request).await) }
        });
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        tokio::spawn(async move {
            // A client closing mid-request is normal under load; nothing to report.
            let _ = connection.await;
        });
    }
    Ok(())
}

async fn connect_and_seed(url: &str, keys: u64) -> Result<Evalsha, String> {
    let client = redis::Client::open(url).map_err(|error| format!("redis URL: {error}"))?;
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .map_err(|error| format!("cannot reach Redis at {url}: {error}"))?;
    let keys: Vec<String> = (0..keys)
        .map(|n| format!("baseline:{{s{:02}}}:v:{n:08}", n % 64))
        .collect();
    // Seed in pipelines of a thousand: one hash per key with a stored 16-byte tag.
    for chunk in keys.chunks(1_000) {
        let mut pipeline = redis::pipe();
        for key in chunk {
            pipeline
                .hset_multiple(key, &[("m", &b"stored-tag-16byt"[..]), ("n", &b"0"[..])])
                .ignore();
        }
        pipeline
            .query_async::<()>(&mut connection)
            .await
            .map_err(|error| format!("seeding Redis failed: {error}"))?;
    }
    let script = Script::new(CHECK_SCRIPT);
    // Load once so that every request is a plain EVALSHA (invoke falls back to EVAL otherwise).
    script
        .prepare_invoke()
        .load_async(&mut connection)
        .await
        .map_err(|error| format!("SCRIPT LOAD failed: {error}"))?;
    Ok(Evalsha {
        connection,
        script,
        keys,
        next: AtomicU64::new(0),
        wrong_tag: b"wrong-tag-16byte".to_vec(),
    })
}

async fn handle(state: &State, request: Request<Incoming>) -> Response<Full<Bytes>> {
    match state.mode {
        Mode::Bare => {
            // Read the body like a real handler would, so the figure includes that.
            if request.into_body().collect().await.is_err() {
                return status(StatusCode::BAD_REQUEST);
            }
            json(StatusCode::OK, Bytes::from_static(BARE_BODY))
        }
        Mode::Evalsha => {
            if request.into_body().collect().await.is_err() {
                return status(StatusCode::BAD_REQUEST);
            }
            match &state.evalsha {
                Some(evalsha) => check(evalsha).await,
                None => status(StatusCode::INTERNAL_SERVER_ERROR),
            }
        }
        Mode::Sink => sink(state, request).await,
    }
}

async fn check(evalsha: &Evalsha) -> Response<Full<Bytes>> {
    let index = evalsha.next.fetch_add(1, Ordering::Relaxed) % evalsha.keys.len() as u64;
    let mut connection = evalsha.connection.clone();
    let reply: Result<(String, String), _> = evalsha
        .script
        .key(&evalsha.keys[index as usize])
        .arg(&evalsha.wrong_tag[..])
        .invoke_async(&mut connection)
        .await;
    match reply {
        Ok((outcome, attempts)) => {
            let body = format!(
                r#"{{"status":"pending","valid":{},"attempts":{attempts}}}"#,
                outcome == "valid"
            );
            json(StatusCode::OK, Bytes::from(body))
        }
        Err(_) => status(StatusCode::SERVICE_UNAVAILABLE),
    }
}

#[derive(serde::Deserialize)]
struct Message {
    to: String,
    body: String,
    #[allow(dead_code)] // accepted for the provider's shape; the sink does not route by it
    channel: Option<String>,
    #[allow(dead_code)]
    message_id: Option<String>,
}

async fn sink(state: &State, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_owned();
    match (request.method(), path.as_str()) {
        (&Method::POST, _) => {
            let body = match Limited::new(request.into_body(), SINK_BODY_LIMIT)
                .collect()
                .await
            {
                Ok(collected) => collected.to_bytes(),
                Err(_) => return status(StatusCode::PAYLOAD_TOO_LARGE),
            };
            let Ok(message) = serde_json::from_slice::<Message>(&body) else {
                return status(StatusCode::BAD_REQUEST);
            };
            state.received.fetch_add(1, Ordering::Relaxed);
            if let Some(code) = code_in(&message.body) {
                state.codes.insert(message.to, code.to_owned());
            }
            json(StatusCode::OK, Bytes::from_static(b"{}"))
        }
        (&Method::GET, "/stats") => {
            let body = format!(
                r#"{{"received":{},"numbers":{}}}"#,
                state.received.load(Ordering::Relaxed),
                state.codes.len()
            );
            json(StatusCode::OK, Bytes::from(body))
        }
        (&Method::GET, _) => {
            let Some(number) = path.strip_prefix("/codes/") else {
                return status(StatusCode::NOT_FOUND);
            };
            // A client may percent-encode the leading '+'.
            let number = match number.strip_prefix("%2B").or(number.strip_prefix("%2b")) {
                Some(rest) => format!("+{rest}"),
                None => number.to_owned(),
            };
            match state.codes.get(&number) {
                Some(code) => {
                    let body = format!(r#"{{"to":"{number}","code":"{}"}}"#, code.as_str());
                    json(StatusCode::OK, Bytes::from(body))
                }
                None => status(StatusCode::NOT_FOUND),
            }
        }
        _ => status(StatusCode::METHOD_NOT_ALLOWED),
    }
}

/// The code in a message body: the digits after "code is" (with or without a colon, as the
/// English template words it), else the first run of 4 to 10 digits (the other locales).
fn code_in(body: &str) -> Option<&str> {
    if let Some(start) = body.find("code is") {
        let rest = body[start + "code is".len()..].trim_start_matches([':', ' ']);
        let end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if end > 0 {
            return Some(&rest[..end]);
        }
    }
    let bytes = body.as_bytes();
    let mut start = 0;
    while start < bytes.len() {
        if !bytes[start].is_ascii_digit() {
            start += 1;
            continue;
        }
        let end = bytes[start..]
            .iter()
            .position(|b| !b.is_ascii_digit())
            .map_or(bytes.len(), |length| start + length);
        if (4..=10).contains(&(end - start)) {
            return Some(&body[start..end]);
        }
        start = end;
    }
    None
}

fn json(code: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = code;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = code;
    response
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut terminate) => {
            tokio::select! {
                _ = interrupt => {}
                _ = terminate.recv() => {}
            }
        }
        Err(_) => {
            let _ = interrupt.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::code_in;

    #[test]
    fn the_code_is_read_after_its_marker() {
        let body = "Your otpgate verification code is: 048213. It expires in 10 minutes.";
        assert_eq!(code_in(body), Some("048213"));
        let body = "Your otpgate verification code is 048213. It expires in 10 minutes.";
        assert_eq!(code_in(body), Some("048213"));
        assert_eq!(code_in("no code here"), None);
        assert_eq!(code_in("code is: ."), None);
    }

    #[test]
    fn other_locales_give_the_first_run_of_four_to_ten_digits() {
        let body = "Sua senha otpgate é 5521. Ela expira em 10 minutos.";
        assert_eq!(code_in(body), Some("5521"));
        assert_eq!(code_in("expira em 10 minutos"), None);
    }
}
