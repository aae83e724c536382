//! `GET /openapi.json`: an OpenAPI 3.1 document that covers the whole route table, and nothing
//! else.

use std::collections::BTreeSet;

use otpgate::http::table as routes;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, Backend};

/// `/v1/users/{param}` and `/v1/users/{user}` alike become `/v1/users/{}`.
fn shape(path: &str) -> String {
    path.split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                "{}"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test]
async fn openapi_json_documents_every_method_of_every_route_but_the_twilio_facade_and_nothing_else()
{
    let app = spawn_app(Backend::Memory).await;
    let reply = app
        .request(reqwest::Method::GET, "/openapi.json", None, None)
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.headers["content-type"], "application/json");
    let document = reply.body;
    assert!(document["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = document["paths"].as_object().expect("paths");
    let mut missing = Vec::new();
    for (path, route) in routes::table() {
        if route.is_twilio() {
            continue;
        }
        let documented = paths
            .iter()
            .find(|(documented, _)| shape(documented) == shape(path));
        for method in routes::allow(route).split(", ") {
            let operation = documented.map(|(_, item)| &item[method.to_lowercase()]);
            match operation {
                Some(operation) if operation.is_object() => {
                    assert!(
                        operation["responses"].is_object(),
                        "{method} {path} has no responses"
                    );
                }
                _ => missing.push(format!("{method} {path}")),
            }
        }
    }
    assert!(missing.is_empty(), "not in /openapi.json: {missing:?}");
    let mut unknown = Vec::new();
    for (path, item) in paths {
        let route = routes::table()
            .iter()
            .find(|(template, _)| shape(template) == shape(path))
            .map(|(_, route)| route);
        for method in item.as_object().expect("a path item").keys() {
            let accepted = route
                .is_some_and(|route| !route.is_twilio() && route.accepts(&method.to_uppercase()));
            if !accepted {
                unknown.push(format!("{method} {path}"));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "in /openapi.json, not in the table: {unknown:?}"
    );
    assert_eq!(
        document["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert!(document["components"]["schemas"]["Problem"].is_object());
    // A check documents its 409 for final verifications and its Idempotency-Key.
    let check = &document["paths"]["/v1/verifications/check"]["post"];
    let conflict = check["responses"]["409"]["description"].as_str().unwrap();
    assert!(
        conflict.contains("verification-already-approved"),
        "{conflict}"
    );
    assert!(check["responses"]["503"]["description"]
        .as_str()
        .unwrap()
        .contains("outcome-unknown"));
    assert!(check["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .any(|parameter| parameter["name"] == "Idempotency-Key"));
    app.stop().await;
}

/// The properties the document's schema `name` lists, and those it requires.
fn schema_properties(document: &Value, name: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let schema = &document["components"]["schemas"][name];
    let listed = schema["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("{name} has properties"))
        .keys()
        .cloned()
        .collect();
    let required = schema["required"]
        .as_array()
        .map(|names| {
            names
                .iter()
                .map(|name| name.as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default();
    (listed, required)
}

/// A real answer has every property its schema requires, nothing the schema does not list, and
/// exactly the listed ones but `absent`.
pub(crate) fn assert_matches_schema(document: &Value, name: &str, body: &Value, absent: &[&str]) {
    let (listed, required) = schema_properties(document, name);
    let given: BTreeSet<String> = body
        .as_object()
        .unwrap_or_else(|| panic!("{name}: {body}"))
        .keys()
        .cloned()
        .collect();
    assert!(
        given.is_subset(&listed),
        "{name}: {given:?} not within {listed:?}"
    );
    assert!(
        required.is_subset(&given),
        "{name}: {required:?} not all in {given:?}"
    );
    let expected: BTreeSet<String> = listed
        .iter()
        .filter(|property| !absent.contains(&property.as_str()))
        .cloned()
        .collect();
    assert_eq!(given, expected, "{name}");
}

#[tokio::test]
async fn answers_of_verifications_policy_and_users_have_exactly_their_schemas_properties() {
    let app = spawn_app(Backend::Memory).await;
    let document = app
        .request(reqwest::Method::GET, "/openapi.json", None, None)
        .await
        .body;

    let sent = app.send("+4915112345678").await;
    assert_eq!(sent.status, 201, "{}", sent.body);
    assert_matches_schema(
        &document,
        "Verification",
        &sent.body,
        &["valid", "send_attempts", "workflow"],
    );
    app.wait_for_messages(1).await;
    let read = app
        .get(&format!("/v1/verifications/{}", sent.str("id")))
        .await;
    assert_eq!(read.status, 200, "{}", read.body);
    // A single-channel send has no workflow (tests/api/workflows.rs reads one).
    assert_matches_schema(
        &document,
        "Verification",
        &read.body,
        &["valid", "workflow"],
    );
    let checked = app.check_id(sent.str("id"), "000000").await;
    assert_matches_schema(
        &document,
        "Verification",
        &checked.body,
        &["send_attempts", "workflow"],
    );

    let (_, owner) = app.create_account_with_key("owner").await;
    let policy = app
        .request(reqwest::Method::GET, "/v1/policy", Some(&owner), None)
        .await;
    assert_eq!(policy.status, 200, "{}", policy.body);
    assert_matches_schema(&document, "Policy", &policy.body, &["default_workflow"]);

    let user = app
        .request(
            reqwest::Method::POST,
            "/v1/users",
            Some(&owner),
            Some(json!({"id": "ada", "phone": "+4915112345679"})),
        )
        .await;
    assert_eq!(user.status, 201, "{}", user.body);
    assert_matches_schema(&document, "User", &user.body, &[]);
    assert_matches_schema(&document, "TwoFactor", &user.body["two_factor"], &[]);
    let read = app
        .request(reqwest::Method::GET, "/v1/users/ada", Some(&owner), None)
        .await;
    assert_eq!(read.status, 200, "{}", read.body);
    assert_matches_schema(&document, "User", &read.body, &[]);
    app.stop().await;
}

/// deploy/otpgate.production.toml is read by the real loader: every key exists and has the
/// right type, and its secrets come from the environment. (`env:NAME` values are read from the
/// process environment, which tests leave alone: the copy loaded here has them filled in.)
#[test]
fn the_example_production_config_loads_with_secrets_from_the_environment() {
    let text = std::fs::read_to_string("deploy/otpgate.production.toml").unwrap();
    assert!(text.contains("env:INFOBIP_API_KEY") && text.contains("env:TWILIO_AUTH_TOKEN"));
    let filled = text
        .replace("env:INFOBIP_API_KEY", "infobip-key")
        .replace("env:TWILIO_AUTH_TOKEN", "twilio-token");
    let file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::fs::write(file.path(), filled).unwrap();
    let env = [
        (
            "OTPGATE_ROOT_KEY",
            "root-key-from-the-environment-0123456789",
        ),
        ("OTPGATE_CODE_KEY", &"ab".repeat(32)),
        ("OTPGATE_DEVICE_KEY", &"cd".repeat(32)),
        ("OTPGATE_PIN_PEPPER", &"ef".repeat(32)),
        ("OTPGATE_RECEIPT_TOKEN", "receipt-token"),
    ]
    .map(|(name, value)| (name.to_owned(), value.to_owned()));
    let settings = otpgate::config::Settings::load_from(Some(file.path()), env)
        .unwrap_or_else(|error| panic!("{error:?}"));
    assert_eq!(
        settings.store.redis_urls.len(),
        3,
        "a Redis Cluster of three seeds"
    );
    assert_eq!(settings.dispatch.providers.len(), 2, "two providers");
    assert_eq!(settings.dispatch.routes.len(), 2);
    assert!(!text.contains("root_key ="), "no secret in the file");
}
