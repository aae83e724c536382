//! Script loading, the one reply convention and the one mapping of Redis failures to
//! `StoreError`, shared by every adapter.
//!
//! Every script is a `.lua` file under `src/redis/scripts/`, prefixed with the helpers of
//! `prelude.lua` it uses (written once there), and answers one string: an outcome word, then its fields, joined by
//! single spaces (see the prelude).

use std::str::FromStr;

use redis::{Cmd, FromRedisValue, RedisError, RedisWrite, Script, ScriptInvocation, ToRedisArgs};

use crate::backoff::AttemptLimits;
use crate::redis::connection::Connection;
use crate::redis::KeySpace;
use crate::store::StoreError;

const PRELUDE: &str = include_str!("scripts/prelude.lua");

/// Loads `src/redis/scripts/<name>.lua` at compile time, with the prelude's helpers it uses.
macro_rules! lua {
    ($name:literal) => {
        $crate::redis::script::load(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src/redis/scripts/",
            $name,
            ".lua"
        )))
    };
}
pub(crate) use lua;

/// One adapter's scripts as a struct whose fields name the files: `scripts! { PinScripts =
/// "pin_": create, reserve }` loads `pin_create.lua` into `create` and `pin_reserve.lua` into
/// `reserve`, so the names are listed once.
macro_rules! scripts {
    ($name:ident = $prefix:literal: $($script:ident),+ $(,)?) => {
        /// This adapter's scripts (`src/redis/scripts/`), each loaded once with its prelude.
        struct $name {
            $($script: ::redis::Script,)+
        }

        impl $name {
            fn load() -> Self {
                Self {
                    $($script: $crate::redis::script::load(include_str!(concat!(
                        env!("CARGO_MANIFEST_DIR"),
                        "/src/redis/scripts/",
                        $prefix,
                        stringify!($script),
                        ".lua"
                    ))),)+
                }
            }
        }
    };
}
pub(crate) use scripts;

/// A script: the prelude's helpers it uses, then its body.
pub(crate) fn load(body: &str) -> Script {
    Script::new(&with_prelude(body))
}

/// The body after the blocks of the prelude (paragraphs, split by blank lines) that define a
/// name it uses, directly or through another such block. Redis builds every helper of a script
/// on every call: the whole prelude cost about half a microsecond per call (redis-benchmark),
/// a few per cent of a check's time in Redis, for helpers the check never calls.
fn with_prelude(body: &str) -> String {
    let blocks: Vec<(&str, Vec<&str>)> = PRELUDE
        .split("\n\n")
        .map(|block| (block, defined_names(block)))
        .collect();
    let mut used = vec![false; blocks.len()];
    let mut searched = body.to_owned();
    let mut grew = true;
    while grew {
        grew = false;
        for (index, (block, names)) in blocks.iter().enumerate() {
            if !used[index] && names.iter().any(|name| mentions(&searched, name)) {
                used[index] = true;
                searched.push_str(block);
                grew = true;
            }
        }
    }
    let mut script: String = blocks
        .iter()
        .zip(used)
        .filter(|(_, used)| *used)
        .map(|((block, _), _)| format!("{block}\n\n"))
        .collect();
    script.push_str(body);
    script
}

/// The names a prelude block defines: `local function <name>(` and `local <NAME> =`.
fn defined_names(block: &str) -> Vec<&str> {
    block
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("local ")?;
            let rest = rest.strip_prefix("function ").unwrap_or(rest);
            let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))?;
            Some(&rest[..end])
        })
        .filter(|name| !name.is_empty())
        .collect()
}

/// Whether `text` holds `name` as a whole word.
fn mentions(text: &str, name: &str) -> bool {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices(name).any(|(at, _)| {
        let before = text[..at].chars().next_back().is_none_or(|c| !word(c));
        let after = text[at + name.len()..]
            .chars()
            .next()
            .is_none_or(|c| !word(c));
        before && after
    })
}

/// A reply's outcome word and fields.
pub(crate) fn words(reply: &str) -> Vec<&str> {
    reply.split(' ').collect()
}

/// A script's reply read as its outcome word and fields; `what` names the step in the error of a
/// reply of a shape the script never gives.
pub(crate) struct Reply {
    text: String,
    what: &'static str,
}

impl Reply {
    pub(crate) fn new(text: String, what: &'static str) -> Self {
        Self { text, what }
    }

    /// The outcome word.
    pub(crate) fn outcome(&self) -> &str {
        self.text.split(' ').next().unwrap_or_default()
    }

    /// The field at `index` (the outcome word is 0).
    pub(crate) fn word(&self, index: usize) -> Result<&str, StoreError> {
        self.text
            .split(' ')
            .nth(index)
            .ok_or_else(|| self.corrupt())
    }

    /// The field at `index`, parsed (a number, an id).
    pub(crate) fn parse<T: FromStr>(&self, index: usize) -> Result<T, StoreError> {
        self.word(index)?.parse().map_err(|_| self.corrupt())
    }

    /// Whether the field at `index` is the flag `1`.
    pub(crate) fn flag(&self, index: usize) -> Result<bool, StoreError> {
        Ok(self.word(index)? == "1")
    }

    /// The fields from `index` on.
    pub(crate) fn rest(&self, index: usize) -> Vec<&str> {
        self.text.split(' ').skip(index).collect()
    }

    /// Everything after the outcome word, read whole (a last field that may hold spaces).
    pub(crate) fn tail(&self) -> Result<&str, StoreError> {
        let tail = self.text.split_once(' ').map(|(_, tail)| tail);
        tail.ok_or_else(|| self.corrupt())
    }

    /// The error of a reply that does not have the shape its outcome promises.
    pub(crate) fn corrupt(&self) -> StoreError {
        StoreError::Corrupt(format!("{} reply", self.what))
    }

    /// The error of an outcome word the script never answers.
    pub(crate) fn unknown(&self) -> StoreError {
        StoreError::Corrupt(format!("unknown {} reply: {}", self.what, self.outcome()))
    }
}

/// What every adapter on the gateway's connection holds, and its calls: failures reported as
/// `Failure::Unavailable` (the adapters whose callers answer every store failure alike).
#[derive(Clone)]
pub(crate) struct Adapter {
    pub(crate) connection: Connection,
    pub(crate) keys: KeySpace,
}

impl Adapter {
    pub(crate) fn new(connection: Connection, prefix: &str) -> Self {
        Self {
            connection,
            keys: KeySpace::new(prefix),
        }
    }

    /// Runs a script: its reply, `what` naming the step in errors.
    pub(crate) async fn call(
        &self,
        invocation: &ScriptInvocation<'_>,
        what: &'static str,
    ) -> Result<Reply, StoreError> {
        let text = run(&self.connection, invocation, Failure::Unavailable).await?;
        Ok(Reply::new(text, what))
    }

    /// Runs one command.
    pub(crate) async fn query<T: FromRedisValue>(&self, command: &Cmd) -> Result<T, StoreError> {
        query(&self.connection, command, Failure::Unavailable).await
    }
}

/// The flag arguments scripts take: `1` or `0`.
pub(crate) fn flag(on: bool) -> &'static str {
    if on {
        "1"
    } else {
        "0"
    }
}

/// The five arguments of `limits_from` in `scripts/prelude.lua`: free attempts, attempts per
/// wait, first wait, max wait, lock after (0: never).
impl ToRedisArgs for AttemptLimits {
    fn write_redis_args<W: ?Sized + RedisWrite>(&self, out: &mut W) {
        let lock_after = self.lock_after.unwrap_or(0);
        let (free, per) = (self.free_attempts, self.attempts_per_wait);
        (free, per, self.first_wait_ms, self.max_wait_ms, lock_after).write_redis_args(out);
    }
}

/// How a failed call is reported to the caller.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Failure {
    /// Every failure as `Unavailable`: a read changed nothing whenever it failed; and the
    /// adapters whose callers answer every store failure alike report their writes this way.
    Unavailable,
    /// Sorted by what it may have done (`store_error`). The cluster client retries a command
    /// after some failures (a timeout on one node, a moved slot), so there the last failure
    /// cannot prove that no earlier try ran: every failed write on a cluster is an unknown
    /// outcome.
    Sorted { cluster: bool },
}

impl Failure {
    pub(crate) fn of(self, error: RedisError) -> StoreError {
        match self {
            Failure::Unavailable => unavailable(error),
            Failure::Sorted { cluster } => match store_error(error) {
                StoreError::Unavailable(cause) if cluster => StoreError::OutcomeUnknown(cause),
                sorted => sorted,
            },
        }
    }
}

/// Runs a script; its one-string reply (see the module's doc).
pub(crate) async fn run<T: FromRedisValue>(
    connection: &Connection,
    invocation: &ScriptInvocation<'_>,
    failure: Failure,
) -> Result<T, StoreError> {
    let mut connection = connection.clone();
    invocation
        .invoke_async(&mut connection)
        .await
        .map_err(|error| failure.of(error))
}

/// Runs one command.
pub(crate) async fn query<T: FromRedisValue>(
    connection: &Connection,
    command: &Cmd,
    failure: Failure,
) -> Result<T, StoreError> {
    let mut connection = connection.clone();
    command
        .query_async(&mut connection)
        .await
        .map_err(|error| failure.of(error))
}

/// A failure that changed nothing (a read, a connection never made).
pub(crate) fn unavailable(error: RedisError) -> StoreError {
    StoreError::Unavailable(error.to_string())
}

/// An answer of a shape no script or command gives.
pub(crate) fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_owned())
}

/// Sorts a failed command by what it may have done. Only a failure that certainly came before
/// the command reached Redis (no connection could be made; Redis refused it unread: a moved
/// slot, a replica, loading, a missing script) is `Unavailable`, "nothing was changed". A
/// response timeout or a connection lost while the command was on it may follow its execution:
/// `OutcomeUnknown`. A connection that dropped just before the send is counted with the latter,
/// because the client reports both the same way (a broken pipe).
pub(crate) fn store_error(error: RedisError) -> StoreError {
    use redis::{ErrorKind, ServerErrorKind};
    let never_sent = error.is_connection_refusal()
        || match error.kind() {
            ErrorKind::ClusterConnectionNotFound
            | ErrorKind::InvalidClientConfig
            | ErrorKind::AuthenticationFailed => true,
            ErrorKind::Server(kind) => matches!(
                kind,
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::NoScript
                    | ServerErrorKind::Moved
                    | ServerErrorKind::Ask
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::ClusterDown
                    | ServerErrorKind::CrossSlot
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::ReadOnly
                    | ServerErrorKind::NoPerm
            ),
            _ => false,
        };
    if never_sent {
        StoreError::Unavailable(error.to_string())
    } else {
        StoreError::OutcomeUnknown(error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_script_carries_the_prelude_helpers_it_uses_and_theirs() {
        let script =
            with_prelude("return words('ok', tostring(forget_devices(KEYS[1], KEYS[2], ARGV[1])))");
        assert!(script.contains("local function words("));
        assert!(script.contains("local function forget_devices("));
        // forget_devices calls digest_of.
        assert!(script.contains("local function digest_of("));
        assert!(!script.contains("local function pending_room("));
        assert!(!script.contains("local function int("));
        let check = with_prelude(include_str!("scripts/verify_check.lua"));
        assert!(check.contains("local function answer("));
        assert!(check.contains("local function pointer_of("));
        assert!(!check.contains("local function audit("));
    }

    #[test]
    fn only_a_failure_before_the_send_says_nothing_was_changed() {
        use std::io::{Error, ErrorKind};
        let sorted = |kind: ErrorKind| store_error(RedisError::from(Error::from(kind)));
        assert!(matches!(
            sorted(ErrorKind::ConnectionRefused),
            StoreError::Unavailable(_)
        ));
        for maybe_sent in [
            ErrorKind::TimedOut,
            ErrorKind::BrokenPipe,
            ErrorKind::ConnectionReset,
            ErrorKind::UnexpectedEof,
        ] {
            assert!(
                matches!(sorted(maybe_sent), StoreError::OutcomeUnknown(_)),
                "{maybe_sent:?}"
            );
        }
    }
}
