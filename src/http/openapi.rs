//! The OpenAPI 3.1 document of the v1 API, served at `GET /openapi.json`.
//!
//! Built from the route table: each documented method of a row carries its `Doc` (`doc.rs`),
//! and [`render`] turns them into the document's paths, with the components generated from the
//! wire types they name (`wire*.rs`, `error.rs`'s `Problem`: the handlers' own types). Security
//! comes from the row's access rule. `tests/api/openapi.rs` checks that every method of every
//! row (except the Twilio facade, documented by Twilio) is in it and nothing else, and that real
//! answers have exactly their schema's properties; `scripts/compat` fuzzes the running server
//! against it with schemathesis. Errors are `application/problem+json` under `default`.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use utoipa::openapi::path::{
    HttpMethod, Operation, OperationBuilder, ParameterBuilder, ParameterIn, PathItem, PathsBuilder,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{
    KnownFormat, ObjectBuilder, Schema as Component, SchemaFormat, Type,
};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Required, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::doc::{Content, Doc, Place, Schema};
use super::routes::{Access, Entry};

/// The document of the routes `table` as JSON.
pub fn render(table: &[Entry]) -> String {
    let mut document = ApiDoc::openapi();
    let mut components = Vec::new();
    let mut paths = PathsBuilder::new();
    for entry in table {
        for (verb, access, doc) in entry.documented() {
            let operation = operation(access, doc, &mut components);
            // `path` merges the methods of a path already there.
            paths = paths.path(
                published_path(entry.path, doc),
                PathItem::new(http_method(verb), operation),
            );
        }
    }
    document.paths = paths.build();
    let schemas = &mut document
        .components
        .get_or_insert_with(Default::default)
        .schemas;
    schemas.extend(components);
    document
        .to_pretty_json()
        // Serialising a document of plain maps and strings cannot fail.
        .unwrap_or_else(|_| "{}".to_owned())
}

/// `/openapi.json`'s answer: `document` as JSON.
pub(super) fn response(document: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(document.as_bytes())));
    *response.status_mut() = StatusCode::OK;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// The row's path with its parameters under their published names: the table's `{param}` and
/// `{second}` (the matcher's names) become the doc's path parameters, in order.
fn published_path(path: &str, doc: &Doc) -> String {
    let mut names = doc
        .params
        .iter()
        .filter(|param| param.place == Place::Path)
        .map(|param| param.name);
    path.split('/')
        .map(|segment| match segment {
            "{param}" | "{second}" => format!("{{{}}}", names.next().unwrap_or(segment)),
            _ => segment.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn http_method(verb: &str) -> HttpMethod {
    match verb {
        "GET" => HttpMethod::Get,
        "PUT" => HttpMethod::Put,
        "PATCH" => HttpMethod::Patch,
        "DELETE" => HttpMethod::Delete,
        _ => HttpMethod::Post,
    }
}

/// One operation; the components its schemas refer to are added to `components`.
fn operation(
    access: Access,
    doc: &Doc,
    components: &mut Vec<(String, RefOr<Component>)>,
) -> Operation {
    let mut operation = OperationBuilder::new()
        .tag(doc.tag)
        .summary(Some(doc.summary))
        .operation_id(Some(doc.id));
    for param in doc.params {
        let (place, required) = match param.place {
            Place::Path => (ParameterIn::Path, Required::True),
            Place::Query => (ParameterIn::Query, required(param.required)),
            Place::Header => (ParameterIn::Header, required(param.required)),
        };
        operation = operation.parameter(
            ParameterBuilder::new()
                .name(param.name)
                .parameter_in(place)
                .required(required)
                .description(Some(param.description))
                .schema(Some(schema(param.schema, components))),
        );
    }
    if let Some(body) = &doc.request {
        operation = operation.request_body(Some(
            RequestBodyBuilder::new()
                .description(body.description)
                .content(body.content.media, content(&body.content, components))
                .required(Some(Required::True))
                .build(),
        ));
    }
    for answer in doc.answers {
        let mut response = ResponseBuilder::new().description(answer.description);
        for media in answer.content {
            response = response.content(media.media, content(media, components));
        }
        operation = operation.response(answer.status, response.build());
    }
    if !access.takes_bearer_key() {
        // Open to anyone, or checked by its own credential (a receipt's signature, an e-mailed
        // token): no bearer key.
        operation = operation.security(SecurityRequirement::default());
    }
    operation.build()
}

fn required(yes: bool) -> Required {
    if yes {
        Required::True
    } else {
        Required::False
    }
}

fn content(
    content: &Content,
    components: &mut Vec<(String, RefOr<Component>)>,
) -> utoipa::openapi::Content {
    ContentBuilder::new()
        .schema(Some(schema(content.schema, components)))
        .build()
}

/// The schema, inline or as a reference to a wire type's component (added to `components`
/// with those it refers to).
fn schema(schema: Schema, components: &mut Vec<(String, RefOr<Component>)>) -> RefOr<Component> {
    match schema {
        Schema::Text => ObjectBuilder::new().schema_type(Type::String).into(),
        Schema::Object => ObjectBuilder::new().schema_type(Type::Object).into(),
        Schema::Integer { minimum, maximum } => ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int32)))
            .minimum(Some(minimum))
            .maximum(Some(maximum))
            .into(),
        Schema::Named(named) => {
            let name = (named.name)().into_owned();
            components.push((name.clone(), (named.component)()));
            (named.references)(components);
            RefOr::Ref(Ref::from_schema_name(name))
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "otpgate",
        description = "A self-hosted two-factor verification gateway: one-time codes by SMS and WhatsApp, account 2FA policy, users, trusted devices and login decisions. Errors are RFC 9457 problem details (`application/problem+json`) with `type` = `urn:otpgate:problem:<slug>`. A Twilio Verify v2 compatible facade is served under `/v2/Services` (see the README).",
        license(name = "Apache-2.0")
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "operations", description = "Health, readiness, metrics, this document"),
        (name = "accounts", description = "Accounts and keys (root key; owners mint keys)"),
        (name = "verifications", description = "One-time codes: send, check, read, cancel"),
        (name = "policy", description = "The account's 2FA policy"),
        (name = "users", description = "People of an account and their factors"),
        (name = "console", description = "Invitations to the web console at /console/ (docs/console.md)"),
        (name = "trusted-devices", description = "Remembered devices and login decisions"),
        (name = "audit", description = "Who changed what"),
        (name = "receipts", description = "Delivery receipts from SMS providers (signed or token)"),
        (name = "phone-numbers", description = "Phone-number two-step PINs (WhatsApp Business style)"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An account key (`ogk_…`, roles owner, admin, service, partner) or the operator's root key",
                    ))
                    .build(),
            ),
        );
    }
}
