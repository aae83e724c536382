//! Cursor paging's rules, one copy for the API's list endpoints (`http/paging.rs`, which answers
//! a broken query with a problem) and the console's Users page (`console/users.rs`, which answers
//! with a page): `limit` (1 to `MAX_LIMIT`, default `DEFAULT_LIMIT`), `cursor` (the
//! `next_cursor` of an earlier page, opaque to clients), and the page's end. A cursor of either
//! pages the other the same.
//!
//! A cursor is the last item's sort key (its id), base64url-encoded behind a version tag; the
//! store lists strictly after it, in the same stable order, so a page never repeats an item and
//! items added or removed between pages do not shift the others.

use data_encoding::BASE64URL_NOPAD;

pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 200;
/// The tag before the sort key, so that a cursor of a future form is told apart.
const CURSOR_TAG: &str = "c1:";
/// The longest cursor read (a sort key is an id: far shorter).
const MAX_CURSOR: usize = 512;

/// One page asked for: how many, and the sort key to start after.
#[derive(Debug)]
pub struct PageRequest {
    pub limit: usize,
    pub after: Option<String>,
}

/// What is wrong with a page's query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageQueryError {
    /// `limit` is not a number from 1 to `MAX_LIMIT`.
    Limit,
    /// `cursor` is not a `next_cursor` of this list (a tampered cursor never reaches a store).
    Cursor,
    /// A parameter paging does not know, by name.
    Unknown(String),
}

impl PageRequest {
    /// `limit` and `cursor` from a query's decoded pairs; `valid_key` says whether a decoded
    /// sort key can be one of this list's.
    pub fn parse<N: AsRef<str>, V: AsRef<str>>(
        pairs: impl IntoIterator<Item = (N, V)>,
        valid_key: impl Fn(&str) -> bool,
    ) -> Result<Self, PageQueryError> {
        let mut request = PageRequest {
            limit: DEFAULT_LIMIT,
            after: None,
        };
        for (name, value) in pairs {
            let value = value.as_ref();
            match name.as_ref() {
                "limit" => {
                    request.limit = value
                        .parse::<usize>()
                        .ok()
                        .filter(|limit| (1..=MAX_LIMIT).contains(limit))
                        .ok_or(PageQueryError::Limit)?;
                }
                "cursor" => {
                    let key = decode_cursor(value)
                        .filter(|key| valid_key(key))
                        .ok_or(PageQueryError::Cursor)?;
                    request.after = Some(key);
                }
                other => return Err(PageQueryError::Unknown(other.to_owned())),
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
    if cursor.is_empty() || cursor.len() > MAX_CURSOR {
        return None;
    }
    let bytes = BASE64URL_NOPAD.decode(cursor.as_bytes()).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    text.strip_prefix(CURSOR_TAG).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(query: &[(&str, &str)]) -> Result<PageRequest, PageQueryError> {
        PageRequest::parse(query.iter().copied(), |_| true)
    }

    #[test]
    fn a_cursor_round_trips_and_a_tampered_one_is_refused() {
        let cursor = encode_cursor("KY0a1b");
        assert_eq!(decode_cursor(&cursor).as_deref(), Some("KY0a1b"));
        assert_eq!(decode_cursor("KY0a1b"), None);
        assert_eq!(decode_cursor(&BASE64URL_NOPAD.encode(b"c2:KY0a1b")), None);
        assert_eq!(decode_cursor(""), None);
        let refused = PageRequest::parse([("cursor", cursor.as_str())], |key| key != "KY0a1b");
        assert_eq!(refused.unwrap_err(), PageQueryError::Cursor);
    }

    #[test]
    fn a_page_has_a_next_cursor_only_when_more_items_follow() {
        let request = parse(&[("limit", "2")]).unwrap();
        assert_eq!(request.fetch(), 3);
        let (page, next) = request.finish(vec!["a", "b", "c"], |item| item);
        assert_eq!(page, ["a", "b"]);
        assert_eq!(decode_cursor(&next.unwrap()).as_deref(), Some("b"));
        let (page, next) = request.finish(vec!["a", "b"], |item| item);
        assert_eq!((page.len(), next), (2, None));
        assert_eq!(parse(&[]).unwrap().limit, DEFAULT_LIMIT);
        for (bad, error) in [
            (("limit", "0"), PageQueryError::Limit),
            (("limit", "201"), PageQueryError::Limit),
            (("limit", "x"), PageQueryError::Limit),
            (("cursor", "zz"), PageQueryError::Cursor),
            (("after", "1"), PageQueryError::Unknown("after".to_owned())),
        ] {
            assert_eq!(parse(&[bad]).unwrap_err(), error, "{bad:?}");
        }
    }
}
