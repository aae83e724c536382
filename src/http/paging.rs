//! Cursor paging of the list endpoints: the rules are `crate::paging` (shared with the console's
//! Users page); a broken query answers 400 with what is wrong.

use super::body::query_pairs;
use super::error::ApiError;
use crate::paging::{PageQueryError, PageRequest, MAX_LIMIT};

/// `limit` and `cursor` from the query; `valid_key` says whether a decoded sort key can be one
/// of this list's (a tampered cursor is a 400, never a store read).
pub(super) fn page_request(
    query: Option<&str>,
    valid_key: impl Fn(&str) -> bool,
) -> Result<PageRequest, ApiError> {
    PageRequest::parse(query_pairs(query)?, valid_key).map_err(|error| match error {
        PageQueryError::Limit => {
            ApiError::invalid(format!("limit must be between 1 and {MAX_LIMIT}"))
        }
        PageQueryError::Cursor => {
            ApiError::invalid("cursor must be a next_cursor from an earlier page")
        }
        PageQueryError::Unknown(name) => {
            ApiError::invalid(format!("unknown query parameter '{name}'"))
        }
    })
}
