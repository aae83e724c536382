//! The real gateway (memory store, a provider that accepts everything) on 127.0.0.1:0 inside
//! the fuzz process, and a tiny HTTP/1.1 client on one keep-alive connection. The HTTP targets
//! send it structured requests; a panic anywhere in the server aborts the process (libFuzzer's
//! panic hook), and a 500 answer or no answer at all fails the target.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use arbitrary::Arbitrary;
use async_trait::async_trait;
use otpgate::config::Settings;
use otpgate::dispatch::providers::{Accepted, Provider, ProviderError};
use otpgate::dispatch::OutgoingMessage;
use otpgate::secret::Secret;
use otpgate::{App, Overrides};

pub const ROOT_KEY: &str = "fuzz-root-key-of-at-least-32-characters";
/// A number of the seeded user and verification (valid in libphonenumber's metadata).
pub const PHONE: &str = "+4915112345678";

/// Takes every message; nothing leaves the process.
struct Sink;

#[async_trait]
impl Provider for Sink {
    fn name(&self) -> &'static str {
        "sink"
    }

    async fn send(&self, _message: &OutgoingMessage) -> Result<Accepted, ProviderError> {
        Ok(Accepted {
            provider_message_id: Some("SM0".to_owned()),
        })
    }
}

/// What the server was seeded with, so that requests can name things that exist.
pub struct Harness {
    address: SocketAddr,
    connection: Mutex<Option<BufReader<TcpStream>>>,
    pub account: String,
    pub owner_key: String,
    pub service_key: String,
    pub admin_key: String,
    pub partner_key: String,
    pub user: String,
    pub verification: String,
    pub phone_number_id: String,
    pub factor: String,
}

pub struct Answer {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

impl Answer {
    fn field(&self, name: &str) -> String {
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|body| body.get(name)?.as_str().map(str::to_owned))
            .unwrap_or_else(|| panic!("no {name} in {}", String::from_utf8_lossy(&self.body)))
    }
}

static HARNESS: OnceLock<Harness> = OnceLock::new();

impl Harness {
    /// Starts the server once per process and seeds an account, a key of each role, a user with
    /// a phone, a pending verification, a phone number with a PIN and a pending TOTP factor.
    pub fn get() -> &'static Harness {
        HARNESS.get_or_init(|| {
            let (sender, receiver) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime");
                runtime.block_on(async move {
                    let mut settings = Settings::defaults();
                    settings.auth.root_key = Secret::new(ROOT_KEY);
                    // Failed keys are what the fuzzer sends most: 429s would hide the handlers.
                    settings.limits.failed_auth_per_ip_per_second = 1_000_000_000;
                    settings.limits.per_ip_per_second = 1_000_000_000;
                    settings.limits.per_key_per_second = 1_000_000_000;
                    settings.factors.relying_party.id = crate::webauthn::RP_ID.to_owned();
                    settings.factors.relying_party.origins =
                        vec![crate::webauthn::ORIGIN.to_owned()];
                    let app = App::build_with(
                        settings,
                        Overrides {
                            clock: None,
                            provider: Some(Arc::new(Sink)),
                        },
                    )
                    .await
                    .expect("the app builds");
                    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                        .await
                        .expect("a loopback port");
                    sender
                        .send(listener.local_addr().expect("bound"))
                        .expect("the fuzzer waits");
                    otpgate::run(listener, app, std::future::pending()).await
                })
            });
            let address = receiver.recv().expect("the server starts");
            let mut harness = Harness {
                address,
                connection: Mutex::new(None),
                account: String::new(),
                owner_key: String::new(),
                service_key: String::new(),
                admin_key: String::new(),
                partner_key: String::new(),
                user: "alice".to_owned(),
                verification: String::new(),
                phone_number_id: String::new(),
                factor: String::new(),
            };
            harness.seed();
            harness
        })
    }

    fn seed(&mut self) {
        let root = bearer(ROOT_KEY);
        let created = self.json("POST", "/v1/accounts", &root, r#"{"name":"Fuzz"}"#, 201);
        self.account = created.field("id");
        let key = |this: &Self, role: &str| {
            this.json(
                "POST",
                &format!("/v1/accounts/{}/keys", this.account),
                &root,
                &format!(r#"{{"role":"{role}"}}"#),
                201,
            )
            .field("key")
        };
        self.owner_key = key(self, "owner");
        self.service_key = key(self, "service");
        self.admin_key = key(self, "admin");
        self.partner_key = key(self, "partner");
        let owner = bearer(&self.owner_key);
        self.json(
            "PUT",
            "/v1/policy",
            &owner,
            r#"{"channels":["sms","totp","webauthn"],"sms_fallback":true,"trusted_device":"7d"}"#,
            200,
        );
        self.json(
            "POST",
            "/v1/users",
            &owner,
            &format!(r#"{{"id":"alice","phone":"{PHONE}","role":"member"}}"#),
            201,
        );
        let service = bearer(&self.service_key);
        self.verification = self
            .json(
                "POST",
                "/v1/verifications",
                &service,
                &format!(r#"{{"to":"{PHONE}"}}"#),
                201,
            )
            .field("id");
        self.phone_number_id = self
            .json(
                "POST",
                "/v1/phone-numbers",
                &owner,
                &format!(r#"{{"phone_number":"{PHONE}","pin":"482915"}}"#),
                201,
            )
            .field("id");
        self.factor = self
            .json(
                "POST",
                "/v1/users/alice/factors",
                &owner,
                r#"{"type":"totp"}"#,
                201,
            )
            .field("id");
    }

    fn json(&self, method: &str, path: &str, auth: &str, body: &str, expected: u16) -> Answer {
        let headers = [
            ("authorization".to_owned(), auth.to_owned()),
            ("content-type".to_owned(), "application/json".to_owned()),
        ];
        let answer = self.send(method, path, &headers, body.as_bytes());
        assert_eq!(
            answer.status,
            expected,
            "seeding {method} {path}: {}",
            String::from_utf8_lossy(&answer.body)
        );
        answer
    }

    /// One request on the keep-alive connection (a new one when the server closed it).
    pub fn send(
        &self,
        method: &str,
        target: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Answer {
        let mut request = format!(
            "{method} {target} HTTP/1.1\r\nhost: fuzz\r\ncontent-length: {}\r\n",
            body.len()
        )
        .into_bytes();
        for (name, value) in headers {
            request.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        request.extend_from_slice(b"\r\n");
        request.extend_from_slice(body);
        let mut slot = self
            .connection
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // A kept connection may have been closed by the server since: one retry on a fresh one.
        for attempt in 0..2 {
            let connection = match slot.as_mut() {
                Some(connection) => connection,
                None => {
                    let stream = TcpStream::connect(self.address).expect("the server listens");
                    stream.set_nodelay(true).expect("a socket option");
                    stream
                        .set_read_timeout(Some(Duration::from_secs(20)))
                        .expect("a socket option");
                    slot.insert(BufReader::new(stream))
                }
            };
            if connection.get_mut().write_all(&request).is_ok() {
                match read_answer(connection) {
                    Ok((answer, close)) => {
                        if close {
                            *slot = None;
                        }
                        return answer;
                    }
                    Err(error)
                        if error.kind() == std::io::ErrorKind::WouldBlock
                            || error.kind() == std::io::ErrorKind::TimedOut =>
                    {
                        panic!("no answer within 20 s to {method} {target}")
                    }
                    Err(_) if attempt == 0 => {}
                    Err(error) => panic!("no answer to {method} {target}: {error}"),
                }
            }
            *slot = None;
        }
        panic!("cannot send {method} {target}")
    }
}

pub fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

fn read_answer(reader: &mut BufReader<TcpStream>) -> std::io::Result<(Answer, bool)> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or(std::io::ErrorKind::InvalidData)?;
    let mut length = 0;
    let mut close = false;
    let mut content_type = None;
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header
            .split_once(':')
            .ok_or(std::io::ErrorKind::InvalidData)?;
        let value = value.trim();
        match name.to_ascii_lowercase().as_str() {
            "content-length" => {
                length = value.parse().map_err(|_| std::io::ErrorKind::InvalidData)?
            }
            "connection" => close = value.eq_ignore_ascii_case("close"),
            "content-type" => content_type = Some(value.to_owned()),
            _ => {}
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok((
        Answer {
            status,
            content_type,
            body,
        },
        close,
    ))
}

/// Keeps the bytes a header value may carry (visible ASCII, space, tab).
pub fn header_value(input: &str) -> String {
    input
        .chars()
        .filter(|c| *c == '\t' || (' '..='~').contains(c))
        .collect()
}

/// Percent-encodes what may not appear in a request target, as an HTTP client would; `%`
/// stays, so that the fuzzer can write its own (valid or broken) escapes.
pub fn target_text(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    for byte in input.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
    Options,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
        }
    }
}

/// The answer says what went wrong without a 500, and in the problem format where it is JSON.
pub fn check_answer(answer: &Answer, what: &str) {
    assert_ne!(
        answer.status,
        500,
        "{what}: {}",
        String::from_utf8_lossy(&answer.body)
    );
    if answer.status >= 400
        && answer
            .content_type
            .as_deref()
            .is_some_and(|kind| kind.contains("json"))
    {
        assert!(
            serde_json::from_slice::<serde_json::Value>(&answer.body).is_ok(),
            "{what}: an error body that is not JSON"
        );
    }
}

/// A JSON value for request bodies: objects use the field names the API knows, so that the
/// fuzzer reaches past serde's first `unknown field` refusal.
#[derive(Arbitrary, Debug)]
pub enum Json<'a> {
    Null,
    Bool(bool),
    Number(i64),
    Float(f64),
    Text(&'a str),
    Known(KnownValue),
    Array(Vec<Json<'a>>),
    Object(Vec<(Field<'a>, Json<'a>)>),
}

/// Values that pass a field's own check, so that the next field is reached.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum KnownValue {
    Phone,
    User,
    Verification,
    Code,
    Pin,
    Channel,
    Role,
    Factor,
}

#[derive(Arbitrary, Debug)]
pub enum Field<'a> {
    Known(u8),
    Other(&'a str),
}

pub const FIELDS: &[&str] = &[
    "id",
    "to",
    "code",
    "channel",
    "locale",
    "code_length",
    "name",
    "email",
    "role",
    "phone",
    "phone_number",
    "pin",
    "user",
    "acting_user",
    "type",
    "credential",
    "challenge_id",
    "device_token",
    "require_2fa",
    "two_factor",
    "channels",
    "trusted_device",
    "sms_fallback",
    "fallback",
    "factor_id",
    "assertion",
    "override",
    "digits",
    "algorithm",
    "label",
    "key",
    "verification_id",
    "enabled",
    "response",
    "clientDataJSON",
    "attestationObject",
    "authenticatorData",
    "signature",
    "rawId",
    "request",
    "account",
];

impl Json<'_> {
    pub fn write(&self, harness: &Harness, out: &mut String, depth: usize) {
        if depth > 16 {
            out.push_str("null");
            return;
        }
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(value) => out.push_str(if *value { "true" } else { "false" }),
            Json::Number(value) => out.push_str(&value.to_string()),
            Json::Float(value) => out.push_str(
                &serde_json::Number::from_f64(*value).map_or("0".to_owned(), |n| n.to_string()),
            ),
            Json::Text(text) => out.push_str(&serde_json::Value::from(*text).to_string()),
            Json::Known(known) => {
                let text = match known {
                    KnownValue::Phone => PHONE,
                    KnownValue::User => harness.user.as_str(),
                    KnownValue::Verification => harness.verification.as_str(),
                    KnownValue::Code => "123456",
                    KnownValue::Pin => "482915",
                    KnownValue::Channel => "sms",
                    KnownValue::Role => "member",
                    KnownValue::Factor => "totp",
                };
                out.push_str(&serde_json::Value::from(text).to_string());
            }
            Json::Array(items) => {
                out.push('[');
                for (n, item) in items.iter().enumerate() {
                    if n > 0 {
                        out.push(',');
                    }
                    item.write(harness, out, depth + 1);
                }
                out.push(']');
            }
            Json::Object(fields) => {
                out.push('{');
                for (n, (field, value)) in fields.iter().enumerate() {
                    if n > 0 {
                        out.push(',');
                    }
                    let name = match field {
                        Field::Known(index) => FIELDS[usize::from(*index) % FIELDS.len()],
                        Field::Other(name) => name,
                    };
                    out.push_str(&serde_json::Value::from(name).to_string());
                    out.push(':');
                    value.write(harness, out, depth + 1);
                }
                out.push('}');
            }
        }
    }
}
