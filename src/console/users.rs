//! The console's users page (a later step of issue 18 fills it in; the router's arm for it is in
//! `mod.rs`). Until then it answers a placeholder for signed-in people.

use hyper::body::Incoming;
use hyper::Request;

use super::layout::{Page, PageError};
use super::session::require;
use crate::App;

pub async fn page(app: &App, request: Request<Incoming>, _tail: &str) -> Page {
    require(app, &request).await?;
    Err(PageError::not_found())
}
