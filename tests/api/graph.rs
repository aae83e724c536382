//! The Graph API facade (issue 14) as Meta's `facebook-business` SDK uses it: every token form
//! (Bearer header, `access_token` query parameter, `access_token` form field), JSON and form
//! bodies, Graph's error objects and codes, `/register` with `messaging_product`, the number's
//! fields, and the supported versions.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{reply, Backend, Reply};
use crate::on_every_store;
use crate::pin::{Org, NEW_PIN, PIN, WRONG_PIN};

on_every_store!(
    every_graph_token_form_and_body_form_sets_the_pin_and_answers_success_true,
    graph_errors_are_graph_error_objects_with_graph_codes,
    registration_takes_messaging_product_and_the_pin_on_the_graph_path,
);

async fn send(
    org: &Org,
    method: Method,
    path: &str,
    build: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
) -> (Reply, String) {
    let response = build(
        org.app
            .http
            .request(method, format!("{}{path}", org.app.address)),
    )
    .send()
    .await
    .unwrap();
    let reply = reply(response).await;
    let text = reply.body.to_string();
    (reply, text)
}

/// A form body (or query string) from pairs.
fn enc(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

trait Form {
    fn form_body(self, pairs: &[(&str, &str)]) -> Self;
}

impl Form for reqwest::RequestBuilder {
    fn form_body(self, pairs: &[(&str, &str)]) -> Self {
        self.header("content-type", "application/x-www-form-urlencoded")
            .body(enc(pairs))
    }
}

fn graph_error(reply: &Reply, status: u16, code: u64) -> &Value {
    assert_eq!(reply.status, status, "{}", reply.body);
    let error = &reply.body["error"];
    assert_eq!(error["code"], code, "{}", reply.body);
    assert!(error["message"].is_string(), "{}", reply.body);
    assert!(error["type"].is_string(), "{}", reply.body);
    assert!(error["fbtrace_id"].is_string(), "{}", reply.body);
    error
}

async fn every_graph_token_form_and_body_form_sets_the_pin_and_answers_success_true(
    backend: Backend,
) {
    let org = Org::new(backend).await;
    let id = org.add_number("owner").await;
    let path = format!("/v24.0/{id}");
    let key = org.partner.clone();
    type Build = Box<dyn FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder>;
    let token = format!("?{}", enc(&[("access_token", &key)]));
    let bearer = |body: Value| -> Build {
        let key = key.clone();
        Box::new(move |r| r.bearer_auth(key).json(&body))
    };
    let forms: Vec<(String, Build)> = vec![
        (String::new(), bearer(json!({"pin": NEW_PIN}))),
        (String::new(), {
            let key = key.clone();
            Box::new(move |r| r.bearer_auth(key).form_body(&[("pin", PIN)]))
        }),
        // What the SDK sends: the token in the query, the PIN as a form field.
        (
            token.clone(),
            Box::new(|r| r.form_body(&[("pin", NEW_PIN)])),
        ),
        (String::new(), {
            let key = key.clone();
            Box::new(move |r| r.form_body(&[("access_token", key.as_str()), ("pin", PIN)]))
        }),
        (
            format!("?{}", enc(&[("access_token", &key), ("pin", NEW_PIN)])),
            Box::new(|r| r),
        ),
    ];
    for (query, build) in forms {
        let url = format!("{}{path}{query}", org.app.address);
        let response = build(org.app.http.post(url)).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "application/json");
        assert_eq!(response.text().await.unwrap(), r#"{"success":true}"#);
    }
    // The last form set NEW_PIN: registration proves it.
    let (registered, text) = send(&org, Method::POST, &format!("{path}/register"), |r| {
        r.bearer_auth(&key)
            .json(&json!({"messaging_product": "whatsapp", "pin": NEW_PIN}))
    })
    .await;
    assert_eq!(registered.status, 200, "{text}");
    assert_eq!(registered.body, json!({"success": true}));
    // GET: the number's fields.
    let (got, text) = send(&org, Method::GET, &format!("{path}{token}"), |r| r).await;
    assert_eq!(got.status, 200, "{text}");
    assert_eq!(got.body["id"], id.as_str());
    assert_eq!(got.body["display_phone_number"], "+4915112983471");
    org.app.stop().await;
}

async fn graph_errors_are_graph_error_objects_with_graph_codes(backend: Backend) {
    let org = Org::new(backend).await;
    let id = org.add_number("owner").await;
    let path = format!("/v24.0/{id}");
    // No token, a wrong token: 190.
    let (none, _) = send(&org, Method::POST, &path, |r| {
        r.form_body(&[("pin", NEW_PIN)])
    })
    .await;
    graph_error(&none, 401, 190);
    let wrong_token = format!("{path}?access_token=not-a-key");
    let (wrong, _) = send(&org, Method::POST, &wrong_token, |r| {
        r.form_body(&[("pin", NEW_PIN)])
    })
    .await;
    graph_error(&wrong, 401, 190);
    // A malformed PIN, a missing one: 100, and nothing changed.
    for body in [vec![("pin", "64738")], vec![("pin", "64738a")], vec![]] {
        let (bad, _) = send(&org, Method::POST, &path, |r| {
            r.bearer_auth(&org.owner).form_body(&body)
        })
        .await;
        graph_error(&bad, 400, 100);
    }
    // An unsupported version: Graph's unknown-path error, listing the supported ones.
    let (old, _) = send(&org, Method::POST, &format!("/v99.0/{id}"), |r| {
        r.bearer_auth(&org.owner).form_body(&[("pin", NEW_PIN)])
    })
    .await;
    let error = graph_error(&old, 400, 2500);
    assert!(error["message"].as_str().unwrap().contains("v24.0"));
    let (registered, text) = send(&org, Method::POST, &format!("{path}/register"), |r| {
        r.bearer_auth(&org.owner)
            .json(&json!({"messaging_product": "whatsapp", "pin": PIN}))
    })
    .await;
    assert_eq!(registered.status, 200, "{text}");
    org.app.stop().await;
}

async fn registration_takes_messaging_product_and_the_pin_on_the_graph_path(backend: Backend) {
    let org = Org::with(backend, |s| s.pin.settings.limits.free_attempts = 10).await;
    let id = org.add_number("owner").await;
    let register = format!("/v24.0/{id}/register");
    let (missing, _) = send(&org, Method::POST, &register, |r| {
        r.bearer_auth(&org.partner).json(&json!({"pin": PIN}))
    })
    .await;
    graph_error(&missing, 400, 100);
    // A wrong PIN: 133005; ten in a row: 133016 (Meta's registration limit) from then on.
    for _ in 0..10 {
        let (wrong, _) = send(&org, Method::POST, &register, |r| {
            r.bearer_auth(&org.partner)
                .form_body(&[("messaging_product", "whatsapp"), ("pin", WRONG_PIN)])
        })
        .await;
        graph_error(&wrong, 400, 133005);
    }
    let (locked, _) = send(&org, Method::POST, &register, |r| {
        r.bearer_auth(&org.partner)
            .form_body(&[("messaging_product", "whatsapp"), ("pin", PIN)])
    })
    .await;
    graph_error(&locked, 400, 133016);
    // The v1 register call takes `messaging_product` too, as Graph clients send it.
    let v1 = org
        .call(
            Method::POST,
            &format!("/v1/phone-numbers/{id}/register"),
            "owner",
            Some(json!({"messaging_product": "whatsapp", "pin": PIN})),
        )
        .await;
    assert_ne!(v1.status, 400, "{}", v1.body);
    org.app.stop().await;
}
