//! Verify's Redis store (`RedisStore`): one Lua script per atomic step, on a single server or a
//! Redis Cluster. It owns the connection the other Redis adapters share (`connection()`).
//!
//! Key names come from `KeySpace` (`src/redis/keys.rs`), scripts from `src/redis/scripts/`. Every key of one number's verifications carries the hash tag
//! `{sNN}` of the number's shard, so each script touches one slot and works on Cluster unchanged:
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `P:{sNN}:v:<id>` | string | the verification, packed (`Record`; `RECORD` in `scripts/prelude.lua`): status, attempts, code tag (zeros once final), max attempts, sends, expiry, creation, code length, channel, account, `to`; then per message its field (`attempt_field`) and delivery state (`pack_attempt`), which also tells a redelivery that a provider accepted it |
//! | `P:{sNN}:w:<id>` | hash | the verification's workflow, only when it has one (`workflow.rs`) |
//! | `P:{sNN}:n:<account>:<e164>` | string | the number, packed (`POINTER` in the prelude): sends in the quota window, when the window ends, then the id of its pending verification |
//! | `P:{sNN}:i:<account>:<e164>:<key>` | string | id answered for a send's idempotency key |
//! | `P:{sNN}:c:<account>:<e164>:<key>` | string | the reply recorded for a check's idempotency key (`verify_check.lua`'s reply) |
//! | `P:{sNN}:o` | stream | outgoing messages of the shard, consumer group `dispatch` (see `outbox.rs`) |
//! | `P:{sNN}:d` | stream | dead letters: messages no provider took, with the reasons |
//! | `P:{sNN}:f` | sorted set | workflows waiting for their next step, by due time (`workflow.rs`; the workflow's `w…` and `b…` fields hold the steps) |
//! | `P:r:<provider>:<provider message id>` | string | `<verification id> <message id>`, for receipts |
//!
//! Time comes from the caller's clock (an argument), not Redis `TIME`, so that tests move it and
//! every instance decides expiry the same way; key TTLs only bound how long records are kept.

use std::sync::Arc;

use async_trait::async_trait;
use redis::Script;

use crate::abuse::{Admission, SendCheck};
use crate::account::AccountId;
use crate::dispatch::receipts::Receipt;
use crate::redis::abuse;
use crate::redis::connection::{Connection, RedisSettings};
use crate::redis::script::{corrupt, load, lua, query, run, words, Failure};
use crate::redis::KeySpace;
use crate::store::StoreError;
use crate::verify::store::{ReceiptApplied, Store};
use crate::verify::workflow::{Fired, Workflow};

/// How long a provider's message id still finds its message for receipts.
const RECEIPT_MAPPING_TTL_MS: u64 = 24 * 3600 * 1000;

use crate::verify::model::{
    CancelOutcome, Channel, CheckOutcome, CheckTarget, CodeCheck, NewVerification, SendAttempt,
    StartOutcome, Status, Verification, VerificationId,
};

pub struct RedisStore {
    /// Shared with the other adapters, the outbox's (`outbox.rs`) included.
    pub(super) connection: Connection,
    pub(super) keys: KeySpace,
    cluster: bool,
    start: Script,
    check: Script,
    cancel: Script,
    record_attempt: Script,
    apply_receipt: Script,
    /// Workflows (`workflow.rs`): `verify_fallback.lua`, `verify_fallback_now.lua`.
    pub(super) fallback: Script,
    pub(super) fallback_now: Script,
    /// The admission and the start as one script, with `abuse.max_tracked` (`admitting_sends`).
    start_admitted: Option<(Script, usize)>,
}

/// The arguments of `verify_start.lua`, in its ARGV order.
///
/// The sums come from here as text: Redis 7.0 formats every Lua number it writes with
/// `snprintf("%.17g")`, and the seven it formatted were an eighth of a send's instructions in
/// Redis (callgrind).
struct StartArgs<'a> {
    base: &'a str,
    new: &'a NewVerification,
}

impl StartArgs<'_> {
    fn append(&self, invocation: &mut redis::ScriptInvocation<'_>) {
        let new = self.new;
        invocation
            .arg(self.base)
            .arg(new.account.as_str())
            .arg(new.to.as_str())
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
        super::workflow::append_workflow(new.workflow.as_ref(), invocation);
    }
}

/// The record's field for one message: `B` and the 16 bytes of a gateway message id (`MS` and
/// 32 lowercase hex digits, `Dispatcher::new_id`), 18 bytes fewer per message than its text;
/// `A<message id>` for any other id. `attempt_field` in `scripts/prelude.lua` is its twin.
fn attempt_field(message_id: &str) -> Vec<u8> {
    let binary = message_id
        .strip_prefix("MS")
        .filter(|hex| hex.len() == 32 && !hex.bytes().any(|c| c.is_ascii_uppercase()))
        .and_then(|hex| data_encoding::HEXLOWER.decode(hex.as_bytes()).ok());
    match binary {
        Some(bytes) => [&b"B"[..], &bytes[..]].concat(),
        None => [&b"A"[..], message_id.as_bytes()].concat(),
    }
}

/// The field an attempt is kept in: the message's own, or `<message's field>~<provider>` for
/// one provider's failed try (provider names have no `~`), so every provider tried is listed.
fn attempt_field_of(attempt: &SendAttempt) -> Vec<u8> {
    let mut field = attempt_field(&attempt.message_id);
    if attempt.is_provider_try() {
        field.push(b'~');
        field.extend_from_slice(attempt.provider.as_bytes());
    }
    field
}

/// The message id a field names (the inverse of `attempt_field`, provider tries included).
fn message_of_field(field: &[u8]) -> Option<String> {
    match field.split_first()? {
        (b'B', rest) => Some(format!(
            "MS{}",
            data_encoding::HEXLOWER.encode(rest.get(..16)?)
        )),
        (b'A', rest) => {
            let text = std::str::from_utf8(rest).ok()?;
            Some(text.split_once('~').map_or(text, |(id, _)| id).to_owned())
        }
        _ => None,
    }
}

/// One message's delivery state as a record field's value, packed like the record (`ATTEMPT`
/// in `scripts/prelude.lua`): sent (1 byte: 1 when a provider accepted it), created and updated
/// (6 bytes each, ms, little-endian), then status, provider and provider id (empty for none)
/// behind a length byte each, then the error to the end (empty for none). `sent` says a provider
/// accepted the message, whatever receipts say later: a redelivered message that has it is
/// acknowledged, not sent again. The short parts keep their first 255 bytes and the error its
/// first `MAX_ERROR` (a pair's value has two bytes of length).
fn pack_attempt(attempt: &SendAttempt) -> Vec<u8> {
    const MAX_ERROR: usize = 60_000;
    fn cut(text: &str, max: usize) -> &str {
        let mut end = text.len().min(max);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        &text[..end]
    }
    let mut packed = vec![u8::from(attempt.status == "accepted")];
    packed.extend_from_slice(&attempt.created_ms.to_le_bytes()[..6]);
    packed.extend_from_slice(&attempt.updated_ms.to_le_bytes()[..6]);
    for part in [
        attempt.status.as_str(),
        attempt.provider.as_str(),
        attempt.provider_message_id.as_deref().unwrap_or_default(),
    ] {
        let part = cut(part, 255);
        packed.push(part.len() as u8); // cut to 255 bytes just above
        packed.extend_from_slice(part.as_bytes());
    }
    packed
        .extend_from_slice(cut(attempt.error.as_deref().unwrap_or_default(), MAX_ERROR).as_bytes());
    packed
}

/// The inverse of `pack_attempt`; `None` for a value of another shape.
fn unpack_attempt(field: &[u8], value: &[u8]) -> Option<SendAttempt> {
    let message_id = message_of_field(field)?;
    let mut reader = Reader(value);
    let _sent = reader.take(1)?;
    let created_ms = reader.number(6)?;
    let updated_ms = reader.number(6)?;
    let status = reader.text()?.to_owned();
    let provider = reader.text()?.to_owned();
    let vendor = reader.text()?;
    let error = std::str::from_utf8(reader.0).ok()?;
    Some(SendAttempt {
        message_id,
        provider,
        status,
        provider_message_id: (!vendor.is_empty()).then(|| vendor.to_owned()),
        error: (!error.is_empty()).then(|| error.to_owned()),
        created_ms,
        updated_ms,
    })
}

/// Whether a packed attempt says a provider accepted the message.
fn attempt_was_sent(value: &[u8]) -> bool {
    value.first() == Some(&1)
}

/// Whether the packed record `record` says a provider accepted message `message_id` (the
/// worker's guard against sending a redelivered message twice).
pub(crate) fn record_says_sent(record: &[u8], message_id: &str) -> bool {
    let field = attempt_field(message_id);
    Record::parse(record).is_some_and(|record| {
        record
            .attempts()
            .any(|(name, value)| name == field.as_slice() && attempt_was_sent(value))
    })
}

/// A verification's record as Redis keeps it: one string, little-endian, the layout of
/// `RECORD` in `scripts/prelude.lua` (docs/decisions.md, "One packed record"):
/// status (1 byte), attempts (4), code tag (16), max attempts (4), sends (4), expiry (6),
/// creation (6), code length (1), then channel, account and `to` behind a length byte each,
/// then the messages' delivery states, pairs of a field (1 byte of length) and a value (2).
struct Record<'a> {
    status: &'a str,
    attempts: u32,
    max_attempts: u32,
    sends: u32,
    expires_ms: u64,
    created_ms: u64,
    code_length: u8,
    channel: &'a str,
    account: &'a str,
    to: &'a str,
    /// The delivery states.
    tail: &'a [u8],
}

/// Reads `bytes` from the front of a record: fixed widths and length-prefixed parts.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, count: usize) -> Option<&'a [u8]> {
        if self.0.len() < count {
            return None;
        }
        let (taken, rest) = self.0.split_at(count);
        self.0 = rest;
        Some(taken)
    }

    /// An unsigned little-endian integer of `width` bytes (at most 8).
    fn number(&mut self, width: usize) -> Option<u64> {
        let bytes = self.take(width)?;
        Some(
            bytes
                .iter()
                .rev()
                .fold(0u64, |value, byte| (value << 8) | u64::from(*byte)),
        )
    }

    /// A part behind its length of `width` bytes.
    fn part(&mut self, width: usize) -> Option<&'a [u8]> {
        let length = usize::try_from(self.number(width)?).ok()?;
        self.take(length)
    }

    fn text(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.part(1)?).ok()
    }
}

impl<'a> Record<'a> {
    fn parse(bytes: &'a [u8]) -> Option<Self> {
        let mut reader = Reader(bytes);
        let status = std::str::from_utf8(reader.take(1)?).ok()?;
        let attempts = u32::try_from(reader.number(4)?).ok()?;
        let _tag = reader.take(16)?;
        let max_attempts = u32::try_from(reader.number(4)?).ok()?;
        let sends = u32::try_from(reader.number(4)?).ok()?;
        let expires_ms = reader.number(6)?;
        let created_ms = reader.number(6)?;
        let code_length = u8::try_from(reader.number(1)?).ok()?;
        Some(Self {
            status,
            attempts,
            max_attempts,
            sends,
            expires_ms,
            created_ms,
            code_length,
            channel: reader.text()?,
            account: reader.text()?,
            to: reader.text()?,
            tail: reader.0,
        })
    }

    /// The delivery states, `(field, value)`, in the order they were first recorded; a
    /// truncated pair ends them.
    fn attempts(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> {
        let mut reader = Reader(self.tail);
        std::iter::from_fn(move || Some((reader.part(1)?, reader.part(2)?)))
    }

    fn verification(
        &self,
        id: &VerificationId,
        account: &AccountId,
    ) -> Result<Verification, StoreError> {
        Ok(Verification {
            id: id.clone(),
            account: account.clone(),
            to: self.to.to_owned(),
            channel: Channel::parse(self.channel).ok_or_else(|| corrupt("bad channel"))?,
            status: Status::from_code(self.status).ok_or_else(|| corrupt("bad status"))?,
            attempts: self.attempts,
            max_attempts: self.max_attempts,
            sends: self.sends,
            created_ms: self.created_ms,
            expires_ms: self.expires_ms,
            code_length: self.code_length,
        })
    }
}

impl RedisStore {
    /// Connects lazily to a single server (so the gateway starts, fails closed and recovers while
    /// Redis is down), or to a cluster through its seed nodes.
    pub async fn connect(settings: &RedisSettings) -> Result<Self, StoreError> {
        let connection = Connection::connect(settings).await?;
        let cluster = connection.is_cluster();
        Ok(Self {
            connection,
            keys: KeySpace::new(&settings.key_prefix),
            cluster,
            start: lua!("verify_start"),
            check: lua!("verify_check"),
            cancel: lua!("verify_cancel"),
            record_attempt: lua!("verify_record_attempt"),
            apply_receipt: lua!("verify_apply_receipt"),
            fallback: lua!("verify_fallback"),
            fallback_now: lua!("verify_fallback_now"),
            start_admitted: None,
        })
    }

    /// The multiplexed connection, for other Redis-backed parts of the gateway (clone per call).
    pub(crate) fn connection(&self) -> Connection {
        self.connection.clone()
    }

    /// The configured key prefix, for other parts that keep their own keys under it.
    pub(crate) fn prefix(&self) -> &str {
        self.keys.prefix()
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
        self.keys.shard_base(shard)
    }

    /// The full key of a verification record, for tests and operators inspecting Redis.
    pub fn verification_key(&self, id: &VerificationId) -> String {
        self.keys.verification(id)
    }

    /// The start script's keys and arguments (`verify_start.lua`), appended to `invocation`.
    fn start_arguments(&self, new: &NewVerification, invocation: &mut redis::ScriptInvocation<'_>) {
        let shard = new.to.shard();
        let (account, to) = (&new.account, new.to.as_str());
        let pointer = self.keys.number_pointer(shard, account, to);
        // Scoped by account and number (README, "Idempotency"): the same key for another
        // number is another request.
        let idempotency = match &new.idempotency_key {
            Some(key) => self.keys.send_idempotency(shard, account, to, key),
            None => pointer.clone(),
        };
        invocation
            .key(&pointer)
            .key(self.keys.verification(&new.id))
            .key(idempotency)
            .key(self.keys.outbox(shard))
            .key(self.keys.fallbacks(shard));
        StartArgs {
            base: self.base(shard),
            new,
        }
        .append(invocation);
    }

    /// Sends are admitted by abuse protection in the start script itself (`start_admitted`),
    /// with `max_tracked` entries per account (`abuse.max_tracked`), on a single server only: on
    /// a cluster the account's counters and the number's records are in different slots.
    pub fn admitting_sends(mut self, max_tracked: usize) -> Self {
        if !self.cluster {
            self.start_admitted = Some((admit_then_start(), max_tracked));
        }
        self
    }

    /// How a failed write is reported (see `Failure::Sorted`).
    pub(super) fn writes(&self) -> Failure {
        Failure::Sorted {
            cluster: self.cluster,
        }
    }
}

/// The start script's reply.
fn parse_start(reply: &[&str], account: &AccountId) -> Result<StartOutcome, StoreError> {
    match reply.first().copied() {
        Some("created") => Ok(StartOutcome::Created(parse_verification(reply, account)?)),
        Some("resent") => Ok(StartOutcome::Resent(parse_verification(reply, account)?)),
        Some("replayed") => Ok(StartOutcome::Replayed(parse_verification(reply, account)?)),
        Some("max_sends") => Ok(StartOutcome::MaxSendsReached(parse_verification(
            reply, account,
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

/// `abuse_admit.lua` and `verify_start.lua` as one script, each body a function of its own KEYS
/// and ARGV (the first `ADMIT_KEYS` keys and `ADMIT_ARGS` arguments are the admission's): the
/// admission's refusal is the answer, else the start's.
fn admit_then_start() -> Script {
    let script = format!(
        "local function admit(KEYS, ARGV)\n{admit}\nend\n\n\
         local function start(KEYS, ARGV)\n{start}\nend\n\n\
         local verdict = admit({{unpack(KEYS, 1, {keys})}}, {{unpack(ARGV, 1, {args})}})\n\
         if verdict ~= 'admitted' then return verdict end\n\
         return start({{unpack(KEYS, {keys} + 1)}}, {{unpack(ARGV, {args} + 1)}})\n",
        admit = abuse::admit_source(),
        start = include_str!("scripts/verify_start.lua"),
        keys = abuse::ADMIT_KEYS,
        args = abuse::ADMIT_ARGS,
    );
    load(&script)
}

/// Reads the verification that follows the outcome word in a script reply (see `answer` in `scripts/prelude.lua`).
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
        let mut invocation = self.start.prepare_invoke();
        self.start_arguments(new, &mut invocation);
        let text: String = run(&self.connection, &invocation, self.writes()).await?;
        parse_start(&words(&text), &new.account)
    }

    fn admits_sends(&self) -> bool {
        self.start_admitted.is_some()
    }

    async fn start_admitted(
        &self,
        new: &NewVerification,
        check: &SendCheck<'_>,
    ) -> Result<StartOutcome, StoreError> {
        let Some((script, max_tracked)) = &self.start_admitted else {
            return Err(StoreError::Unavailable(
                "this store does not admit sends".into(),
            ));
        };
        let mut invocation = script.prepare_invoke();
        abuse::admit_arguments(&self.keys, *max_tracked, check, &mut invocation);
        self.start_arguments(new, &mut invocation);
        let text: String = run(&self.connection, &invocation, self.writes()).await?;
        let reply = words(&text);
        match abuse::admission(&reply, check)? {
            Some(Admission::Refused(block)) => Ok(StartOutcome::Refused(block)),
            Some(Admission::Admitted) => Err(corrupt("admitted without a start")),
            None => parse_start(&reply, &new.account),
        }
    }

    async fn check_verification(&self, check: &CodeCheck<'_>) -> Result<CheckOutcome, StoreError> {
        let account = check.account;
        let mut invocation = self.check.prepare_invoke();
        match check.target {
            CheckTarget::Id(id) => {
                invocation
                    .key(self.keys.verification(id))
                    .arg(account.as_str())
                    .arg(&check.tag[..])
                    .arg(check.now_ms)
                    .arg(id.as_str());
                if check.idempotency_key.is_some() {
                    invocation.arg("");
                }
            }
            CheckTarget::To(number) => {
                let shard = number.shard();
                invocation
                    .key(self.keys.number_pointer(shard, account, number.as_str()))
                    .arg(account.as_str())
                    .arg(&check.tag[..])
                    .arg(check.now_ms)
                    .arg("")
                    .arg(self.base(shard));
            }
        }
        if let Some(key) = check.idempotency_key {
            invocation.arg(key);
        }
        let text: String = run(&self.connection, &invocation, self.writes()).await?;
        let reply = words(&text);
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
        let stored: Option<Vec<u8>> = query(
            &self.connection,
            redis::cmd("GET").arg(self.keys.verification(id)),
            Failure::Unavailable,
        )
        .await?;
        let Some(stored) = stored else {
            return Ok(None);
        };
        let record = Record::parse(&stored).ok_or_else(|| corrupt("verification record"))?;
        if record.account != account.as_str() {
            return Ok(None);
        }
        record.verification(id, account).map(Some)
    }

    async fn cancel_verification(
        &self,
        account: &AccountId,
        id: &VerificationId,
        now_ms: u64,
    ) -> Result<CancelOutcome, StoreError> {
        let mut invocation = self.cancel.prepare_invoke();
        invocation
            .key(self.keys.verification(id))
            .arg(self.base(id.shard()))
            .arg(account.as_str())
            .arg(now_ms)
            .arg(id.as_str());
        let text: String = run(&self.connection, &invocation, self.writes()).await?;
        let reply = words(&text);
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
        let mut invocation = self.record_attempt.prepare_invoke();
        invocation
            .key(self.keys.verification(verification))
            .arg(attempt_field_of(attempt))
            .arg(pack_attempt(attempt));
        // `recorded`, or `gone` when retention is over: either way nothing is left to do.
        run::<String>(&self.connection, &invocation, self.writes()).await?;
        // The receipt mapping is keyed by the vendor's id, so on a cluster it lives on whatever
        // shard that id hashes to, not on the message's. It only lets a later delivery receipt
        // find the attempt: failing the delivery for it would hold a message that is already
        // sent and recorded hostage to another shard (a dead master delayed every message whose
        // vendor id hashed there until the promotion). So it is written on a best-effort basis;
        // a receipt for a message whose mapping was lost is answered as unknown.
        if let Some(provider_id) = &attempt.provider_message_id {
            let mapped = redis::cmd("SET")
                .arg(self.keys.receipt(&attempt.provider, provider_id))
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
        let stored: Option<Vec<u8>> = query(
            &self.connection,
            redis::cmd("GET").arg(self.keys.verification(verification)),
            Failure::Unavailable,
        )
        .await?;
        let Some(record) = stored.as_deref().and_then(Record::parse) else {
            return Ok(Vec::new());
        };
        let mut attempts: Vec<SendAttempt> = record
            .attempts()
            .filter_map(|(field, value)| unpack_attempt(field, value))
            .collect();
        attempts.sort_by_key(|attempt| attempt.created_ms);
        Ok(attempts)
    }

    async fn apply_receipt(
        &self,
        provider: &str,
        receipt: &Receipt,
        now_ms: u64,
    ) -> Result<Option<ReceiptApplied>, StoreError> {
        let provider_message_id = receipt.provider_message_id.as_str();
        let status = receipt.status.as_str();
        let error = receipt.error.as_deref();
        let target: Option<String> = query(
            &self.connection,
            redis::cmd("GET").arg(self.keys.receipt(provider, provider_message_id)),
            Failure::Unavailable,
        )
        .await?;
        let Some((verification, message_id)) =
            target.as_deref().and_then(|value| value.split_once(' '))
        else {
            return Ok(None);
        };
        let Some(verification) = VerificationId::parse(verification) else {
            return Ok(None);
        };
        let mut invocation = self.apply_receipt.prepare_invoke();
        invocation
            .key(self.keys.verification(&verification))
            .arg(attempt_field(message_id))
            .arg(status)
            .arg(error.unwrap_or_default())
            .arg(now_ms);
        let applied: String = run(&self.connection, &invocation, self.writes()).await?;
        match words(&applied)[..] {
            ["unknown"] => Ok(None),
            ["applied", previous, account, to, channel] => Ok(Some(ReceiptApplied {
                account: AccountId::parse(account).ok_or_else(|| corrupt("receipt account"))?,
                verification,
                to: to.to_owned(),
                channel: Channel::parse(channel).ok_or_else(|| corrupt("receipt channel"))?,
                previous: previous.to_owned(),
                message_id: message_id.to_owned(),
            })),
            _ => Err(corrupt("unexpected receipt reply")),
        }
    }

    async fn workflow(&self, id: &VerificationId) -> Result<Option<Workflow>, StoreError> {
        self.read_workflow(id).await
    }

    async fn fire_due_fallbacks(
        &self,
        shard: u8,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<Fired>, StoreError> {
        self.fire_due(shard, now_ms, limit).await
    }

    async fn fall_back_now(
        &self,
        id: &VerificationId,
        message_id: &str,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        self.bring_forward(id, message_id, now_ms).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.connection.readiness().await
    }

    fn liveness(&self) -> Result<(), StoreError> {
        self.connection.liveness()
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
            assert_eq!(
                unpack_attempt(&field, &packed),
                Some(original),
                "{packed:?}"
            );
            assert!(attempt_was_sent(&packed));
        }
        let mut failed = attempt(Some("no provider"), None);
        failed.status = "failed".into();
        assert!(!attempt_was_sent(&pack_attempt(&failed)));
        assert_eq!(unpack_attempt(b"Afoo", b"\x01short"), None);
        // An id of another shape is kept as text, and a provider's try names its message.
        let mut odd = attempt(None, None);
        odd.message_id = "MSnot-hex".into();
        let field = attempt_field(&odd.message_id);
        assert_eq!(field, b"AMSnot-hex");
        assert_eq!(unpack_attempt(&field, &pack_attempt(&odd)), Some(odd));
        let mut tried = attempt(Some("timeout"), None);
        tried.status = "provider_error".into();
        let field = attempt_field_of(&tried);
        assert!(field.len() < 20 + tried.provider.len(), "{field:?}");
        assert_eq!(
            message_of_field(&field).as_deref(),
            Some(tried.message_id.as_str())
        );
    }
}
