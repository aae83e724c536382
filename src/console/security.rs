//! The console's security page (filled in after the skeleton).

use hyper::body::Incoming;
use hyper::Request;

use super::layout::{Page, PageError};
use super::session::require;
use crate::App;

pub async fn page(app: &App, request: Request<Incoming>) -> Page {
    require(app, &request).await?;
    Err(PageError::not_found())
}
