//! The wire format of the list endpoints (cursor-paged: `items`, `next_cursor` null on the last
//! page) and of key revocation: what the handlers write and what `openapi.rs` documents.

use serde::Serialize;
use utoipa::ToSchema;

use super::wire::KeyRole;
use crate::account::ApiKeyRecord;
use crate::clock::rfc3339;

/// One of the account's API keys: never the key itself (only its digest is stored).
#[derive(Serialize, ToSchema)]
#[schema(as = KeyListed)]
pub struct KeyListedBody<'a> {
    /// `KY…`: the key's public id.
    pub id: &'a str,
    #[schema(value_type = KeyRole)]
    pub role: &'static str,
    pub created_at: String,
    /// When the key was last used: not recorded yet, always null (a write per request would
    /// cost the hot path a store round trip).
    #[schema(value_type = Option<String>)]
    pub last_used_at: Option<String>,
}

impl<'a> From<&'a ApiKeyRecord> for KeyListedBody<'a> {
    fn from(key: &'a ApiKeyRecord) -> Self {
        Self {
            id: &key.id,
            role: key.role.as_str(),
            created_at: rfc3339(key.created_ms),
            last_used_at: None,
        }
    }
}

#[derive(Serialize, ToSchema)]
#[schema(as = KeyPage)]
pub struct KeyPageBody<'a> {
    /// In the order of their ids.
    pub items: Vec<KeyListedBody<'a>>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = KeyRevoked)]
pub struct KeyRevokedBody<'a> {
    pub id: &'a str,
    #[schema(value_type = KeyRole)]
    pub role: &'static str,
    pub revoked: bool,
}
