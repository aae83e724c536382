//! Cursor paging of the list endpoints: `limit` (1 to `MAX_LIMIT`, default `DEFAULT_LIMIT`) and
//! `cursor` (the `next_cursor` of an earlier page, opaque to clients), and the page's end.
//!
//! A cursor is the last item's sort key (its id), base64url-encoded behind a version tag; the
//! store lists strictly after it, in the same stable order, so a page never repeats an item and
//! items added or removed between pages do not shift the others.

use data_encoding::BASE64URL_NOPAD;

use super::body::query_pairs;
use super::error::ApiError;

pub(super) const DEFAULT_LIMIT: usize = 50;
pub(super) const MAX_LIMIT: usize = 200;
/// The tag before the sort key, so that a cursor of a future form is told apart.
const CURSOR_TAG: &str = "c1:";

/// One page asked for: how many, and the sort key to start after.
#[derive(Debug)]
pub(super) struct PageRequest {
    pub limit: usize,
    pub after: Option<String>,
}

impl PageRequest {
    /// `limit` and `cursor` from the query; `valid_key` says whether a decoded sort key can be
    /// one of this list's (a tampered cursor is a 400, never a store read).
    pub fn parse(query: Option<&str>, valid_key: impl Fn(&str) -> bool) -> Result<Self, ApiError> {
        let mut request = PageRequest {
            limit: DEFAULT_LIMIT,
            after: None,
        };
        for (name, value) in query_pairs(query)? {
            match name.as_str() {
                "limit" => {
                    request.limit = value
                        .parse::<usize>()
                        .ok()
                        .filter(|limit| (1..=MAX_LIMIT).contains(limit))
                        .ok_or_else(|| {
                            ApiError::invalid(format!("limit must be between 1 and {MAX_LIMIT}"))
                        })?;
                }
                "cursor" => {
                    let key = decode_cursor(&value)
                        .filter(|key| valid_key(key))
                        .ok_or_else(|| {
                            ApiError::invalid("cursor must be a next_cursor from an earlier page")
                        })?;
                    request.after = Some(key);
                }
                other => {
                    return Err(ApiError::invalid(format!(
                        "unknown query parameter '{other}'"
                    )))
                }
            }
        }
        Ok(request)
    }

    /// How many items to ask the store for: one more than the page, to know whether it ends.
    pub fn fetch(&self) -> usize {
        self.limit + 1
    }

    /// Cuts what the store answered (at most `fetch()` items) to the page, and the cursor of
    /// the next page when there is one.
    pub fn finish<T>(
        &self,
        mut items: Vec<T>,
        key: impl Fn(&T) -> &str,
    ) -> (Vec<T>, Option<String>) {
        if items.len() <= self.limit {
            return (items, None);
        }
        items.truncate(self.limit);
        let next = items.last().map(|last| encode_cursor(key(last)));
        (items, next)
    }
}

fn encode_cursor(key: &str) -> String {
    BASE64URL_NOPAD.encode(format!("{CURSOR_TAG}{key}").as_bytes())
}

fn decode_cursor(cursor: &str) -> Option<String> {
    if cursor.is_empty() || cursor.len() > 512 {
        return None;
    }
    let bytes = BASE64URL_NOPAD.decode(cursor.as_bytes()).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    text.strip_prefix(CURSOR_TAG).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_and_a_tampered_one_is_refused() {
        let cursor = encode_cursor("KY0a1b");
        assert_eq!(decode_cursor(&cursor).as_deref(), Some("KY0a1b"));
        assert_eq!(decode_cursor("KY0a1b"), None);
        assert_eq!(decode_cursor(&BASE64URL_NOPAD.encode(b"c2:KY0a1b")), None);
        assert_eq!(decode_cursor(""), None);
    }

    #[test]
    fn a_page_has_a_next_cursor_only_when_more_items_follow() {
        let request = PageRequest::parse(Some("limit=2"), |_| true).unwrap();
        assert_eq!(request.fetch(), 3);
        let (page, next) = request.finish(vec!["a", "b", "c"], |item| item);
        assert_eq!(page, ["a", "b"]);
        assert_eq!(decode_cursor(&next.unwrap()).as_deref(), Some("b"));
        let (page, next) = request.finish(vec!["a", "b"], |item| item);
        assert_eq!((page.len(), next), (2, None));
        for bad in ["limit=0", "limit=201", "limit=x", "cursor=zz", "after=1"] {
            assert!(PageRequest::parse(Some(bad), |_| true).is_err(), "{bad}");
        }
    }
}
