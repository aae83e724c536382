//! The Redis PIN store: one Lua script per multi-key step, on the gateway's shared connection.
//!
//! Key names come from `KeySpace`, scripts from `src/redis/scripts/pin_*.lua`. Every key of one
//! account carries the hash tag
//! `{a:<account>}` (the directory's tag), so each script touches one slot and runs unchanged on
//! a Redis Cluster. Time is the caller's clock, passed as an argument.
//!
//! | key (`P:{a:<account>}:` + …) | type | holds |
//! | --- | --- | --- |
//! | `pn:<id>` | hash | a number: `e` E.164, `ts` two-step on (1/0), `h` PIN hash, `pv` PIN version, `n` consecutive failures, `nx` next attempt, `lk` locked at, `rg` registered at, `cr`/`up` times, `td`/`tr` digest of the pending disable/reset link, `dx`/`rx` their expiry |
//! | `pnx:<e164>` | string | the number's id (one per account and number) |
//! | `pl:<sha256 hex>` | hash | an e-mailed link: `id` number, `p` purpose (d/r), `ex` expiry, `u` used at (0: unused); kept a day past expiry |
//! | `pmail` | string | the account's e-mail address for two-step links |
//! | `pnz` | sorted set | the account's number ids, score 0: the list's index by id (`BYLEX`; numbers added before it existed are not listed) |
//! | `pncount` | string | how many numbers the account has (a transfer moves one), against `tenants.max_phone_numbers` |
//!
//! The gateway-wide registry (issue 14) lives outside the accounts' slots, one key per number
//! under its own hash tag: `P:{n:<e164>}:holder`, a string `<account> <id> <claimed at ms>`. A
//! cluster cannot run one script across two slots, so adding and transferring are ordered steps
//! with the registry as the deciding one: a new number is claimed there (SET if absent) before
//! the account's record is written, and released if that write is refused; a transfer swaps the
//! registry's holder (compare-and-set: of two concurrent claims exactly one wins), then deletes
//! the old record and writes the new one. A claim whose record never appeared (the instance
//! died between the steps) is taken over after `ORPHAN_CLAIM_MS`.

use async_trait::async_trait;
use redis::{Script, ToRedisArgs};

use crate::account::limits::{Limit, LimitReached, TenantSettings};
use crate::account::{hex, AccountId};
use crate::pin::store::{
    CreateOutcome, DisableOutcome, LinkInfo, LinkIssue, LinkOpening, LinkUse, Matched, NewLink,
    NewNumber, NumberRecord, NumberRef, PinAttempt, PinStore, PinWrite, PinWriteMode,
    PinWriteOutcome, Reservation, TransferOutcome, LINK_RETENTION_MS,
};
use crate::pin::{LinkPurpose, PhoneNumberId};
use crate::redis::connection::Connection;
use crate::redis::script::{corrupt, flag, run, scripts, Adapter, Failure, Reply};
use crate::store::StoreError;

/// A registry claim whose record never appeared is taken over after this long (the claiming
/// instance died between its two steps; a live one writes its record within milliseconds).
const ORPHAN_CLAIM_MS: u64 = 60_000;

/// The record's fields, in the order scripts answer them after their outcome word
/// (`NUMBER_FIELDS` in `scripts/prelude.lua`).
const RECORD_FIELDS: [&str; 10] = ["e", "ts", "n", "nx", "lk", "rg", "cr", "up", "dx", "rx"];

scripts! { PinScripts = "pin_": create, write_pin, reserve, succeeded, issue_link, use_link, disable, claim, swap, remove, list }

pub struct RedisPinStore {
    redis: Adapter,
    scripts: PinScripts,
    /// The per-account bound on numbers (issue 13 §8).
    tenants: TenantSettings,
}

impl RedisPinStore {
    pub(crate) fn new(connection: Connection, prefix: &str) -> Self {
        Self {
            redis: Adapter::new(connection, prefix),
            scripts: PinScripts::load(),
            tenants: TenantSettings::default(),
        }
    }

    /// A PIN store on the verification store's connection and prefix.
    pub fn on(store: &crate::redis::RedisStore) -> Self {
        Self::new(store.connection(), store.prefix())
    }

    /// The per-account bounds (`[tenants]`); the documented defaults until this is called.
    pub fn with_tenants(mut self, tenants: TenantSettings) -> Self {
        self.tenants = tenants;
        self
    }

    /// The registry value naming a holder (the claim time follows).
    fn holder_prefix(account: &AccountId, id: &PhoneNumberId) -> String {
        format!("{} {} ", account.as_str(), id.as_str())
    }

    /// Compare-and-set on the registry: `true` when `expected` held it and now `value` does
    /// (or nobody, for '').
    async fn swap_holder(
        &self,
        e164: &str,
        expected: &str,
        value: &str,
    ) -> Result<bool, StoreError> {
        let mut invocation = self.scripts.swap.prepare_invoke();
        invocation
            .key(self.redis.keys.phone_registry(e164))
            .arg(expected)
            .arg(value);
        let reply = self.redis.call(&invocation, "swap").await?;
        Ok(reply.outcome() == "swapped")
    }

    /// Writes the account's record (the pre-registry create script).
    async fn create_record(&self, new: &NewNumber) -> Result<CreateOutcome, StoreError> {
        let mut invocation = self.scripts.create.prepare_invoke();
        invocation
            .key(self.redis.keys.phone_number(&new.account, &new.id))
            .key(self.redis.keys.phone_index(&new.account, &new.e164))
            .key(self.redis.keys.phone_count(&new.account))
            .key(self.redis.keys.phone_numbers(&new.account))
            .arg(new.id.as_str())
            .arg(&new.e164)
            .arg(&new.pin_hash)
            .arg(new.now_ms)
            .arg(self.tenants.limits(&new.account).phone_numbers);
        let reply = self.redis.call(&invocation, "create").await?;
        match reply.outcome() {
            "limit" => Err(LimitReached {
                limit: Limit::PhoneNumbers,
                max: self.tenants.limits(&new.account).phone_numbers,
            }
            .into()),
            "created" => Ok(CreateOutcome::Created(parse_record(
                &new.id,
                &reply.rest(1),
            )?)),
            "exists" => Ok(CreateOutcome::Exists(parse_id(reply.word(1)?)?)),
            "id_taken" => Ok(CreateOutcome::IdTaken),
            _ => Err(reply.unknown()),
        }
    }

    /// The full key of a number's record, for tests and operators inspecting Redis.
    pub fn number_record_key(&self, account: &AccountId, id: &PhoneNumberId) -> String {
        self.redis.keys.phone_number(account, id)
    }

    fn number_key(&self, number: NumberRef<'_>) -> String {
        self.redis.keys.phone_number(number.account, number.id)
    }

    /// Runs a script on one number's record (`KEYS[1]`) with `args`; its reply, `what` naming
    /// the step in errors.
    async fn on_number(
        &self,
        script: &Script,
        what: &'static str,
        number: NumberRef<'_>,
        args: impl ToRedisArgs,
    ) -> Result<Reply, StoreError> {
        let mut invocation = script.prepare_invoke();
        invocation.key(self.number_key(number)).arg(args);
        self.redis.call(&invocation, what).await
    }
}

/// A record from the ten `RECORD_FIELDS` values.
fn parse_record(id: &PhoneNumberId, values: &[&str]) -> Result<NumberRecord, StoreError> {
    if values.len() < RECORD_FIELDS.len() {
        return Err(corrupt("short phone-number record"));
    }
    let number = |index: usize| -> Result<u64, StoreError> {
        values[index]
            .parse()
            .map_err(|_| corrupt("phone-number field is not a number"))
    };
    Ok(NumberRecord {
        id: id.clone(),
        e164: values[0].to_owned(),
        two_step: values[1] == "1",
        failures: number(2)? as u32,
        next_attempt_ms: number(3)?,
        locked_ms: number(4)?,
        registered_ms: number(5)?,
        created_ms: number(6)?,
        updated_ms: number(7)?,
        disable_link_expires_ms: number(8)?,
        reset_link_expires_ms: number(9)?,
    })
}

fn parse_id(text: &str) -> Result<PhoneNumberId, StoreError> {
    PhoneNumberId::parse(text).ok_or_else(|| corrupt("bad phone-number id"))
}

#[async_trait]
impl PinStore for RedisPinStore {
    async fn create(&self, new: &NewNumber) -> Result<CreateOutcome, StoreError> {
        let ours = format!(
            "{}{}",
            Self::holder_prefix(&new.account, &new.id),
            new.now_ms
        );
        let mut invocation = self.scripts.claim.prepare_invoke();
        invocation
            .key(self.redis.keys.phone_registry(&new.e164))
            .arg(&ours);
        let reply = self.redis.call(&invocation, "claim").await?;
        // The holder's value holds spaces: it is the rest of the reply, read whole.
        let held = match reply.outcome() {
            "claimed" => None,
            "held" => Some(reply.tail()?.to_owned()),
            _ => return Err(reply.unknown()),
        };
        let Some(held) = held else {
            let outcome = self.create_record(new).await;
            if !matches!(outcome, Ok(CreateOutcome::Created(_))) {
                // Refused (or unknown): the claim goes, so the number stays free.
                self.swap_holder(&new.e164, &ours, "").await?;
            }
            return outcome;
        };
        let mut parts = held.split(' ');
        let (Some(account), Some(id), Some(claimed_ms)) = (
            parts.next().and_then(AccountId::parse),
            parts.next().and_then(PhoneNumberId::parse),
            parts.next().and_then(|ms| ms.parse::<u64>().ok()),
        ) else {
            return Err(corrupt("bad phone-number registry entry"));
        };
        let prefix = Self::holder_prefix(&account, &id);
        let holder = NumberRef {
            account: &account,
            id: &id,
        };
        let exists = self.get(holder).await?.is_some();
        if account == new.account {
            if exists {
                return Ok(CreateOutcome::Exists(id));
            }
            // Our own claim whose record never appeared: write it and name it.
            let outcome = self.create_record(new).await?;
            if matches!(outcome, CreateOutcome::Created(_)) {
                self.swap_holder(&new.e164, &prefix, &ours).await?;
            }
            return Ok(outcome);
        }
        if !exists && new.now_ms.saturating_sub(claimed_ms) >= ORPHAN_CLAIM_MS {
            if !self.swap_holder(&new.e164, &prefix, &ours).await? {
                return Ok(CreateOutcome::HeldElsewhere { account, id });
            }
            let outcome = self.create_record(new).await;
            if !matches!(outcome, Ok(CreateOutcome::Created(_))) {
                self.swap_holder(&new.e164, &ours, "").await?;
            }
            return outcome;
        }
        Ok(CreateOutcome::HeldElsewhere { account, id })
    }

    async fn transfer(
        &self,
        from: NumberRef<'_>,
        new: &NewNumber,
    ) -> Result<TransferOutcome, StoreError> {
        // The new account's bound first: after the swap there is no way back.
        let count: Option<u64> = (self.redis)
            .query(redis::cmd("GET").arg(self.redis.keys.phone_count(&new.account)))
            .await?;
        let max = self.tenants.limits(&new.account).phone_numbers;
        if count.unwrap_or(0) >= max {
            return Err(LimitReached {
                limit: Limit::PhoneNumbers,
                max,
            }
            .into());
        }
        let ours = format!(
            "{}{}",
            Self::holder_prefix(&new.account, &new.id),
            new.now_ms
        );
        let holder = Self::holder_prefix(from.account, from.id);
        if !self.swap_holder(&new.e164, &holder, &ours).await? {
            return Ok(TransferOutcome::Lost);
        }
        let mut invocation = self.scripts.remove.prepare_invoke();
        invocation
            .key(self.number_key(from))
            .key(self.redis.keys.phone_index(from.account, &new.e164))
            .key(self.redis.keys.phone_count(from.account))
            .key(self.redis.keys.phone_numbers(from.account))
            .arg(from.id.as_str());
        self.redis.call(&invocation, "remove").await?;
        let CreateOutcome::Created(mut record) = self.create_record(new).await? else {
            return Err(corrupt("the transferred number could not be written"));
        };
        // A transferred number counts as registered: its PIN was proven (or two-step was off
        // and the new PIN is set).
        let key = self.redis.keys.phone_number(&new.account, &new.id);
        let command = redis::cmd("HSET")
            .arg(key)
            .arg("rg")
            .arg(new.now_ms)
            .clone();
        self.redis.query::<()>(&command).await?;
        record.registered_ms = new.now_ms;
        Ok(TransferOutcome::Transferred(record))
    }

    async fn get(&self, number: NumberRef<'_>) -> Result<Option<NumberRecord>, StoreError> {
        let command = redis::cmd("HMGET")
            .arg(self.number_key(number))
            .arg(&RECORD_FIELDS)
            .clone();
        let values: Vec<Option<String>> = self.redis.query(&command).await?;
        if values.first().is_none_or(Option::is_none) {
            return Ok(None);
        }
        let values: Vec<&str> = values
            .iter()
            .map(|value| value.as_deref().unwrap_or("0"))
            .collect();
        parse_record(number.id, &values).map(Some)
    }

    async fn list(
        &self,
        account: &AccountId,
        after: Option<&PhoneNumberId>,
        limit: usize,
    ) -> Result<Vec<NumberRecord>, StoreError> {
        let mut invocation = self.scripts.list.prepare_invoke();
        invocation
            .key(self.redis.keys.phone_numbers(account))
            .arg(after.map(PhoneNumberId::as_str).unwrap_or_default())
            .arg(limit)
            .arg(self.redis.keys.account_base(account))
            .arg(&RECORD_FIELDS);
        let rows: Vec<Vec<Option<String>>> =
            run(&self.redis.connection, &invocation, Failure::Unavailable).await?;
        rows.into_iter()
            .map(|row| {
                let (id, fields) = row
                    .split_first()
                    .ok_or_else(|| corrupt("empty phone-number row"))?;
                let id = id
                    .as_deref()
                    .and_then(PhoneNumberId::parse)
                    .ok_or_else(|| corrupt("phone-number id in the index"))?;
                let values: Vec<&str> = fields
                    .iter()
                    .map(|value| value.as_deref().unwrap_or("0"))
                    .collect();
                parse_record(&id, &values)
            })
            .collect()
    }

    async fn write_pin(&self, write: &PinWrite<'_>) -> Result<PinWriteOutcome, StoreError> {
        let number = write.number;
        let (mode, unlock) = match write.mode {
            PinWriteMode::Set { unlock } => ("set", unlock),
            PinWriteMode::EnableOnRegister => ("register", false),
        };
        let args = (write.pin_hash, mode, flag(unlock), write.now_ms);
        let script = &self.scripts.write_pin;
        let reply = (self.on_number(script, "write_pin", number, (args, write.limits))).await?;
        match reply.outcome() {
            "written" => Ok(PinWriteOutcome::Written {
                was_enabled: reply.flag(1)?,
                was_locked: reply.flag(2)?,
                record: parse_record(number.id, &reply.rest(3))?,
            }),
            "locked" => Ok(PinWriteOutcome::Locked),
            "enabled" => Ok(PinWriteOutcome::Enabled),
            "not_found" => Ok(PinWriteOutcome::NotFound),
            _ => Err(reply.unknown()),
        }
    }

    async fn reserve_attempt(&self, attempt: PinAttempt<'_>) -> Result<Reservation, StoreError> {
        let (script, args) = (&self.scripts.reserve, (attempt.now_ms, attempt.limits));
        let reply = self
            .on_number(script, "reserve", attempt.number, args)
            .await?;
        match reply.outcome() {
            "go" => Ok(Reservation::Go {
                pin_hash: reply.word(1)?.to_owned(),
                attempt: reply.parse(2)?,
                pin_version: reply.parse(3)?,
            }),
            "wait" => Ok(Reservation::Wait {
                retry_after_ms: reply.parse(1)?,
            }),
            "locked" => Ok(Reservation::Locked),
            "disabled" => Ok(Reservation::Disabled),
            "not_found" => Ok(Reservation::NotFound),
            _ => Err(reply.unknown()),
        }
    }

    async fn attempt_succeeded(&self, matched: Matched<'_>) -> Result<bool, StoreError> {
        let (script, args) = (
            &self.scripts.succeeded,
            (matched.pin_version, matched.now_ms),
        );
        let reply = self
            .on_number(script, "succeeded", matched.number, args)
            .await?;
        Ok(reply.outcome() == "cleared")
    }

    async fn issue_link(&self, link: &NewLink<'_>) -> Result<LinkIssue, StoreError> {
        let number = link.number;
        let mut invocation = self.scripts.issue_link.prepare_invoke();
        invocation
            .key(self.number_key(number))
            .key(self.redis.keys.pin_link(number.account, &link.digest))
            .arg(link.purpose.code())
            .arg(hex(&link.digest))
            .arg(link.now_ms)
            .arg(link.ttl_ms)
            .arg(LINK_RETENTION_MS)
            .arg(number.id.as_str());
        let reply = self.redis.call(&invocation, "issue_link").await?;
        match reply.outcome() {
            "issued" => Ok(LinkIssue::Issued {
                e164: reply.word(1)?.to_owned(),
            }),
            "already_disabled" => Ok(LinkIssue::AlreadyDisabled),
            "not_found" => Ok(LinkIssue::NotFound),
            _ => Err(reply.unknown()),
        }
    }

    async fn peek_link(
        &self,
        account: &AccountId,
        digest: &[u8; 32],
    ) -> Result<Option<LinkInfo>, StoreError> {
        let command = redis::cmd("HMGET")
            .arg(self.redis.keys.pin_link(account, digest))
            .arg(&["id", "p", "ex", "u"])
            .clone();
        let (id, purpose, expires, used): (
            Option<String>,
            Option<String>,
            Option<u64>,
            Option<u64>,
        ) = self.redis.query(&command).await?;
        let (Some(id), Some(purpose), Some(expires_ms)) = (id, purpose, expires) else {
            return Ok(None);
        };
        Ok(Some(LinkInfo {
            number: parse_id(&id)?,
            purpose: LinkPurpose::from_code(&purpose).ok_or_else(|| corrupt("link purpose"))?,
            expires_ms,
            used: used.unwrap_or(0) != 0,
        }))
    }

    async fn use_link(&self, opening: &LinkOpening<'_>) -> Result<LinkUse, StoreError> {
        let account = opening.account;
        let mut invocation = self.scripts.use_link.prepare_invoke();
        invocation
            .key(self.redis.keys.pin_link(account, opening.digest))
            .arg(self.redis.keys.account_base(account))
            .arg(opening.purpose.code())
            .arg(hex(opening.digest))
            .arg(opening.new_pin_hash.unwrap_or(""))
            .arg(opening.now_ms);
        let reply = self.redis.call(&invocation, "use_link").await?;
        match reply.outcome() {
            "done" => Ok(LinkUse::Done {
                number: parse_id(reply.word(1)?)?,
                e164: reply.word(2)?.to_owned(),
                was_locked: reply.flag(3)?,
            }),
            "already_disabled" => Ok(LinkUse::AlreadyDisabled {
                number: parse_id(reply.word(1)?)?,
            }),
            "unknown" => Ok(LinkUse::Unknown),
            "used" => Ok(LinkUse::Used),
            "expired" => Ok(LinkUse::Expired),
            "superseded" => Ok(LinkUse::Superseded),
            _ => Err(reply.unknown()),
        }
    }

    async fn disable(
        &self,
        number: NumberRef<'_>,
        now_ms: u64,
    ) -> Result<DisableOutcome, StoreError> {
        let script = &self.scripts.disable;
        let reply = self.on_number(script, "disable", number, now_ms).await?;
        match reply.outcome() {
            "disabled" => Ok(DisableOutcome::Disabled {
                e164: reply.word(1)?.to_owned(),
                was_locked: reply.flag(2)?,
            }),
            "already_disabled" => Ok(DisableOutcome::AlreadyDisabled),
            "not_found" => Ok(DisableOutcome::NotFound),
            _ => Err(reply.unknown()),
        }
    }

    async fn set_email(&self, account: &AccountId, email: &str) -> Result<(), StoreError> {
        let key = self.redis.keys.pin_email(account);
        self.redis
            .query(redis::cmd("SET").arg(key).arg(email))
            .await
    }

    async fn email(&self, account: &AccountId) -> Result<Option<String>, StoreError> {
        let key = self.redis.keys.pin_email(account);
        self.redis.query(redis::cmd("GET").arg(key)).await
    }
}
