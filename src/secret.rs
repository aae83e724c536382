//! The one secret type: keys, peppers, passwords and vendor credentials from config. A leaf
//! module: it depends on nothing else in the crate.

use std::fmt;

/// Bytes that never appear in `Debug` output, so settings can be logged whole.
///
/// In config, a provider credential written `env:NAME` is read from the variable `NAME` of the
/// environment the settings are loaded with (see `config::Settings::load_from`), so committed
/// files never hold the secret itself.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }

    /// The secret itself: call it only where it is sent or used as a key.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The secret as text (credentials sent to vendors are text; invalid UTF-8 is replaced).
    pub fn expose_str(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.0)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A key written as hex or base64 (standard, or URL-safe without padding), at least
    /// `min_len` bytes; `None` when it is neither or too short.
    pub fn decode_key(text: &str, min_len: usize) -> Option<Self> {
        data_encoding::HEXLOWER_PERMISSIVE
            .decode(text.as_bytes())
            .ok()
            .or_else(|| data_encoding::BASE64.decode(text.as_bytes()).ok())
            .or_else(|| data_encoding::BASE64URL_NOPAD.decode(text.as_bytes()).ok())
            .filter(|bytes| bytes.len() >= min_len)
            .map(Self)
    }
}

impl From<String> for Secret {
    fn from(text: String) -> Self {
        Self(text.into_bytes())
    }
}

impl From<&str> for Secret {
    fn from(text: &str) -> Self {
        Self::new(text)
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::from)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() {
            "[unset]"
        } else {
            "[redacted]"
        })
    }
}
