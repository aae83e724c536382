//! The HTTP edge as a whole: route parameters, `Authorization`, `Idempotency-Key`, the JSON
//! bodies of the v1 and Graph/PIN routes and the Twilio facade's form bodies, sent to the real
//! server (memory store, a provider that accepts every message). Whatever is sent, the answer is
//! never a 500, and an error body is JSON.

use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use otpgate::config::Settings;
use otpgate::dispatch::providers::{Accepted, Provider, ProviderError};
use otpgate::dispatch::OutgoingMessage;
use otpgate::http::table::table;
use otpgate::secret::Secret;
use otpgate::{App, Overrides};
use proptest::prelude::*;
use reqwest::Method;
use serde_json::{json, Value};

const ROOT_KEY: &str = "props-root-key-of-at-least-32-characters";
const PHONE: &str = "+4915112345678";

struct Sink;

#[async_trait]
impl Provider for Sink {
    fn name(&self) -> &'static str {
        "sink"
    }

    async fn send(&self, _message: &OutgoingMessage) -> Result<Accepted, ProviderError> {
        Ok(Accepted {
            provider_message_id: None,
        })
    }
}

/// One server for every case of every test in this module, seeded with an account, a key of
/// each role, a user, a verification and a phone number.
struct Server {
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
    base: String,
    account: String,
    keys: Vec<String>,
    verification: String,
    phone_number_id: String,
}

static SERVER: LazyLock<Server> = LazyLock::new(|| {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let base = runtime.block_on(async {
        let mut settings = Settings::defaults();
        settings.auth.root_key = Secret::new(ROOT_KEY);
        // Wrong keys are most of what is sent: 429s would hide the handlers.
        settings.limits.failed_auth_per_ip_per_second = 1_000_000_000;
        let app = App::build_with(
            settings,
            Overrides {
                clock: None,
                provider: Some(Arc::new(Sink)),
            },
        )
        .await
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(otpgate::run(listener, app, std::future::pending()));
        base
    });
    let mut server = Server {
        runtime,
        client: reqwest::Client::new(),
        base,
        account: String::new(),
        keys: Vec::new(),
        verification: String::new(),
        phone_number_id: String::new(),
    };
    let root = format!("Bearer {ROOT_KEY}");
    let created = server.seed(
        Method::POST,
        "/v1/accounts",
        &root,
        json!({"name": "Props"}),
    );
    server.account = created["id"].as_str().unwrap().to_owned();
    for role in ["owner", "admin", "service", "partner"] {
        let path = format!("/v1/accounts/{}/keys", server.account);
        let key = server.seed(Method::POST, &path, &root, json!({"role": role}));
        server.keys.push(key["key"].as_str().unwrap().to_owned());
    }
    let owner = format!("Bearer {}", server.keys[0]);
    let service = format!("Bearer {}", server.keys[2]);
    server.seed(
        Method::POST,
        "/v1/users",
        &owner,
        json!({"id": "alice", "phone": PHONE, "role": "member"}),
    );
    let verification = server.seed(
        Method::POST,
        "/v1/verifications",
        &service,
        json!({"to": PHONE}),
    );
    server.verification = verification["id"].as_str().unwrap().to_owned();
    let number = server.seed(
        Method::POST,
        "/v1/phone-numbers",
        &owner,
        json!({"phone_number": PHONE, "pin": "482915"}),
    );
    server.phone_number_id = number["id"].as_str().unwrap().to_owned();
    server
});

struct Answer {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

impl Server {
    fn seed(&self, method: Method, path: &str, auth: &str, body: Value) -> Value {
        let answer = self.send(
            method,
            path,
            vec![
                ("authorization".to_owned(), auth.to_owned()),
                ("content-type".to_owned(), "application/json".to_owned()),
            ],
            body.to_string().into_bytes(),
        );
        assert!(
            answer.status < 300,
            "seeding {path}: {}",
            String::from_utf8_lossy(&answer.body)
        );
        serde_json::from_slice(&answer.body).unwrap()
    }

    fn send(
        &self,
        method: Method,
        path: &str,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> Answer {
        self.runtime.block_on(async {
            let mut request = self
                .client
                .request(method, format!("{}{path}", self.base))
                .body(body);
            for (name, value) in headers {
                request = request.header(name, value);
            }
            let response = request.send().await.unwrap();
            Answer {
                status: response.status().as_u16(),
                content_type: response
                    .headers()
                    .get("content-type")
                    .and_then(|value| value.to_str().ok())
                    .unwrap_or_default()
                    .to_owned(),
                body: response.bytes().await.unwrap().to_vec(),
            }
        })
    }
}

/// Not a 500; an error body is JSON (problem+json on v1, Twilio's shape on the facade).
fn clean(answer: &Answer, what: &str) -> Result<(), TestCaseError> {
    prop_assert!(
        answer.status != 500,
        "{}: {}",
        what,
        String::from_utf8_lossy(&answer.body)
    );
    if answer.status >= 400 {
        prop_assert!(
            answer.content_type.contains("json"),
            "{}: {}",
            what,
            answer.content_type
        );
        prop_assert!(
            serde_json::from_slice::<Value>(&answer.body).is_ok(),
            "{}",
            what
        );
    }
    Ok(())
}

/// Percent-encodes what may not appear in a path segment, as an HTTP client does.
fn segment(input: &str) -> String {
    let mut out = String::new();
    for byte in input.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

const FIELDS: &[&str] = &[
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
    "factor_id",
    "assertion",
    "override",
    "digits",
    "algorithm",
];

/// JSON with the API's field names and values of any type, some of them valid.
fn json_body() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,12}".prop_map(Value::from),
        prop_oneof![
            Just(PHONE),
            Just("sms"),
            Just("123456"),
            Just("482915"),
            Just("alice"),
            Just("totp"),
            Just("member")
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(FIELDS), inner), 0..5).prop_map(|fields| {
                Value::Object(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
            }),
        ]
    })
}

#[derive(Debug, Clone)]
enum Param {
    Account,
    User,
    Verification,
    PhoneNumberId,
    Graph,
    Raw(String),
}

fn param() -> impl Strategy<Value = Param> {
    prop_oneof![
        Just(Param::Account),
        Just(Param::User),
        Just(Param::Verification),
        Just(Param::PhoneNumberId),
        Just(Param::Graph),
        ".{1,20}".prop_map(Param::Raw),
    ]
}

fn fill(param: &Param) -> String {
    let server = &*SERVER;
    match param {
        Param::Account => server.account.clone(),
        Param::User => "alice".to_owned(),
        Param::Verification => server.verification.clone(),
        Param::PhoneNumberId => server.phone_number_id.clone(),
        Param::Graph => "v24.0".to_owned(),
        Param::Raw(text) => segment(text),
    }
}

fn method() -> impl Strategy<Value = Method> {
    prop::sample::select(vec![
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
    ])
}

/// No key, the root key, one of the account's keys, or any header value.
fn authorization() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        (0usize..5).prop_map(|n| {
            let server = &*SERVER;
            Some(format!(
                "Bearer {}",
                if n == 4 { ROOT_KEY } else { &server.keys[n] }
            ))
        }),
        "[ -~]{0,40}".prop_map(Some),
        "[ -~]{0,300}".prop_map(|key| Some(format!("Bearer {key}"))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn no_v1_or_graph_request_gets_a_500_and_every_error_is_a_problem(
        index in any::<prop::sample::Index>(),
        first in param(),
        second in param(),
        method in method(),
        authorization in authorization(),
        idempotency_key in prop::option::of("[ -~]{0,80}"),
        json in any::<bool>(),
        body in prop_oneof![json_body().prop_map(|v| v.to_string().into_bytes()), any::<Vec<u8>>()],
    ) {
        let (template, _) = *index.get(table());
        let path = template.replace("{param}", &fill(&first)).replace("{second}", &fill(&second));
        let mut headers = Vec::new();
        if let Some(value) = authorization {
            headers.push(("authorization".to_owned(), value));
        }
        if json {
            headers.push(("content-type".to_owned(), "application/json".to_owned()));
        }
        if let Some(key) = idempotency_key {
            headers.push(("idempotency-key".to_owned(), key));
        }
        let answer = SERVER.send(method.clone(), &path, headers, body);
        clean(&answer, &format!("{method} {path}"))?;
    }

    #[test]
    fn no_twilio_facade_request_gets_a_500(
        route in 0usize..5,
        service in prop_oneof![Just(None), ".{1,40}".prop_map(Some)],
        credentials in prop_oneof![
            (0usize..4).prop_map(|n| Some((SERVER.account.clone(), SERVER.keys[n].clone()))),
            Just(Some(("anyone".to_owned(), ROOT_KEY.to_owned()))),
            (".{0,40}", ".{0,40}").prop_map(Some),
            Just(None),
        ],
        form in prop::collection::vec((
            prop_oneof![
                prop::sample::select(vec!["To", "Channel", "Code", "VerificationSid", "Locale", "CodeLength", "FriendlyName", "Status", "CustomCode"]).prop_map(str::to_owned),
                ".{0,10}",
            ],
            prop_oneof![Just(PHONE.to_owned()), Just("sms".to_owned()), Just("123456".to_owned()), ".{0,20}"],
        ), 0..5),
    ) {
        let server = &*SERVER;
        let sid = service.map_or_else(|| format!("VA{}", &server.account[2..]), |text| segment(&text));
        let path = match route {
            0 => "/v2/Services".to_owned(),
            1 => format!("/v2/Services/{sid}"),
            2 => format!("/v2/Services/{sid}/Verifications"),
            3 => format!("/v2/Services/{sid}/Verifications/{}", server.verification),
            _ => format!("/v2/Services/{sid}/VerificationCheck"),
        };
        let mut encoded = form_urlencoded::Serializer::new(String::new());
        for (name, value) in &form {
            encoded.append_pair(name, value);
        }
        let mut headers = vec![(
            "content-type".to_owned(),
            "application/x-www-form-urlencoded".to_owned(),
        )];
        if let Some((user, password)) = credentials {
            let basic = data_encoding::BASE64.encode(format!("{user}:{password}").as_bytes());
            headers.push(("authorization".to_owned(), format!("Basic {basic}")));
        }
        let answer = server.send(Method::POST, &path, headers, encoded.finish().into_bytes());
        clean(&answer, &path)?;
    }
}
