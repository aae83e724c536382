//! The console's embedded files, served under `/console/assets/`: one stylesheet and the ES
//! modules of the pages where the browser must act (passkeys, security keys, copying).

use super::layout::{asset, Page, PageError};

pub const CSS: &str = include_str!("assets/console.css");
pub const SIGN_IN_JS: &str = include_str!("assets/sign-in.js");
pub const INVITATION_JS: &str = include_str!("assets/invitation.js");
pub const ME_JS: &str = include_str!("assets/me.js");
pub const POST_JS: &str = include_str!("assets/post.js");

/// One asset by name; nothing else is served from here.
pub fn serve(name: &str) -> Page {
    const JS: &str = "text/javascript; charset=utf-8";
    Ok(match name {
        "console.css" => asset("text/css; charset=utf-8", CSS),
        "sign-in.js" => asset(JS, SIGN_IN_JS),
        "invitation.js" => asset(JS, INVITATION_JS),
        "me.js" => asset(JS, ME_JS),
        "post.js" => asset(JS, POST_JS),
        _ => return Err(PageError::not_found()),
    })
}
