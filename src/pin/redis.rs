//! The Redis PIN store: one Lua script per multi-key step, on the gateway's shared connection.
//!
//! Only this file knows the PIN store's key names. Every key of one account carries the hash tag
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

use super::memory::LINK_RETENTION_MS;
use super::store::{
    CreateOutcome, DisableOutcome, LinkInfo, LinkIssue, LinkUse, NewNumber, NumberRecord, PinStore,
    PinWriteMode, PinWriteOutcome, Reservation, TransferOutcome,
};
use super::{AttemptLimits, LinkPurpose, PhoneNumberId};
use crate::account::limits::{Limit, LimitReached, TenantSettings};
use crate::account::{hex, AccountId};
use crate::store::redis::Connection;
use crate::store::StoreError;

/// A registry claim whose record never appeared is taken over after this long (the claiming
/// instance died between its two steps; a live one writes its record within milliseconds).
const ORPHAN_CLAIM_MS: u64 = 60_000;

/// The record's fields, in the order scripts return them after their outcome word.
const LUA_COMMON: &str = r#"
local FIELDS = {'e', 'ts', 'n', 'nx', 'lk', 'rg', 'cr', 'up', 'dx', 'rx'}
local function load(key) return redis.call('HMGET', key, unpack(FIELDS)) end
local function int(x) return string.format('%d', x) end
"#;
const RECORD_FIELDS: [&str; 10] = ["e", "ts", "n", "nx", "lk", "rg", "cr", "up", "dx", "rx"];

/// KEYS: number, index, the account's count. ARGV: id, e164, PIN hash, now, max numbers.
const LUA_CREATE: &str = r#"
local existing = redis.call('GET', KEYS[2])
if existing then return {'exists', existing} end
if redis.call('EXISTS', KEYS[1]) == 1 then return {'id_taken'} end
if tonumber(redis.call('GET', KEYS[3]) or '0') >= tonumber(ARGV[5]) then return {'limit'} end
redis.call('INCR', KEYS[3])
redis.call('HSET', KEYS[1], 'e', ARGV[2], 'ts', '1', 'h', ARGV[3], 'pv', '1', 'n', '0',
  'nx', '0', 'lk', '0', 'rg', '0', 'cr', ARGV[4], 'up', ARGV[4], 'dx', '0', 'rx', '0',
  'td', '', 'tr', '')
redis.call('SET', KEYS[2], ARGV[1])
return {'created', unpack(load(KEYS[1]))}
"#;

/// KEYS: registry. ARGV: value. Claims a number nobody holds; else answers the holder.
const LUA_CLAIM: &str = r#"
local v = redis.call('GET', KEYS[1])
if v then return {'held', v} end
redis.call('SET', KEYS[1], ARGV[1])
return {'claimed'}
"#;

/// KEYS: registry. ARGV: the expected holder's value prefix (`<account> <id> `), the new
/// value, or '' to delete.
const LUA_SWAP: &str = r#"
local v = redis.call('GET', KEYS[1])
if not v or string.sub(v, 1, #ARGV[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then redis.call('DEL', KEYS[1]) else redis.call('SET', KEYS[1], ARGV[2]) end
return 1
"#;

/// KEYS: number, index, the account's count. ARGV: id. Removes a transferred number.
const LUA_REMOVE: &str = r#"
if redis.call('DEL', KEYS[1]) == 1 then
  if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
  if tonumber(redis.call('GET', KEYS[3]) or '0') > 0 then redis.call('DECR', KEYS[3]) end
end
return {'removed'}
"#;

/// KEYS: number. ARGV: PIN hash, mode (set/register), unlock (1/0), max failures, now.
const LUA_WRITE_PIN: &str = r#"
local v = redis.call('HMGET', KEYS[1], 'ts', 'n')
if not v[1] then return {'not_found'} end
local was_enabled = v[1] == '1'
local was_locked = tonumber(v[2]) >= tonumber(ARGV[4])
if ARGV[2] == 'set' then
  if was_locked and ARGV[3] ~= '1' then return {'locked'} end
else
  if was_enabled then return {'enabled'} end
  redis.call('HSET', KEYS[1], 'rg', ARGV[5])
end
redis.call('HINCRBY', KEYS[1], 'pv', 1)
redis.call('HSET', KEYS[1], 'h', ARGV[1], 'ts', '1', 'n', '0', 'nx', '0', 'lk', '0', 'up', ARGV[5])
local e, l = '0', '0'
if was_enabled then e = '1' end
if was_locked then l = '1' end
return {'written', e, l, unpack(load(KEYS[1]))}
"#;

/// KEYS: number. ARGV: now, free attempts, first wait, max wait, max failures.
const LUA_RESERVE: &str = r#"
local v = redis.call('HMGET', KEYS[1], 'ts', 'h', 'n', 'nx', 'pv')
if not v[1] then return {'not_found'} end
if v[1] ~= '1' or not v[2] then return {'disabled'} end
local now, free, first = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local max_wait, max_failures = tonumber(ARGV[4]), tonumber(ARGV[5])
local n = tonumber(v[3])
if n >= max_failures then return {'locked'} end
local next_at = tonumber(v[4])
if next_at > now then return {'wait', int(next_at - now)} end
n = n + 1
if free < 1 then free = 1 end
local wait = 0
if n >= free then
  local doublings = n - free
  if doublings > 30 then doublings = 30 end
  wait = math.min(first * (2 ^ doublings), max_wait)
end
next_at = 0
if wait > 0 then next_at = now + wait end
redis.call('HSET', KEYS[1], 'n', int(n), 'nx', int(next_at))
if n >= max_failures then redis.call('HSET', KEYS[1], 'lk', ARGV[1]) end
return {'go', v[2], int(n), v[5]}
"#;

/// KEYS: number. ARGV: PIN version reserved at, now.
const LUA_SUCCEEDED: &str = r#"
if redis.call('HGET', KEYS[1], 'pv') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'n', '0', 'nx', '0', 'lk', '0', 'rg', ARGV[2], 'up', ARGV[2])
return 1
"#;

/// KEYS: number, link. ARGV: purpose, digest hex, now, ttl, retention, number id.
const LUA_ISSUE_LINK: &str = r#"
local v = redis.call('HMGET', KEYS[1], 'ts', 'e')
if not v[1] then return {'not_found'} end
if ARGV[1] == 'd' and v[1] ~= '1' then return {'already_disabled'} end
local slot, expiry = 'td', 'dx'
if ARGV[1] == 'r' then slot, expiry = 'tr', 'rx' end
local expires = tonumber(ARGV[3]) + tonumber(ARGV[4])
redis.call('HSET', KEYS[2], 'id', ARGV[6], 'p', ARGV[1], 'ex', int(expires), 'u', '0')
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[4]) + tonumber(ARGV[5]))
redis.call('HSET', KEYS[1], slot, ARGV[2], expiry, int(expires))
return {'issued', v[2]}
"#;

/// KEYS: link. ARGV: account base, purpose, digest hex, new PIN hash (or ''), now.
const LUA_USE_LINK: &str = r#"
local l = redis.call('HMGET', KEYS[1], 'id', 'p', 'ex', 'u')
if not l[1] or l[2] ~= ARGV[2] then return {'unknown'} end
if l[4] ~= '0' then return {'used'} end
if tonumber(ARGV[5]) >= tonumber(l[3]) then return {'expired'} end
local key = ARGV[1] .. 'pn:' .. l[1]
local slot, expiry = 'td', 'dx'
if ARGV[2] == 'r' then slot, expiry = 'tr', 'rx' end
local v = redis.call('HMGET', key, 'ts', 'e', slot, 'lk')
if not v[1] then
  redis.call('HSET', KEYS[1], 'u', ARGV[5])
  return {'unknown'}
end
if v[3] ~= ARGV[3] then return {'superseded'} end
redis.call('HSET', KEYS[1], 'u', ARGV[5])
redis.call('HSET', key, slot, '', expiry, '0')
local was_locked = '0'
if v[4] ~= '0' then was_locked = '1' end
if ARGV[2] == 'd' then
  if v[1] ~= '1' then return {'already_disabled', l[1]} end
  redis.call('HINCRBY', key, 'pv', 1)
  redis.call('HDEL', key, 'h')
  redis.call('HSET', key, 'ts', '0', 'n', '0', 'nx', '0', 'lk', '0', 'up', ARGV[5])
else
  redis.call('HINCRBY', key, 'pv', 1)
  redis.call('HSET', key, 'h', ARGV[4], 'ts', '1', 'n', '0', 'nx', '0', 'lk', '0', 'up', ARGV[5])
end
return {'done', l[1], v[2], was_locked}
"#;

/// KEYS: number. ARGV: now.
const LUA_DISABLE: &str = r#"
local v = redis.call('HMGET', KEYS[1], 'ts', 'e', 'lk')
if not v[1] then return {'not_found'} end
if v[1] ~= '1' then return {'already_disabled'} end
redis.call('HINCRBY', KEYS[1], 'pv', 1)
redis.call('HDEL', KEYS[1], 'h')
redis.call('HSET', KEYS[1], 'ts', '0', 'n', '0', 'nx', '0', 'lk', '0', 'up', ARGV[1],
  'td', '', 'dx', '0')
local was_locked = '0'
if v[3] ~= '0' then was_locked = '1' end
return {'disabled', v[2], was_locked}
"#;

pub struct RedisPinStore {
    connection: Connection,
    prefix: String,
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
        let script = |body: &str| Script::new(&format!("{LUA_COMMON}{body}"));
        Self {
            connection,
            prefix: prefix.to_owned(),
            create: script(LUA_CREATE),
            write_pin: script(LUA_WRITE_PIN),
            reserve: script(LUA_RESERVE),
            succeeded: script(LUA_SUCCEEDED),
            issue_link: script(LUA_ISSUE_LINK),
            use_link: script(LUA_USE_LINK),
            disable: script(LUA_DISABLE),
            claim: Script::new(LUA_CLAIM),
            swap: Script::new(LUA_SWAP),
            remove: Script::new(LUA_REMOVE),
            tenants: TenantSettings::default(),
        }
    }

    /// The per-account bounds (`[tenants]`); the documented defaults until this is called.
    pub(crate) fn with_tenants(mut self, tenants: TenantSettings) -> Self {
        self.tenants = tenants;
        self
    }

    /// `P:{a:<account>}:` — every key of one account starts with this.
    fn base(&self, account: &AccountId) -> String {
        format!("{}:{{a:{}}}:", self.prefix, account.as_str())
    }

    fn number_key(&self, account: &AccountId, id: &PhoneNumberId) -> String {
        format!("{}pn:{}", self.base(account), id.as_str())
    }

    /// The registry key: its own hash tag, so one number's claims meet in one slot.
    fn registry_key(&self, e164: &str) -> String {
        format!("{}:{{n:{}}}:holder", self.prefix, e164)
    }

    fn index_key(&self, account: &AccountId, e164: &str) -> String {
        format!("{}pnx:{}", self.base(account), e164)
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
            .key(self.registry_key(e164))
            .arg(expected)
            .arg(value);
        let mut connection = self.connection.clone();
        let swapped: i64 = invocation
            .invoke_async(&mut connection)
            .await
            .map_err(unavailable)?;
        Ok(swapped == 1)
    }

    /// Writes the account's record (the pre-registry create script).
    async fn create_record(&self, new: &NewNumber) -> Result<CreateOutcome, StoreError> {
        let mut invocation = self.create.prepare_invoke();
        invocation
            .key(self.number_key(&new.account, &new.id))
            .key(self.index_key(&new.account, &new.e164))
            .key(format!("{}pncount", self.base(&new.account)))
            .arg(new.id.as_str())
            .arg(&new.e164)
            .arg(&new.pin_hash)
            .arg(new.now_ms)
            .arg(self.tenants.limits(&new.account).phone_numbers);
        let reply = self.run(&invocation).await?;
        match reply.first().map(String::as_str) {
            Some("limit") => Err(LimitReached {
                limit: Limit::PhoneNumbers,
                max: self.tenants.limits(&new.account).phone_numbers,
            }
            .into()),
            Some("created") => Ok(CreateOutcome::Created(parse_record(&new.id, &reply[1..])?)),
            Some("exists") => Ok(CreateOutcome::Exists(parse_id(reply.get(1))?)),
            Some("id_taken") => Ok(CreateOutcome::IdTaken),
            _ => Err(corrupt("unknown create reply")),
        }
    }

    fn link_key(&self, account: &AccountId, digest: &[u8; 32]) -> String {
        format!("{}pl:{}", self.base(account), hex(digest))
    }

    /// The full key of a number's record, for tests and operators inspecting Redis.
    pub fn number_record_key(&self, account: &AccountId, id: &PhoneNumberId) -> String {
        self.number_key(account, id)
    }

    async fn run(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<Vec<String>, StoreError> {
        let mut connection = self.connection.clone();
        invocation
            .invoke_async(&mut connection)
            .await
            .map_err(unavailable)
    }
}

fn unavailable(error: redis::RedisError) -> StoreError {
    StoreError::Unavailable(error.to_string())
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_owned())
}

/// A record from the ten `RECORD_FIELDS` values.
fn parse_record(id: &PhoneNumberId, values: &[String]) -> Result<NumberRecord, StoreError> {
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
        e164: values[0].clone(),
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

fn parse_id(text: Option<&String>) -> Result<PhoneNumberId, StoreError> {
    text.and_then(|text| PhoneNumberId::parse(text))
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
        invocation.key(self.registry_key(&new.e164)).arg(&ours);
        let reply = self.run(&invocation).await?;
        let held = match reply.first().map(String::as_str) {
            Some("claimed") => None,
            Some("held") => Some(reply.get(1).cloned().unwrap_or_default()),
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
        let mut connection = self.connection.clone();
        let count: Option<u64> = redis::cmd("GET")
            .arg(format!("{}pncount", self.base(&new.account)))
            .query_async(&mut connection)
            .await
            .map_err(unavailable)?;
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
            .key(self.number_key(from, from_id))
            .key(self.index_key(from, &new.e164))
            .key(format!("{}pncount", self.base(from)))
            .arg(from_id.as_str());
        self.run(&invocation).await?;
        match self.create_record(new).await? {
            CreateOutcome::Created(mut record) => {
                // A transferred number counts as registered: its PIN was proven (or two-step
                // was off and the new PIN is set).
                redis::cmd("HSET")
                    .arg(self.number_key(&new.account, &new.id))
                    .arg("rg")
                    .arg(new.now_ms)
                    .query_async::<()>(&mut connection)
                    .await
                    .map_err(unavailable)?;
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
        let mut connection = self.connection.clone();
        let values: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(self.number_key(account, id))
            .arg(&RECORD_FIELDS)
            .query_async(&mut connection)
            .await
            .map_err(unavailable)?;
        if values.first().is_none_or(Option::is_none) {
            return Ok(None);
        }
        let values: Vec<String> = values
            .into_iter()
            .map(|value| value.unwrap_or_else(|| "0".into()))
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
            .key(self.number_key(account, id))
            .arg(pin_hash)
            .arg(mode_word)
            .arg(if unlock { "1" } else { "0" })
            .arg(limits.max_failures)
            .arg(now_ms);
        let reply = self.run(&invocation).await?;
        match reply.first().map(String::as_str) {
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
            .key(self.number_key(account, id))
            .arg(now_ms)
            .arg(limits.free_attempts)
            .arg(limits.first_wait.as_millis() as u64)
            .arg(limits.max_wait.as_millis() as u64)
            .arg(limits.max_failures);
        let reply = self.run(&invocation).await?;
        let number = |index: usize| -> Result<u64, StoreError> {
            reply
                .get(index)
                .and_then(|text| text.parse().ok())
                .ok_or_else(|| corrupt("reserve reply"))
        };
        match reply.first().map(String::as_str) {
            Some("go") => Ok(Reservation::Go {
                pin_hash: reply.get(1).cloned().unwrap_or_default(),
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
        let mut connection = self.connection.clone();
        let done: i64 = self
            .succeeded
            .key(self.number_key(account, id))
            .arg(pin_version)
            .arg(now_ms)
            .invoke_async(&mut connection)
            .await
            .map_err(unavailable)?;
        Ok(done == 1)
    }

    async fn issue_link(
        &self,
        account: &AccountId,
        id: &PhoneNumberId,
        purpose: LinkPurpose,
        digest: &[u8; 32],
        now_ms: u64,
        ttl_ms: u64,
    ) -> Result<LinkIssue, StoreError> {
        let mut invocation = self.issue_link.prepare_invoke();
        invocation
            .key(self.number_key(account, id))
            .key(self.link_key(account, digest))
            .arg(purpose.code())
            .arg(hex(digest))
            .arg(now_ms)
            .arg(ttl_ms)
            .arg(LINK_RETENTION_MS)
            .arg(id.as_str());
        let reply = self.run(&invocation).await?;
        match reply.first().map(String::as_str) {
            Some("issued") => Ok(LinkIssue::Issued {
                e164: reply.get(1).cloned().unwrap_or_default(),
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
        let mut connection = self.connection.clone();
        let (id, purpose, expires, used): (
            Option<String>,
            Option<String>,
            Option<u64>,
            Option<u64>,
        ) = redis::cmd("HMGET")
            .arg(self.link_key(account, digest))
            .arg(&["id", "p", "ex", "u"])
            .query_async(&mut connection)
            .await
            .map_err(unavailable)?;
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
            .key(self.link_key(account, digest))
            .arg(self.base(account))
            .arg(purpose.code())
            .arg(hex(digest))
            .arg(new_pin_hash.unwrap_or(""))
            .arg(now_ms);
        let reply = self.run(&invocation).await?;
        match reply.first().map(String::as_str) {
            Some("done") if reply.len() >= 4 => Ok(LinkUse::Done {
                number: parse_id(reply.get(1))?,
                e164: reply[2].clone(),
                was_locked: reply[3] == "1",
            }),
            Some("already_disabled") => Ok(LinkUse::AlreadyDisabled {
                number: parse_id(reply.get(1))?,
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
        invocation.key(self.number_key(account, id)).arg(now_ms);
        let reply = self.run(&invocation).await?;
        match reply.first().map(String::as_str) {
            Some("disabled") if reply.len() >= 3 => Ok(DisableOutcome::Disabled {
                e164: reply[1].clone(),
                was_locked: reply[2] == "1",
            }),
            Some("already_disabled") => Ok(DisableOutcome::AlreadyDisabled),
            Some("not_found") => Ok(DisableOutcome::NotFound),
            _ => Err(corrupt("unknown disable reply")),
        }
    }

    async fn set_email(&self, account: &AccountId, email: &str) -> Result<(), StoreError> {
        let mut connection = self.connection.clone();
        redis::cmd("SET")
            .arg(format!("{}pmail", self.base(account)))
            .arg(email)
            .query_async::<()>(&mut connection)
            .await
            .map_err(unavailable)
    }

    async fn email(&self, account: &AccountId) -> Result<Option<String>, StoreError> {
        let mut connection = self.connection.clone();
        redis::cmd("GET")
            .arg(format!("{}pmail", self.base(account)))
            .query_async(&mut connection)
            .await
            .map_err(unavailable)
    }
}
