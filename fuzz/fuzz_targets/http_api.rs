//! The v1 API and the Graph/PIN routes through the real server: the router and its path
//! parameters, `Authorization` headers, `Idempotency-Key`, content types and the JSON bodies
//! of every route. No request may make the server answer 500, hang or panic.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use otpgate::http::table::table;
use otpgate_fuzz::server::{
    bearer, check_answer, header_value, target_text, Harness, Json, Method, PHONE, ROOT_KEY,
};

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    method: Method,
    path: Path<'a>,
    query: Option<&'a str>,
    auth: Auth<'a>,
    content_type: ContentType<'a>,
    idempotency_key: Option<&'a str>,
    body: Body<'a>,
}

#[derive(Arbitrary, Debug)]
enum Path<'a> {
    /// A path of the route table, its parameters filled in.
    Route {
        index: u8,
        param: Param<'a>,
        second: Param<'a>,
    },
    Raw(&'a str),
}

#[derive(Arbitrary, Debug)]
enum Param<'a> {
    Account,
    User,
    Verification,
    PhoneNumberId,
    Factor,
    GraphVersion,
    Raw(&'a str),
}

#[derive(Arbitrary, Debug)]
enum Auth<'a> {
    None,
    Root,
    Owner,
    Service,
    Admin,
    Partner,
    Bearer(&'a str),
    Raw(&'a str),
}

#[derive(Arbitrary, Debug)]
enum ContentType<'a> {
    Json,
    None,
    Raw(&'a str),
}

#[derive(Arbitrary, Debug)]
enum Body<'a> {
    Json(Json<'a>),
    Raw(&'a [u8]),
}

fuzz_target!(|input: Input<'_>| {
    let harness = Harness::get();
    let param = |param: &Param<'_>| -> String {
        match param {
            Param::Account => harness.account.clone(),
            Param::User => harness.user.clone(),
            Param::Verification => harness.verification.clone(),
            Param::PhoneNumberId => harness.phone_number_id.clone(),
            Param::Factor => harness.factor.clone(),
            Param::GraphVersion => "v24.0".to_owned(),
            Param::Raw(text) => target_text(text).replace(['/', '?'], "_"),
        }
    };
    let mut target = match &input.path {
        Path::Route {
            index,
            param: first,
            second,
        } => {
            let routes = table();
            let (template, _) = routes[usize::from(*index) % routes.len()];
            template
                .replace("{param}", &param(first))
                .replace("{second}", &param(second))
        }
        Path::Raw(text) => format!("/{}", target_text(text)),
    };
    if let Some(query) = input.query {
        target.push('?');
        target.push_str(&target_text(query).replace("{phone}", PHONE));
    }
    let mut headers = Vec::new();
    let authorization = match input.auth {
        Auth::None => None,
        Auth::Root => Some(bearer(ROOT_KEY)),
        Auth::Owner => Some(bearer(&harness.owner_key)),
        Auth::Service => Some(bearer(&harness.service_key)),
        Auth::Admin => Some(bearer(&harness.admin_key)),
        Auth::Partner => Some(bearer(&harness.partner_key)),
        Auth::Bearer(key) => Some(format!("Bearer {}", header_value(key))),
        Auth::Raw(value) => Some(header_value(value)),
    };
    if let Some(value) = authorization {
        headers.push(("authorization".to_owned(), value));
    }
    match input.content_type {
        ContentType::Json => {
            headers.push(("content-type".to_owned(), "application/json".to_owned()))
        }
        ContentType::None => {}
        ContentType::Raw(value) => headers.push(("content-type".to_owned(), header_value(value))),
    }
    if let Some(key) = input.idempotency_key {
        headers.push(("idempotency-key".to_owned(), header_value(key)));
    }
    let body = match &input.body {
        Body::Json(json) => {
            let mut out = String::new();
            json.write(harness, &mut out, 0);
            out.into_bytes()
        }
        Body::Raw(bytes) => bytes.to_vec(),
    };
    let method = input.method.as_str();
    let answer = harness.send(method, &target, &headers, &body);
    check_answer(&answer, &format!("{method} {target}"));
});
