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
use redis::Script;

use crate::account::limits::{Limit, LimitReached, TenantSettings};
use crate::account::{hex, AccountId};
use crate::pin::store::{
    CreateOutcome, DisableOutcome, LinkInfo, LinkIssue, LinkUse, NewLink, NewNumber, NumberRecord,
    PinStore, PinWriteMode, PinWriteOutcome, Reservation, TransferOutcome, LINK_RETENTION_MS,
};
use crate::pin::{AttemptLimits, LinkPurpose, PhoneNumberId};
use crate::redis::connection::Connection;
use crate::redis::script::{corrupt, lua, query, run, words, Failure};
use crate::redis::KeySpace;
use crate::store::StoreError;

/// A registry claim whose record never appeared is taken over after this long (the claiming
/// instance died between its two steps; a live one writes its record within milliseconds).
const ORPHAN_CLAIM_MS: u64 = 60_000;

/// The record's fields, in the order scripts answer them after their outcome word
/// (`NUMBER_FIELDS` in `scripts/prelude.lua`).
const RECORD_FIELDS: [&str; 10] = ["e", "ts", "n", "nx", "lk", "rg", "cr", "up", "dx", "rx"];

pub struct RedisPinStore {
    connection: Connection,
    keys: KeySpace,
    create: Script,
    write_pin: Script,
    reserve: Script,
    succeeded: Script,
    issue_link: Script,
    use_link: Script,
    disable: Script,
    claim: Script,
    swap: Script,
    remove: Script,
    /// The per-account bound on numbers (issue 13 §8).
    tenants: TenantSettings,
}

impl RedisPinStore {
    pub(crate) fn new(connection: Connection, prefix: &str) -> Self {
        Self {
            connection,
            keys: KeySpace::new(prefix),
            create: lua!("pin_create"),
            write_pin: lua!("pin_write_pin"),
            reserve: lua!("pin_reserve"),
            succeeded: lua!("pin_succeeded"),
            issue_link: lua!("pin_issue_link"),
            use_link: lua!("pin_use_link"),
            disable: lua!("pin_disable"),
            claim: lua!("pin_claim"),
            swap: lua!("pin_swap"),
            remove: lua!("pin_remove"),
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
        let mut invocation = self.swap.prepare_invoke();
        invocation
            .key(self.keys.phone_registry(e164))
            .arg(expected)
            .arg(value);
        Ok(self.run(&invocation).await? == "swapped")
    }

    /// Writes the account's record (the pre-registry create script).
    async fn create_record(&self, new: &NewNumber) -> Result<CreateOutcome, StoreError> {
        let mut invocation = self.create.prepare_invoke();
        invocation
            .key(self.keys.phone_number(&new.account, &new.id))
            .key(self.keys.phone_index(&new.account, &new.e164))
            .key(self.keys.phone_count(&new.account))
            .arg(new.id.as_str())
            .arg(&new.e164)
            .arg(&new.pin_hash)
            .arg(new.now_ms)
            .arg(self.tenants.limits(&new.account).phone_numbers);
        let text = self.run(&invocation).await?;
        let reply = words(&text);
        match reply.first().copied() {
            Some("limit") => Err(LimitReached {
                limit: Limit::PhoneNumbers,
                max: self.tenants.limits(&new.account).phone_numbers,
            }
            .into()),
            Some("created") => Ok(CreateOutcome::Created(parse_record(&new.id, &reply[1..])?)),
            Some("exists") => Ok(CreateOutcome::Exists(parse_id(reply.get(1).copied())?)),
            Some("id_taken") => Ok(CreateOutcome::IdTaken),
            _ => Err(corrupt("unknown create reply")),
        }
    }

    /// The full key of a number's record, for tests and operators inspecting Redis.
    pub fn number_record_key(&self, account: &AccountId, id: &PhoneNumberId) -> String {
        self.keys.phone_number(account, id)
    }

    /// Runs a script: its one-string reply (see `crate::redis::script`).
    async fn run(&self, invocation: &redis::ScriptInvocation<'_>) -> Result<String, StoreError> {
        run(&self.connection, invocation, Failure::Unavailable).await
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

fn parse_id(text: Option<&str>) -> Result<PhoneNumberId, StoreError> {
    text.and_then(PhoneNumberId::parse)
        .ok_or_else(|| corrupt("bad phone-number id"))
}

#[async_trait]
impl PinStore for RedisPinStore {
    async fn create(&self, new: &NewNumber) -> Result<CreateOutcome, StoreError> {
        let ours = format!(
            "{}{}",
            Self::holder_prefix(&new.account, &new.id),
            new.now_ms
        );
        let mut invocation = self.claim.prepare_invoke();
        invocation
            .key(self.keys.phone_registry(&new.e164))
            .arg(&ours);
        let text = self.run(&invocation).await?;
        // The holder's value holds spaces: it is the rest of the reply, read whole.
        let held = match text.split_once(' ') {
            None if text == "claimed" => None,
            Some(("held", value)) => Some(value.to_owned()),
            _ => return Err(corrupt("unknown claim reply")),
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
        let exists = self.get(&account, &id).await?.is_some();
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
        from: &AccountId,
        from_id: &PhoneNumberId,
        new: &NewNumber,
    ) -> Result<TransferOutcome, StoreError> {
        // The new account's bound first: after the swap there is no way back.
        let count: Option<u64> = query(
            &self.connection,
            redis::cmd("GET").arg(self.keys.phone_count(&new.account)),
            Failure::Unavailable,
        )
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
        if !self
            .swap_holder(&new.e164, &Self::holder_prefix(from, from_id), &ours)
            .await?
        {
            return Ok(TransferOutcome::Lost);
        }
        let mut invocation = self.remove.prepare_invoke();
        invocation
            .key(self.keys.phone_number(from, from_id))
            .key(self.keys.phone_index(from, &new.e164))
            .key(self.keys.phone_count(from))
            .arg(from_id.as_str());
        self.run(&invocation).await?;
        match self.create_record(new).await? {
            CreateOutcome::Created(mut record) => {
                // A transferred number counts as registered: its PIN was proven (or two-step
                // was off and the new PIN is set).
                query::<()>(
                    &self.connection,
                    redis::cmd("HSET")
                        .arg(self.keys.phone_number(&new.account, &new.id))
                        .arg("rg")
                        .arg(new.now_ms),
                    Failure::Unavailable,
                )
                .await?;
                record.registered_ms = new.now_ms;
                Ok(TransferOutcome::Transferred(record))
            }
            _ => Err(corrupt("the transferred number could not be written")),
        }
    }

    async fn get(
        &self,
        account: &AccountId,
        id: &PhoneNumberId,
    ) -> Result<Option<NumberRecord>, StoreError> {
        let values: Vec<Option<String>> = query(
            &self.connection,
            redis::cmd("HMGET")
                .arg(self.keys.phone_number(account, id))
                .arg(&RECORD_FIELDS),
            Failure::Unavailable,
        )
        .await?;
        if values.first().is_none_or(Option::is_none) {
            return Ok(None);
        }
        let values: Vec<&str> = values
            .iter()
            .map(|value| value.as_deref().unwrap_or("0"))
            .collect();
        parse_record(id, &values).map(Some)
    }

    async fn write_pin(
        &self,
        account: &AccountId,
        id: &PhoneNumberId,
        pin_hash: &str,
        mode: PinWriteMode,
        limits: &AttemptLimits,
        now_ms: u64,
    ) -> Result<PinWriteOutcome, StoreError> {
        let (mode_word, unlock) = match mode {
            PinWriteMode::Set { unlock } => ("set", unlock),
            PinWriteMode::EnableOnRegister => ("register", false),
        };
        let mut invocation = self.write_pin.prepare_invoke();
        invocation
            .key(self.keys.phone_number(account, id))
            .arg(pin_hash)
            .arg(mode_word)
            .arg(if unlock { "1" } else { "0" })
            .arg(limits.max_failures)
            .arg(now_ms);
        let text = self.run(&invocation).await?;
        let reply = words(&text);
        match reply.first().copied() {
            Some("written") if reply.len() >= 3 => Ok(PinWriteOutcome::Written {
                was_enabled: reply[1] == "1",
                was_locked: reply[2] == "1",
                record: parse_record(id, &reply[3..])?,
            }),
            Some("locked") => Ok(PinWriteOutcome::Locked),
            Some("enabled") => Ok(PinWriteOutcome::Enabled),
            Some("not_found") => Ok(PinWriteOutcome::NotFound),
            _ => Err(corrupt("unknown write_pin reply")),
        }
    }

    async fn reserve_attempt(
        &self,
        account: &AccountId,
        id: &PhoneNumberId,
        limits: &AttemptLimits,
        now_ms: u64,
    ) -> Result<Reservation, StoreError> {
        let mut invocation = self.reserve.prepare_invoke();
        invocation
            .key(self.keys.phone_number(account, id))
            .arg(now_ms)
            .arg(limits.free_attempts)
            .arg(limits.first_wait.as_millis() as u64)
            .arg(limits.max_wait.as_millis() as u64)
            .arg(limits.max_failures);
        let text = self.run(&invocation).await?;
        let reply = words(&text);
        let number = |index: usize| -> Result<u64, StoreError> {
            reply
                .get(index)
                .and_then(|text| text.parse().ok())
                .ok_or_else(|| corrupt("reserve reply"))
        };
        match reply.first().copied() {
            Some("go") => Ok(Reservation::Go {
                pin_hash: reply.get(1).copied().unwrap_or_default().to_owned(),
                attempt: number(2)? as u32,
                pin_version: number(3)?,
            }),
            Some("wait") => Ok(Reservation::Wait {
                retry_after_ms: number(1)?,
            }),
            Some("locked") => Ok(Reservation::Locked),
            Some("disabled") => Ok(Reservation::Disabled),
            Some("not_found") => Ok(Reservation::NotFound),
            _ => Err(corrupt("unknown reserve reply")),
        }
    }

    async fn attempt_succeeded(
        &self,
        account: &AccountId,
        id: &PhoneNumberId,
        pin_version: u64,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        let mut invocation = self.succeeded.prepare_invoke();
        invocation
            .key(self.keys.phone_number(account, id))
            .arg(pin_version)
            .arg(now_ms);
        Ok(self.run(&invocation).await? == "cleared")
    }

    async fn issue_link(
        &self,
        account: &AccountId,
        id: &PhoneNumberId,
        link: &NewLink,
    ) -> Result<LinkIssue, StoreError> {
        let NewLink {
            purpose,
            ref digest,
            now_ms,
            ttl_ms,
        } = *link;
        let mut invocation = self.issue_link.prepare_invoke();
        invocation
            .key(self.keys.phone_number(account, id))
            .key(self.keys.pin_link(account, digest))
            .arg(purpose.code())
            .arg(hex(digest))
            .arg(now_ms)
            .arg(ttl_ms)
            .arg(LINK_RETENTION_MS)
            .arg(id.as_str());
        let text = self.run(&invocation).await?;
        let reply = words(&text);
        match reply.first().copied() {
            Some("issued") => Ok(LinkIssue::Issued {
                e164: reply.get(1).copied().unwrap_or_default().to_owned(),
            }),
            Some("already_disabled") => Ok(LinkIssue::AlreadyDisabled),
            Some("not_found") => Ok(LinkIssue::NotFound),
            _ => Err(corrupt("unknown issue_link reply")),
        }
    }

    async fn peek_link(
        &self,
        account: &AccountId,
        digest: &[u8; 32],
    ) -> Result<Option<LinkInfo>, StoreError> {
        let (id, purpose, expires, used): (
            Option<String>,
            Option<String>,
            Option<u64>,
            Option<u64>,
        ) = query(
            &self.connection,
            redis::cmd("HMGET")
                .arg(self.keys.pin_link(account, digest))
                .arg(&["id", "p", "ex", "u"]),
            Failure::Unavailable,
        )
        .await?;
        let (Some(id), Some(purpose), Some(expires_ms)) = (id, purpose, expires) else {
            return Ok(None);
        };
        Ok(Some(LinkInfo {
            number: parse_id(Some(&id))?,
            purpose: LinkPurpose::from_code(&purpose).ok_or_else(|| corrupt("link purpose"))?,
            expires_ms,
            used: used.unwrap_or(0) != 0,
        }))
    }

    async fn use_link(
        &self,
        account: &AccountId,
        digest: &[u8; 32],
        purpose: LinkPurpose,
        new_pin_hash: Option<&str>,
        now_ms: u64,
    ) -> Result<LinkUse, StoreError> {
        let mut invocation = self.use_link.prepare_invoke();
        invocation
            .key(self.keys.pin_link(account, digest))
            .arg(self.keys.account_base(account))
            .arg(purpose.code())
            .arg(hex(digest))
            .arg(new_pin_hash.unwrap_or(""))
            .arg(now_ms);
        let text = self.run(&invocation).await?;
        let reply = words(&text);
        match reply.first().copied() {
            Some("done") if reply.len() >= 4 => Ok(LinkUse::Done {
                number: parse_id(reply.get(1).copied())?,
                e164: reply[2].to_owned(),
                was_locked: reply[3] == "1",
            }),
            Some("already_disabled") => Ok(LinkUse::AlreadyDisabled {
                number: parse_id(reply.get(1).copied())?,
            }),
            Some("unknown") => Ok(LinkUse::Unknown),
            Some("used") => Ok(LinkUse::Used),
            Some("expired") => Ok(LinkUse::Expired),
            Some("superseded") => Ok(LinkUse::Superseded),
            _ => Err(corrupt("unknown use_link reply")),
        }
    }

    async fn disable(
        &self,
        account: &AccountId,
        id: &PhoneNumberId,
        now_ms: u64,
    ) -> Result<DisableOutcome, StoreError> {
        let mut invocation = self.disable.prepare_invoke();
        invocation
            .key(self.keys.phone_number(account, id))
            .arg(now_ms);
        let text = self.run(&invocation).await?;
        let reply = words(&text);
        match reply.first().copied() {
            Some("disabled") if reply.len() >= 3 => Ok(DisableOutcome::Disabled {
                e164: reply[1].to_owned(),
                was_locked: reply[2] == "1",
            }),
            Some("already_disabled") => Ok(DisableOutcome::AlreadyDisabled),
            Some("not_found") => Ok(DisableOutcome::NotFound),
            _ => Err(corrupt("unknown disable reply")),
        }
    }

    async fn set_email(&self, account: &AccountId, email: &str) -> Result<(), StoreError> {
        query(
            &self.connection,
            redis::cmd("SET")
                .arg(self.keys.pin_email(account))
                .arg(email),
            Failure::Unavailable,
        )
        .await
    }

    async fn email(&self, account: &AccountId) -> Result<Option<String>, StoreError> {
        query(
            &self.connection,
            redis::cmd("GET").arg(self.keys.pin_email(account)),
            Failure::Unavailable,
        )
        .await
    }
}
