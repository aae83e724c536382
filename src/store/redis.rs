//! The Redis store: one Lua script per atomic step, on a single server or a Redis Cluster.
//!
//! Only this file knows key names. Every key of one number's verifications carries the hash tag
//! `{sNN}` of the number's shard, so each script touches one slot and works on Cluster unchanged:
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `P:{sNN}:v:<id>` | hash | the verification: `a` account, `s` status, `n` attempts, `M` max attempts, `e` expiry, `m` code tag (while pending), `p` packed `<e164> <created> <length> <channel> <sends>`; per message `A<message id>`, its delivery state (`pack_attempt`), which also tells a redelivery that a provider accepted it |
//! | `P:{sNN}:n:<account>:<e164>` | hash | the number: `v` id of its pending verification, `q` sends in the quota window, `w` when the window ends |
//! | `P:{sNN}:i:<account>:<e164>:<key>` | string | id answered for a send's idempotency key |
//! | `P:{sNN}:c:<account>:<e164>:<key>` | string | the reply recorded for a check's idempotency key (`LUA_CHECK`'s reply) |
//! | `P:a:<account>` | hash | the account |
//! | `P:{sNN}:o` | stream | outgoing messages of the shard, consumer group `dispatch` (see `outbox.rs`) |
//! | `P:{sNN}:d` | stream | dead letters: messages no provider took, with the reasons |
//! | `P:r:<provider>:<provider message id>` | string | `<verification id> <message id>`, for receipts |
//! | `P:k:<sha256 hex>` | hash | an API key's record |
//!
//! Time comes from the caller's clock (an argument), not Redis `TIME`, so that tests move it and
//! every instance decides expiry the same way; key TTLs only bound how long records are kept.

use std::sync::Arc;

use async_trait::async_trait;
use redis::Script;

use super::{Store, StoreError};
use crate::account::{hex, Account, AccountId, ApiKeyRecord, KeyDigest, Role};
use crate::phone::SHARD_COUNT;
use crate::verify::code::Tag;
pub mod connection;
pub mod outbox;

pub(crate) use connection::Connection;
pub use connection::{RedisSettings, Supervision};

/// How long a provider's message id still finds its message for receipts.
const RECEIPT_MAPPING_TTL_MS: u64 = 24 * 3600 * 1000;

use crate::verify::model::{
    CancelOutcome, Channel, CheckOutcome, CheckTarget, NewVerification, SendAttempt, StartOutcome,
    Status, Verification, VerificationId,
};

pub struct RedisStore {
    connection: Connection,
    prefix: String,
    /// `P:{sNN}:` for every shard, built once: the check path builds a key per request.
    bases: Arc<[String]>,
    cluster: bool,
    start: Script,
    check: Script,
    cancel: Script,
    record_attempt: Script,
    apply_receipt: Script,
    pub(crate) outbox_scripts: outbox::Scripts,
}

/// Shared Lua: the reply of a verification, one space-joined string.
///
/// `<outcome> <id> <status> <attempts> <max attempts> <expires> <to> <created> <length>
/// <channel> <sends>`: the last five are the record's packed field `p`, answered as stored.
/// The account is not answered: the caller passed it and the script compared it.
const LUA_COMMON: &str = r#"
local FIELDS = {'a', 's', 'n', 'M', 'e', 'p'}
local function load(key)
  return redis.call('HMGET', key, unpack(FIELDS))
end
local function answer(outcome, id, v)
  return outcome .. ' ' .. id .. ' ' .. v[2] .. ' ' .. v[3] .. ' ' .. v[4] .. ' ' .. v[5] .. ' ' .. v[6]
end
local function pointer_of(base, acct, p)
  return base .. 'n:' .. acct .. ':' .. string.match(p, '^%S+')
end
-- A finished verification leaves its number free: the pointer forgets it, the quota stays.
local function release(pointer, id)
  if redis.call('HGET', pointer, 'v') == id then redis.call('HDEL', pointer, 'v') end
end
"#;

/// KEYS: the number's pointer (with its quota), the new record, idempotency (or the pointer
/// again when there is none), the shard's outbox stream.
/// ARGV: base, account, to, channel, tag, code length, now, ttl, expiry (now + ttl), the record's
/// lifetime (ttl + retention), max attempts, max sends, quota limit, a new quota window's end
/// (now + window), the pointer's lifetime with a new window (the longer of window and ttl),
/// new id, has idempotency key, sealed message (or '').
///
/// The sums come from the caller as text: Redis 7.0 formats every Lua number it writes with
/// `snprintf("%.17g")`, and the seven it formatted here were an eighth of a send's
/// instructions in Redis (callgrind). Numbers are computed here only for a window still open.
const LUA_START: &str = r#"
local base, acct, to, channel, tag, len = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local now_text, ttl, expires, lifetime = ARGV[7], ARGV[8], ARGV[9], ARGV[10]
local max_attempts, max_sends, quota_limit = ARGV[11], tonumber(ARGV[12]), tonumber(ARGV[13])
local window_end, pointer_ttl, new_id, has_idem = ARGV[14], ARGV[15], ARGV[16], ARGV[17] == '1'
local outbox = ARGV[18]
local now = tonumber(now_text)

if has_idem then
  local seen = redis.call('GET', KEYS[3])
  if seen then
    local v = load(base .. 'v:' .. seen)
    if v[1] then return answer('replayed', seen, v) end
  end
end

-- The pointer hash: v = the pending verification's id, q = sends in the quota window,
-- w = when the window ends (the caller's clock, like every other time here).
local ptr = redis.call('HMGET', KEYS[1], 'v', 'q', 'w')
local used = 0
if ptr[3] and now < tonumber(ptr[3]) then
  used, window_end = tonumber(ptr[2]), ptr[3]
  pointer_ttl = tonumber(window_end) - now
  if pointer_ttl < tonumber(ttl) then pointer_ttl = ttl end
end
local function quota_full()
  return used >= quota_limit
end
local function refuse_quota()
  return 'quota ' .. (tonumber(window_end) - now)
end
-- Counts the send, remembers the id and keeps the pointer as long as either needs it.
local function take(id)
  local count = '1'
  if used > 0 then count = used + 1 end
  redis.call('HSET', KEYS[1], 'v', id, 'q', count, 'w', window_end)
  redis.call('PEXPIRE', KEYS[1], pointer_ttl)
  if has_idem then redis.call('SET', KEYS[3], id, 'PX', lifetime) end
  if outbox ~= '' then redis.call('XADD', KEYS[4], '*', 'v', id, 'm', outbox) end
end

local pending = ptr[1]
if pending then
  local key = base .. 'v:' .. pending
  local v = load(key)
  if v[1] == acct and v[2] == 'p' and now < tonumber(v[5]) then
    local number, created, length, _, sends = string.match(v[6], '^(%S+) (%S+) (%S+) (%S+) (%S+)$')
    sends = tonumber(sends)
    if sends >= max_sends then return answer('max_sends', pending, v) end
    if quota_full() then return refuse_quota() end
    v[5] = expires
    v[6] = number .. ' ' .. created .. ' ' .. length .. ' ' .. channel .. ' ' .. (sends + 1)
    redis.call('HSET', key, 'm', tag, 'e', v[5], 'p', v[6])
    redis.call('PEXPIRE', key, lifetime)
    take(pending)
    return answer('resent', pending, v)
  end
end

if quota_full() then return refuse_quota() end
local v = {acct, 'p', '0', max_attempts, expires, to .. ' ' .. now_text .. ' ' .. len .. ' ' .. channel .. ' 1'}
redis.call('HSET', KEYS[2], 'a', acct, 's', 'p', 'n', '0', 'M', max_attempts, 'e', expires, 'p', v[6], 'm', tag)
redis.call('PEXPIRE', KEYS[2], lifetime)
take(new_id)
return answer('created', new_id, v)
"#;

/// KEYS: the record (by id) or the number's pointer (by number).
/// ARGV: account, tag, now, id (or '' by number), then by number the base (or '' by id), then
/// the idempotency key when there is one.
///
/// By number, only a pending verification is found (as in the memory store); by id, a finished
/// one answers `final` and counts nothing. By id the base is not passed: only a finishing check
/// (or an idempotency key) needs it, and it is the record's key without `v:<id>`. Every argument
/// costs Redis a Lua string on every call, so the hot call (a check by id, no key) carries four.
///
/// With an idempotency key, the reply of the check that counted is kept under
/// `c:<account>:<e164>:<key>` as long as the record lives, and answered again, as
/// `replayed <reply>`, to every later check with the key (by id: of the same verification,
/// else `key_reused`).
const LUA_CHECK: &str = r#"
local acct, tag, now, id = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local key, base, idem = KEYS[1], ARGV[5], ARGV[6]
local by_number = id == ''
-- With an idempotency key: where the reply of the check that counted is kept.
local seen_key
if by_number then
  -- The key first: the pointer forgets a verification once it is final.
  if idem then
    seen_key = base .. 'c:' .. acct .. ':' .. string.match(key, '[^:]+$') .. ':' .. idem
    local seen = redis.call('GET', seen_key)
    if seen then return 'replayed ' .. seen end
  end
  id = redis.call('HGET', key, 'v')
  if not id then return 'not_found' end
  key = base .. 'v:' .. id
end
-- One read of everything, the stored tag last; the reply is built from it, not read again.
local v = redis.call('HMGET', key, 'a', 's', 'n', 'M', 'e', 'p', 'm')
if v[1] ~= acct then return 'not_found' end
if not by_number then
  -- By id the base is the record's key without `v:<id>`, derived only when needed.
  base = nil
  if idem then
    base = string.sub(key, 1, #key - #id - 2)
    seen_key = base .. 'c:' .. acct .. ':' .. string.match(v[6], '^%S+') .. ':' .. idem
    local seen = redis.call('GET', seen_key)
    if seen then
      if string.match(seen, '^%S+ (%S+)') ~= id then return 'key_reused' end
      return 'replayed ' .. seen
    end
  end
end
if v[2] ~= 'p' then
  if by_number then return 'not_found' end
  return answer('final', id, v)
end
local function finish(status)
  v[2] = status
  redis.call('HSET', key, 's', status)
  redis.call('HDEL', key, 'm')
  if not base then base = string.sub(key, 1, #key - #id - 2) end
  release(pointer_of(base, acct, v[6]), id)
end
local outcome = 'checked'
if now >= tonumber(v[5]) then
  if by_number then return 'not_found' end
  finish('x')
else
  v[3] = redis.call('HINCRBY', key, 'n', '1')
  -- A plain comparison: the tags are MACs under the server's key, so how long it takes tells a
  -- caller nothing it could steer (see ARCHITECTURE.md, "The code MAC").
  if v[7] == tag then
    finish('a')
    outcome = 'valid'
  elseif v[3] >= tonumber(v[4]) then
    finish('m')
  end
end
local reply = answer(outcome, id, v)
-- A check that counted: its reply is kept under the idempotency key as long as the record.
if seen_key then
  local ttl = redis.call('PTTL', key)
  if ttl > 0 then redis.call('SET', seen_key, reply, 'PX', ttl) end
end
return reply
"#;

/// KEYS: the record. ARGV: base, account, now, id.
const LUA_CANCEL: &str = r#"
local base, acct, now, id = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local key = KEYS[1]
local v = load(key)
if v[1] ~= acct then return 'not_found' end
if v[2] ~= 'p' then return answer('not_pending', id, v) end
v[2] = 'c'
if now >= tonumber(v[5]) then v[2] = 'x' end
redis.call('HSET', key, 's', v[2])
redis.call('HDEL', key, 'm')
release(pointer_of(base, acct, v[6]), id)
if v[2] == 'x' then return answer('not_pending', id, v) end
return answer('canceled', id, v)
"#;

/// KEYS: the record. ARGV: the attempt's field, its packed value (see `pack_attempt`).
/// A record already gone (retention over) takes no attempt.
const LUA_RECORD_ATTEMPT: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
"#;

/// KEYS: the record. ARGV: the attempt's field, status, error (or ''), now.
/// Keeps the sent flag, creation time, provider and provider id; the error stays unless a new
/// one is given.
const LUA_APPLY_RECEIPT: &str = r#"
local value = redis.call('HGET', KEYS[1], ARGV[1])
if not value then return 0 end
local sent, created, _, _, provider, vendor, err = string.match(value, '^(%S+) (%S+) (%S+) (%S+) (%S+) (%S+) ?(.*)$')
if not sent then return 0 end
if ARGV[3] ~= '' then err = ARGV[3] end
redis.call('HSET', KEYS[1], ARGV[1], sent .. ' ' .. created .. ' ' .. ARGV[4] .. ' ' .. ARGV[2] .. ' ' .. provider .. ' ' .. vendor .. ' ' .. err)
return 1
"#;

/// The record's field for one message: `A<message id>`.
fn attempt_field(message_id: &str) -> String {
    format!("A{message_id}")
}

/// The field an attempt is kept in: the message's own, or `A<message id>~<provider>` for one
/// provider's failed try (provider names have no `~`), so every provider tried is listed.
fn attempt_field_of(attempt: &SendAttempt) -> String {
    if attempt.is_provider_try() {
        format!("A{}~{}", attempt.message_id, attempt.provider)
    } else {
        attempt_field(&attempt.message_id)
    }
}

/// One message's delivery state as a record field's value:
/// `<sent 1|0> <created ms> <updated ms> <status> <provider> <provider id or -> <error>`.
/// `sent` says a provider accepted it, whatever receipts say later: a redelivered message that
/// has it is acknowledged, not sent again. Spaces in the single-word parts become `_`.
fn pack_attempt(attempt: &SendAttempt) -> String {
    let word = |text: &str| -> String {
        if text.is_empty() {
            "-".to_owned()
        } else {
            text.replace(' ', "_")
        }
    };
    format!(
        "{} {} {} {} {} {} {}",
        u8::from(attempt.status == "accepted"),
        attempt.created_ms,
        attempt.updated_ms,
        word(&attempt.status),
        word(&attempt.provider),
        word(attempt.provider_message_id.as_deref().unwrap_or_default()),
        attempt.error.as_deref().unwrap_or_default()
    )
}

/// The inverse of `pack_attempt`; `None` for a value of another shape.
fn unpack_attempt(field: &str, value: &str) -> Option<SendAttempt> {
    let message_id = field.strip_prefix('A')?;
    let message_id = message_id.split_once('~').map_or(message_id, |(id, _)| id);
    let mut parts = value.splitn(7, ' ');
    let _sent = parts.next()?;
    let created_ms = parts.next()?.parse().ok()?;
    let updated_ms = parts.next()?.parse().ok()?;
    let status = parts.next()?.to_owned();
    let provider = parts.next()?.to_owned();
    let vendor = parts.next()?;
    let error = parts.next().filter(|error| !error.is_empty());
    Some(SendAttempt {
        message_id: message_id.to_owned(),
        provider,
        status,
        provider_message_id: (vendor != "-").then(|| vendor.to_owned()),
        error: error.map(str::to_owned),
        created_ms,
        updated_ms,
    })
}

/// Whether a packed attempt says a provider accepted the message.
fn attempt_was_sent(value: &str) -> bool {
    value.starts_with("1 ")
}

impl RedisStore {
    /// Connects lazily to a single server (so the gateway starts, fails closed and recovers while
    /// Redis is down), or to a cluster through its seed nodes.
    pub async fn connect(settings: &RedisSettings) -> Result<Self, StoreError> {
        let connection = Connection::connect(settings).await?;
        let cluster = connection.is_cluster();
        Ok(Self {
            connection,
            prefix: settings.key_prefix.clone(),
            bases: (0..SHARD_COUNT)
                .map(|shard| format!("{}:{{s{shard:02}}}:", settings.key_prefix))
                .collect(),
            cluster,
            start: Script::new(&with_common(LUA_START)),
            check: Script::new(&with_common(LUA_CHECK)),
            cancel: Script::new(&with_common(LUA_CANCEL)),
            record_attempt: Script::new(LUA_RECORD_ATTEMPT),
            apply_receipt: Script::new(LUA_APPLY_RECEIPT),
            outbox_scripts: outbox::Scripts::new(),
        })
    }

    /// The multiplexed connection, for other Redis-backed parts of the gateway (clone per call).
    pub(crate) fn connection(&self) -> Connection {
        self.connection.clone()
    }

    /// The configured key prefix, for other parts that keep their own keys under it.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn is_cluster(&self) -> bool {
        self.cluster
    }

    /// Starts the connection's supervisor (see `connection.rs`) on the gateway's tasks.
    pub(crate) fn spawn_supervisor(
        &self,
        tasks: &tokio_util::task::TaskTracker,
        stop: tokio_util::sync::CancellationToken,
        metrics: Arc<crate::metrics::Metrics>,
    ) {
        self.connection.spawn_supervisor(tasks, stop, metrics);
    }

    /// `P:{sNN}:` — everything of one shard starts with this.
    fn base(&self, shard: u8) -> &str {
        &self.bases[usize::from(shard)]
    }

    fn record_key(&self, id: &VerificationId) -> String {
        [self.base(id.shard()), "v:", id.as_str()].concat()
    }

    fn number_key(&self, shard: u8, kind: &str, account: &AccountId, e164: &str) -> String {
        [self.base(shard), kind, ":", account.as_str(), ":", e164].concat()
    }

    fn receipt_key(&self, provider: &str, provider_message_id: &str) -> String {
        format!("{}:r:{provider}:{provider_message_id}", self.prefix)
    }

    fn account_key(&self, id: &AccountId) -> String {
        format!("{}:a:{}", self.prefix, id.as_str())
    }

    fn api_key_key(&self, digest: &KeyDigest) -> String {
        format!("{}:k:{}", self.prefix, hex(digest))
    }

    /// The full key of a verification record, for tests and operators inspecting Redis.
    pub fn verification_key(&self, id: &VerificationId) -> String {
        self.record_key(id)
    }

    /// Runs a script built by `with_common`: one bulk string back, split on spaces.
    async fn run(&self, invocation: &redis::ScriptInvocation<'_>) -> Result<String, StoreError> {
        let mut connection = self.connection.clone();
        invocation
            .invoke_async(&mut connection)
            .await
            .map_err(|error| self.write_error(error))
    }

    /// A failed write, sorted by `store_error`. The cluster client retries a command after some
    /// failures (a timeout on one node, a moved slot), so there the last failure cannot prove
    /// that no earlier try ran: every failed write on a cluster is an unknown outcome.
    fn write_error(&self, error: redis::RedisError) -> StoreError {
        match store_error(error) {
            StoreError::Unavailable(cause) if self.cluster => StoreError::OutcomeUnknown(cause),
            sorted => sorted,
        }
    }
}

/// Prefixes a script with the shared helpers. Scripts answer one space-joined string instead
/// of an array: RESP parsing of a dozen bulk strings was about a tenth of the gateway's CPU per
/// check (perf), and no field of a reply (ids, E.164 numbers, status codes, integers) contains
/// a space.
fn with_common(body: &str) -> String {
    format!("{LUA_COMMON}\n{body}")
}

/// Sorts a failed command by what it may have done. Only a failure that certainly came before
/// the command reached Redis (no connection could be made; Redis refused it unread: a moved
/// slot, a replica, loading, a missing script) is `Unavailable`, "nothing was changed". A
/// response timeout or a connection lost while the command was on it may follow its execution:
/// `OutcomeUnknown`. A connection that dropped just before the send is counted with the latter,
/// because the client reports both the same way (a broken pipe).
pub(crate) fn store_error(error: redis::RedisError) -> StoreError {
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

/// A failed read changed nothing, whenever it failed; nor did a connection never made.
fn read_error(error: redis::RedisError) -> StoreError {
    StoreError::Unavailable(error.to_string())
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_owned())
}

/// Reads the verification that follows the outcome word in a script reply (see `LUA_COMMON`).
fn parse_verification(reply: &[&str], account: &AccountId) -> Result<Verification, StoreError> {
    let [_, id, status, attempts, max_attempts, expires, to, created, length, channel, sends] =
        reply
    else {
        return Err(corrupt("verification reply of the wrong shape"));
    };
    fn number<T: std::str::FromStr>(text: &str) -> Result<T, StoreError> {
        text.parse()
            .map_err(|_| corrupt("verification field is not a number"))
    }
    Ok(Verification {
        id: VerificationId::parse(id).ok_or_else(|| corrupt("bad verification id"))?,
        account: account.clone(),
        to: (*to).to_owned(),
        channel: Channel::parse(channel).ok_or_else(|| corrupt("bad channel"))?,
        status: Status::from_code(status).ok_or_else(|| corrupt("bad status"))?,
        attempts: number(attempts)?,
        max_attempts: number(max_attempts)?,
        sends: number(sends)?,
        created_ms: number(created)?,
        expires_ms: number(expires)?,
        code_length: number(length)?,
    })
}

#[async_trait]
impl Store for RedisStore {
    async fn start_verification(&self, new: &NewVerification) -> Result<StartOutcome, StoreError> {
        let shard = new.to.shard();
        let account = &new.account;
        let to = new.to.e164();
        let pointer = self.number_key(shard, "n", account, to);
        // Scoped by account and number (README, "Idempotency"): the same key for another
        // number is another request.
        let idempotency = match &new.idempotency_key {
            Some(key) => [self.base(shard), "i:", account.as_str(), ":", to, ":", key].concat(),
            None => pointer.clone(),
        };
        let mut invocation = self.start.prepare_invoke();
        invocation
            .key(&pointer)
            .key(self.record_key(&new.id))
            .key(idempotency)
            .key(self.outbox_key(shard))
            .arg(self.base(shard))
            .arg(account.as_str())
            .arg(to)
            .arg(new.channel.as_str())
            .arg(&new.code_tag[..])
            .arg(new.code_length)
            .arg(new.now_ms)
            .arg(new.ttl_ms)
            .arg(new.now_ms + new.ttl_ms)
            .arg(new.ttl_ms + new.retention_ms)
            .arg(new.max_attempts)
            .arg(new.max_sends)
            .arg(new.send_quota.limit)
            .arg(new.now_ms + new.send_quota.window_ms)
            .arg(new.send_quota.window_ms.max(new.ttl_ms))
            .arg(new.id.as_str())
            .arg(if new.idempotency_key.is_some() {
                "1"
            } else {
                "0"
            });
        // An empty byte slice would add no argument at all; '' keeps ARGV[18] present.
        match &new.outbox {
            Some(sealed) => invocation.arg(&sealed[..]),
            None => invocation.arg(""),
        };
        let text = self.run(&invocation).await?;
        let reply: Vec<&str> = text.split(' ').collect();
        match reply.first().copied() {
            Some("created") => Ok(StartOutcome::Created(parse_verification(&reply, account)?)),
            Some("resent") => Ok(StartOutcome::Resent(parse_verification(&reply, account)?)),
            Some("replayed") => Ok(StartOutcome::Replayed(parse_verification(&reply, account)?)),
            Some("max_sends") => Ok(StartOutcome::MaxSendsReached(parse_verification(
                &reply, account,
            )?)),
            Some("quota") => Ok(StartOutcome::SendQuotaExceeded {
                retry_after_ms: reply
                    .get(1)
                    .and_then(|ms| ms.parse().ok())
                    .ok_or_else(|| corrupt("quota reply"))?,
            }),
            _ => Err(corrupt("unknown start reply")),
        }
    }

    async fn check_verification(
        &self,
        account: &AccountId,
        target: &CheckTarget,
        tag: &Tag,
        now_ms: u64,
        idempotency_key: Option<&str>,
    ) -> Result<CheckOutcome, StoreError> {
        let mut invocation = self.check.prepare_invoke();
        match target {
            CheckTarget::Id(id) => {
                invocation
                    .key(self.record_key(id))
                    .arg(account.as_str())
                    .arg(&tag[..])
                    .arg(now_ms)
                    .arg(id.as_str());
                if idempotency_key.is_some() {
                    invocation.arg("");
                }
            }
            CheckTarget::To(number) => {
                let shard = number.shard();
                invocation
                    .key(self.number_key(shard, "n", account, number.e164()))
                    .arg(account.as_str())
                    .arg(&tag[..])
                    .arg(now_ms)
                    .arg("")
                    .arg(self.base(shard));
            }
        }
        if let Some(key) = idempotency_key {
            invocation.arg(key);
        }
        let text = self.run(&invocation).await?;
        let reply: Vec<&str> = text.split(' ').collect();
        let checked = |reply: &[&str]| -> Result<(Verification, bool), StoreError> {
            match reply.first().copied() {
                Some("valid") => Ok((parse_verification(reply, account)?, true)),
                Some("checked") => Ok((parse_verification(reply, account)?, false)),
                _ => Err(corrupt("unknown check reply")),
            }
        };
        match reply.first().copied() {
            Some("not_found") => Ok(CheckOutcome::NotFound),
            Some("key_reused") => Ok(CheckOutcome::KeyReused),
            Some("final") => Ok(CheckOutcome::Final(parse_verification(&reply, account)?)),
            Some("replayed") => {
                let (verification, valid) = checked(&reply[1..])?;
                Ok(CheckOutcome::Replayed {
                    verification,
                    valid,
                })
            }
            _ => {
                let (verification, valid) = checked(&reply)?;
                Ok(CheckOutcome::Checked {
                    verification,
                    valid,
                })
            }
        }
    }

    async fn get_verification(
        &self,
        account: &AccountId,
        id: &VerificationId,
        _now_ms: u64,
    ) -> Result<Option<Verification>, StoreError> {
        let mut connection = self.connection.clone();
        let fields: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(self.record_key(id))
            .arg(&["a", "s", "n", "M", "e", "p"])
            .query_async(&mut connection)
            .await
            .map_err(read_error)?;
        if fields.first().and_then(Option::as_deref) != Some(account.as_str()) {
            return Ok(None);
        }
        // The script reply's shape (see `LUA_COMMON`): the packed `p` is split like the rest.
        let field = |index: usize| {
            fields
                .get(index)
                .and_then(Option::as_deref)
                .unwrap_or_default()
        };
        let mut reply = vec!["", id.as_str(), field(1), field(2), field(3), field(4)];
        reply.extend(field(5).split(' '));
        parse_verification(&reply, account).map(Some)
    }

    async fn cancel_verification(
        &self,
        account: &AccountId,
        id: &VerificationId,
        now_ms: u64,
    ) -> Result<CancelOutcome, StoreError> {
        let mut invocation = self.cancel.prepare_invoke();
        invocation
            .key(self.record_key(id))
            .arg(self.base(id.shard()))
            .arg(account.as_str())
            .arg(now_ms)
            .arg(id.as_str());
        let text = self.run(&invocation).await?;
        let reply: Vec<&str> = text.split(' ').collect();
        match reply.first().copied() {
            Some("not_found") => Ok(CancelOutcome::NotFound),
            Some("canceled") => Ok(CancelOutcome::Canceled(parse_verification(
                &reply, account,
            )?)),
            Some("not_pending") => Ok(CancelOutcome::NotPending(parse_verification(
                &reply, account,
            )?)),
            _ => Err(corrupt("unknown cancel reply")),
        }
    }

    async fn record_send_attempt(
        &self,
        verification: &VerificationId,
        attempt: &SendAttempt,
    ) -> Result<(), StoreError> {
        let mut connection = self.connection.clone();
        // The attempts live in the verification's record, as long as it does.
        self.record_attempt
            .key(self.record_key(verification))
            .arg(attempt_field_of(attempt))
            .arg(pack_attempt(attempt))
            .invoke_async::<()>(&mut connection)
            .await
            .map_err(|error| self.write_error(error))?;
        // The receipt mapping is keyed by the vendor's id, so on a cluster it lives on whatever
        // shard that id hashes to, not on the message's. It only lets a later delivery receipt
        // find the attempt: failing the delivery for it would hold a message that is already
        // sent and recorded hostage to another shard (a dead master delayed every message whose
        // vendor id hashed there until the promotion). So it is written on a best-effort basis;
        // a receipt for a message whose mapping was lost is answered as unknown.
        if let Some(provider_id) = &attempt.provider_message_id {
            let mapped = redis::cmd("SET")
                .arg(self.receipt_key(&attempt.provider, provider_id))
                .arg(format!("{} {}", verification.as_str(), attempt.message_id))
                .arg("PX")
                .arg(RECEIPT_MAPPING_TTL_MS)
                .query_async::<()>(&mut connection)
                .await;
            if let Err(error) = mapped {
                tracing::warn!(
                    provider = %attempt.provider,
                    %error,
                    "receipt mapping not stored: a receipt for this message will not be matched"
                );
            }
        }
        Ok(())
    }

    async fn send_attempts(
        &self,
        verification: &VerificationId,
    ) -> Result<Vec<SendAttempt>, StoreError> {
        let mut connection = self.connection.clone();
        // Field, value, field, value, … (RESP2's flat answer); bytes, as the code tag is binary.
        let stored: Vec<Vec<u8>> = redis::cmd("HGETALL")
            .arg(self.record_key(verification))
            .query_async(&mut connection)
            .await
            .map_err(read_error)?;
        let mut attempts: Vec<SendAttempt> = stored
            .chunks_exact(2)
            .filter(|pair| pair[0].starts_with(b"A"))
            .filter_map(|pair| {
                unpack_attempt(
                    std::str::from_utf8(&pair[0]).ok()?,
                    std::str::from_utf8(&pair[1]).ok()?,
                )
            })
            .collect();
        attempts.sort_by_key(|attempt| attempt.created_ms);
        Ok(attempts)
    }

    async fn apply_receipt(
        &self,
        provider: &str,
        provider_message_id: &str,
        status: &str,
        error: Option<&str>,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        let mut connection = self.connection.clone();
        let target: Option<String> = redis::cmd("GET")
            .arg(self.receipt_key(provider, provider_message_id))
            .query_async(&mut connection)
            .await
            .map_err(read_error)?;
        let Some((verification, message_id)) =
            target.as_deref().and_then(|value| value.split_once(' '))
        else {
            return Ok(false);
        };
        let Some(verification) = VerificationId::parse(verification) else {
            return Ok(false);
        };
        let applied: i64 = self
            .apply_receipt
            .key(self.record_key(&verification))
            .arg(attempt_field(message_id))
            .arg(status)
            .arg(error.unwrap_or_default())
            .arg(now_ms)
            .invoke_async(&mut connection)
            .await
            .map_err(|error| self.write_error(error))?;
        Ok(applied == 1)
    }

    async fn insert_account(&self, account: &Account) -> Result<(), StoreError> {
        let mut connection = self.connection.clone();
        redis::cmd("HSET")
            .arg(self.account_key(&account.id))
            .arg(&["name", &account.name])
            .arg("created")
            .arg(account.created_ms)
            .arg("code_length")
            .arg(account.code_length)
            .query_async::<()>(&mut connection)
            .await
            .map_err(|error| self.write_error(error))
    }

    async fn get_account(&self, id: &AccountId) -> Result<Option<Account>, StoreError> {
        let mut connection = self.connection.clone();
        let (name, created, code_length): (Option<String>, Option<u64>, Option<u8>) =
            redis::cmd("HMGET")
                .arg(self.account_key(id))
                .arg(&["name", "created", "code_length"])
                .query_async(&mut connection)
                .await
                .map_err(read_error)?;
        Ok(match (name, created, code_length) {
            (Some(name), Some(created_ms), Some(code_length)) => Some(Account {
                id: id.clone(),
                name,
                created_ms,
                code_length,
            }),
            _ => None,
        })
    }

    async fn insert_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError> {
        let mut connection = self.connection.clone();
        redis::cmd("HSET")
            .arg(self.api_key_key(&key.digest))
            .arg(&[
                "id",
                &key.id,
                "account",
                key.account.as_str(),
                "role",
                key.role.as_str(),
            ])
            .arg("created")
            .arg(key.created_ms)
            .query_async::<()>(&mut connection)
            .await
            .map_err(|error| self.write_error(error))
    }

    async fn find_api_key(&self, digest: &KeyDigest) -> Result<Option<ApiKeyRecord>, StoreError> {
        let mut connection = self.connection.clone();
        let (id, account, role, created): (
            Option<String>,
            Option<String>,
            Option<String>,
            Option<u64>,
        ) = redis::cmd("HMGET")
            .arg(self.api_key_key(digest))
            .arg(&["id", "account", "role", "created"])
            .query_async(&mut connection)
            .await
            .map_err(read_error)?;
        let (Some(id), Some(account), Some(role), Some(created_ms)) = (id, account, role, created)
        else {
            return Ok(None);
        };
        Ok(Some(ApiKeyRecord {
            id,
            account: AccountId::parse(&account).ok_or_else(|| corrupt("bad account id on key"))?,
            role: role
                .parse::<Role>()
                .map_err(|()| corrupt("bad role on key"))?,
            digest: *digest,
            created_ms,
        }))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.connection.readiness().await
    }

    fn liveness(&self) -> Result<(), StoreError> {
        self.connection.liveness()
    }

    fn epoch(&self) -> u64 {
        self.connection.epoch()
    }

    fn kind(&self) -> &'static str {
        if self.cluster {
            "redis-cluster"
        } else {
            "redis"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(error: Option<&str>, vendor: Option<&str>) -> SendAttempt {
        SendAttempt {
            message_id: "MS0123456789abcdef0123456789abcdef".into(),
            provider: "twilio-main".into(),
            status: "accepted".into(),
            provider_message_id: vendor.map(str::to_owned),
            error: error.map(str::to_owned),
            created_ms: 1_764_000_000_000,
            updated_ms: 1_764_000_000_250,
        }
    }

    #[test]
    fn only_a_failure_before_the_send_says_nothing_was_changed() {
        use std::io::{Error, ErrorKind};
        let sorted = |kind: ErrorKind| store_error(redis::RedisError::from(Error::from(kind)));
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

    #[test]
    fn a_packed_attempt_reads_back_as_it_was() {
        for (error, vendor) in [
            (None, None),
            (None, Some("SMabcdef")),
            (
                Some("twilio: 21211 invalid 'To' number; vonage: timeout"),
                None,
            ),
        ] {
            let original = attempt(error, vendor);
            let field = attempt_field(&original.message_id);
            let packed = pack_attempt(&original);
            assert_eq!(unpack_attempt(&field, &packed), Some(original), "{packed}");
            assert!(attempt_was_sent(&packed));
        }
        let mut failed = attempt(Some("no provider"), None);
        failed.status = "failed".into();
        assert!(!attempt_was_sent(&pack_attempt(&failed)));
        assert_eq!(unpack_attempt("Afoo", "not an attempt"), None);
    }
}
