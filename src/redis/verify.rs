//! Verify's Redis store (`RedisStore`): one Lua script per atomic step, on a single server or a
//! Redis Cluster. It owns the connection the other Redis adapters share (`connection()`).
//!
//! Key names come from `KeySpace` (`src/redis/keys.rs`), scripts from `src/redis/scripts/`. Every key of one number's verifications carries the hash tag
//! `{sNN}` of the number's shard, so each script touches one slot and works on Cluster unchanged:
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `P:{sNN}:v:<id>` | hash | the verification: `a` account, `s` status, `n` attempts, `M` max attempts, `e` expiry, `m` code tag (while pending), `p` packed `<e164> <created> <length> <channel> <sends>`; per message `A<message id>`, its delivery state (`pack_attempt`), which also tells a redelivery that a provider accepted it |
//! | `P:{sNN}:n:<account>:<e164>` | hash | the number: `v` id of its pending verification, `q` sends in the quota window, `w` when the window ends |
//! | `P:{sNN}:i:<account>:<e164>:<key>` | string | id answered for a send's idempotency key |
//! | `P:{sNN}:c:<account>:<e164>:<key>` | string | the reply recorded for a check's idempotency key (`verify_check.lua`'s reply) |
//! | `P:{sNN}:o` | stream | outgoing messages of the shard, consumer group `dispatch` (see `outbox.rs`) |
//! | `P:{sNN}:d` | stream | dead letters: messages no provider took, with the reasons |
//! | `P:{sNN}:f` | sorted set | workflows waiting for their next step, by due time (`workflow.rs`; the record's `w…` and `b…` fields hold the steps) |
//! | `P:r:<provider>:<provider message id>` | string | `<verification id> <message id>`, for receipts |
//!
//! Time comes from the caller's clock (an argument), not Redis `TIME`, so that tests move it and
//! every instance decides expiry the same way; key TTLs only bound how long records are kept.

use std::sync::Arc;

use async_trait::async_trait;
use redis::Script;

use crate::abuse::reserve::Ask;
use crate::abuse::{AbuseSettings, Reservations, SendCheck};
use crate::account::AccountId;
use crate::dispatch::receipts::Receipt;
use crate::redis::abuse::{self, Verdict};
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
    /// This instance's sends admitted ahead (`abuse/reserve.rs`), shared with the abuse store.
    reservations: Option<Arc<Reservations>>,
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

/// The record's field for one message: `A<message id>`.
pub(crate) fn attempt_field(message_id: &str) -> String {
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
pub(crate) fn attempt_was_sent(value: &str) -> bool {
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
            reservations: None,
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
    /// with `abuse.max_tracked` entries per account, on a single server only: on a cluster the
    /// account's counters and the number's records are in different slots. On both, the
    /// admission counts sends ahead for a busy prefix (`abuse.reserve_ahead`), and the abuse
    /// store made `on` this one shares them.
    pub fn admitting_sends(mut self, settings: &AbuseSettings) -> Self {
        if !self.cluster {
            self.start_admitted = Some((admit_then_start(), settings.max_tracked));
        }
        self.reservations = Some(Arc::new(abuse::reservations(settings)));
        self
    }

    /// The sends admitted ahead on this instance, when it admits sends (`admitting_sends`).
    pub(crate) fn reservations(&self) -> Option<Arc<Reservations>> {
        self.reservations.clone()
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
         if string.byte(verdict) ~= 97 then return verdict end\n\
         local started = start({{unpack(KEYS, {keys} + 1)}}, {{unpack(ARGV, {args} + 1)}})\n\
         if verdict == 'admitted' then return started end\n\
         return verdict .. ' ' .. started\n",
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
        // `admitting_sends` sets both.
        let (Some((script, max_tracked)), Some(reservations)) =
            (&self.start_admitted, self.reservations.as_deref())
        else {
            return Err(StoreError::Unavailable(
                "this store does not admit sends".into(),
            ));
        };
        let ask = reservations.take(check);
        // A send counted ahead by an earlier admission needs only the start.
        if ask == (Ask::Counted { refill: 0 }) {
            return self.start_verification(new).await;
        }
        let mut invocation = script.prepare_invoke();
        abuse::admit_arguments(&self.keys, *max_tracked, check, ask, &mut invocation);
        self.start_arguments(new, &mut invocation);
        let ran = run::<String>(&self.connection, &invocation, self.writes()).await;
        let text = match ran {
            Ok(text) => text,
            Err(error) => {
                abuse::settle(reservations, check, ask, None)?;
                return Err(error);
            }
        };
        let reply = words(&text);
        let verdict = abuse::admission(&reply, check)?;
        abuse::settle(reservations, check, ask, Some(&verdict))?;
        match verdict {
            Verdict::Refused(block) => Ok(StartOutcome::Refused(block)),
            Verdict::Admitted { rest: [], .. } => Err(corrupt("admitted without a start")),
            Verdict::Admitted { rest, .. } => parse_start(rest, &new.account),
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
        let fields: Vec<Option<String>> = query(
            &self.connection,
            redis::cmd("HMGET")
                .arg(self.keys.verification(id))
                .arg(&["a", "s", "n", "M", "e", "p"]),
            Failure::Unavailable,
        )
        .await?;
        if fields.first().and_then(Option::as_deref) != Some(account.as_str()) {
            return Ok(None);
        }
        // The script reply's shape (see `answer` in `scripts/prelude.lua`): the packed `p` is split like the rest.
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
        // Field, value, field, value, … (RESP2's flat answer); bytes, as the code tag is binary.
        let stored: Vec<Vec<u8>> = query(
            &self.connection,
            redis::cmd("HGETALL").arg(self.keys.verification(verification)),
            Failure::Unavailable,
        )
        .await?;
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
            assert_eq!(unpack_attempt(&field, &packed), Some(original), "{packed}");
            assert!(attempt_was_sent(&packed));
        }
        let mut failed = attempt(Some("no provider"), None);
        failed.status = "failed".into();
        assert!(!attempt_was_sent(&pack_attempt(&failed)));
        assert_eq!(unpack_attempt("Afoo", "not an attempt"), None);
    }
}
