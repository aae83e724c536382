//! What every console answer shares: the security headers, HTML and JSON responses, the error
//! page, and the navigation (`Layout`) each template extends.

use askama::Template;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{
    HeaderName, HeaderValue, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION,
    REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use hyper::{Response, StatusCode};
use serde::Serialize;

/// What a page handler answers.
pub type Page = Result<Response<Full<Bytes>>, PageError>;

/// No inline script or style, nothing from elsewhere, never framed, forms post only here.
pub const CSP: &str = "default-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

/// Puts the console's security headers on an answer (every one, errors and assets too).
pub fn secure(response: &mut Response<Full<Bytes>>) {
    let headers = response.headers_mut();
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
}

fn response(status: StatusCode, media: &'static str, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(media));
    response
}

/// A rendered template as a 200 page.
pub fn html(template: &impl Template) -> Page {
    html_status(StatusCode::OK, template)
}

pub fn html_status(status: StatusCode, template: &impl Template) -> Page {
    let body = template.render().map_err(|error| {
        tracing::error!(%error, "console template failed to render");
        PageError::internal()
    })?;
    Ok(response(
        status,
        "text/html; charset=utf-8",
        body.into_bytes(),
    ))
}

pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Page {
    let body = serde_json::to_vec(value).map_err(|_| PageError::internal())?;
    Ok(response(status, "application/json", body))
}

/// 303 See Other: after a form post, and to the sign-in page.
pub fn redirect(location: &str) -> Page {
    let mut answer = response(
        StatusCode::SEE_OTHER,
        "text/plain; charset=utf-8",
        Vec::new(),
    );
    answer.headers_mut().insert(
        LOCATION,
        HeaderValue::from_str(location).map_err(|_| PageError::internal())?,
    );
    Ok(answer)
}

pub fn asset(media: &'static str, body: &'static str) -> Response<Full<Bytes>> {
    response(StatusCode::OK, media, body.as_bytes().to_vec())
}

/// The navigation every signed-in page shows, and the CSRF token its forms carry.
#[derive(Debug, Clone)]
pub struct Layout {
    pub title: String,
    /// The path of the page shown, to mark it in the navigation.
    pub current: &'static str,
    pub signed_in: bool,
    /// `ada` or `operator`.
    pub who: String,
    /// `owner`, `admin`, `member` or `operator`.
    pub role: String,
    pub account: String,
    pub csrf: String,
    /// Owner or admin: the Security and Users pages.
    pub manages: bool,
    pub operator: bool,
}

impl Layout {
    /// The layout of a page shown before signing in.
    pub fn public(title: &str) -> Self {
        Self {
            title: title.to_owned(),
            current: "",
            signed_in: false,
            who: String::new(),
            role: String::new(),
            account: String::new(),
            csrf: String::new(),
            manages: false,
            operator: false,
        }
    }
}

#[derive(Template)]
#[template(path = "console/error.html")]
struct ErrorPage<'a> {
    layout: Layout,
    message: &'a str,
    users: &'a [String],
}

/// A page that could not be shown: its status and the sentence to show (a rule's refusal says
/// its own). JSON callers (the ceremonies' modules) get `{error, reason}` instead.
#[derive(Debug)]
pub struct PageError {
    pub status: StatusCode,
    pub message: String,
    pub reason: Option<&'static str>,
    pub users: Vec<String>,
    pub json: bool,
    pub location: Option<String>,
    pub retry_after: Option<u64>,
}

impl PageError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            reason: None,
            users: Vec::new(),
            json: false,
            location: None,
            retry_after: None,
        }
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "There is no such page.")
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Something went wrong; nothing was changed.",
        )
    }

    /// 429: this address posted too much; `Retry-After` says when to try again.
    pub fn too_many(retry_after_secs: u64) -> Self {
        let mut error = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many requests from your address; wait a moment and try again.",
        );
        error.retry_after = Some(retry_after_secs);
        error
    }

    pub fn forbidden(message: &str) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }

    /// Not signed in: to the sign-in page.
    pub fn sign_in() -> Self {
        let mut error = Self::new(StatusCode::SEE_OTHER, "Please sign in.");
        error.location = Some("/console/sign-in".to_owned());
        error
    }

    /// The same error, answered as JSON.
    pub fn as_json(mut self) -> Self {
        self.json = true;
        self
    }

    pub fn into_response(self) -> Response<Full<Bytes>> {
        if let Some(location) = &self.location {
            if let Ok(answer) = redirect(location) {
                return answer;
            }
        }
        let answer = if self.json {
            json(
                self.status,
                &serde_json::json!({"error": self.message, "reason": self.reason, "users": self.users}),
            )
        } else {
            let mut layout = Layout::public("Error");
            layout.title = match self.status.as_u16() {
                403 => "Not allowed",
                404 => "Not found",
                422 => "Refused",
                _ => "Error",
            }
            .to_owned();
            html_status(
                self.status,
                &ErrorPage {
                    layout,
                    message: &self.message,
                    users: &self.users,
                },
            )
        };
        let mut answer = answer.unwrap_or_else(|_| {
            response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain; charset=utf-8",
                b"internal error".to_vec(),
            )
        });
        if let Some(seconds) = self.retry_after {
            answer
                .headers_mut()
                .insert(hyper::header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        answer
    }
}
