//! The otpgate binary: parse the command line, load config, bind, serve. Nothing else.

use std::future::Future;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use otpgate::account::KEY_PREFIX;
use otpgate::config::Settings;
use otpgate::secret::Secret;
use otpgate::App;
use ring::rand::{SecureRandom, SystemRandom};
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

/// glibc's allocator showed as ~15 % of CPU under load (malloc, free, consolidate); mimalloc
/// halves that share (loadtest/README.md has the profile).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "usage: otpgate [--config FILE]\n       \
otpgate support disable-two-step --account AC... --phone-number ID --reason TEXT [--config FILE]\n       \
otpgate console invite (--root | --account AC... --user ID) [--url URL] [--config FILE]\n\nConfiguration: config/default.toml documents every key; \
environment overrides such as OTPGATE_LISTEN, OTPGATE_REDIS_URL, OTPGATE_ROOT_KEY, OTPGATE_CODE_KEY, \
OTPGATE_HTTP_PROVIDER_URL. Log level: OTPGATE_LOG (default info); OTPGATE_LOG_FORMAT=json for one \
JSON object per line.";

fn main() -> ExitCode {
    if let Err(message) = init_logging(std::env::var("OTPGATE_LOG_FORMAT").ok().as_deref()) {
        eprintln!("otpgate: {message}\n\n{USAGE}");
        return ExitCode::from(2);
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("support") {
        return support(&args[1..]);
    }
    if args.first().map(String::as_str) == Some("console") {
        return console(&args[1..]);
    }
    let config_file = match parse_args(args.into_iter()) {
        Ok(file) => file,
        Err(message) => {
            eprintln!("{message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut settings = match load_settings(config_file.as_deref()) {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    if settings.auth.root_key.is_empty() {
        let Some(generated) = generate_root_key() else {
            eprintln!("otpgate: the system random generator failed");
            return ExitCode::FAILURE;
        };
        // Printed on the terminal once, not logged: a first run needs it to create an account.
        eprintln!("otpgate: no OTPGATE_ROOT_KEY set; this run's root key is:\n\n    {generated}\n");
        settings.auth.root_key = Secret::new(generated);
    }
    let runtime = match start_runtime(tokio::runtime::Builder::new_multi_thread()) {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    match runtime.block_on(serve(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("otpgate: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to standard output: as text, coloured only when it is a terminal (a file or a log
/// collector gets no escape codes), or with `OTPGATE_LOG_FORMAT=json` as one JSON object per line
/// (the event's fields at the top level) for collectors. Either way the events are the same, and
/// so is what they mask.
fn init_logging(format: Option<&str>) -> Result<(), String> {
    let filter = EnvFilter::try_from_env("OTPGATE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    match format.map(str::trim) {
        None | Some("" | "text") => logs.with_ansi(std::io::stdout().is_terminal()).init(),
        Some("json") => logs.json().flatten_event(true).with_ansi(false).init(),
        Some(other) => {
            return Err(format!(
                "OTPGATE_LOG_FORMAT: '{other}' is not a log format; use text or json"
            ))
        }
    }
    Ok(())
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<PathBuf>, String> {
    let mut config = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" | "-c" => {
                config = Some(PathBuf::from(args.next().ok_or("--config needs a file")?))
            }
            "--help" | "-h" => return Err("otpgate: a two-factor verification gateway".into()),
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    Ok(config)
}

/// `otpgate support disable-two-step ...`: the operator's audited way to turn two-step off on
/// a number's owner's behalf (never the public API). Connects to the configured Redis, writes
/// the audit entry, disables, exits.
fn support(args: &[String]) -> ExitCode {
    let usage = |message: &str| {
        eprintln!("{message}\n\n{USAGE}");
        ExitCode::from(2)
    };
    if args.first().map(String::as_str) != Some("disable-two-step") {
        return usage("the support command knows one action: disable-two-step");
    }
    let (mut account, mut number, mut reason, mut config) = (None, None, None, None);
    let mut operator = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    let mut rest = args[1..].iter();
    while let Some(flag) = rest.next() {
        let slot = match flag.as_str() {
            "--account" => &mut account,
            "--phone-number" => &mut number,
            "--reason" => &mut reason,
            "--config" | "-c" => &mut config,
            "--operator" => {
                match rest.next() {
                    Some(name) => operator = name.clone(),
                    None => return usage("--operator needs a name"),
                }
                continue;
            }
            other => return usage(&format!("unknown argument '{other}'")),
        };
        match rest.next() {
            Some(value) => *slot = Some(value.clone()),
            None => return usage(&format!("{flag} needs a value")),
        }
    }
    let (Some(account), Some(phone_number), Some(reason)) = (account, number, reason) else {
        return usage("--account, --phone-number and --reason are required");
    };
    let settings = match load_settings(config.as_deref().map(Path::new)) {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    let runtime = match start_runtime(tokio::runtime::Builder::new_current_thread()) {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let request = otpgate::pin::support::SupportDisable {
        account: account.clone(),
        phone_number: phone_number.clone(),
        reason,
        operator: operator.clone(),
    };
    match runtime.block_on(otpgate::startup::support_disable_two_step(
        &settings, &request,
    )) {
        Ok(masked) => {
            println!(
                "two-step verification disabled for {masked} (id {phone_number}) in account {account}, by {operator}; the audit trail has the entry"
            );
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("otpgate support: {message}");
            ExitCode::FAILURE
        }
    }
}

/// `otpgate console invite ...`: asks the running gateway (the embedded store lives inside its
/// process) for a console invitation with the root key (`OTPGATE_ROOT_KEY`), and prints the link.
fn console(args: &[String]) -> ExitCode {
    let usage = |message: &str| {
        eprintln!("{message}\n\n{USAGE}");
        ExitCode::from(2)
    };
    if args.first().map(String::as_str) != Some("invite") {
        return usage("the console command knows one action: invite");
    }
    let (mut account, mut user, mut url, mut config, mut root) = (None, None, None, None, false);
    let mut rest = args[1..].iter();
    while let Some(flag) = rest.next() {
        let slot = match flag.as_str() {
            "--root" => {
                root = true;
                continue;
            }
            "--account" => &mut account,
            "--user" => &mut user,
            "--url" => &mut url,
            "--config" | "-c" => &mut config,
            other => return usage(&format!("unknown argument '{other}'")),
        };
        match rest.next() {
            Some(value) => *slot = Some(value.clone()),
            None => return usage(&format!("{flag} needs a value")),
        }
    }
    let body = match (root, account, user) {
        (true, None, None) => serde_json::json!({"root": true}),
        (false, Some(account), Some(user)) => serde_json::json!({"account": account, "user": user}),
        _ => return usage("give either --root, or --account and --user"),
    };
    let settings = match load_settings(config.as_deref().map(Path::new)) {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    if settings.auth.root_key.is_empty() {
        return usage("set OTPGATE_ROOT_KEY to the running gateway's root key");
    }
    let base = url.unwrap_or_else(|| format!("http://{}", settings.server.listen));
    let runtime = match start_runtime(tokio::runtime::Builder::new_current_thread()) {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let root_key = String::from_utf8_lossy(settings.auth.root_key.expose()).into_owned();
    match runtime.block_on(request_invitation(&base, &root_key, &body)) {
        Ok((link, expires_at)) => {
            println!("{link}\n(works once, until {expires_at})");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("otpgate console: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn request_invitation(
    base: &str,
    root_key: &str,
    body: &serde_json::Value,
) -> Result<(String, String), String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let url = format!("{}/v1/console-invitations", base.trim_end_matches('/'));
    let response = reqwest::Client::new()
        .post(&url)
        .bearer_auth(root_key)
        .json(body)
        .send()
        .await
        .map_err(|error| format!("cannot reach the gateway at {base}: {error}"))?;
    let status = response.status();
    let answer: serde_json::Value = response
        .json()
        .await
        .map_err(|error| format!("the gateway answered {status} without JSON: {error}"))?;
    if !status.is_success() {
        let detail = answer["detail"].as_str().unwrap_or("no detail");
        return Err(format!("the gateway answered {status}: {detail}"));
    }
    match (answer["url"].as_str(), answer["expires_at"].as_str()) {
        (Some(url), Some(expires_at)) => Ok((url.to_owned(), expires_at.to_owned())),
        _ => Err("the gateway's answer has no url".to_owned()),
    }
}

/// The settings from defaults, `file` and the environment; on error, the message is printed.
fn load_settings(file: Option<&Path>) -> Result<Settings, ExitCode> {
    Settings::load(file).map_err(|error| {
        eprintln!("otpgate: {error}");
        ExitCode::from(2)
    })
}

fn start_runtime(
    mut builder: tokio::runtime::Builder,
) -> Result<tokio::runtime::Runtime, ExitCode> {
    builder.enable_all().build().map_err(|error| {
        eprintln!("otpgate: cannot start the runtime: {error}");
        ExitCode::FAILURE
    })
}

fn generate_root_key() -> Option<String> {
    let mut bytes = [0u8; 32];
    SystemRandom::new().fill(&mut bytes).ok()?;
    Some(format!(
        "{KEY_PREFIX}root_{}",
        data_encoding::BASE64URL_NOPAD.encode(&bytes)
    ))
}

async fn serve(settings: Settings) -> Result<(), String> {
    let listen = settings.server.listen;
    let grace = settings.server.shutdown_grace;
    let app = App::build(settings)
        .await
        .map_err(|error| error.to_string())?;
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|error| format!("cannot listen on {listen}: {error}"))?;
    let shutdown = shutdown_signal();
    print_root_invitation(&app).await;
    tracing::info!(
        address = %listener.local_addr().map_err(|error| error.to_string())?,
        store = app.store().kind(),
        "otpgate listening"
    );
    otpgate::run(listener, app.clone(), shutdown)
        .await
        .map_err(|error| error.to_string())?;
    app.shutdown(grace).await;
    tracing::info!("stopped");
    Ok(())
}

/// While the console is on and the operator has no console passkey yet, a root invitation is
/// minted and its link printed on the terminal (like a generated root key: printed, never
/// logged), so a first run can open the console at once.
async fn print_root_invitation(app: &App) {
    let console = app.console();
    if !app.settings().console.enabled || !console.settings().print_root_invitation {
        return;
    }
    match console.operator_enrolled().await {
        Ok(false) => {}
        Ok(true) => return,
        Err(error) => {
            tracing::warn!(%error, "could not tell whether the operator has a console passkey");
            return;
        }
    }
    match console
        .invite(
            &otpgate::console::store::Principal::Root,
            otpgate::account::audit::Who::root(),
        )
        .await
    {
        Ok((token, _)) => eprintln!(
            "otpgate: the console has no operator passkey yet; open this link within {} hours to create one (it works once):\n\n    {}\n",
            console.settings().invitation_ttl_hours,
            console.invitation_url(&token)
        ),
        Err(error) => tracing::warn!(%error, "could not mint the operator's console invitation"),
    }
}

/// The stop signal (SIGINT or SIGTERM). The handlers are installed when this is called, not when
/// the future is first polled: `serve` calls it before announcing that it listens, so a SIGTERM
/// sent right after start (an orchestrator, a test) stops the server gracefully instead of
/// killing it with the default disposition.
fn shutdown_signal() -> impl Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let handlers = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        );
        async move {
            match handlers {
                (Ok(mut interrupt), Ok(mut terminate)) => {
                    tokio::select! {
                        _ = interrupt.recv() => {}
                        _ = terminate.recv() => {}
                    }
                }
                (Err(error), _) | (_, Err(error)) => {
                    tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the server");
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
