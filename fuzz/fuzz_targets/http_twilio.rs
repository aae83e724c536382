//! The Twilio Verify v2 facade through the real server: HTTP Basic credentials, Service and
//! verification SIDs in the path, and the form bodies Twilio's SDKs send. No request may make
//! the server answer 500, hang or panic.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use otpgate_fuzz::server::{
    check_answer, header_value, target_text, Harness, Method, PHONE, ROOT_KEY,
};

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    method: Method,
    route: TwilioRoute,
    service: Sid<'a>,
    verification: Sid<'a>,
    auth: Auth<'a>,
    form_content_type: bool,
    body: Body<'a>,
}

#[derive(Arbitrary, Debug)]
enum TwilioRoute {
    Services,
    Service,
    Verifications,
    Verification,
    VerificationCheck,
}

#[derive(Arbitrary, Debug)]
enum Sid<'a> {
    Ours,
    Raw(&'a str),
}

#[derive(Arbitrary, Debug)]
enum Auth<'a> {
    None,
    Root,
    Service,
    Owner,
    Admin,
    WrongUser,
    Basic(&'a str),
    Raw(&'a str),
}

#[derive(Arbitrary, Debug)]
enum Body<'a> {
    Form(Vec<(Name<'a>, Value<'a>)>),
    Raw(&'a [u8]),
}

#[derive(Arbitrary, Debug)]
enum Name<'a> {
    Known(u8),
    Other(&'a str),
}

#[derive(Arbitrary, Debug)]
enum Value<'a> {
    Phone,
    Code,
    VerificationSid,
    Channel,
    Text(&'a str),
}

const NAMES: &[&str] = &[
    "To",
    "Channel",
    "Code",
    "VerificationSid",
    "Locale",
    "CustomCode",
    "Amount",
    "Payee",
    "Status",
    "FriendlyName",
    "CodeLength",
];

fuzz_target!(|input: Input<'_>| {
    let harness = Harness::get();
    let sid = |sid: &Sid<'_>, ours: String| match sid {
        Sid::Ours => ours,
        Sid::Raw(text) => target_text(text).replace(['/', '?'], "_"),
    };
    let service = sid(&input.service, format!("VA{}", &harness.account[2..]));
    let verification = sid(&input.verification, harness.verification.clone());
    let target = match input.route {
        TwilioRoute::Services => "/v2/Services".to_owned(),
        TwilioRoute::Service => format!("/v2/Services/{service}"),
        TwilioRoute::Verifications => format!("/v2/Services/{service}/Verifications"),
        TwilioRoute::Verification => format!("/v2/Services/{service}/Verifications/{verification}"),
        TwilioRoute::VerificationCheck => format!("/v2/Services/{service}/VerificationCheck"),
    };
    let basic = |user: &str, password: &str| {
        format!(
            "Basic {}",
            data_encoding::BASE64.encode(format!("{user}:{password}").as_bytes())
        )
    };
    let authorization = match input.auth {
        Auth::None => None,
        Auth::Root => Some(basic("anyone", ROOT_KEY)),
        Auth::Service => Some(basic(&harness.account, &harness.service_key)),
        Auth::Owner => Some(basic(&harness.account, &harness.owner_key)),
        Auth::Admin => Some(basic(&harness.account, &harness.admin_key)),
        Auth::WrongUser => Some(basic(
            "AC00000000000000000000000000000000",
            &harness.service_key,
        )),
        Auth::Basic(credentials) => Some(format!(
            "Basic {}",
            data_encoding::BASE64.encode(credentials.as_bytes())
        )),
        Auth::Raw(value) => Some(header_value(value)),
    };
    let mut headers = Vec::new();
    if let Some(value) = authorization {
        headers.push(("authorization".to_owned(), value));
    }
    if input.form_content_type {
        headers.push((
            "content-type".to_owned(),
            "application/x-www-form-urlencoded".to_owned(),
        ));
    }
    let body = match &input.body {
        Body::Form(pairs) => {
            let mut form = form_urlencoded::Serializer::new(String::new());
            for (name, value) in pairs {
                let name = match name {
                    Name::Known(index) => NAMES[usize::from(*index) % NAMES.len()],
                    Name::Other(name) => name,
                };
                let value = match value {
                    Value::Phone => PHONE,
                    Value::Code => "123456",
                    Value::VerificationSid => harness.verification.as_str(),
                    Value::Channel => "sms",
                    Value::Text(text) => text,
                };
                form.append_pair(name, value);
            }
            form.finish().into_bytes()
        }
        Body::Raw(bytes) => bytes.to_vec(),
    };
    let method = input.method.as_str();
    let answer = harness.send(method, &target, &headers, &body);
    check_answer(&answer, &format!("{method} {target}"));
});
